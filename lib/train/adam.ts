import * as tf from "@tensorflow/tfjs";

// Adam with its state in the open (moments per parameter, step count) so a checkpoint holds all of it and a
// resumed run continues bit for bit; tf.train.adam keeps running beta powers that it cannot restore exactly.

export interface AdamConfig {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  /** Clip the global gradient norm to this value (0 = off). */
  clipNorm: number;
}

export const ADAM_DEFAULTS: AdamConfig = { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, clipNorm: 0 };

export class Adam {
  readonly m: tf.Variable[];
  readonly v: tf.Variable[];
  step = 0;
  readonly cfg: AdamConfig;
  constructor(readonly params: tf.Variable[], cfg: Partial<AdamConfig> = {}) {
    this.cfg = { ...ADAM_DEFAULTS, ...cfg };
    // tidy frees the zero tensors the variables were made from
    this.m = tf.tidy(() => params.map((p) => tf.variable(tf.zerosLike(p), false)));
    this.v = tf.tidy(() => params.map((p) => tf.variable(tf.zerosLike(p), false)));
  }

  /**
   * One update from gradients aligned with `params`; lr overrides the configured rate (for schedules).
   * Returns the global gradient norm before clipping.
   */
  apply(grads: tf.Tensor[], lr = this.cfg.lr): number {
    if (grads.length !== this.params.length) throw new Error(`Adam: ${grads.length} gradients for ${this.params.length} parameters`);
    const { beta1: b1, beta2: b2, eps, clipNorm } = this.cfg;
    this.step += 1;
    const t = this.step;
    const norm = tf.tidy(() => tf.sqrt(tf.addN(grads.map((g) => tf.sum(tf.square(g))))).dataSync()[0]);
    const scale = clipNorm > 0 && norm > clipNorm ? clipNorm / norm : 1;
    tf.tidy(() => {
      this.params.forEach((p, i) => {
        const g = scale === 1 ? grads[i] : tf.mul(grads[i], scale);
        // m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2
        const m = tf.add(tf.mul(this.m[i], b1), tf.mul(g, 1 - b1));
        const v = tf.add(tf.mul(this.v[i], b2), tf.mul(tf.square(g), 1 - b2));
        this.m[i].assign(m);
        this.v[i].assign(v);
        // p <- p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)   (PyTorch's form)
        const denom = tf.add(tf.div(tf.sqrt(v), Math.sqrt(1 - b2 ** t)), eps);
        p.assign(tf.sub(p, tf.mul(tf.div(m, denom), lr / (1 - b1 ** t))));
      });
    });
    return norm;
  }

  dispose(): void {
    tf.dispose([...this.m, ...this.v]);
  }
}

/** Adam's moments by checkpoint name (`<prefix>.m.<k>`, `<prefix>.v.<k>`, k the parameter's position), for TrainSpec.vars. */
export function adamVariables(opt: Adam, prefix = "adam"): Record<string, tf.Variable> {
  const out: Record<string, tf.Variable> = {};
  opt.params.forEach((_, k) => {
    out[`${prefix}.m.${k}`] = opt.m[k];
    out[`${prefix}.v.${k}`] = opt.v[k];
  });
  return out;
}

/**
 * Loss and gradients w.r.t. `params`, in their order, without touching tfjs's variable registry
 * (variableGrads keys by auto-generated names, which are not stable across runs).
 */
export function lossAndGrads(f: () => tf.Scalar, params: tf.Variable[]): { loss: number; grads: tf.Tensor[] } {
  const { value, grads } = tf.variableGrads(f, params);
  const loss = value.dataSync()[0];
  value.dispose();
  // a parameter off the loss's path (e.g. the unused output conv of a discriminator body) gets a zero gradient
  return { loss, grads: params.map((p) => grads[p.name] ?? tf.zerosLike(p)) };
}
