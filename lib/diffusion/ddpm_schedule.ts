import * as tf from "@tensorflow/tfjs";
import { Denoiser } from "./edm";

// The discrete DDPM schedule of Stable Diffusion, seen through EDM's lens: a VP sample x_t = sqrt(abar_t) y +
// sqrt(1 - abar_t) eps is a VE sample x = x_t / sqrt(abar_t) at sigma_t = sqrt((1 - abar_t) / abar_t).
// That lets SD teachers use the same samplers (DDIM with eta 0 is Euler on this ODE).

export type BetaSchedule = "scaled_linear" | "linear" | "squaredcos_cap_v2";

export interface DdpmConfig {
  betaStart: number;
  betaEnd: number;
  /** Training timesteps T (diffusers' num_train_timesteps). */
  steps: number;
  /** Default "scaled_linear" (Stable Diffusion's). */
  betaSchedule?: BetaSchedule;
  /** diffusers' trained_betas: used as given, overriding the schedule. */
  trainedBetas?: number[];
}

export const SD_SCHEDULE: DdpmConfig = { betaStart: 0.00085, betaEnd: 0.012, steps: 1000 };

/** torch.linspace(a, b, n) in float32: from a up to halfway, from b down after it, each value rounded to float32. */
function linspaceF32(a: number, b: number, n: number): number[] {
  const f = Math.fround;
  const [fa, fb] = [f(a), f(b)];
  const step = n > 1 ? f(f(fb - fa) / (n - 1)) : 0;
  return Array.from({ length: n }, (_, i) => (i < Math.floor(n / 2) ? f(fa + f(step * i)) : f(fb - f(step * (n - 1 - i)))));
}

/**
 * beta_t for t = 0..T-1 exactly as diffusers' schedulers build them: float32 tensors (torch.linspace in float32,
 * squared in float32 for "scaled_linear"), so that the levels below match theirs to float32 rounding.
 */
export function betas(cfg: DdpmConfig = SD_SCHEDULE): Float64Array {
  const T = cfg.steps;
  const f = Math.fround;
  if (cfg.trainedBetas) {
    if (cfg.trainedBetas.length !== T) throw new Error(`DDPM schedule: ${cfg.trainedBetas.length} trained betas for ${T} timesteps`);
    return Float64Array.from(cfg.trainedBetas, f);
  }
  const kind = cfg.betaSchedule ?? "scaled_linear";
  if (kind === "scaled_linear") {
    // "scaled linear": beta_t = (lerp(sqrt(b0), sqrt(b1), t/(T-1)))^2
    return Float64Array.from(linspaceF32(Math.sqrt(cfg.betaStart), Math.sqrt(cfg.betaEnd), T), (v) => f(v * v));
  }
  if (kind === "linear") return Float64Array.from(linspaceF32(cfg.betaStart, cfg.betaEnd, T));
  if (kind === "squaredcos_cap_v2") {
    // GLIDE's cosine schedule: beta_t = min(1 - abar((t+1)/T) / abar(t/T), 0.999), abar(s) = cos((s + 0.008) / 1.008 * pi/2)^2
    const abar = (x: number) => Math.cos(((x + 0.008) / 1.008) * (Math.PI / 2)) ** 2;
    return Float64Array.from({ length: T }, (_, t) => f(Math.min(1 - abar((t + 1) / T) / abar(t / T), 0.999)));
  }
  throw new Error(`DDPM schedule: unknown beta schedule ${JSON.stringify(kind)} (expected scaled_linear, linear or squaredcos_cap_v2)`);
}

/** abar_t = prod_{s <= t} (1 - beta_s) for t = 0..T-1 (torch's float32 cumprod: a double accumulator, float32 values). */
export function alphasCumprod(cfg: DdpmConfig = SD_SCHEDULE): Float64Array {
  const b = betas(cfg);
  const out = new Float64Array(b.length);
  let prod = 1;
  for (let t = 0; t < b.length; t++) {
    prod *= Math.fround(1 - b[t]);
    out[t] = Math.fround(prod);
  }
  return out;
}

