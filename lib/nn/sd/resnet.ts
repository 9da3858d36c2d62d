import * as tf from "@tensorflow/tfjs";
import { Rng } from "../../core/random";
import { Conv2d, GroupNorm, Linear } from "../layers";
import { Module } from "../module";
import { resample } from "../unet";
import { activation, ActFn } from "./activations";

// diffusers' ResnetBlock2D, Downsample2D and Upsample2D (models/resnet.py, downsampling.py, upsampling.py) as the
// UNet and the VAE use them. NHWC throughout.

export interface ResnetOptions {
  /** Embedding width of temb; null for the VAE's blocks, which have no time_emb_proj. */
  tembChannels: number | null;
  groups: number;
  eps: number;
  act: ActFn;
  /** "default" adds the projected embedding before norm2; "scale_shift" modulates norm2's output. */
  timeEmbeddingNorm: "default" | "scale_shift";
  /** The output is divided by this (mid_block_scale_factor in the UNet's middle block). */
  outputScaleFactor: number;
}

export class ResnetBlock2D extends Module {
  norm1: GroupNorm;
  conv1: Conv2d;
  time_emb_proj?: Linear;
  norm2: GroupNorm;
  conv2: Conv2d;
  conv_shortcut?: Conv2d;
  private readonly act: (x: tf.Tensor) => tf.Tensor;

  constructor(readonly inC: number, readonly outC: number, readonly o: ResnetOptions, rng: Rng) {
    super();
    this.norm1 = new GroupNorm(o.groups, inC, o.eps);
    this.conv1 = new Conv2d(inC, outC, 3, rng);
    if (o.tembChannels !== null) this.time_emb_proj = new Linear(o.tembChannels, o.timeEmbeddingNorm === "scale_shift" ? 2 * outC : outC, rng);
    this.norm2 = new GroupNorm(o.groups, outC, o.eps);
    this.conv2 = new Conv2d(outC, outC, 3, rng);
    if (inC !== outC) this.conv_shortcut = new Conv2d(inC, outC, 1, rng);
    this.act = activation(o.act);
  }

  forward(x: tf.Tensor4D, temb: tf.Tensor2D | null): tf.Tensor4D {
    return tf.tidy(() => {
      let h = this.conv1.forward(this.act(this.norm1.forward(x)) as tf.Tensor4D);
      let scale: tf.Tensor | undefined;
      let shift: tf.Tensor | undefined;
      if (this.time_emb_proj && temb) {
        // every block applies the activation to temb before its own projection
        const t = tf.reshape(this.time_emb_proj.forward(this.act(temb) as tf.Tensor2D), [temb.shape[0], 1, 1, -1]);
        if (this.o.timeEmbeddingNorm === "default") h = tf.add(h, t);
        else [scale, shift] = tf.split(t, 2, 3);
      }
      h = this.norm2.forward(h);
      // scale_shift: h = norm2(h) (1 + scale) + shift
      if (scale && shift) h = tf.add(tf.mul(h, tf.add(scale, 1)), shift);
      h = this.conv2.forward(this.act(h) as tf.Tensor4D);
      const skip = this.conv_shortcut ? this.conv_shortcut.forward(x) : x;
      // out = (skip + h) / output_scale_factor
      const out = tf.add(skip, h);
      return (this.o.outputScaleFactor === 1 ? out : tf.div(out, this.o.outputScaleFactor)) as tf.Tensor4D;
    });
  }
}

/**
 * A stride-2 3x3 conv. padding p > 0 pads p on every side (the UNet: downsample_padding 1); padding 0 pads one
 * row and column at the bottom and right only (the VAE encoder), as diffusers does.
 */
export class Downsample2D extends Module {
  conv: Conv2d;
  constructor(channels: number, readonly padding: number, rng: Rng) {
    super();
    this.conv = new Conv2d(channels, channels, 3, rng, { stride: 2, padding });
  }
  forward(x: tf.Tensor4D): tf.Tensor4D {
    if (this.padding > 0) return this.conv.forward(x);
    return tf.tidy(() => this.conv.forward(tf.pad(x, [[0, 0], [0, 1], [0, 1], [0, 0]])));
  }
}

/** Nearest-neighbour upsampling (2x, or to `size` when the input was not a multiple of the down factor), then a 3x3 conv. */
export class Upsample2D extends Module {
  conv: Conv2d;
  constructor(channels: number, rng: Rng) {
    super();
    this.conv = new Conv2d(channels, channels, 3, rng);
  }
  forward(x: tf.Tensor4D, size?: [number, number]): tf.Tensor4D {
    return tf.tidy(() => {
      const [, h, w] = x.shape;
      // the exact 2x case stays twice differentiable (R1 penalties differentiate through the gradient)
      const up = !size || (size[0] === 2 * h && size[1] === 2 * w) ? resample(x, "up") : tf.image.resizeNearestNeighbor(x, size);
      return this.conv.forward(up);
    });
  }
}
