import * as tf from "@tensorflow/tfjs";
import { MathBackendCPU } from "@tensorflow/tfjs-backend-cpu";
import { GraphBuilder, GraphValue, identityPerm, KernelCall } from "./onnx_graph";
import { emitterFor, onnxDType, outputOf, SUPPORTED_KERNELS } from "./onnx_ops";
import { modelProto, OnnxData, OnnxGraph } from "./onnx_proto";

// ONNX export of any network from its own forward function, as a tracing exporter does it: the forward runs
// once on a recording backend, a tfjs cpu backend under its own name whose every kernel records the ONNX nodes
// that compute the same (onnx_ops.ts). The module's variables become initializers under their state-dict names;
// tensors created inside the forward (scalars, index ranges, the ones of an upsampling) become constants, and
// kernels whose inputs are all constants are folded, not recorded. Only shapes matter for the recorded kernels,
// so those whose output shape onnx_ops.ts knows are not computed at all: a trace costs milliseconds whatever
// the network and batch. Shapes are static: a graph serves the input shapes it was traced at.

const TRACE_BACKEND = "onnx-trace";

/**
 * A cpu backend under another name; its data store keeps traced tensors apart from the engine's. It notes the
 * data written while a trace runs: those tensors were made by the forward itself, everything else was captured.
 */
class TraceBackend extends MathBackendCPU {
  constructor() {
    super();
    // the cpu backend greets its first write in Node with advice to install tfjs-node, which is noise here
    Object.assign(this, { firstUse: false });
  }
  override write(values: tf.backend_util.BackendValues, shape: number[], dtype: tf.DataType): DataId {
    const id = super.write(values, shape, dtype);
    active?.created.add(id);
    return id;
  }
}

type DataId = object;

/**
 * The trace in progress: which tfjs data hold which graph value. Tensors the forward captures from outside (the
 * module's variables, anything else made before the trace) enter the graph as initializers, under their
 * state-dict names where given; tensors the forward makes from nothing (scalars, ranges, masks) are constants,
 * and kernels over constants only are folded.
 */
class Trace {
  readonly g = new GraphBuilder();
  /** Data produced by recorded kernels, the graph inputs, and initializers once used: name and layout. */
  readonly names = new Map<DataId, { name: string; perm: number[] }>();
  /** State-dict names of parameters, by data. */
  readonly params = new Map<DataId, string>();
  /** Data written during the trace. */
  readonly created = new Set<DataId>();
  /** Constants already stored, by data. */
  readonly consts = new Map<DataId, string>();
  private captured = 0;
  constructor(readonly backend: TraceBackend) {}

  /** Whether a tensor is (or depends on) a graph input or an initializer, rather than a constant. */
  isGraphValue(t: tf.TensorInfo): boolean {
    return this.names.has(t.dataId) || !this.created.has(t.dataId);
  }

  /** The graph value of a tensor, in its layout; initializers and constants enter the graph on first use. */
  value(t: tf.TensorInfo): GraphValue {
    const dtype = onnxDType(t.dtype, `a tensor of shape [${t.shape}]`);
    const perm = identityPerm(t.shape.length);
    const known = this.names.get(t.dataId) ?? (this.consts.has(t.dataId) ? { name: this.consts.get(t.dataId)!, perm } : undefined);
    if (known) return { name: known.name, shape: t.shape, dtype, perm: known.perm };
    const data = this.backend.readSync(t.dataId) as OnnxData;
    if (this.created.has(t.dataId)) {
      const name = this.g.constant(dtype, t.shape, data);
      this.consts.set(t.dataId, name);
      return { name, shape: t.shape, dtype, perm };
    }
    const name = this.g.initializer({ name: this.params.get(t.dataId) ?? `captured_${this.captured++}`, dtype, shape: t.shape, data });
    this.names.set(t.dataId, { name, perm });
    return { name, shape: t.shape, dtype, perm };
  }
}

