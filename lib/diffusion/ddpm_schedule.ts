import * as tf from "@tensorflow/tfjs";
import { Denoiser } from "./edm";

// The discrete DDPM schedule of Stable Diffusion, seen through EDM's lens: a VP sample x_t = sqrt(abar_t) y +
// sqrt(1 - abar_t) eps is a VE sample x = x_t / sqrt(abar_t) at sigma_t = sqrt((1 - abar_t) / abar_t).
// That lets SD teachers use the same samplers (DDIM with eta 0 is Euler on this ODE).

export interface DdpmConfig {
  betaStart: number;
  betaEnd: number;
  steps: number;
}

export const SD_SCHEDULE: DdpmConfig = { betaStart: 0.00085, betaEnd: 0.012, steps: 1000 };

/** abar_t for t = 0..T-1 with "scaled linear" betas: beta_t = (lerp(sqrt(b0), sqrt(b1), t/(T-1)))^2. */
export function alphasCumprod(cfg: DdpmConfig = SD_SCHEDULE): Float64Array {
  const out = new Float64Array(cfg.steps);
  const a = Math.sqrt(cfg.betaStart);
  const b = Math.sqrt(cfg.betaEnd);
  let prod = 1;
  for (let t = 0; t < cfg.steps; t++) {
    const beta = (a + ((b - a) * t) / (cfg.steps - 1)) ** 2;
    prod *= 1 - beta;
    out[t] = prod;
  }
  return out;
}

/** sigma_t = sqrt((1 - abar_t) / abar_t) */
export function sigmaOfAlphaBar(abar: number): number {
  return Math.sqrt((1 - abar) / abar);
}

/**
 * DDIM timesteps as diffusers' "leading" spacing with steps_offset 1 (what SD1.5 pipelines use):
 * t_i = i * (T / S) + 1 for i = S-1 .. 0.
 */
export function ddimTimesteps(numSteps: number, cfg: DdpmConfig = SD_SCHEDULE): number[] {
  const stride = Math.floor(cfg.steps / numSteps);
  const ts: number[] = [];
  for (let i = numSteps - 1; i >= 0; i--) ts.push(Math.min(cfg.steps - 1, i * stride + 1));
  return ts;
}

/** An epsilon-prediction network on VP inputs at integer timestep t. */
export type EpsNet = (xt: tf.Tensor4D, t: number, cond?: tf.Tensor) => tf.Tensor4D;

/** D(x; sigma) from an eps network: x_t = x / sqrt(1 + sigma^2), D = x - sigma eps(x_t, t(sigma)). */
export function epsDenoiser(eps: EpsNet, cfg: DdpmConfig = SD_SCHEDULE): Denoiser {
  const abar = alphasCumprod(cfg);
  const sig = Array.from(abar, sigmaOfAlphaBar);
  const tOf = (sigma: number) => {
    const t = sig.findIndex((s) => Math.abs(s - sigma) <= 1e-6 * Math.max(1, sigma));
    if (t < 0) throw new Error(`epsDenoiser: sigma ${sigma} is not on the ${cfg.steps}-step DDPM grid`);
    return t;
  };
  return (x, sigma, cond) =>
    tf.tidy(() => {
      const e = eps(tf.div(x, Math.sqrt(1 + sigma * sigma)), tOf(sigma), cond);
      return tf.sub(x, tf.mul(e, sigma));
    });
}
