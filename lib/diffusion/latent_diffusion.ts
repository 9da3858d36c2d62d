import * as tf from "@tensorflow/tfjs";
import { Progress } from "../core/progress";
import { Rng } from "../core/random";
import { ClipPadding, ClipTokenizer, CLIP_CONTEXT_LENGTH } from "../data/clip_tokenizer";
import { ClipTextModel } from "../nn/clip/text_encoder";
import { UNet2DConditionModel } from "../nn/sd/unet2d_condition";
import { Denoiser } from "./edm";
import { encodePrompts, PromptConditioning } from "./prompt_guidance";
import { sampleOde, SolverDenoiser } from "./samplers";
import { AsyncModelNet } from "./ddpm_schedule";
import { asyncSchedulerDenoiser, parseSchedulerConfig, SchedulerConfig, SchedulerSampler, samplingPlan, schedulerDenoiser } from "./schedulers";

// A text-conditioned latent diffusion model as diffusers' pipelines run it, without the autoencoder: a CLIP text
// encoder and tokenizer make the condition, a UNet2DConditionModel predicts under a scheduler, and the denoising
// loop runs DDIM or Euler with classifier-free guidance. Stable Diffusion (sd_pipeline.ts) adds its VAE; the
// text-to-image world's teacher (experiments/t2i_teacher.ts) works in TAEF2's latents with the same code.

export interface LatentDiffusionParts {
  unet: UNet2DConditionModel;
  textEncoder: ClipTextModel;
  tokenizer: ClipTokenizer;
  /** scheduler/scheduler_config.json as written (SD1.5's: SD15_SCHEDULER_CONFIG_JSON). */
  schedulerConfig: Record<string, unknown>;
  /** What the tokenizer pads rows with (tokenizer_config.json's pad_token); default "endoftext", SD1.5's. */
  padding?: ClipPadding;
  /** Tokens per row (tokenizer_config.json's model_max_length); default 77. */
  contextLength?: number;
}

export interface SampleLatentsOptions {
  steps: number;
  sampler: SchedulerSampler;
  /** Ticked once per step. */
  progress?: Progress;
  /** The UNet on another engine (a FrozenForward of unet.forward on onnxruntime); default the tfjs forward. */
  unet?: AsyncModelNet;
}

export class LatentDiffusion {
  readonly unet: UNet2DConditionModel;
  readonly textEncoder: ClipTextModel;
  readonly tokenizer: ClipTokenizer;
  readonly schedulerConfig: Record<string, unknown>;
  readonly padding: ClipPadding;
  readonly contextLength: number;

  constructor(parts: LatentDiffusionParts) {
    ({ unet: this.unet, textEncoder: this.textEncoder, tokenizer: this.tokenizer, schedulerConfig: this.schedulerConfig } = parts);
    this.padding = parts.padding ?? "endoftext";
    this.contextLength = parts.contextLength ?? CLIP_CONTEXT_LENGTH;
    if (this.unet.config.time_cond_proj_dim !== null) {
      throw new Error(`${this.constructor.name}: a UNet with time_cond_proj_dim (guidance embedded in the timestep, as LCM's) is not supported by this pipeline`);
    }
    // a scheduler config this pipeline cannot run fails here, not at the first generate
    this.scheduler("ddim");
  }

  /** Prompts as the pipeline's tokenizer call makes them: rows of contextLength ids, truncated and padded. */
  tokenize(prompts: string[]): number[][] {
    return this.tokenizer.tokenize(prompts, { padding: this.padding, contextLength: this.contextLength });
  }

  /** Text conditioning of prompts (text or token rows) and, for guidance > 1, of their negatives; the caller disposes it. */
  encode(prompts: string[] | number[][], guidance: number, negativePrompt?: string | string[]): PromptConditioning {
    return encodePrompts(this.tokenizer, this.textEncoder, prompts, { negativePrompt, guidanceScale: guidance, padding: this.padding, contextLength: this.contextLength });
  }

  /**
   * The scheduler a sampler runs: the folder's scheduler_config.json read by DDIMScheduler or EulerDiscreteScheduler
   * (its defaults fill the keys the file lacks, as from_pretrained, and as from_config(pipe.scheduler.config) does
   * since diffusers records which keys took defaults), then what StableDiffusionPipeline.__init__ changes in an
   * outdated config (steps_offset 1, clip_sample false).
   */
  scheduler(sampler: SchedulerSampler): SchedulerConfig {
    if (sampler !== "ddim" && sampler !== "euler") throw new Error(`unknown sampler ${JSON.stringify(sampler)} (expected "ddim" or "euler")`);
    const className = sampler === "ddim" ? "DDIMScheduler" : "EulerDiscreteScheduler";
    return parseSchedulerConfig(this.schedulerConfig, "scheduler_config.json", { className, stableDiffusionPipeline: true });
  }

  /** D(x; sigma, text states) of the UNet under a sampler's schedule and prediction type (the samplers' interface). */
  denoiser(sampler: SchedulerSampler): Denoiser {
    return schedulerDenoiser((xt, t, cond) => this.unet.forward(xt, t, cond as tf.Tensor3D), this.scheduler(sampler));
  }

  /** The noise of `seed`: N(0, I) of [n, h, w, C] from the host RNG, in that (NHWC) order. */
  noise(seed: number, n: number, h: number, w: number): tf.Tensor4D {
    const rng = new Rng(seed);
    const c = this.unet.config.in_channels;
    const data = new Float32Array(n * h * w * c);
    for (let i = 0; i < data.length; i++) data[i] = rng.normal();
    return tf.tensor4d(data, [n, h, w, c]);
  }

  /**
   * The denoising loop from noise z ~ N(0, I) under a conditioning: x = z * init_noise_sigma, then one Euler
   * step of the VE ODE per scheduler step. Returns the final latents (VP scale, as the scheduler leaves them).
   */
  async sampleLatents(z: tf.Tensor4D, cond: PromptConditioning, o: SampleLatentsOptions): Promise<{ latents: tf.Tensor4D; nfe: number }> {
    const plan = samplingPlan(this.scheduler(o.sampler), o.sampler, o.steps);
    const base: SolverDenoiser = o.unet ? asyncSchedulerDenoiser(o.unet, this.scheduler(o.sampler)) : this.denoiser(o.sampler);
    const D: SolverDenoiser = o.progress
      ? async (x, s, c) => {
          const out = await base(x, s, c);
          o.progress!.tick();
          return out;
        }
      : base;
    // latents = z * init_noise_sigma (VE form)
    const xStart = tf.tidy(() => tf.mul(z, plan.startScale) as tf.Tensor4D);
    const r = await sampleOde(D, xStart, { sigmas: plan.sigmas, method: "euler", cond: cond.guidance ? undefined : cond.cond, guidance: cond.guidance });
    xStart.dispose();
    const latents = tf.tidy(() => tf.mul(r.x, plan.endScale) as tf.Tensor4D);
    r.x.dispose();
    return { latents, nfe: r.nfe };
  }

  dispose(): void {
    this.unet.dispose();
    this.textEncoder.dispose();
  }
}
