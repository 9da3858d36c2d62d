// Learning-rate schedules, as pure functions of the step so a resumed run continues on the same curve.

export interface WarmupCosine {
  lr: number;
  /** Steps of linear warm-up from lr / warmup to lr. */
  warmup: number;
  steps: number;
}

/** Linear warm-up, then cosine decay to zero at `steps`; i is the 0-based step. */
export function warmupCosineLr(cfg: WarmupCosine, i: number): number {
  if (i < cfg.warmup) return (cfg.lr * (i + 1)) / cfg.warmup;
  // lr_i = lr / 2 (1 + cos(pi (i - warmup) / (steps - warmup)))
  return (cfg.lr / 2) * (1 + Math.cos((Math.PI * (i - cfg.warmup)) / Math.max(1, cfg.steps - cfg.warmup)));
}
