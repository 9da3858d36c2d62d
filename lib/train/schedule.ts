// Learning-rate schedules, as pure functions of the step so a resumed run continues on the same curve.

export interface WarmupCosine {
  /** Peak learning rate. */
  lr: number;
  /** Linear warm-up steps. */
  warmup: number;
  /** Total steps; the rate reaches 0 at the last. */
  steps: number;
}

/**
 * Linear warm-up to lr over `warmup` steps, then cosine decay to 0 at `steps` (open_clip's cosine_lr, and the
 * stand-in classifiers' schedule). `i` is the 0-based step.
 */
export function warmupCosine(s: WarmupCosine, i: number): number {
  if (i < s.warmup) return (s.lr * (i + 1)) / s.warmup;
  // lr_i = lr / 2 (1 + cos(pi (i - warmup) / (steps - warmup)))
  return (s.lr / 2) * (1 + Math.cos((Math.PI * (i - s.warmup)) / Math.max(1, s.steps - s.warmup)));
}
