import * as tf from "@tensorflow/tfjs";
import { Progress } from "../core/progress";
import { Rng } from "../core/random";
import { HostTensor } from "../io/host_tensor";
import { LazyTensor } from "../io/safetensors";
import { recordSource, TensorSource } from "../io/tensor_source";
import { ExpectedWeight, MapOptions, streamWeights, torchShape, TorchLayout, WeightOptions } from "../io/weight_map";

// Modules in the nanoGPT spirit: plain classes whose fields *are* the parameter tree. A field holding a
// tf.Variable is a parameter, a Module is a child, an array of Modules is a numbered list of children.
// Field names follow the PyTorch reference so that `stateDict()` keys equal the official checkpoint keys.

const layouts = new WeakMap<tf.Variable, TorchLayout>();

/** Buffers (e.g. BatchNorm running statistics) are state-dict entries that the optimiser must not touch. */
export function isBuffer(v: tf.Variable): boolean {
  return !v.trainable;
}

export abstract class Module {
  /** Children in state-dict order. Override to rename (Sequential numbers its layers without a field name). */
  children(): Array<[string, Module | tf.Variable]> {
    const out: Array<[string, Module | tf.Variable]> = [];
    for (const [k, v] of Object.entries(this)) {
      if (v instanceof tf.Variable || v instanceof Module) out.push([k, v]);
      else if (Array.isArray(v) && v.length > 0 && v.every((m) => m instanceof Module)) {
        v.forEach((m: Module, i: number) => out.push([`${k}.${i}`, m]));
      }
    }
    return out;
  }

  /** Every parameter and buffer by its dotted name. */
  namedVariables(prefix = ""): Array<[string, tf.Variable]> {
    const out: Array<[string, tf.Variable]> = [];
    for (const [k, v] of this.children()) {
      const name = prefix ? `${prefix}.${k}` : k;
      if (v instanceof Module) out.push(...v.namedVariables(name));
      else out.push([name, v]);
    }
    return out;
  }

  /** Trainable parameters only. */
  parameters(): tf.Variable[] {
    return this.namedVariables().filter(([, v]) => v.trainable).map(([, v]) => v);
  }

  numParameters(): number {
    return this.parameters().reduce((n, v) => n + v.size, 0);
  }

  /** What a checkpoint must hold for this module, shapes in tfjs layout. */
  expectedWeights(): ExpectedWeight[] {
    return this.namedVariables().map(([name, v]) => ({ name, shape: v.shape, layout: layouts.get(v) ?? "plain" }));
  }

  /** Load a PyTorch-layout state dict (any file format that yields host tensors). */
  loadStateDict(tensors: Record<string, HostTensor>, opts: MapOptions): void {
    this.loadWeights(recordSource(tensors, opts.source), opts);
  }

  /**
   * Stream PyTorch-layout weights from a source into the variables, one tensor at a time: a big network loads
   * without a second copy of its weights on the host. Checks every key and shape before reading any data.
   */
  loadWeights(src: TensorSource, opts: WeightOptions & { progress?: Progress } = {}): void {
    const vars = new Map(this.namedVariables());
    streamWeights(src, this.expectedWeights(), opts, (e, data) => {
      const v = vars.get(e.name)!;
      const t = tf.tensor(data, v.shape, "float32");
      v.assign(t);
      t.dispose();
      opts.progress?.tick();
    });
    opts.progress?.finish();
  }

  /** The state dict in PyTorch layout, each tensor read from the engine only when asked for (for writing big models). */
  lazyStateDict(): Array<[string, LazyTensor]> {
    return this.namedVariables().map(([name, v]): [string, LazyTensor] => {
      const shape = torchShape({ name, shape: v.shape, layout: layouts.get(v) ?? "plain" });
      const read = (): HostTensor => {
        const t = torchLayout(v);
        const data = t.dataSync() as Float32Array;
        t.dispose();
        return { dtype: "float32", shape, data };
      };
      return [name, { dtype: "float32", shape, read }];
    });
  }

  /** Host copies in PyTorch layout, for writing checkpoints other tools can read. */
  async stateDict(): Promise<Record<string, HostTensor>> {
    const out: Record<string, HostTensor> = {};
    for (const [name, v] of this.namedVariables()) {
      const t = torchLayout(v);
      out[name] = { dtype: "float32", shape: t.shape, data: (await t.data()) as Float32Array };
      t.dispose();
    }
    return out;
  }

