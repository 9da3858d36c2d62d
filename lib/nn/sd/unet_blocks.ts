import * as tf from "@tensorflow/tfjs";
import { Rng } from "../../core/random";
import { Module } from "../module";
import { Downsample2D, ResnetBlock2D, ResnetOptions, Upsample2D } from "./resnet";
import { Transformer2DModel, Transformer2DOptions } from "./transformer2d";

// The UNet's stages (diffusers unet_2d_blocks.py). A CrossAttn* block and its plain counterpart differ only in the
// Transformer2DModel after each resnet, so one class serves both, with an empty `attentions` for the plain one.

/** The transformer settings of a block's attentions, with one layer count per resnet. */
export interface BlockAttention extends Omit<Transformer2DOptions, "channels" | "layers" | "heads" | "dimHead"> {
  heads: number;
  layers: number[];
}

function transformers(channels: number, n: number, a: BlockAttention | null, rng: Rng): Transformer2DModel[] {
  if (!a) return [];
  // diffusers: heads = num_attention_heads, dim_head = out_channels // heads
  return Array.from({ length: n }, (_, j) => new Transformer2DModel({ ...a, channels, layers: a.layers[j], dimHead: Math.floor(channels / a.heads) }, rng));
}

/**
 * CrossAttnDownBlock2D / DownBlock2D: (resnet, attention) x n, then a stride-2 conv unless it is the last block.
 * Without attention and time embedding it is also the VAE encoder's DownEncoderBlock2D.
 */
export class UNetDownBlock extends Module {
  attentions: Transformer2DModel[];
  resnets: ResnetBlock2D[];
  downsamplers: Downsample2D[];

  constructor(inC: number, outC: number, n: number, r: ResnetOptions, attention: BlockAttention | null, downsamplePadding: number | null, rng: Rng) {
    super();
    this.resnets = Array.from({ length: n }, (_, j) => new ResnetBlock2D(j === 0 ? inC : outC, outC, r, rng));
    this.attentions = transformers(outC, n, attention, rng);
    this.downsamplers = downsamplePadding === null ? [] : [new Downsample2D(outC, downsamplePadding, rng)];
  }

  /** The block's output and the skips it hands to the decoder: each (resnet, attention) output, then the downsampled one. */
  forward(x: tf.Tensor4D, temb: tf.Tensor2D | null, context?: tf.Tensor3D): { h: tf.Tensor4D; skips: tf.Tensor4D[] } {
    return tf.tidy(() => {
      const skips: tf.Tensor4D[] = [];
      let h = x;
      this.resnets.forEach((resnet, j) => {
        h = resnet.forward(h, temb);
        if (this.attentions.length) h = this.attentions[j].forward(h, context!);
        skips.push(h);
      });
      for (const down of this.downsamplers) {
        h = down.forward(h);
        skips.push(h);
      }
      return { h, skips };
    });
  }
}

/** UNetMidBlock2DCrossAttn (resnet, then (attention, resnet) x n) or UNetMidBlock2D with no layers (one resnet). */
export class UNetMidBlock extends Module {
  attentions: Transformer2DModel[];
  resnets: ResnetBlock2D[];

  constructor(channels: number, n: number, r: ResnetOptions, attention: BlockAttention | null, rng: Rng) {
    super();
    this.resnets = Array.from({ length: n + 1 }, () => new ResnetBlock2D(channels, channels, r, rng));
    this.attentions = transformers(channels, n, attention, rng);
  }

  forward(x: tf.Tensor4D, temb: tf.Tensor2D, context: tf.Tensor3D): tf.Tensor4D {
    return tf.tidy(() => {
      let h = this.resnets[0].forward(x, temb);
      this.attentions.forEach((attn, j) => {
        h = this.resnets[j + 1].forward(attn.forward(h, context), temb);
      });
      return h;
    });
  }
}

/**
 * CrossAttnUpBlock2D / UpBlock2D: n (resnet, attention) pairs, each resnet taking the running features concatenated
 * (on channels, after them) with the encoder's skips in reverse order; then nearest 2x and a conv unless last.
 */
export class UNetUpBlock extends Module {
  attentions: Transformer2DModel[];
  resnets: ResnetBlock2D[];
  upsamplers: Upsample2D[];

  /**
   * prevC: channels coming in from below; skipC: the channels of the encoder level below this one (the last
   * resnet's skip); outC: this level's channels (the other resnets' skips have them too).
   */
  constructor(prevC: number, skipC: number, outC: number, n: number, r: ResnetOptions, attention: BlockAttention | null, upsample: boolean, rng: Rng) {
    super();
    this.resnets = Array.from({ length: n }, (_, j) => new ResnetBlock2D((j === 0 ? prevC : outC) + (j === n - 1 ? skipC : outC), outC, r, rng));
    this.attentions = transformers(outC, n, attention, rng);
    this.upsamplers = upsample ? [new Upsample2D(outC, rng)] : [];
  }

  /** `skips`: this block's skips in the order the encoder made them (the last one is used first). */
  forward(x: tf.Tensor4D, skips: tf.Tensor4D[], temb: tf.Tensor2D, context: tf.Tensor3D, upsampleSize?: [number, number]): tf.Tensor4D {
    return tf.tidy(() => {
      let h = this.features(x, skips, temb, context);
      for (const up of this.upsamplers) h = up.forward(h, upsampleSize);
      return h;
    });
  }

  /** The (resnet, attention) pairs at this block's resolution, before the upsampling. */
  features(x: tf.Tensor4D, skips: tf.Tensor4D[], temb: tf.Tensor2D, context: tf.Tensor3D): tf.Tensor4D {
    return tf.tidy(() => {
      let h = x;
      this.resnets.forEach((resnet, j) => {
        h = resnet.forward(tf.concat([h, skips[skips.length - 1 - j]], 3), temb);
        if (this.attentions.length) h = this.attentions[j].forward(h, context);
      });
      return h;
    });
  }
}
