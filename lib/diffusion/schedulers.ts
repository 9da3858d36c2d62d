import { Denoiser } from "./edm";
import {
  alphasCumprod,
  BetaSchedule,
  DdpmConfig,
  AsyncModelNet,
  asyncPredictionDenoiser,
  ModelNet,
  predictionDenoiser,
  PredictionType,
  sigmaOfAlphaBar,
  spacedTimesteps,
  TimestepSpacing,
  timestepOfSigma,
} from "./ddpm_schedule";

// diffusers' scheduler/scheduler_config.json, read into one typed schedule that every sampler here shares. A
// DDPM-family scheduler (DDIM, PNDM, LMS, Euler, ...) of a Stable Diffusion model differs from the others only in
// how it walks that schedule; the walk is given as VE noise levels sigma_t = sqrt((1 - abar_t) / abar_t) for the
// existing samplers (sampleOde with method "euler"), with the network behind the Denoiser interface. DDIM with
// eta 0 is exactly Euler on that ODE (x_prev = sqrt(abar_prev) x0 + sqrt(1 - abar_prev) eps, divided by
// sqrt(abar_prev), is x + (sigma_prev - sigma) eps); EulerDiscreteScheduler already works on x in VE form.

export interface SchedulerConfig extends DdpmConfig {
  /** The scheduler class the file names (_class_name); its defaults filled the missing keys. */
  className: string;
  betaSchedule: BetaSchedule;
  predictionType: PredictionType;
  timestepSpacing: TimestepSpacing;
  stepsOffset: number;
  /** DDIM's last step ends at abar = 1 (sigma 0) instead of abar_0. */
  setAlphaToOne: boolean;
  /** Euler: Karras et al.'s rho-7 levels between sigmaMin and sigmaMax, their timesteps by log-sigma interpolation. */
  useKarrasSigmas: boolean;
  sigmaMin?: number;
  sigmaMax?: number;
  /** Euler's last level: 0, or sigma at abar_0. */
  finalSigmasType: "zero" | "sigma_min";
}

/** SD1.5's scheduler/scheduler_config.json (runwayml/stable-diffusion-v1-5 at diffusers 0.17). */
export const SD15_SCHEDULER_CONFIG_JSON = {
  _class_name: "PNDMScheduler",
  _diffusers_version: "0.17.0.dev0",
  beta_end: 0.012,
  beta_schedule: "scaled_linear",
  beta_start: 0.00085,
  clip_sample: false,
  clip_sample_range: 1.0,
  dynamic_thresholding_ratio: 0.995,
  num_train_timesteps: 1000,
  prediction_type: "epsilon",
  sample_max_value: 1.0,
  set_alpha_to_one: false,
  skip_prk_steps: true,
  steps_offset: 1,
  thresholding: false,
  trained_betas: null,
} as const;

const COMMON = { num_train_timesteps: 1000, beta_start: 0.0001, beta_end: 0.02, beta_schedule: "linear", trained_betas: null, prediction_type: "epsilon", steps_offset: 0 };
/** Each class's __init__ defaults (diffusers 0.36) for the keys that shape the schedule. */
const CLASS_DEFAULTS: Record<string, Record<string, unknown>> = {
  DDIMScheduler: { ...COMMON, timestep_spacing: "leading", set_alpha_to_one: true, clip_sample: true },
  PNDMScheduler: { ...COMMON, timestep_spacing: "leading", set_alpha_to_one: false },
  DDPMScheduler: { ...COMMON, timestep_spacing: "leading", clip_sample: true },
  LMSDiscreteScheduler: { ...COMMON, timestep_spacing: "linspace" },
  EulerDiscreteScheduler: { ...COMMON, timestep_spacing: "linspace" },
  EulerAncestralDiscreteScheduler: { ...COMMON, timestep_spacing: "linspace" },
  DPMSolverMultistepScheduler: { ...COMMON, timestep_spacing: "linspace" },
  HeunDiscreteScheduler: { ...COMMON, beta_start: 0.00085, beta_end: 0.012, timestep_spacing: "linspace", clip_sample: false },
};