/** sigma_t = sqrt((1 - abar_t) / abar_t) */
export function sigmaOfAlphaBar(abar: number): number {
  return Math.sqrt((1 - abar) / abar);
}

export type TimestepSpacing = "leading" | "trailing" | "linspace";

/**
 * Inference timesteps, decreasing, as diffusers' set_timesteps spaces them (Table 2 of "Common Diffusion Noise
 * Schedules and Sample Steps are Flawed"): leading t_i = i floor(T/S) + offset; trailing t_i = round(T - i T/S) - 1;
 * linspace S points from T-1 down to 0, rounded when `integer` (DDIM) and left fractional otherwise (Euler).
 */
export function spacedTimesteps(T: number, numSteps: number, spacing: TimestepSpacing, stepsOffset: number, integer: boolean): number[] {
  if (!Number.isInteger(numSteps) || numSteps < 1 || numSteps > T) throw new Error(`timesteps: ${numSteps} inference steps, expected an integer from 1 to ${T}`);
  const out: number[] = [];
  if (spacing === "leading") {
    const ratio = Math.floor(T / numSteps);
    for (let i = numSteps - 1; i >= 0; i--) out.push(i * ratio + stepsOffset);
  } else if (spacing === "trailing") {
    // numpy's arange(T, 0, -T/S): ceil(T / (T/S)) values start + i delta, delta taken as (start + step) - start
    const step = -T / numSteps;
    const delta = T + step - T;
    const count = Math.ceil(-T / step);
    for (let i = 0; i < count; i++) out.push(roundHalfEven(T + i * delta) - 1);
  } else if (spacing === "linspace") {
    // numpy's linspace(0, T-1, S): i step with the last point exactly T-1
    const step = numSteps > 1 ? (T - 1) / (numSteps - 1) : 0;
    for (let i = numSteps - 1; i >= 0; i--) {
      const t = numSteps > 1 && i === numSteps - 1 ? T - 1 : i * step;
      out.push(integer ? roundHalfEven(t) : t);
    }
  } else {
    throw new Error(`timesteps: unknown timestep_spacing ${JSON.stringify(spacing)} (expected leading, trailing or linspace)`);
  }
  return out;
}

/** numpy's round: halves go to the even neighbour. */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * DDIM timesteps as diffusers' "leading" spacing with steps_offset 1 (what SD1.5 pipelines use):
 * t_i = i * (T / S) + 1 for i = S-1 .. 0 (capped at T - 1, where diffusers would index past its table).
 */
export function ddimTimesteps(numSteps: number, cfg: DdpmConfig = SD_SCHEDULE): number[] {
  return spacedTimesteps(cfg.steps, numSteps, "leading", 1, true).map((t) => Math.min(cfg.steps - 1, t));
}

/**
 * The fractional timestep of a noise level: the inverse of sigma(t) interpolated linearly between the integer
 * timesteps ("linear", how EulerDiscreteScheduler places its sigmas) or of log sigma ("log", its _sigma_to_t, used
 * for Karras sigmas). Levels outside the table clamp to its ends, as _sigma_to_t does.
 */
export function timestepOfSigma(sigma: number, sigmas: ArrayLike<number>, interp: "linear" | "log" = "linear"): number {
  const n = sigmas.length;
  const f = interp === "log" ? Math.log : (v: number) => v;
  const s = f(Math.max(sigma, 1e-10));
  if (s <= f(sigmas[0])) return 0;
  if (s >= f(sigmas[n - 1])) return n - 1;
  // sigmas increase with t: bisect for sigmas[lo] <= sigma < sigmas[lo + 1]
  let lo = 0;
  let hi = n - 1;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (f(sigmas[mid]) <= s) lo = mid;
    else hi = mid;
  }
  const t = lo + (s - f(sigmas[lo])) / (f(sigmas[lo + 1]) - f(sigmas[lo]));
  // a level on the table gives its integer timestep exactly
  return Math.abs(t - Math.round(t)) < 1e-9 ? Math.round(t) : t;
}