let active: Trace | undefined;

/** "conv2d" from the tf op scope the kernel runs in, and the first caller outside tfjs and the exporter. */
function callSite(): string {
  const scope = tf.engine().state.activeScope?.name?.replace(/__op$/, "");
  const frame = (new Error().stack ?? "").split("\n").slice(1).map((l) => l.trim())
    .find((l) => !/node_modules[\\/]@tensorflow|[\\/]backend[\\/]onnx_(export|ops|graph)\.|node:internal/.test(l));
  return `${scope ? `tf.${scope}` : "an unknown op"}${frame ? `, ${frame}` : ""}`;
}

/**
 * A kernel of the trace backend: the cpu kernel computes, the translation records. A kernel without a
 * translation may still fold constants; given a graph value, it is an error naming the kernel and its caller.
 */
function recording(kernel: string): tf.KernelFunc {
  const cpu = tf.getKernel(kernel, "cpu")!.kernelFunc;
  const emit = emitterFor(kernel);
  return (args) => {
    const trace = active;
    if (!trace) throw new Error(`the ${TRACE_BACKEND} backend runs only inside traceOnnx`);
    const inputs = args.inputs as Record<string, tf.TensorInfo>;
    const attrs = (args.attrs ?? {}) as Record<string, unknown>;
    const infos = Object.values(inputs).filter((t): t is tf.TensorInfo => t !== undefined && t !== null);
    // a kernel of constants is itself a constant: folded here
    if (!infos.some((t) => trace.isGraphValue(t))) return cpu(args);
    if (!emit) {
      throw new Error(
        `ONNX export: tfjs kernel '${kernel}' (run by ${callSite()}) has no ONNX translation. ` +
        `Supported kernels: ${SUPPORTED_KERNELS.join(", ")}`,
      );
    }
    let outs: tf.TensorInfo[];
    let list = false;
    const known = outputOf(kernel, inputs, attrs);
    if (known) {
      const size = known.shape.reduce((p, q) => p * q, 1);
      outs = [trace.backend.makeTensorInfo(known.shape, known.dtype, tf.util.getTypedArrayFromDType(known.dtype as "float32", size))];
    } else {
      const out = cpu(args);
      list = Array.isArray(out);
      outs = Array.isArray(out) ? out : [out];
    }
    // outputs that share data with an input (Reshape, Identity) get their own, so data ids name values uniquely
    const taken = new Set<DataId>(infos.map((t) => t.dataId));
    const fresh = outs.map((o) => {
      if (!taken.has(o.dataId) && !trace.names.has(o.dataId)) return o;
      const copy = trace.backend.makeTensorInfo(o.shape, o.dtype, trace.backend.readSync(o.dataId) as tf.backend_util.BackendValues);
      trace.backend.disposeIntermediateTensorInfo(o);
      return copy;
    });
    const laid = (key: string | number): GraphValue => {
      const t = inputs[key as string];
      if (!t) throw new Error(`ONNX export: ${kernel} has no input '${key}'`);
      return trace.value(t);
    };
    const call: KernelCall = {
      kernel,
      laid,
      input: (key) => trace.g.plain(laid(key)),
      has: (key) => inputs[key] !== undefined && inputs[key] !== null,
      inputCount: infos.length,
      attrs,
      outputs: fresh.map((o) => ({ shape: o.shape, dtype: onnxDType(o.dtype, `the output of ${kernel}`) })),
      outputValues: (i) => trace.backend.readSync(fresh[i].dataId) as OnnxData,
    };
    trace.g.doc = `${kernel} (${callSite()})`;
    emit(trace.g, call).forEach((v, i) => {
      trace.names.set(fresh[i].dataId, typeof v === "string" ? { name: v, perm: identityPerm(fresh[i].shape.length) } : v);
    });
    return list ? fresh : fresh[0];
  };
}

let registered = false;

