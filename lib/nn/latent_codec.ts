import * as tf from "@tensorflow/tfjs";
import { Rng } from "../core/random";
import { ensureData } from "../data/fetch";
import { readTorchCheckpoint } from "../io/pth";
import { FrozenForward } from "./frozen";
import { StreamingSequential, TaesdConfig, TAEF2, TAESD_SD1, taesdDecoder, taesdEncoder } from "./taesd";

// The latent space the experiments run in. A codec maps images (NHWC, RGB in [-1, 1]) to the latents a diffusion
// model sees and back; any autoencoder's own convention (input range, scale factor, shift) stays inside it.

export interface LatentCodec {
  readonly name: string;
  /** Channels of the latents encode() returns. */
  readonly channels: number;
  /** Spatial downsampling: an H x W image has (H / factor) x (W / factor) latents. */
  readonly factor: number;
  /** z = scale * (raw - shift) turns the autoencoder's raw latent into the diffusion latent z (SD1.5's VAE: 0.18215, 0). */
  readonly scale: number;
  readonly shift: number;
  /** Images [N, H, W, 3] in [-1, 1] -> diffusion latents [N, H/factor, W/factor, channels]. */
  encode(images: tf.Tensor4D): tf.Tensor4D;
  /** Diffusion latents -> images in about [-1, 1], not clamped (so gradients pass); clamp for display. */
  decode(latents: tf.Tensor4D): tf.Tensor4D;
  /** The same on the inference engine (onnxruntime, lib/backend/onnx_runtime.ts): for evaluation and display. */
  decodeFrozen(latents: tf.Tensor4D): Promise<tf.Tensor4D>;
  dispose(): void;
}

/**
 * A codec's decode as frozen work (decodeFrozen): exported from the decode itself with the decoder's weights as
 * initializers, run by the inference engine (lib/nn/frozen.ts).
 */
export class FrozenDecoder {
  private readonly frozen: FrozenForward;
  constructor(codecName: string, variables: Array<[string, tf.Variable]>, decode: (latents: tf.Tensor4D) => tf.Tensor4D) {
    this.frozen = new FrozenForward({
      name: `${codecName}-decoder`, variables, inputs: ["latents"], outputs: ["images"],
      fn: (z) => decode(z as tf.Tensor4D),
    });
  }

  async run(latents: tf.Tensor4D): Promise<tf.Tensor4D> {
    const [images] = await this.frozen.run([latents]);
    return images as tf.Tensor4D;
  }

  dispose(): void {
    void this.frozen.dispose();
  }
}

export interface TaesdFiles {
  encoder: string;
  decoder: string;
}

export interface TaesdCodecOptions {
  name: string;
  scale?: number;
  shift?: number;
  /**
   * Fold p x p latent patches into channels (FLUX.2's transformer sees TAEF2's 32 x H/8 x W/8 latents as
   * 128 x H/16 x W/16 with p = 2); channel k = c * p * p + dy * p + dx, the order of FLUX.2's patchify.
   */
  patch?: number;
}

/** [N, H, W, C] -> [N, H/p, W/p, C p p], channel c * p * p + dy * p + dx taking pixel (p y + dy, p x + dx). */
export function patchify(x: tf.Tensor4D, p: number): tf.Tensor4D {
  if (p === 1) return x;
  return tf.tidy(() => {
    const [n, h, w, c] = x.shape;
    const t = tf.transpose(tf.reshape(x, [n, h / p, p, w / p, p, c]), [0, 1, 3, 5, 2, 4]);
    return tf.reshape(t, [n, h / p, w / p, c * p * p]);
  });
}

/** Inverse of patchify. */
export function unpatchify(x: tf.Tensor4D, p: number): tf.Tensor4D {
  if (p === 1) return x;
  return tf.tidy(() => {
    const [n, h, w, cpp] = x.shape;
    const c = cpp / (p * p);
    const t = tf.transpose(tf.reshape(x, [n, h, w, c, p, p]), [0, 1, 4, 2, 5, 3]);
    return tf.reshape(t, [n, h * p, w * p, c]);
  });
}

/** A TAESD-family autoencoder (taesd.ts): RGB in [0, 1] at the network, [-1, 1] at the codec. */
export class TaesdCodec implements LatentCodec {
  readonly name: string;
  readonly channels: number;
  readonly factor: number;
  readonly scale: number;
  readonly shift: number;
  readonly patch: number;
  readonly encoder: StreamingSequential;
  readonly decoder: StreamingSequential;
  private readonly frozenDecoder: FrozenDecoder;

