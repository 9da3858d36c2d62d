import { OnnxAttr, OnnxData, OnnxDType, OnnxGraph, OnnxNode, OnnxTensor, OnnxValueInfo } from "./onnx_proto";

// The graph an export builds: nodes in execution order, named initializers, the small constants the
// translations need (shapes, axes, scalars) stored once each, and the layout of every value.
//
// Layouts. tfjs tensors are NHWC; ONNX convolutions and pools are NCHW. Rather than transposing around every
// convolution, a value may live in the graph with its axes permuted: `perm[i]` is the tfjs (logical) axis held
// by the graph's axis i. Convolutions leave their output NCHW (perm [0, 3, 1, 2]) and the kernels that do not
// care about axis order (element-wise ops, reductions, concatenation, splits, pads, resizes, and reshapes that
// only split or merge axes) follow their input's layout, so a conv - GroupNorm - SiLU - conv chain needs no
// transpose at all. Any other kernel sees its inputs transposed back to logical order.

/** A value of the graph: its name, its static tfjs shape and dtype, and its layout. */
export interface GraphValue {
  name: string;
  shape: number[];
  dtype: OnnxDType;
  /** Graph axis i holds tfjs axis perm[i]; the identity for values in tfjs order. */
  perm: number[];
}

/** What a translation returns for one kernel output: a name in tfjs order, or a name and its layout. */
export type EmittedValue = string | { name: string; perm: number[] };

/** What a kernel translation sees of one tfjs kernel call. */
export interface KernelCall {
  kernel: string;
  /** An input by the kernel's input name (x, filter, a, b, ...) or position (Concat, Pack, AddN), in tfjs order. */
  input(key: string | number): GraphValue;
  /** The same input in whatever layout it has (for translations that follow layouts). */
  laid(key: string | number): GraphValue;
  has(key: string): boolean;
  readonly inputCount: number;
  readonly attrs: Record<string, unknown>;
  /** Shapes and dtypes of the kernel's outputs, as tfjs computed them. */
  readonly outputs: Array<{ shape: number[]; dtype: OnnxDType }>;
  /** The values tfjs computed for output i (kernels whose result is a constant at static shapes). */
  outputValues(i: number): OnnxData;
}

/** Translates one kernel call into nodes; returns the values holding the kernel's outputs, in order. */
export type Emitter = (g: GraphBuilder, k: KernelCall) => EmittedValue[];

const SMALL_CONSTANT = 64;
/** Innermost extents below this make onnxruntime's broadcasting slow (see elementwise). */
const SHORT_SPAN = 8;

export const identityPerm = (rank: number): number[] => Array.from({ length: rank }, (_, i) => i);
export const isIdentity = (perm: number[]): boolean => perm.every((a, i) => a === i);
export const inversePerm = (perm: number[]): number[] => {
  const inv = new Array<number>(perm.length);
  perm.forEach((a, i) => (inv[a] = i));
  return inv;
};
const numel = (shape: number[]): number => shape.reduce((a, b) => a * b, 1);

/** The layout left when tfjs axes `removed` disappear (a reduction without keepDims, a squeeze). */
export function dropAxes(perm: number[], removed: number[]): number[] {
  return perm.filter((a) => !removed.includes(a)).map((a) => a - removed.filter((r) => r < a).length);
}

/**
 * reshape(x, to) computed on the graph's (permuted) data of x, when that is possible: every run of axes of size
 * > 1 that the reshape merges or splits must sit together and in order in the graph's layout. Returns the graph
 * shape to reshape to and the layout of the result; axes of size 1 go after their tfjs predecessor.
 */
