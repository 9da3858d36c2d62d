import * as tf from "@tensorflow/tfjs";
import { Rng } from "../core/random";
import { HostTensor } from "../io/host_tensor";
import { readTorchCheckpoint } from "../io/pth";
import { Module } from "../nn/module";
import { LatentVgg16Bn } from "../nn/vgg";
import { headDistance, LpipsHeads } from "./lpips";

// LatentLPIPS and E-LatentLPIPS (Kang et al., Diffusion2GAN; released as mingukkang/elatentlpips): the LPIPS recipe
// on VAE latents with a latent VGG16-BN trunk (lib/nn/vgg.ts). Key layout of the released state dicts:
// `net.slice{1..5}.{i}.*` and `lin{0..4}.model.1.weight` (plus torch's `lins.{k}` alias of the heads).

/** z' = (z - shift) * scale: a VAE's raw latent to the unit-scale latent its diffusion model sees. */
export interface LatentScaling {
  shift: number;
  scale: number;
}

/** Scalings of the released checkpoints (elatentlpips, forward(normalize=True)), and TAEF2's. */
export const LATENT_SCALINGS = {
  sd15: { shift: 0, scale: 0.18215 },
  sd21: { shift: 0, scale: 0.18215 },
  sdxl: { shift: 0, scale: 0.13025 },
  sd3: { shift: 0.0609, scale: 1.5305 },
  flux: { shift: 0.1159, scale: 0.3611 },
  // TAEF2 encodes straight to the normalised 32-channel FLUX.2 latent that the transformer consumes (the full
  // FLUX.2 VAE normalises inside encode): on four 512px Kodak crops its latents have mean 0.05, std 0.85, so no
  // further scaling. No released LatentLPIPS exists for this space.
  taef2: { shift: 0, scale: 1 },
} satisfies Record<string, LatentScaling>;

/** Latent channels of each released checkpoint's first conv. */
export const LATENT_CHANNELS = { sd15: 4, sd21: 4, sdxl: 4, sd3: 16, flux: 16, taef2: 32 } satisfies Record<keyof typeof LATENT_SCALINGS, number>;

export interface LatentLpipsConfig {
  latentChannels: number;
  /** Trunk width multiplier; 1 gives the released shapes. */
  width?: number;
  /** Channels of the trunk's stage 1 (lib/nn/vgg.ts VggOptions.stem); default 64 x width. */
  stem?: number;
  /** Applied to both inputs first. Omit when they are already scaled (the released forward's default). */
  scaling?: LatentScaling;
  /** Add mean |x0 - x1| over C,H,W, taken before augmentation (default true, as released). */
  l1?: boolean;
}

/** T applied to both inputs with one draw of its parameters: (x0, x1) -> [T(x0), T(x1)]. */
export type PairAugment = (x0: tf.Tensor4D, x1: tf.Tensor4D) => [tf.Tensor4D, tf.Tensor4D];

/** Each tap divided by sqrt(sum_c x^2 + 1e-8) (elatentlpips.normalize_tensor; never zero, so no gradient guard). */
function unitNormalise(x: tf.Tensor4D): tf.Tensor4D {
  return tf.tidy(() => tf.mul(x, tf.rsqrt(tf.add(tf.sum(tf.square(x), 3, true), 1e-8))));
}

/** LatentLPIPS. Heads start as all ones (uncalibrated) until a state dict is loaded. */
export class LatentLpips extends Module {
  net: LatentVgg16Bn;
  heads: LpipsHeads;
  readonly l1: boolean;
  constructor(readonly config: LatentLpipsConfig, rng: Rng) {
    super();
    this.net = new LatentVgg16Bn(config.latentChannels, rng, { width: config.width, stem: config.stem });
    this.heads = new LpipsHeads(this.net.tapChannels);
    this.l1 = config.l1 ?? true;
  }
  /** Keys `net.slice{k}.{i}.*`, `lin{k}.model.1.weight`, as released. */
  override children(): Array<[string, Module | tf.Variable]> {
    return [["net", this.net], ...this.heads.children()];
  }

  /** Load a released checkpoint's state dict (or one of ours); the `lins.{k}` alias of the heads is dropped. */
  loadReleased(tensors: Record<string, HostTensor>, source: string): void {
    this.loadStateDict(tensors, { source, rename: (k) => (k.startsWith("lins.") ? undefined : k) });
  }

  /** loadReleased from a torch.save file, e.g. elatentlpips' `sd15_latest_vgg16_tuned.pth`. */
  loadReleasedFile(path: string): void {
    this.loadReleased(readTorchCheckpoint(path), path);
  }

  /** Our state dict plus the `lins.{k}` aliases, so the official ELatentLPIPS loads it with strict=True. */
  async releasedStateDict(): Promise<Record<string, HostTensor>> {
    const sd = await this.stateDict();
    this.heads.lins.forEach((_, k) => (sd[`lins.${k}.model.1.weight`] = sd[`lin${k}.model.1.weight`]));
    return sd;
  }

  /**
   * Per-sample distance [N] between NHWC latents. With `augment`, this is one draw of E-LatentLPIPS:
   *   d(T(x0), T(x1)) + mean|x0 - x1|   (the L1 term sees the unaugmented latents, as released).
   */
  distance(x0: tf.Tensor4D, x1: tf.Tensor4D, augment?: PairAugment): tf.Tensor1D {
    const c = this.config.latentChannels;
    if (x0.shape.join() !== x1.shape.join() || x0.shape[3] !== c) {
      throw new Error(`LatentLpips: inputs must be two NHWC batches of one shape with ${c} channels, got [${x0.shape}] and [${x1.shape}]`);
    }
    const [, h, w] = x0.shape;
    const min = this.net.minInputSize;
    // smaller latents reach a tap with no pixels (wasm then spins forever in the pool); checked before augmenting
    if (h < min || w < min) throw new Error(`LatentLpips: latents are ${h}x${w}; the trunk's max-pools (stages 4 and 5) need at least ${min}x${min}`);
    return tf.tidy(() => {
      let a = this.scaled(x0);
      let b = this.scaled(x1);
      const l1 = this.l1 ? this.l1Term(a, b) : undefined;
      if (augment) [a, b] = augment(a, b);
      const d = headDistance(this.normalisedTaps(a), this.normalisedTaps(b), this.heads);
      return l1 ? tf.add(d, l1) : d;
    });
  }

  /** The input scaling of the config, z' = (z - shift) * scale (identity without one). */
  scaled(z: tf.Tensor4D): tf.Tensor4D {
    const s = this.config.scaling;
    return s ? tf.tidy(() => tf.mul(tf.sub(z, s.shift), s.scale) as tf.Tensor4D) : z;
  }

  /** The released L1 term, mean |a - b| over C,H,W per sample, of scaled latents. */
  l1Term(a: tf.Tensor4D, b: tf.Tensor4D): tf.Tensor1D {
    return tf.tidy(() => tf.mean(tf.abs(tf.sub(a, b)), [1, 2, 3]) as tf.Tensor1D);
  }

  /** The five taps of scaled latents, each unit-normalised over channels: what the heads weigh. */
  normalisedTaps(z: tf.Tensor4D): tf.Tensor4D[] {
    return tf.tidy(() => this.net.taps(z).map(unitNormalise));
  }
}
