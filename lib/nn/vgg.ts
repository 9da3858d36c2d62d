import * as tf from "@tensorflow/tfjs";
import { Rng } from "../core/random";
import { BatchNorm2d, Conv2d, Linear, MaxPool2d, ReLU } from "./layers";
import { Layer, Module, Sequential } from "./module";

// The two VGG16 trunks of the perceptual distances.
// - Vgg16: torchvision's `vgg16().features` (conv3x3 + ReLU, a 2x2 max-pool closing each of the 5 stages), keys
//   `features.{i}.weight/bias`; LPIPS reads it at relu1_2, relu2_2, relu3_3, relu4_3, relu5_3.
// - LatentVgg16Bn: torchvision's `vgg16_bn().features` with the first conv taking the latent's channels and the
//   first three pools made identities (a 64x64 latent is already 8x down), cut into the five slices of elatentlpips'
//   CalibratedLatentVGG16BN, keys `slice{1..5}.{i}.*` with i the index in the uncut `features`.
// Both take a width multiplier so that CPU-scale experiments can train narrow copies; width 1 is the official net.

/** Output channels of the conv layers of each stage (VGG16, configuration "D"). */
const VGG16_STAGES = [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]];

export interface VggOptions {
  /** Channel multiplier; 1 gives the official shapes. Every layer keeps at least one channel. */
  width?: number;
  /**
   * Channels of stage 1, instead of 64 x width. A narrow trunk on many latent channels needs it: at width 1/8 the
   * first conv would map TAEF2's 32 channels to 8, and a distance built on the taps could not see the 3/4 of the
   * latent that falls in that conv's null space (the official trunks widen 4 or 16 latent channels to 64).
   */
  stem?: number;
}

function widthOf(channels: number, width: number): number {
  if (!(width > 0)) throw new Error(`vgg: width multiplier must be positive, got ${width}`);
  return Math.max(1, Math.round(channels * width));
}

/** Output channels of every conv, stage by stage, at a width multiplier and stem. */
function vgg16Stages(opts: VggOptions): number[][] {
  const width = opts.width ?? 1;
  return VGG16_STAGES.map((stage, k) => stage.map((c) => (k === 0 && opts.stem !== undefined ? widthOf(opts.stem, 1) : widthOf(c, width))));
}

/** Channels of the five taps (the last conv of each stage): 64,128,256,512,512 at width 1. */
export function vgg16TapChannels(opts: VggOptions = {}): number[] {
  return vgg16Stages(opts).map((s) => s[s.length - 1]);
}

/**
 * The smallest input side for which each of `layers` (in order) leaves at least one pixel: a valid max-pool of
 * size k and stride s needs s (m - 1) + k pixels to give m; the padded 3x3 convs keep the size.
 */
function minSide(layers: Layer[]): number {
  return layers.reduceRight((m, l) => (l instanceof MaxPool2d ? l.stride * (m - 1) + l.k : m), 1);
}

/** torchvision VGG16 `features`, NHWC. */
export class Vgg16 extends Layer {
  features: Sequential;
  /** Indices in `features` of relu1_2, relu2_2, relu3_3, relu4_3, relu5_3. */
  readonly tapIndices: number[] = [];
  readonly tapChannels: number[];
  /** Smallest input side that reaches the last tap (relu5_3) with a pixel: 16, after four pools. */
  readonly minInputSize: number;
  constructor(rng: Rng, opts: VggOptions & { inChannels?: number } = {}) {
    super();
    const layers: Layer[] = [];
    let c = opts.inChannels ?? 3;
    for (const stage of vgg16Stages(opts)) {
      for (const o of stage) {
        layers.push(new Conv2d(c, o, 3, rng, { padding: 1 }), new ReLU());
        c = o;
      }
      this.tapIndices.push(layers.length - 1);
      layers.push(new MaxPool2d(2));
    }
    this.features = new Sequential(layers);
    this.tapChannels = vgg16TapChannels(opts);
    this.minInputSize = minSide(layers.slice(0, this.tapIndices[this.tapIndices.length - 1] + 1));
  }

  /** The five LPIPS taps; the last pool is not needed for them and is skipped. */
  taps(x: tf.Tensor4D): tf.Tensor4D[] {
    return tf.tidy(() => {
      const out: tf.Tensor4D[] = [];
      let h = x;
      const last = this.tapIndices[this.tapIndices.length - 1];
      for (let i = 0; i <= last; i++) {
        h = this.features.layers[i].forward(h);
        if (this.tapIndices.includes(i)) out.push(h);
      }
      return out;
    });
  }

