import * as tf from "@tensorflow/tfjs";
import { Rng } from "../core/random";
import { HostTensor } from "../io/host_tensor";
import { readTorchCheckpoint } from "../io/pth";
import { Module, param } from "../nn/module";
import { Vgg16 } from "../nn/vgg";

// LPIPS (Zhang et al. 2018, richzhang/PerceptualSimilarity v0.1) on a torchvision VGG16:
//   d(x0, x1) = sum_l mean_hw  w_l . (f_l(x0) / |f_l(x0)| - f_l(x1) / |f_l(x1)|)^2
// with f_l the relu{1_2,2_2,3_3,4_3,5_3} taps and w_l the calibrated 1x1 heads. The heads are shared with
// LatentLPIPS (lib/perceptual/latent_lpips.ts), which differs in trunk, input scaling and normalisation eps.

/** One calibration head: a bias-free 1x1 conv from C channels to 1, stored as torch's `model.1.weight` [1,C,1,1]
 * (`model.0` is the dropout used while calibrating, which holds no weights). */
export class NetLin extends Module {
  weight: tf.Variable;
  constructor(readonly channels: number) {
    super();
    // All ones is LPIPS' uncalibrated "baseline": a plain sum over channels.
    this.weight = param(tf.ones([1, 1, channels, 1]), "conv");
  }
  override children(): Array<[string, Module | tf.Variable]> {
    return [["model.1.weight", this.weight]];
  }
  /** mean_hw of the 1x1 conv of d, per sample. The conv is linear, so pooling first gives the same number cheaper. */
  pooled(d: tf.Tensor4D): tf.Tensor1D {
    return tf.tidy(() => tf.matMul(tf.mean(d, [1, 2]) as tf.Tensor2D, tf.reshape(this.weight, [this.channels, 1])).reshape([-1]));
  }
}

/** The five heads, keys `lin{k}.model.1.weight`. */
export class LpipsHeads extends Module {
  readonly lins: NetLin[];
  constructor(channels: number[]) {
    super();
    this.lins = channels.map((c) => new NetLin(c));
  }
  override children(): Array<[string, Module | tf.Variable]> {
    return this.lins.map((l, k) => [`lin${k}`, l]);
  }
  /** Load heads from a state dict; torch also saves the `lins.{k}` ModuleList alias of the same tensors, dropped here. */
  load(tensors: Record<string, HostTensor>, source: string): void {
    this.loadStateDict(tensors, { source, rename: (k) => (k.startsWith("lins.") ? undefined : k) });
  }
}

/**
 * sum_l mean_hw w_l . (n(f0_l) - n(f1_l))^2 per sample, for already-normalised taps n(f). Shared by both metrics.
 */
export function headDistance(n0: tf.Tensor4D[], n1: tf.Tensor4D[], heads: LpipsHeads): tf.Tensor1D {
  return tf.tidy(() => tf.addN(n0.map((a, l) => heads.lins[l].pooled(tf.squaredDifference(a, n1[l]) as tf.Tensor4D))));
}

/** LPIPS' input scaling layer: (x - shift) / scale per RGB channel, for x in [-1, 1]. */
const SHIFT = [-0.03, -0.088, -0.188];
const SCALE = [0.458, 0.448, 0.45];

/**
 * sqrt with its gradient set to 0 where the input is 0. A ReLU tap can be zero in every channel at a pixel; there
 * sqrt'(0) is infinite and inf * 0 makes the gradient NaN (torch's ReLU backward masks it, tfjs' does not).
 */
const sqrtZeroSafe = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
  const [s, save] = args as [tf.Tensor, tf.GradSaveFunc];
  const r = tf.sqrt(s);
  save([r]);
  return {
    value: r,
    // d sqrt(s) / ds = 1 / (2 sqrt(s)), taken as 0 at s = 0
    gradFunc: (dy: tf.Tensor, [root]: tf.Tensor[]) => tf.where(tf.greater(root, 0), tf.div(dy, tf.mul(root, 2)), tf.zerosLike(root)),
  };
});

/** x / (sqrt(sum_c x^2) + 1e-10), as lpips.normalize_tensor. */
function unitNormalise(x: tf.Tensor4D): tf.Tensor4D {
  return tf.tidy(() => tf.div(x, tf.add(sqrtZeroSafe(tf.sum(tf.square(x), 3, true)), 1e-10)));
}

export interface LpipsOptions {
  /** Width multiplier of the VGG16 trunk (1 = torchvision's). */
  width?: number;
}

/** Pixel-space LPIPS with a VGG16 trunk. Heads start as all ones (the "baseline" variant) until loaded. */
export class Lpips {
  readonly vgg: Vgg16;
  readonly heads: LpipsHeads;
  constructor(rng: Rng, opts: LpipsOptions = {}) {
    this.vgg = new Vgg16(rng, { width: opts.width });
    this.heads = new LpipsHeads(this.vgg.tapChannels);
  }

  /**
   * Trunk weights: a torchvision VGG16 state dict (`features.{i}.*`; a full model's `classifier.*` is ignored) or the
   * trunk part of a saved lpips.LPIPS (`net.slice{k}.{i}.*`, whose i are the same `features` indices).
   */
  loadTrunk(tensors: Record<string, HostTensor>, source: string): void {
    this.vgg.loadStateDict(tensors, {
      source,
      rename: (k) => {
        if (k.startsWith("features.")) return k;
        const m = /^net\.slice\d\.(.*)$/.exec(k);
        return m ? `features.${m[1]}` : undefined;
      },
    });
  }

  /** Calibrated heads, e.g. weights/lpips/v0.1/vgg.pth (`lin{0..4}.model.1.weight`). */
  loadHeads(tensors: Record<string, HostTensor>, source: string): void {
    this.heads.load(tensors, source);
  }

  /** loadTrunk from a torch.save file (either format). */
  loadTrunkFile(path: string): void {
    this.loadTrunk(readTorchCheckpoint(path), path);
  }

  /** loadHeads from a torch.save file (either format), e.g. the official legacy-format v0.1 vgg.pth. */
  loadHeadsFile(path: string): void {
    this.loadHeads(readTorchCheckpoint(path), path);
  }

  /** The five taps of NHWC RGB images in [-1, 1], each unit-normalised over channels: what the heads weigh. */
  normalisedTaps(x: tf.Tensor4D): tf.Tensor4D[] {
    return tf.tidy(() => {
      // v0.1 input scaling: (x - shift) / scale
      const scaled = tf.div(tf.sub(x, SHIFT), SCALE) as tf.Tensor4D;
      return this.vgg.taps(scaled).map(unitNormalise);
    });
  }

  /** Per-sample distance [N] between NHWC RGB images in [-1, 1]. */
  distance(x0: tf.Tensor4D, x1: tf.Tensor4D): tf.Tensor1D {
    if (x0.shape.join() !== x1.shape.join() || x0.shape[3] !== 3) {
      throw new Error(`Lpips: inputs must be two NHWC RGB batches of one shape, got [${x0.shape}] and [${x1.shape}]`);
    }
    const [, h, w] = x0.shape;
    const min = this.vgg.minInputSize;
    // smaller images reach a tap with no pixels, which engines answer with NaN, garbage or an out-of-bounds read
    if (h < min || w < min) throw new Error(`Lpips: inputs are ${h}x${w} px; the VGG16 trunk's max-pools before its last tap need at least ${min}x${min}`);
    return tf.tidy(() => headDistance(this.normalisedTaps(x0), this.normalisedTaps(x1), this.heads));
  }

  dispose(): void {
    this.vgg.dispose();
    this.heads.dispose();
  }
}
