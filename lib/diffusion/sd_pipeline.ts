import * as tf from "@tensorflow/tfjs";
import { Progress } from "../core/progress";
import { Rng } from "../core/random";
import { ClipPadding, ClipTokenizer, CLIP_CONTEXT_LENGTH, END_OF_TEXT } from "../data/clip_tokenizer";
import { readJsonFile } from "../io/json_file";
import { ClipTextModel, clipTextModelFromConfig, SD15_TEXT_ENCODER_CONFIG_JSON } from "../nn/clip/text_encoder";
import { AutoencoderKL } from "../nn/sd/autoencoder_kl";
import { ComponentOptions, loadAutoencoderKL, loadSingleFile, loadUNet2DConditionModel, SingleFileOptions, stableDiffusionFolder, textEncoderWeights } from "../nn/sd/load";
import { TensorSource } from "../io/tensor_source";
import { LatentDiffusion, LatentDiffusionParts } from "./latent_diffusion";
import { SchedulerSampler, SD15_SCHEDULER_CONFIG_JSON } from "./schedulers";

// Text to image as diffusers' StableDiffusionPipeline.__call__ computes it: the prompts' CLIP last_hidden_state
// (and, when guidance w > 1, the negative or empty prompts' as the unconditional branch, both branches in one
// batch); latents = noise * init_noise_sigma; each step the scheduler's scale_model_input, the UNet, the guided
// prediction eps_u + w (eps_c - eps_u) and the scheduler step (DDIM with eta 0, or Euler), here as Euler steps of
// the probability-flow ODE in VE form (schedulers.ts); the image vae.decode(latents / scaling_factor), shown as
// (image / 2 + 0.5) clamped to [0, 1]. Tensors are NHWC. The noise is drawn on the host from the project's seeded
// RNG, so one seed gives the same noise on every engine.

export interface StableDiffusionParts extends LatentDiffusionParts {
  vae: AutoencoderKL;
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

export class StableDiffusion extends LatentDiffusion {
  readonly vae: AutoencoderKL;

  constructor(parts: StableDiffusionParts) {
    super(parts);
    this.vae = parts.vae;
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

  override dispose(): void {
    super.dispose();
    this.vae.dispose();
  }
}