/** Registers the trace backend and, for every kernel the cpu backend has, its recording twin. */
function registerTraceBackend(): void {
  if (registered) return;
  // a negative priority: never picked when tfjs chooses a backend by itself
  tf.registerBackend(TRACE_BACKEND, () => new TraceBackend(), -1);
  for (const { kernelName } of tf.getKernelsForBackend("cpu")) {
    tf.registerKernel({ kernelName, backendName: TRACE_BACKEND, kernelFunc: recording(kernelName) });
  }
  registered = true;
}

/** Switches backends without waiting: both are synchronous and already initialised, so the switch is immediate. */
function switchTo(name: string): void {
  void tf.setBackend(name);
  if (tf.getBackend() !== name) throw new Error(`ONNX export: could not switch the tfjs backend to '${name}'`);
}

export interface ExportSpec {
  /** Names the graph (and the cached model file). */
  name: string;
  /**
   * Parameters by state-dict name (Module.namedVariables()): those the forward uses become initializers of these
   * names. Other tensors it captures from outside become initializers too, named captured_0, captured_1, ...
   */
  variables: Array<[string, tf.Tensor]>;
  /** Graph inputs by name, with example values: their shapes and dtypes are the graph's. */
  inputs: Array<[string, tf.Tensor]>;
  /** Names of the graph outputs, one per tensor `fn` returns. */
  outputs: string[];
  /** The forward pass, on tensors in the order of `inputs`. */
  fn: (...inputs: tf.Tensor[]) => tf.Tensor | tf.Tensor[];
}

/** Trace `spec.fn` once on the example inputs and return the ONNX graph that computes the same. */
export function traceOnnx(spec: ExportSpec): OnnxGraph {
  registerTraceBackend();
  if (active) throw new Error(`ONNX export of '${spec.name}' started inside another export`);
  const previous = tf.getBackend();
  const hostInputs = spec.inputs.map(([name, t]) => ({ name, shape: t.shape, dtype: onnxDType(t.dtype, `input '${name}'`), data: t.dataSync() }));
  switchTo(TRACE_BACKEND);
  const trace = new Trace(tf.backend() as TraceBackend);
  active = trace;
  const held: tf.Tensor[] = [];
  try {
    for (const [name, v] of spec.variables) trace.params.set(v.dataId, name);
    const xs = hostInputs.map((i) => {
      const x = tf.tensor(i.data, i.shape, i.dtype);
      trace.names.set(x.dataId, { name: i.name, perm: identityPerm(i.shape.length) });
      return x;
    });
    held.push(...xs);
    const outputs = tf.tidy(() => {
      const y = spec.fn(...xs);
      return Array.isArray(y) ? y : [y];
    });
    held.push(...outputs);
    if (outputs.length !== spec.outputs.length) {
      throw new Error(`ONNX export of '${spec.name}': the forward returned ${outputs.length} tensors for ${spec.outputs.length} output names`);
    }
    const g = trace.g;
    g.doc = "";
    const outInfo = outputs.map((t, i) => {
      const v = g.plain(trace.value(t));
      g.nodes.push({ op: "Identity", inputs: [v.name], outputs: [spec.outputs[i]], attrs: {} });
      return { name: spec.outputs[i], shape: t.shape, dtype: v.dtype };
    });
    return g.graph(spec.name, hostInputs.map(({ name, shape, dtype }) => ({ name, shape, dtype })), outInfo);
  } finally {
    tf.dispose(held);
    active = undefined;
    switchTo(previous);
  }
}

/** Written into every model: what made it. */
export const ONNX_PRODUCER = `d2g-notebooks (tfjs ${tf.version_core})`;

/** The model as bytes in memory, weights inline (lib/io/onnx_file.ts writes it to a file). */
export function encodeOnnx(graph: OnnxGraph): Uint8Array {
  const proto = modelProto(graph, ONNX_PRODUCER);
  const out = new Uint8Array(proto.length);
  let at = 0;
  for (const c of proto.chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}
