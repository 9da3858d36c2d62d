import * as tf from "@tensorflow/tfjs";

// Exponential moving average of weights: ema <- beta ema + (1 - beta) theta.

export class Ema {
  readonly shadow: tf.Variable[];
  constructor(readonly params: tf.Variable[]) {
    // tidy frees the clones the variables were made from (each would otherwise stay a live tensor)
    this.shadow = tf.tidy(() => params.map((p) => tf.variable(p.clone(), false)));
  }
  update(beta: number): void {
    tf.tidy(() => this.shadow.forEach((s, i) => s.assign(tf.add(tf.mul(s, beta), tf.mul(this.params[i], 1 - beta)))));
  }
  /** Copy the averages into the given variables (e.g. an evaluation copy of the model). */
  copyTo(targets: tf.Variable[]): void {
    targets.forEach((t, i) => t.assign(this.shadow[i]));
  }
  dispose(): void {
    tf.dispose(this.shadow);
  }
}

/**
 * EDM's EMA schedule: a half-life in images, ramped up early in training so the average does not remember
 * the random init: beta = 0.5^(batch / min(halflife, rampup * images_seen)).
 */
export function edmEmaBeta(batch: number, imagesSeen: number, halflifeImages: number, rampupRatio = 0.05): number {
  const h = rampupRatio > 0 ? Math.min(halflifeImages, imagesSeen * rampupRatio) : halflifeImages;
  return 0.5 ** (batch / Math.max(h, 1e-8));
}

/**
 * Which EMA a trainer scores: EDM's half-life with ramp-up when emaHalflifeImages > 0, else the fixed rate emaBeta.
 * Every trainer that keeps an evaluation EMA reads this one rule, so experiments can give their arms the same one.
 */
export interface EmaRule {
  emaBeta: number;
  emaHalflifeImages: number;
  emaRampup: number;
}

/** The EMA rate of the update after `stepsDone` steps of `batch` (stepsDone >= 1). */
export function emaBetaAt(rule: EmaRule, batch: number, stepsDone: number): number {
  return rule.emaHalflifeImages > 0 ? edmEmaBeta(batch, stepsDone * batch, rule.emaHalflifeImages, rule.emaRampup) : rule.emaBeta;
}
