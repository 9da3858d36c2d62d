import * as tf from "@tensorflow/tfjs";
import { Progress } from "../core/progress";
import { Rng } from "../core/random";
import { ClipPadding, ClipTokenizer, CLIP_CONTEXT_LENGTH, END_OF_TEXT } from "../data/clip_tokenizer";
import { readJsonFile } from "../io/json_file";
import { ClipTextModel, clipTextModelFromConfig, SD15_TEXT_ENCODER_CONFIG_JSON } from "../nn/clip/text_encoder";
import { AutoencoderKL } from "../nn/sd/autoencoder_kl";
import { ComponentOptions, loadAutoencoderKL, loadSingleFile, loadUNet2DConditionModel, SingleFileOptions, stableDiffusionFolder, textEncoderWeights } from "../nn/sd/load";
import { UNet2DConditionModel } from "../nn/sd/unet2d_condition";
import { TensorSource } from "../io/tensor_source";
import { Denoiser } from "./edm";
import { encodePrompts, PromptConditioning } from "./prompt_guidance";
import { sampleOde, SolverDenoiser } from "./samplers";
import { parseSchedulerConfig, SchedulerConfig, SchedulerSampler, samplingPlan, schedulerDenoiser, SD15_SCHEDULER_CONFIG_JSON } from "./schedulers";

// Text to image as diffusers' StableDiffusionPipeline.__call__ computes it: the prompts' CLIP last_hidden_state
// (and, when guidance w > 1, the negative or empty prompts' as the unconditional branch, both branches in one
// batch); latents = noise * init_noise_sigma; each step the scheduler's scale_model_input, the UNet, the guided
// prediction eps_u + w (eps_c - eps_u) and the scheduler step (DDIM with eta 0, or Euler), here as Euler steps of
// the probability-flow ODE in VE form (schedulers.ts); the image vae.decode(latents / scaling_factor), shown as
// (image / 2 + 0.5) clamped to [0, 1]. Tensors are NHWC. The noise is drawn on the host from the project's seeded
// RNG, so one seed gives the same noise on every engine.

export interface StableDiffusionParts {
  unet: UNet2DConditionModel;
  vae: AutoencoderKL;
  textEncoder: ClipTextModel;
  tokenizer: ClipTokenizer;
  /** scheduler/scheduler_config.json as written (SD1.5's: SD15_SCHEDULER_CONFIG_JSON). */
  schedulerConfig: Record<string, unknown>;
  /** What the tokenizer pads rows with (tokenizer_config.json's pad_token); default "endoftext", SD1.5's. */
  padding?: ClipPadding;
  /** Tokens per row (tokenizer_config.json's model_max_length); default 77. */
  contextLength?: number;
}

export interface GenerateOptions {
  prompt: string | string[];
  /** One for all prompts or one each; used only with guidance > 1 (default: ""). */
  negativePrompt?: string | string[];
  /** Inference steps; default 50. */
  steps?: number;
  /** Classifier-free guidance scale w (guided only when w > 1); default 7.5. */
  guidance?: number;
  /** Seed of the initial noise; default 0. */
  seed?: number;
  /** Image size in pixels, multiples of 8; default the UNet's sample_size times the VAE's downsampling. */
  height?: number;
  width?: number;
  /** Default: the folder's scheduler when it is DDIMScheduler or EulerDiscreteScheduler; other schedulers must choose. */
  sampler?: SchedulerSampler;
  /** Images per prompt (diffusers' num_images_per_prompt); default 1. */
  batch?: number;
  /** The initial noise N(0, I) [prompts * batch, h, w, latent channels] instead of drawing it from the seed (diffusers' `latents`). */
  latents?: tf.Tensor4D;
}

export interface GenerateResult {
  /** The final latents [N, h, w, C], as the pipeline's output_type "latent" gives them. */
  latents: tf.Tensor4D;
  /** Images [N, H, W, 3] in [0, 1]. */
  images: tf.Tensor4D;
  /** UNet evaluations per image (a guided step counts two). */
  nfe: number;
}

export interface SampleLatentsOptions {
  steps: number;
  sampler: SchedulerSampler;
  /** Ticked once per step. */
  progress?: Progress;
}

/** tokenizer_config.json's pad_token as a string (transformers writes it plain or as an AddedToken object). */
function padTokenOf(config: Record<string, unknown>, file: string): ClipPadding {
  const raw = config.pad_token;
  const token = typeof raw === "object" && raw !== null ? (raw as Record<string, unknown>).content : raw;
  if (token === undefined || token === END_OF_TEXT) return "endoftext";
  // SD 2.x's tokenizer pads with "!", id 0
  if (token === "!") return "zero";
  throw new Error(`${file}: pad_token ${JSON.stringify(token)} is not supported (expected "${END_OF_TEXT}" or "!")`);
}