/** What the network predicts: the noise, v = sqrt(abar) eps - sqrt(1 - abar) x0, or the clean sample. */
export type PredictionType = "epsilon" | "v_prediction" | "sample";

/** A network on VP inputs x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps at (possibly fractional) timestep t. */
export type ModelNet = (xt: tf.Tensor4D, t: number, cond?: tf.Tensor) => tf.Tensor4D;
/** An epsilon-prediction network on VP inputs at integer timestep t. */
export type EpsNet = ModelNet;

/**
 * D(x; sigma) of a discrete-time network: x_t = x / sqrt(1 + sigma^2) at t = timestepOfSigma(sigma), then
 * epsilon: D = x - sigma eps; v: D = x / (1 + sigma^2) - sigma / sqrt(1 + sigma^2) v; sample: D = output.
 */
export function predictionDenoiser(net: ModelNet, cfg: DdpmConfig, prediction: PredictionType, interp: "linear" | "log" = "linear"): Denoiser {
  const t = timestepOf(cfg, prediction, interp);
  return (x, sigma, cond) => tf.tidy(() => fromPrediction(x, sigma, net(tf.div(x, Math.sqrt(1 + sigma * sigma)), t(sigma), cond), prediction));
}

/** A network that answers asynchronously: a frozen UNet on the inference engine (lib/nn/frozen.ts). */
export type AsyncModelNet = (xt: tf.Tensor4D, t: number, cond?: tf.Tensor) => Promise<tf.Tensor4D>;

/** predictionDenoiser of an asynchronous network: the same D, for the solvers' asynchronous denoisers. */
export function asyncPredictionDenoiser(net: AsyncModelNet, cfg: DdpmConfig, prediction: PredictionType, interp: "linear" | "log" = "linear"): (x: tf.Tensor4D, sigma: number, cond?: tf.Tensor) => Promise<tf.Tensor4D> {
  const t = timestepOf(cfg, prediction, interp);
  return async (x, sigma, cond) => {
    const xt = tf.div(x, Math.sqrt(1 + sigma * sigma)) as tf.Tensor4D;
    const out = await net(xt, t(sigma), cond);
    xt.dispose();
    const d = tf.tidy(() => fromPrediction(x, sigma, out, prediction));
    out.dispose();
    return d;
  };
}

function timestepOf(cfg: DdpmConfig, prediction: PredictionType, interp: "linear" | "log"): (sigma: number) => number {
  if (prediction !== "epsilon" && prediction !== "v_prediction" && prediction !== "sample") throw new Error(`denoiser: unknown prediction type ${JSON.stringify(prediction)}`);
  const sig = Array.from(alphasCumprod(cfg), sigmaOfAlphaBar);
  return (sigma) => timestepOfSigma(sigma, sig, interp);
}

/** D(x; sigma) from the network's output at x_t = x / sqrt(1 + sigma^2). */
function fromPrediction(x: tf.Tensor4D, sigma: number, out: tf.Tensor4D, prediction: PredictionType): tf.Tensor4D {
  const scale = Math.sqrt(1 + sigma * sigma);
  // epsilon: D = x - sigma eps
  if (prediction === "epsilon") return tf.sub(x, tf.mul(out, sigma));
  // v: D = x / (1 + sigma^2) - sigma / sqrt(1 + sigma^2) v
  if (prediction === "v_prediction") return tf.sub(tf.div(x, scale * scale), tf.mul(out, sigma / scale));
  return out.clone();
}

/** D(x; sigma) from an eps network (predictionDenoiser with "epsilon"). */
export function epsDenoiser(eps: EpsNet, cfg: DdpmConfig = SD_SCHEDULE): Denoiser {
  return predictionDenoiser(eps, cfg, "epsilon");
}