export function reshapeLayout(from: number[], perm: number[], to: number[]): { shape: number[]; perm: number[] } | undefined {
  const fromAxes = from.map((_, i) => i).filter((i) => from[i] !== 1);
  const toAxes = to.map((_, i) => i).filter((i) => to[i] !== 1);
  const groups: Array<{ from: number[]; to: number[] }> = [];
  let i = 0;
  let j = 0;
  while (i < fromAxes.length || j < toAxes.length) {
    const group = { from: [] as number[], to: [] as number[] };
    let pf = 1;
    let pt = 1;
    do {
      if (pf <= pt && i < fromAxes.length) {
        const a = fromAxes[i++];
        group.from.push(a);
        pf *= from[a];
      } else if (j < toAxes.length) {
        const b = toAxes[j++];
        group.to.push(b);
        pt *= to[b];
      } else {
        return undefined;
      }
    } while (pf !== pt);
    groups.push(group);
  }
  const order = perm.filter((a) => from[a] !== 1);
  for (const gr of groups) {
    const at = gr.from.map((a) => order.indexOf(a));
    if (at.some((p, k) => k > 0 && p !== at[k - 1] + 1)) return undefined;
  }
  const out: number[] = [];
  for (const a of order) {
    const gr = groups.find((x) => x.from[0] === a);
    if (gr) out.push(...gr.to);
  }
  to.forEach((d, t) => {
    if (d !== 1) return;
    const prev = out.indexOf(t - 1);
    out.splice(prev + 1, 0, t);
  });
  return { shape: out.map((t) => to[t]), perm: out };
}

export class GraphBuilder {
  readonly nodes: OnnxNode[] = [];
  readonly initializers = new Map<string, OnnxTensor>();
  /** doc_string of the nodes being emitted (the kernel and tf op they come from). */
  doc = "";
  private count = 0;
  private readonly small = new Map<string, string>();
  private readonly transposed = new Map<string, string>();

  fresh(prefix = "v"): string {
    return `${prefix}${this.count++}`;
  }

  /** A node with `n` outputs; returns their names. */
  nodeN(op: string, inputs: string[], attrs: Record<string, OnnxAttr> = {}, n = 1): string[] {
    const outputs = Array.from({ length: n }, () => this.fresh());
    this.nodes.push({ op, inputs, outputs, attrs, doc: this.doc || undefined });
    return outputs;
  }

  node(op: string, inputs: string[], attrs: Record<string, OnnxAttr> = {}): string {
    return this.nodeN(op, inputs, attrs, 1)[0];
  }

  /** A named initializer (a parameter); the name must be unused. */
  initializer(t: OnnxTensor): string {
    if (this.initializers.has(t.name)) throw new Error(`ONNX export: two initializers are named '${t.name}'`);
    this.initializers.set(t.name, t);
    return t.name;
  }

  /**
   * A constant. Small ones are stored once per distinct value; one whose elements are all equal becomes a
   * ConstantOfShape node, so that e.g. a ones tensor of activation size costs no bytes in the file.
   */
  constant(dtype: OnnxDType, shape: number[], data: OnnxData): string {
    const n = data.length;
    if (n > SMALL_CONSTANT && allEqual(data)) {
      const value: OnnxTensor = { name: "value", dtype, shape: [1], data: data.slice(0, 1) as OnnxData };
      return this.node("ConstantOfShape", [this.int64s(shape)], { value: { t: value } });
    }
    const key = n <= SMALL_CONSTANT ? `${dtype}|${shape.join(",")}|${Array.from(data as ArrayLike<number | bigint>).join(",")}` : undefined;
    const known = key && this.small.get(key);
    if (known) return known;
    const name = this.initializer({ name: this.fresh("const"), dtype, shape, data });
    if (key) this.small.set(key, name);
    return name;
  }

  /** A 1-D int64 constant (shapes, axes, pads, sizes). */
  int64s(values: number[]): string {
    return this.constant("int64", [values.length], BigInt64Array.from(values.map((v) => BigInt(v))));
  }

  /** A 0-D constant of a dtype. */
  scalar(value: number, dtype: OnnxDType): string {
    return this.constant(dtype, [], typedOf(dtype, [value]));
  }

  transpose(x: string, perm: number[]): string {
    return this.node("Transpose", [x], { perm: { ints: perm } });
  }

  reshape(x: string, shape: number[]): string {
    return this.node("Reshape", [x, this.int64s(shape)]);
  }