/** Build a CLIP text encoder from a transformers config and stream its weights in. */
function textEncoderFrom(config: unknown, weights: TensorSource, source: string): ClipTextModel {
  if (typeof config !== "object" || config === null || Array.isArray(config)) throw new Error(`${source}: a config must be a JSON object`);
  const enc = clipTextModelFromConfig(config as Record<string, unknown>, new Rng(0), source);
  try {
    enc.loadWeights(weights);
  } catch (e) {
    enc.dispose();
    throw e;
  } finally {
    weights.close?.();
  }
  return enc;
}

export class StableDiffusion {
  readonly unet: UNet2DConditionModel;
  readonly vae: AutoencoderKL;
  readonly textEncoder: ClipTextModel;
  readonly tokenizer: ClipTokenizer;
  readonly schedulerConfig: Record<string, unknown>;
  readonly padding: ClipPadding;
  readonly contextLength: number;

  constructor(parts: StableDiffusionParts) {
    ({ unet: this.unet, vae: this.vae, textEncoder: this.textEncoder, tokenizer: this.tokenizer, schedulerConfig: this.schedulerConfig } = parts);
    this.padding = parts.padding ?? "endoftext";
    this.contextLength = parts.contextLength ?? CLIP_CONTEXT_LENGTH;
    if (this.unet.config.time_cond_proj_dim !== null) {
      throw new Error("StableDiffusion: a UNet with time_cond_proj_dim (guidance embedded in the timestep, as LCM's) is not supported by this pipeline");
    }
    // a scheduler config this pipeline cannot run fails here, not at the first generate
    this.scheduler("ddim");
    if (this.unet.config.in_channels !== this.vae.config.latent_channels) {
      throw new Error(`StableDiffusion: the UNet takes ${this.unet.config.in_channels} channels, the VAE's latents have ${this.vae.config.latent_channels}`);
    }
  }

  /** A diffusers Stable Diffusion folder (model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/). */
  static fromFolder(root: string, o: ComponentOptions = {}): StableDiffusion {
    const f = stableDiffusionFolder(root);
    const tokConfig = f.tokenizer.config ? (readJsonFile(f.tokenizer.config) as Record<string, unknown>) : {};
    const maxLength = tokConfig.model_max_length ?? CLIP_CONTEXT_LENGTH;
    if (!Number.isInteger(maxLength) || (maxLength as number) < 2) throw new Error(`${f.tokenizer.config}: model_max_length ${JSON.stringify(maxLength)} is not a usable row length`);
    const padding = padTokenOf(tokConfig, f.tokenizer.config ?? root);
    const tokenizer = ClipTokenizer.fromVocabMerges(f.tokenizer.vocab, f.tokenizer.merges);
    const unet = loadUNet2DConditionModel(f.unet, o);
    const loaded: Array<{ dispose(): void }> = [unet];
    try {
      const vae = loadAutoencoderKL(f.vae, o);
      loaded.push(vae);
      const te = textEncoderWeights(f.textEncoder, o);
      const textEncoder = textEncoderFrom(te.config, te.weights, `${f.textEncoder}/config.json`);
      loaded.push(textEncoder);
      return new StableDiffusion({ unet, vae, textEncoder, tokenizer, schedulerConfig: f.schedulerConfig as Record<string, unknown>, padding, contextLength: maxLength as number });
    } catch (e) {
      loaded.forEach((m) => m.dispose());
      throw e;
    }
  }

  /**
   * An original single-file checkpoint (v1-5-pruned-emaonly.safetensors / .ckpt). It carries no configs, tokenizer
   * or scheduler: SD1.5's are used unless given (the tokenizer from the data registry's CLIP BPE file).
   */
  static async fromSingleFile(file: string, o: SingleFileOptions & { tokenizer?: ClipTokenizer; textEncoderConfig?: Record<string, unknown>; schedulerConfig?: Record<string, unknown> } = {}): Promise<StableDiffusion> {
    const tokenizer = o.tokenizer ?? (await ClipTokenizer.load());
    const m = loadSingleFile(file, o);
    try {
      const textEncoder = textEncoderFrom(o.textEncoderConfig ?? { ...SD15_TEXT_ENCODER_CONFIG_JSON }, m.textEncoder, `${file} (text encoder)`);
      return new StableDiffusion({ unet: m.unet, vae: m.vae, textEncoder, tokenizer, schedulerConfig: o.schedulerConfig ?? { ...SD15_SCHEDULER_CONFIG_JSON } });
    } catch (e) {
      m.unet.dispose();
      m.vae.dispose();
      throw e;
    }
  }

