import * as tf from "@tensorflow/tfjs";
import { adamUpdate, sumOfSquares } from "../backend/adam_update";

// Adam with its state in the open (moments per parameter, step count) so a checkpoint holds all of it and a
// resumed run continues bit for bit; tf.train.adam keeps running beta powers that it cannot restore exactly.
// With weightDecay it is AdamW (Loshchilov & Hutter): decay decoupled from the gradient, on the parameters the
// decay mask selects (open_clip exempts gains, biases, the class token and the temperature).

export interface AdamConfig {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  /** Clip the global gradient norm to this value (0 = off). */
  clipNorm: number;
  /** Decoupled weight decay (AdamW), 0 = plain Adam. */
  weightDecay: number;
}

export const ADAM_DEFAULTS: AdamConfig = { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, clipNorm: 0, weightDecay: 0 };

export class Adam {
  readonly m: tf.Variable[];
  readonly v: tf.Variable[];
  step = 0;
  readonly cfg: AdamConfig;
  /** decay[i]: whether weightDecay applies to params[i] (default: all). */
  constructor(readonly params: tf.Variable[], cfg: Partial<AdamConfig> = {}, readonly decay: boolean[] = params.map(() => true)) {
    this.cfg = { ...ADAM_DEFAULTS, ...cfg };
    if (decay.length !== params.length) throw new Error(`Adam: decay mask has ${decay.length} entries for ${params.length} parameters`);
    // tidy frees the zero tensors the variables were made from
    this.m = tf.tidy(() => params.map((p) => tf.variable(tf.zerosLike(p), false)));
    this.v = tf.tidy(() => params.map((p) => tf.variable(tf.zerosLike(p), false)));
  }

  /** runTraining's extraState: the step count (the bias corrections need it) saved and restored with the moments. */
  readonly checkpointState = {
    save: (): Record<string, unknown> => ({ adamStep: this.step }),
    load: (s: Record<string, unknown>): void => {
      this.step = Number(s.adamStep);
    },
  };

  /**
   * One update from gradients aligned with `params`; lr overrides the configured rate (for schedules).
   * Returns the global gradient norm before clipping.
   */
  apply(grads: tf.Tensor[], lr = this.cfg.lr): number {
    if (grads.length !== this.params.length) throw new Error(`Adam: ${grads.length} gradients for ${this.params.length} parameters`);
    const { beta1: b1, beta2: b2, eps, clipNorm, weightDecay: wd } = this.cfg;
    this.step += 1;
    const t = this.step;
    const norm = Math.sqrt(sumOfSquares(grads));
    const scale = clipNorm > 0 && norm > clipNorm ? clipNorm / norm : 1;
    const config = { beta1: b1, beta2: b2, eps, stepSize: lr / (1 - b1 ** t), biasCorrection2: Math.sqrt(1 - b2 ** t), gradScale: scale };
    this.params.forEach((p, i) => {
      // AdamW first decays: p <- p (1 - lr wd); then the Adam step on the decayed p (PyTorch's order)
      if (wd > 0 && this.decay[i]) {
        const decayed = tf.mul(p, 1 - lr * wd);
        p.assign(decayed);
        decayed.dispose();
      }
      const [p1, m1, v1] = adamUpdate(p, this.m[i], this.v[i], grads[i], config);
      this.m[i].assign(m1);
      this.v[i].assign(v1);
      p.assign(p1);
      tf.dispose([p1, m1, v1]);
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