  /** The name of `v` in layout `perm` (one Transpose, made once per value and layout). */
  layout(v: GraphValue, perm: number[]): string {
    if (v.perm.every((a, i) => a === perm[i]) || numel(v.shape) === 1) return v.name;
    const key = `${v.name}|${perm.join(",")}`;
    let name = this.transposed.get(key);
    if (!name) {
      // graph axis i of the result is tfjs axis perm[i], which sits at graph axis inverse(v.perm)[perm[i]] of v
      const inv = inversePerm(v.perm);
      name = this.transpose(v.name, perm.map((a) => inv[a]));
      this.transposed.set(key, name);
    }
    return name;
  }

  /** `v` in tfjs order. */
  plain(v: GraphValue): GraphValue {
    const perm = identityPerm(v.shape.length);
    return { ...v, name: this.layout(v, perm), perm };
  }

  /** reshape(v, to) in whatever layout avoids a transpose, else on `v` in tfjs order. */
  reshapeLaid(v: GraphValue, to: number[]): GraphValue {
    const laid = isIdentity(v.perm) ? undefined : reshapeLayout(v.shape, v.perm, to);
    if (laid) return { ...v, name: this.reshape(v.name, laid.shape), shape: to, perm: laid.perm };
    return { ...v, name: this.reshape(this.plain(v).name, to), shape: to, perm: identityPerm(to.length) };
  }

  /**
   * An element-wise node over broadcast inputs (numpy rules in tfjs and ONNX alike). It runs in the layout of
   * its largest full-rank input; the other inputs are transposed to it (lower-rank ones padded with leading
   * axes of size 1 first), except those of one element, which broadcast in any layout.
   */
  elementwise(op: string, inputs: GraphValue[], shape: number[], dtype: OnnxDType, attrs: Record<string, OnnxAttr> = {}): GraphValue {
    const rank = shape.length;
    let perm = identityPerm(rank);
    let best = -1;
    for (const v of inputs) {
      if (v.shape.length === rank && numel(v.shape) > best) {
        best = numel(v.shape);
        perm = v.perm;
      }
    }
    // onnxruntime broadcasts by spans of the innermost axis: when that axis is short and some input repeats
    // along it (nearest upsampling's [n, c, h, 1, w, 1] x ones [1, 1, 1, 2, 1, 2]) the op runs ~10x slower than
    // in tfjs order, whose innermost axis is the channels; a transpose there and back costs less
    const inner = perm[rank - 1];
    const repeats = (v: GraphValue) => (v.shape[inner - rank + v.shape.length] ?? 1) !== shape[inner];
    if (shape[inner] < SHORT_SPAN && inputs.some(repeats)) perm = identityPerm(rank);
    const names = inputs.map((v) => {
      if (numel(v.shape) === 1) return v.name;
      if (v.shape.length === rank) return this.layout(v, perm);
      if (isIdentity(perm)) return this.plain(v).name;
      const padded = [...new Array(rank - v.shape.length).fill(1), ...v.shape];
      return this.layout({ ...v, name: this.reshape(this.plain(v).name, padded), shape: padded, perm: identityPerm(rank) }, perm);
    });
    return { name: this.node(op, names, attrs), shape, dtype, perm };
  }

  graph(name: string, inputs: OnnxValueInfo[], outputs: OnnxValueInfo[]): OnnxGraph {
    return { name, nodes: this.nodes, initializers: [...this.initializers.values()], inputs, outputs };
  }
}

function allEqual(data: OnnxData): boolean {
  const d = data as ArrayLike<number | bigint>;
  for (let i = 1; i < d.length; i++) if (d[i] !== d[0] && !(Number.isNaN(d[i]) && Number.isNaN(d[0]))) return false;
  return true;
}

/** A typed array of a dtype holding `values`. */
export function typedOf(dtype: OnnxDType, values: number[]): OnnxData {
  switch (dtype) {
    case "float32": return Float32Array.from(values);
    case "int32": return Int32Array.from(values);
    case "int64": return BigInt64Array.from(values.map((v) => BigInt(v)));
    case "uint8": case "bool": return Uint8Array.from(values);
  }
}