  /** Spatial downsampling of the VAE (diffusers' vae_scale_factor). */
  get vaeScaleFactor(): number {
    return this.vae.factor;
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
    const base = this.denoiser(o.sampler);
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

  /** Latents -> images in [0, 1]: vae.decode(latents / scaling_factor), then (image / 2 + 0.5) clamped. */
  decode(latents: tf.Tensor4D): tf.Tensor4D {
    return tf.tidy(() => {
      const image = this.vae.decode(tf.div(latents, this.vae.config.scaling_factor));
      return tf.clipByValue(tf.add(tf.mul(image, 0.5), 0.5), 0, 1) as tf.Tensor4D;
    });
  }

  /** Text to image; the caller disposes the returned latents and images. */
  async generate(o: GenerateOptions): Promise<GenerateResult> {
    const prompts = typeof o.prompt === "string" ? [o.prompt] : o.prompt;
    if (prompts.length === 0) throw new Error("generate: no prompts");
    const batch = o.batch ?? 1;
    const steps = o.steps ?? 50;
    const guidance = o.guidance ?? 7.5;
    if (!Number.isInteger(batch) || batch < 1) throw new Error(`generate: batch (images per prompt) must be a positive integer, got ${o.batch}`);
    if (!Number.isInteger(steps) || steps < 1) throw new Error(`generate: steps must be a positive integer, got ${o.steps}`);
    const sampler = o.sampler ?? this.defaultSampler();
    const [height, width] = this.imageSize(o);
    const f = this.vaeScaleFactor;
    const [h, w] = [Math.floor(height / f), Math.floor(width / f)];
    const n = prompts.length * batch;
    const c = this.unet.config.in_channels;
    if (o.latents && (o.latents.shape[0] !== n || o.latents.shape[1] !== h || o.latents.shape[2] !== w || o.latents.shape[3] !== c)) {
      throw new Error(`generate: latents [${o.latents.shape}] should be [${n}, ${h}, ${w}, ${c}] (prompts x batch, height / ${f}, width / ${f}, channels)`);
    }
    const negatives = o.negativePrompt;
    if (Array.isArray(negatives) && negatives.length !== prompts.length) throw new Error(`generate: ${negatives.length} negative prompts for ${prompts.length} prompts`);
    // num_images_per_prompt repeats each prompt's row batch times in a row
    const each = <T>(xs: T[]) => xs.flatMap((x) => Array.from({ length: batch }, () => x));
    const cond = this.encode(each(prompts), guidance, Array.isArray(negatives) ? each(negatives) : negatives);
    const z = o.latents ?? this.noise(o.seed ?? 0, n, h, w);
    const progress = new Progress(`Stable Diffusion ${sampler}, ${steps} steps`, steps);
    try {
      const { latents, nfe } = await this.sampleLatents(z, cond, { steps, sampler, progress });
      progress.finish();
      const images = this.decode(latents);
      return { latents, images, nfe };
    } finally {
      if (z !== o.latents) z.dispose();
      tf.dispose([cond.cond, ...(cond.guidance ? [cond.guidance.uncond] : [])]);
    }
  }

  private defaultSampler(): SchedulerSampler {
    const cls = this.schedulerConfig._class_name;
    if (cls === "DDIMScheduler") return "ddim";
    if (cls === "EulerDiscreteScheduler") return "euler";
    throw new Error(`generate: this pipeline runs DDIM or Euler, not the folder's ${String(cls)}; pass sampler "ddim" or "euler"`);
  }

  /** height and width as the pipeline defaults and checks them. */
  private imageSize(o: GenerateOptions): [number, number] {
    const s = this.unet.config.sample_size;
    const sample = Array.isArray(s) ? s : s === null ? null : [s, s];
    const f = this.vaeScaleFactor;
    const height = o.height ?? (sample ? sample[0] * f : undefined);
    const width = o.width ?? (sample ? sample[1] * f : undefined);
    if (height === undefined || width === undefined) throw new Error("generate: the UNet's config has no sample_size; pass height and width");
    if (!Number.isInteger(height) || !Number.isInteger(width) || height % 8 !== 0 || width % 8 !== 0 || height < f || width < f) {
      throw new Error(`generate: height and width must be positive multiples of 8, got ${height} and ${width}`);
    }
    return [height, width];
  }

  dispose(): void {
    this.unet.dispose();
    this.vae.dispose();
    this.textEncoder.dispose();
  }
}