/** Keys that only matter to a solver we do not run, or only when a switch rejected below is on. */
const INERT_KEYS = new Set([
  "_class_name", "_diffusers_version", "skip_prk_steps", "clip_sample_range", "dynamic_thresholding_ratio", "sample_max_value",
  "variance_type", "solver_order", "algorithm_type", "solver_type", "lower_order_final", "euler_at_final", "lambda_min_clipped",
  "flow_shift", "time_shift_type", "num_inference_steps",
]);
/** Switches that change the schedule in ways not implemented here: each must be off. */
const OFF_SWITCHES = ["clip_sample", "thresholding", "rescale_betas_zero_snr", "use_exponential_sigmas", "use_beta_sigmas", "use_lu_lambdas", "use_flow_sigmas", "use_dynamic_shifting"];
const SCHEDULE_KEYS = new Set(["num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "trained_betas", "prediction_type", "timestep_spacing", "steps_offset", "set_alpha_to_one", "use_karras_sigmas", "sigma_min", "sigma_max", "final_sigmas_type", "interpolation_type", "timestep_type"]);

export interface ParseSchedulerOptions {
  /** Read the file as this class does: its defaults fill the keys the file lacks (diffusers' `Class.from_pretrained(folder)`,
   *  and `Class.from_config(pipe.scheduler.config)`, which drops the keys that took the other class's defaults).
   *  Default: the file's own _class_name. */
  className?: string;
  /** Apply what StableDiffusionPipeline.__init__ does to an outdated config: steps_offset 1, clip_sample false. */
  stableDiffusionPipeline?: boolean;
}

/** Parse a scheduler_config.json object; every key is either used, known to be inert, or an error naming it. */
export function parseSchedulerConfig(json: Record<string, unknown>, source = "scheduler config", o: ParseSchedulerOptions = {}): SchedulerConfig {
  const className = o.className ?? (json._class_name as string | undefined);
  const defaults = className === undefined ? undefined : CLASS_DEFAULTS[className];
  if (!defaults) throw new Error(`${source}: scheduler class ${JSON.stringify(className)} is not one of ${Object.keys(CLASS_DEFAULTS).join(", ")}`);
  for (const k of Object.keys(json)) {
    if (!SCHEDULE_KEYS.has(k) && !INERT_KEYS.has(k) && !OFF_SWITCHES.includes(k)) throw new Error(`${source}: unknown key ${JSON.stringify(k)} (a setting these schedulers do not implement)`);
  }
  const raw: Record<string, unknown> = { ...defaults, ...json };
  if (o.stableDiffusionPipeline) Object.assign(raw, { steps_offset: 1, clip_sample: false });
  for (const k of OFF_SWITCHES) {
    if (raw[k] === true) throw new Error(`${source}: ${k} is true; only ${k} = false is implemented${k === "clip_sample" ? " (Stable Diffusion pipelines force it to false: pass stableDiffusionPipeline)" : ""}`);
  }
  const oneOf = <T extends string>(k: string, allowed: readonly T[], d: T): T => {
    const v = raw[k] ?? d;
    if (!allowed.includes(v as T)) throw new Error(`${source}: ${k} ${JSON.stringify(v)} is not one of ${allowed.join(", ")}`);
    return v as T;
  };
  const num = (k: string, integer: boolean): number => {
    const v = raw[k];
    if (typeof v !== "number" || !Number.isFinite(v) || (integer && (!Number.isInteger(v) || v < 0))) throw new Error(`${source}: ${k} must be ${integer ? "a non-negative integer" : "a number"}, got ${JSON.stringify(v)}`);
    return v;
  };
  oneOf("interpolation_type", ["linear"], "linear");
  oneOf("timestep_type", ["discrete"], "discrete");
  const trained = raw.trained_betas;
  if (trained !== null && trained !== undefined && (!Array.isArray(trained) || trained.some((b) => typeof b !== "number"))) throw new Error(`${source}: trained_betas must be null or an array of numbers`);
  const cfg: SchedulerConfig = {
    className: className!,
    steps: num("num_train_timesteps", true),
    betaStart: num("beta_start", false),
    betaEnd: num("beta_end", false),
    betaSchedule: oneOf("beta_schedule", ["scaled_linear", "linear", "squaredcos_cap_v2"] as const, "linear"),
    trainedBetas: Array.isArray(trained) ? (trained as number[]) : undefined,
    predictionType: oneOf("prediction_type", ["epsilon", "v_prediction", "sample"] as const, "epsilon"),
    timestepSpacing: oneOf("timestep_spacing", ["leading", "trailing", "linspace"] as const, "leading"),
    stepsOffset: num("steps_offset", true),
    // DDIMScheduler.from_config of a file without the key takes DDIM's default
    setAlphaToOne: (raw.set_alpha_to_one ?? true) === true,
    useKarrasSigmas: raw.use_karras_sigmas === true,
    sigmaMin: raw.sigma_min === null || raw.sigma_min === undefined ? undefined : num("sigma_min", false),
    sigmaMax: raw.sigma_max === null || raw.sigma_max === undefined ? undefined : num("sigma_max", false),
    finalSigmasType: oneOf("final_sigmas_type", ["zero", "sigma_min"] as const, "zero"),
  };
  if (cfg.trainedBetas && cfg.trainedBetas.length !== cfg.steps) throw new Error(`${source}: ${cfg.trainedBetas.length} trained_betas for num_train_timesteps ${cfg.steps}`);
  return cfg;
}

export type SchedulerSampler = "ddim" | "euler";

/** How a sampler walks the schedule, in the terms of sampleOde (method "euler"). */
export interface SamplingPlan {
  /** The network's timestep at sigmas[0..n-1] (fractional for Euler's linspace and Karras levels). */
  timesteps: number[];
  /** n + 1 decreasing VE noise levels; the last is where sampling stops. */
  sigmas: number[];
  /** Start x = z * startScale for z ~ N(0, I): diffusers' init_noise_sigma, in VE form. */
  startScale: number;
  /** The scheduler's final sample = x at the last level * endScale (back to VP form for DDIM). */
  endScale: number;
}

/** sigma at fractional timestep t: numpy.interp over the integer timesteps, clamped at the ends. */
function interpSigma(t: number, sig: number[]): number {
  if (t <= 0) return sig[0];
  if (t >= sig.length - 1) return sig[sig.length - 1];
  const i = Math.floor(t);
  return sig[i] + (t - i) * (sig[i + 1] - sig[i]);
}

/**
 * DDIMScheduler (eta 0) or EulerDiscreteScheduler's walk for `steps` inference steps. DDIM steps from t to
 * t - floor(T/S), which must be the next listed timestep (true of leading spacing, and of trailing spacing when S
 * divides T); otherwise diffusers' DDIM hands the next step a sample at another noise level than its timestep,
 * which no ODE solver reproduces, and this throws.
 */
export function samplingPlan(cfg: SchedulerConfig, sampler: SchedulerSampler, steps: number): SamplingPlan {
  const T = cfg.steps;
  const sig = Array.from(alphasCumprod(cfg), sigmaOfAlphaBar);
  if (sampler === "ddim") {
    const ts = spacedTimesteps(T, steps, cfg.timestepSpacing, cfg.stepsOffset, true);
    const bad = ts.find((t) => t < 0 || t > T - 1);
    if (bad !== undefined) throw new Error(`DDIM: timestep ${bad} of ${steps} ${cfg.timestepSpacing}-spaced steps (steps_offset ${cfg.stepsOffset}) is outside 0..${T - 1}`);
    const stride = Math.floor(T / steps);
    ts.forEach((t, i) => {
      const prev = t - stride;
      const ok = i + 1 < ts.length ? prev === ts[i + 1] : prev < 0;
      if (!ok) throw new Error(`DDIM: diffusers steps from timestep ${t} to ${prev}, not to the next listed ${i + 1 < ts.length ? ts[i + 1] : "end"}, with ${steps} ${cfg.timestepSpacing}-spaced steps; use leading spacing or a step count dividing ${T}`);
    });
    const sigmas = [...ts.map((t) => sig[t]), cfg.setAlphaToOne ? 0 : sig[0]];
    return { timesteps: ts, sigmas, startScale: Math.sqrt(1 + sigmas[0] ** 2), endScale: 1 / Math.sqrt(1 + sigmas[steps] ** 2) };
  }
  if (sampler !== "euler") throw new Error(`unknown sampler ${JSON.stringify(sampler)} (expected "ddim" or "euler")`);
  let ts = spacedTimesteps(T, steps, cfg.timestepSpacing, cfg.stepsOffset, false);
  let levels = ts.map((t) => interpSigma(t, sig));
  if (cfg.useKarrasSigmas) {
    const rho = 7;
    const lo = (cfg.sigmaMin ?? levels[levels.length - 1]) ** (1 / rho);
    const hi = (cfg.sigmaMax ?? levels[0]) ** (1 / rho);
    // sigma_i = (sigma_max^(1/rho) + i/(n-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho
    levels = levels.map((_, i) => (hi + (steps > 1 ? i / (steps - 1) : 0) * (lo - hi)) ** rho);
    ts = levels.map((s) => timestepOfSigma(s, sig, "log"));
  }
  const sigmas = [...levels, cfg.finalSigmasType === "zero" ? 0 : sig[0]];
  const top = Math.max(...sigmas);
  // init_noise_sigma: sigma_max for linspace/trailing spacing, sqrt(sigma_max^2 + 1) for leading
  const startScale = cfg.timestepSpacing === "leading" ? Math.sqrt(top * top + 1) : top;
  return { timesteps: ts, sigmas, startScale, endScale: 1 };
}

/** The Denoiser of a network trained on this schedule (its prediction type; Karras levels map to t through log sigma). */
export function schedulerDenoiser(net: ModelNet, cfg: SchedulerConfig): Denoiser {
  return predictionDenoiser(net, cfg, cfg.predictionType, cfg.useKarrasSigmas ? "log" : "linear");
}

/** schedulerDenoiser of a network on the inference engine (asynchronous). */
export function asyncSchedulerDenoiser(net: AsyncModelNet, cfg: SchedulerConfig): ReturnType<typeof asyncPredictionDenoiser> {
  return asyncPredictionDenoiser(net, cfg, cfg.predictionType, cfg.useKarrasSigmas ? "log" : "linear");
}
