import * as tf from "@tensorflow/tfjs";
import { alphasCumprod, DdpmConfig, ddimTimesteps, SD_SCHEDULE, sigmaOfAlphaBar } from "./ddpm_schedule";

// Probability-flow ODE solvers on dx/dsigma = (x - D(x; sigma)) / sigma (EDM's VE form, sigma(t) = t).

export type Method = "heun" | "euler";

export interface Guidance {
  /** Condition for the guided branch and the "empty" condition for the unconditional one. */
  cond: tf.Tensor;
  uncond: tf.Tensor;
  /** Classifier-free guidance scale w: D = D_u + w (D_c - D_u); w = 1 is plain conditional sampling. */
  scale: number;
}

export interface SampleOptions {
  /** Decreasing noise levels, last one the end point (0 for EDM, sigma(abar_0) for DDIM). */
  sigmas: number[];
  method: Method;
  cond?: tf.Tensor;
  guidance?: Guidance;
  /** Keep x at every sigma (consistency distillation needs the trajectory). */
  trajectory?: boolean;
}

export interface SampleResult {
  x: tf.Tensor4D;
  /** Network evaluations spent, per sample: a guided step counts two. */
  nfe: number;
  /** x at sigmas[0..], including the start and the end; the caller owns these tensors. */
  trajectory?: tf.Tensor4D[];
}

/**
 * What the solvers call: a Denoiser, or one whose network answers later (a frozen network run by onnxruntime,
 * frozen_denoiser.ts). Either way it returns a new tensor, which the solver disposes.
 */
export type SolverDenoiser = (x: tf.Tensor4D, sigma: number, cond?: tf.Tensor) => tf.Tensor4D | Promise<tf.Tensor4D>;

/** Wrap a denoiser with classifier-free guidance; returns it with its per-call network cost. */
export function guided(D: SolverDenoiser, g: Guidance): { D: SolverDenoiser; cost: number } {
  if (g.scale === 1) return { D: (x, s) => D(x, s, g.cond), cost: 1 };
  return {
    D: async (x, s) => {
      // both branches in one batch, as the reference pipelines do
      const n = x.shape[0];
      const [xx, cc] = [tf.concat([x, x]), tf.concat([g.uncond, g.cond])];
      const both = await D(xx, s, cc);
      tf.dispose([xx, cc]);
      const out = tf.tidy(() => {
        const [du, dc] = tf.split(both, [n, n]);
        // D = D_u + w (D_c - D_u)
        return tf.add(du, tf.mul(tf.sub(dc, du), g.scale)) as tf.Tensor4D;
      });
      both.dispose();
      return out;
    },
    cost: 2,
  };
}

/** The PF-ODE's slope at (x, sigma) from the denoised x: d = (x - D(x; sigma)) / sigma. */
function slope(x: tf.Tensor4D, denoised: tf.Tensor4D, sigma: number): tf.Tensor4D {
  return tf.tidy(() => tf.div(tf.sub(x, denoised), sigma) as tf.Tensor4D);
}

/**
 * Solve the PF-ODE from xStart at sigmas[0] down to sigmas[last]. Heun is EDM Algorithm 1 (deterministic):
 * an Euler step, then the trapezoidal correction unless the step ends at sigma = 0; N levels cost 2N - 1 evaluations.
 */
export async function sampleOde(D0: SolverDenoiser, xStart: tf.Tensor4D, opts: SampleOptions): Promise<SampleResult> {
  const { D, cost } = opts.guidance ? guided(D0, opts.guidance) : { D: (x: tf.Tensor4D, s: number) => D0(x, s, opts.cond), cost: 1 };
  const sig = opts.sigmas;
  let nfe = 0;
  let x = tf.clone(xStart);
  const traj: tf.Tensor4D[] = opts.trajectory ? [tf.clone(xStart)] : [];
  for (let i = 0; i + 1 < sig.length; i++) {
    const s = sig[i];
    const sNext = sig[i + 1];
    // d_i = (x_i - D(x_i; sigma_i)) / sigma_i
    const den = await D(x, s);
    const d = slope(x, den, s);
    den.dispose();
    // x_{i+1} = x_i + (sigma_{i+1} - sigma_i) d_i
    let next = tf.tidy(() => tf.add(x, tf.mul(d, sNext - s)) as tf.Tensor4D);
    if (opts.method === "heun" && sNext !== 0) {
      // d'_i = (x_{i+1} - D(x_{i+1}; sigma_{i+1})) / sigma_{i+1};  x_{i+1} = x_i + (sigma_{i+1} - sigma_i)(d_i + d'_i)/2
      const den2 = await D(next, sNext);
      const d2 = slope(next, den2, sNext);
      den2.dispose();
      next.dispose();
      next = tf.tidy(() => tf.add(x, tf.mul(tf.add(d, d2), (sNext - s) / 2)) as tf.Tensor4D);
      d2.dispose();
    }
    d.dispose();
    nfe += cost * (opts.method === "euler" || sNext === 0 ? 1 : 2);
    x.dispose();
    x = next;
    if (opts.trajectory) traj.push(tf.clone(x));
  }
  return { x, nfe, trajectory: opts.trajectory ? traj : undefined };
}

export interface DdimOptions {
  steps: number;
  schedule?: DdpmConfig;
  cond?: tf.Tensor;
  guidance?: Guidance;
  trajectory?: boolean;
}

/**
 * DDIM (eta = 0) from VP noise z ~ N(0, I): Euler on the VE ODE over the DDIM timesteps, ending at abar_0
 * (diffusers' set_alpha_to_one = False for SD). Returns the VP-scaled result x_0 = x / sqrt(1 + sigma_end^2).
 */
export async function sampleDdim(D: SolverDenoiser, z: tf.Tensor4D, opts: DdimOptions): Promise<SampleResult> {
  const cfg = opts.schedule ?? SD_SCHEDULE;
  const abar = alphasCumprod(cfg);
  const sigmas = [...ddimTimesteps(opts.steps, cfg).map((t) => sigmaOfAlphaBar(abar[t])), sigmaOfAlphaBar(abar[0])];
  const s0 = sigmas[0];
  const sEnd = sigmas[sigmas.length - 1];
  // VP x_T = z  <=>  VE x = z sqrt(1 + sigma_T^2)
  const xStart = tf.tidy(() => tf.mul(z, Math.sqrt(1 + s0 * s0)) as tf.Tensor4D);
  const r = await sampleOde(D, xStart, { sigmas, method: "euler", cond: opts.cond, guidance: opts.guidance, trajectory: opts.trajectory });
  xStart.dispose();
  const vp = tf.tidy(() => tf.div(r.x, Math.sqrt(1 + sEnd * sEnd)) as tf.Tensor4D);
  r.x.dispose();
  return { ...r, x: vp };
}