  /** Take every variable's value from the variable of the same name in `src`, a module of the same architecture. */
  assignFrom(src: Module): void {
    const from = new Map(src.namedVariables());
    const mine = this.namedVariables();
    const unused = new Set(from.keys());
    for (const [name, v] of mine) {
      const s = from.get(name);
      if (!s) throw new Error(`${this.constructor.name}.assignFrom(${src.constructor.name}): the source has no variable '${name}'`);
      if (s.shape.join() !== v.shape.join()) throw new Error(`${this.constructor.name}.assignFrom: '${name}' is [${s.shape}] in the source, [${v.shape}] here`);
      v.assign(s);
      unused.delete(name);
    }
    if (unused.size) throw new Error(`${this.constructor.name}.assignFrom(${src.constructor.name}): the source has variables this module lacks: ${[...unused].slice(0, 5).join(", ")}`);
  }

  dispose(): void {
    for (const [, v] of this.namedVariables()) v.dispose();
  }
}

/** A module built as `new Class(config, rng)` that keeps its config as `config` (SongUNet, UNet2DConditionModel, ...). */
export interface ConfiguredModule extends Module {
  readonly config: unknown;
}

/**
 * A copy of `m`: a new module of its class built from its config, holding its weights (copied by name). With `rng`,
 * the copy first draws its random init from it as a fresh build would, which keeps the stream where runs that built
 * networks this way expect it; without, it is built without init, which costs nothing however big the network.
 */
export function cloneModule<T extends ConfiguredModule>(m: T, rng?: Rng): T {
  const Class = m.constructor as new (config: unknown, rng: Rng) => T;
  const copy = rng ? new Class(m.config, rng) : withoutInit(() => new Class(m.config, new Rng(0)));
  copy.assignFrom(m);
  return copy;
}

/** A variable as PyTorch stores it (a new tensor for the caller to dispose). */
function torchLayout(v: tf.Variable): tf.Tensor {
  const layout = layouts.get(v) ?? "plain";
  return layout === "conv" ? tf.transpose(v, [3, 2, 0, 1]) : layout === "linear" ? tf.transpose(v) : tf.clone(v);
}

/** A parameter; `layout` records how PyTorch stores it so checkpoints convert on load and save. */
export function param(value: tf.Tensor, layout: TorchLayout = "plain", trainable = true): tf.Variable {
  const v = tf.variable(value, trainable);
  value.dispose();
  layouts.set(v, layout);
  return v;
}

let skipInit = 0;

/**
 * Build modules whose conv and linear weights are zeros instead of random draws: for weights that are loaded right
 * after (SD1.5's UNet has 860M of them), or to count a big network's parameters (the cpu engine does not touch
 * zero-filled memory, so it costs no RAM).
 */
export function withoutInit<T>(build: () => T): T {
  skipInit++;
  try {
    return build();
  } finally {
    skipInit--;
  }
}

/** PyTorch's default init for conv and linear layers: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (kaiming_uniform, a=sqrt(5)). */
export function torchUniform(shape: number[], fanIn: number, rng: Rng): tf.Tensor {
  if (skipInit > 0) return tf.zeros(shape);
  const b = 1 / Math.sqrt(fanIn);
  return tf.randomUniform(shape, -b, b, "float32", rng.seed());
}

/** A module that maps one tensor to one tensor, so it can sit in a Sequential. */
export abstract class Layer extends Module {
  abstract forward(x: tf.Tensor4D): tf.Tensor4D;
}

/** A parameterless torch layer that is the identity at inference (Dropout); it keeps a ModuleList's numbering. */
export class Identity extends Layer {
  forward(x: tf.Tensor4D): tf.Tensor4D {
    return x;
  }
}

export class Sequential extends Layer {
  constructor(readonly layers: Layer[]) {
    super();
  }
  override children(): Array<[string, Module | tf.Variable]> {
    return this.layers.map((m, i) => [String(i), m]);
  }
  forward(x: tf.Tensor4D): tf.Tensor4D {
    return this.layers.reduce((h, m) => m.forward(h), x);
  }
}

/** Named children in insertion order, like torch.nn.ModuleDict (keys such as "16x16_block0" appear verbatim). */
export class ModuleDict<T extends Module> extends Module {
  constructor(readonly items: Map<string, T> = new Map()) {
    super();
  }
  set(name: string, m: T): void {
    this.items.set(name, m);
  }
  override children(): Array<[string, Module | tf.Variable]> {
    return [...this.items];
  }
}