  constructor(readonly config: TaesdConfig, files: TaesdFiles, o: TaesdCodecOptions) {
    this.name = o.name;
    this.scale = o.scale ?? 1;
    this.shift = o.shift ?? 0;
    this.patch = o.patch ?? 1;
    if (!(Number.isInteger(this.patch) && this.patch >= 1)) throw new Error(`${o.name}: patch must be a positive integer, got ${o.patch}`);
    this.channels = config.latentChannels * this.patch * this.patch;
    this.factor = 8 * this.patch;
    // the initial weights are overwritten by the checkpoints
    const rng = new Rng(0);
    this.encoder = taesdEncoder(config, rng);
    this.decoder = taesdDecoder(config, rng);
    this.encoder.loadStateDict(readTorchCheckpoint(files.encoder), { source: files.encoder });
    this.decoder.loadStateDict(readTorchCheckpoint(files.decoder), { source: files.decoder });
    this.frozenDecoder = new FrozenDecoder(o.name, this.decoder.namedVariables(), (z) => this.decode(z));
  }

  encode(images: tf.Tensor4D): tf.Tensor4D {
    const [, h, w, c] = images.shape;
    if (c !== 3 || h % this.factor !== 0 || w % this.factor !== 0) {
      throw new Error(`${this.name}.encode: expected RGB images [N, H, W, 3] with H and W multiples of ${this.factor}, got [${images.shape.join(", ")}]`);
    }
    return tf.tidy(() => {
      const raw = patchify(this.encoder.forward(tf.add(tf.mul(images, 0.5), 0.5)), this.patch);
      // z = scale * (raw - shift)
      return tf.mul(tf.sub(raw, this.shift), this.scale);
    });
  }

  decode(latents: tf.Tensor4D): tf.Tensor4D {
    if (latents.shape[3] !== this.channels) {
      throw new Error(`${this.name}.decode: expected latents [N, h, w, ${this.channels}], got [${latents.shape.join(", ")}]`);
    }
    return tf.tidy(() => {
      // raw = z / scale + shift
      const raw: tf.Tensor4D = tf.add(tf.div(latents, this.scale), this.shift);
      const rgb01 = this.decoder.forward(unpatchify(raw, this.patch));
      return tf.sub(tf.mul(rgb01, 2), 1);
    });
  }

  decodeFrozen(latents: tf.Tensor4D): Promise<tf.Tensor4D> {
    return this.frozenDecoder.run(latents);
  }

  dispose(): void {
    this.frozenDecoder.dispose();
    this.encoder.dispose();
    this.decoder.dispose();
  }
}

/**
 * TAEF2, the tiny autoencoder for FLUX.2's latent space: 32 channels at 1/8 resolution. Its encoder already
 * emits latents normalised for diffusion (24 Kodak photos at 256 px, PyTorch: mean 0.04, std 0.85), so scale 1,
 * shift 0. Without paths the official files come from the data sources (ensureData: mirror or download).
 */
export async function taef2Codec(files?: Partial<TaesdFiles>, o: Partial<TaesdCodecOptions> = {}): Promise<TaesdCodec> {
  const encoder = files?.encoder ?? (await ensureData("weights/taef2/taef2_encoder.pth"));
  const decoder = files?.decoder ?? (await ensureData("weights/taef2/taef2_decoder.pth"));
  return new TaesdCodec(TAEF2, { encoder, decoder }, { name: o.patch === 2 ? "taef2-p2" : "taef2", ...o });
}

/**
 * TAESD for Stable Diffusion 1.x: 4 channels at 1/8 resolution. It was distilled to match the SD VAE's latents
 * already multiplied by 0.18215, so the codec's own scale is 1. The weights (taesd_encoder.pth,
 * taesd_decoder.pth from madebyollin/taesd) are not in the data sources; pass their paths.
 */
export function taesdSd1Codec(files: TaesdFiles, o: Partial<TaesdCodecOptions> = {}): TaesdCodec {
  return new TaesdCodec(TAESD_SD1, files, { name: "taesd-sd1", ...o });
}

/** PSNR per image in dB of two image batches in [-1, 1], both quantised to 8 bits as when saved: 10 log10(255^2 / MSE). */
export async function psnr8bit(a: tf.Tensor4D, b: tf.Tensor4D): Promise<number[]> {
  const mse = tf.tidy(() => {
    const u8 = (x: tf.Tensor) => tf.round(tf.clipByValue(tf.mul(tf.add(x, 1), 127.5), 0, 255));
    return tf.mean(tf.squaredDifference(u8(a), u8(b)), [1, 2, 3]);
  });
  const m = await mse.data();
  mse.dispose();
  return Array.from(m, (e) => 10 * Math.log10((255 * 255) / e));
}