  /** The whole `features` stack (input to a classifier head). */
  forward(x: tf.Tensor4D): tf.Tensor4D {
    return tf.tidy(() => this.features.forward(x));
  }
}

/** A cut of a torch Sequential: its children keep their index in the uncut one, so keys match the slice's. */
export class Slice extends Layer {
  constructor(readonly entries: Array<[number, Layer]>) {
    super();
  }
  override children(): Array<[string, Module | tf.Variable]> {
    return this.entries.map(([i, m]) => [String(i), m]);
  }
  forward(x: tf.Tensor4D): tf.Tensor4D {
    return this.entries.reduce((h, [, m]) => m.forward(h), x);
  }
}

/**
 * elatentlpips' latent VGG16-BN trunk. Stage k is slice k and ends with its pool: identity for stages 1-3 (kept as
 * an index with no weights: 6, 13, 23), a real 2x2 max-pool for stages 4 and 5 (33, 43). Taps are the slice outputs,
 * so a 64x64 latent gives taps of 64, 64, 64, 32 and 16 pixels. BatchNorm uses running statistics unless training.
 */
export class LatentVgg16Bn extends Layer {
  slice1: Slice;
  slice2: Slice;
  slice3: Slice;
  slice4: Slice;
  slice5: Slice;
  readonly tapChannels: number[];
  /** Smallest input side that reaches the last tap (slice 5, after its pool) with a pixel: 4, after two pools. */
  readonly minInputSize: number;
  constructor(readonly latentChannels: number, rng: Rng, opts: VggOptions = {}) {
    super();
    const slices: Slice[] = [];
    let index = 0;
    let c = latentChannels;
    vgg16Stages(opts).forEach((stage, s) => {
      const entries: Array<[number, Layer]> = [];
      for (const o of stage) {
        entries.push([index, new Conv2d(c, o, 3, rng, { padding: 1 })], [index + 1, new BatchNorm2d(o)], [index + 2, new ReLU()]);
        index += 3;
        c = o;
      }
      if (s >= 3) entries.push([index, new MaxPool2d(2)]);
      index += 1;
      slices.push(new Slice(entries));
    });
    [this.slice1, this.slice2, this.slice3, this.slice4, this.slice5] = slices;
    this.tapChannels = vgg16TapChannels(opts);
    this.minInputSize = minSide(slices.flatMap((sl) => sl.entries.map(([, m]) => m)));
  }

  private slices(): Slice[] {
    return [this.slice1, this.slice2, this.slice3, this.slice4, this.slice5];
  }

  /** The five slice outputs. */
  taps(x: tf.Tensor4D): tf.Tensor4D[] {
    if (x.shape[3] !== this.latentChannels) {
      throw new Error(`LatentVgg16Bn: input has ${x.shape[3]} channels, expected ${this.latentChannels} (NHWC latents)`);
    }
    return tf.tidy(() => {
      const out: tf.Tensor4D[] = [];
      let h = x;
      for (const s of this.slices()) {
        h = s.forward(h);
        out.push(h);
      }
      return out;
    });
  }

  /** Output of slice 5 (input to a classifier head). */
  forward(x: tf.Tensor4D): tf.Tensor4D {
    return tf.tidy(() => this.slices().reduce((h, s) => s.forward(h), x));
  }

  /** Batch statistics (and running-stat updates) for classification training; running statistics otherwise. */
  setTraining(on: boolean): void {
    for (const s of this.slices()) for (const [, m] of s.entries) if (m instanceof BatchNorm2d) m.training = on;
  }
}

/**
 * Classifier for pretraining a trunk (global average pool, then Linear to n classes). It is a separate module so the
 * trunk's state dict keeps the official key layout; the head's own keys are `fc.weight`, `fc.bias`.
 */
export class ClassifierHead extends Module {
  fc: Linear;
  constructor(readonly inChannels: number, readonly classes: number, rng: Rng) {
    super();
    this.fc = new Linear(inChannels, classes, rng);
  }
  /** Logits [N, classes] from trunk features [N, H, W, C]. */
  forward(features: tf.Tensor4D): tf.Tensor2D {
    return tf.tidy(() => this.fc.forward(tf.mean(features, [1, 2]) as tf.Tensor2D));
  }
}
