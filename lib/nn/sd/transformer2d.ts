import * as tf from "@tensorflow/tfjs";
import { Rng } from "../../core/random";
import { Conv2d, GroupNorm, LayerNorm, Linear } from "../layers";
import { Identity, Module } from "../module";
import { gelu } from "./activations";
import { Attention } from "./attention";

// diffusers' Transformer2DModel for continuous (image) input with its BasicTransformerBlocks, as the SD UNets use
// it: norm_type "layer_norm", activation "geglu", no attention bias, no dropout at inference.

/** proj to 2 x inner, then value * gelu(gate): the first half of the projection is the value, the second the gate. */
export class GEGLU extends Module {
  proj: Linear;
  constructor(dimIn: number, readonly inner: number, rng: Rng) {
    super();
    this.proj = new Linear(dimIn, 2 * inner, rng);
  }
  forward(x: tf.Tensor3D): tf.Tensor3D {
    return tf.tidy(() => {
      const [value, gate] = tf.split(this.proj.forward(x), 2, -1);
      return tf.mul(value, gelu(gate)) as tf.Tensor3D;
    });
  }
}

/** net.0 = GEGLU to 4 x dim, net.1 = dropout, net.2 = Linear back to dim. */
export class FeedForward extends Module {
  net: [GEGLU, Identity, Linear];
  constructor(dim: number, rng: Rng) {
    super();
    const inner = 4 * dim;
    this.net = [new GEGLU(dim, inner, rng), new Identity(), new Linear(inner, dim, rng)];
  }
  forward(x: tf.Tensor3D): tf.Tensor3D {
    return tf.tidy(() => this.net[2].forward(this.net[0].forward(x)));
  }
}

export interface TransformerOptions {
  heads: number;
  dimHead: number;
  crossAttentionDim: number;
  /** attn1 attends to the context instead of the image (diffusers' only_cross_attention). */
  onlyCrossAttention: boolean;
}

/** x += attn1(norm1(x)); x += attn2(norm2(x), context); x += ff(norm3(x)). LayerNorm eps 1e-5. */
export class BasicTransformerBlock extends Module {
  norm1: LayerNorm;
  attn1: Attention;
  norm2: LayerNorm;
  attn2: Attention;
  norm3: LayerNorm;
  ff: FeedForward;

  constructor(dim: number, readonly o: TransformerOptions, rng: Rng) {
    super();
    const attn = (cross: boolean) => new Attention({ queryDim: dim, crossAttentionDim: cross ? o.crossAttentionDim : undefined, heads: o.heads, dimHead: o.dimHead, bias: false }, rng);
    this.norm1 = new LayerNorm(dim);
    this.attn1 = attn(o.onlyCrossAttention);
    this.norm2 = new LayerNorm(dim);
    this.attn2 = attn(true);
    this.norm3 = new LayerNorm(dim);
    this.ff = new FeedForward(dim, rng);
  }

  forward(x: tf.Tensor3D, context: tf.Tensor3D): tf.Tensor3D {
    return tf.tidy(() => {
      let h = tf.add(x, this.attn1.forward(this.norm1.forward(x), this.o.onlyCrossAttention ? context : undefined)) as tf.Tensor3D;
      h = tf.add(h, this.attn2.forward(this.norm2.forward(h), context));
      return tf.add(h, this.ff.forward(this.norm3.forward(h)));
    });
  }
}

export interface Transformer2DOptions extends TransformerOptions {
  channels: number;
  layers: number;
  groups: number;
  /** proj_in / proj_out as Linear on the tokens (SD2.x) instead of 1x1 convs on the image (SD1.x). */
  useLinearProjection: boolean;
}

/**
 * x + proj_out(blocks(proj_in(GroupNorm(x)))) over the H W positions as tokens. The GroupNorm has eps 1e-6
 * whatever the UNet's norm_eps. In NHWC a 1x1 conv is the Linear on the channels, so both projection kinds are
 * one matMul; they differ only in their parameters' layout.
 */
export class Transformer2DModel extends Module {
  norm: GroupNorm;
  proj_in: Conv2d | Linear;
  transformer_blocks: BasicTransformerBlock[];
  proj_out: Conv2d | Linear;
  readonly inner: number;

  constructor(readonly o: Transformer2DOptions, rng: Rng) {
    super();
    const c = o.channels;
    this.inner = o.heads * o.dimHead;
    this.norm = new GroupNorm(o.groups, c, 1e-6);
    this.proj_in = o.useLinearProjection ? new Linear(c, this.inner, rng) : new Conv2d(c, this.inner, 1, rng, { padding: 0 });
    this.transformer_blocks = Array.from({ length: o.layers }, () => new BasicTransformerBlock(this.inner, o, rng));
    this.proj_out = o.useLinearProjection ? new Linear(this.inner, c, rng) : new Conv2d(this.inner, c, 1, rng, { padding: 0 });
  }

  forward(x: tf.Tensor4D, context: tf.Tensor3D): tf.Tensor4D {
    return tf.tidy(() => {
      const [n, h, w] = x.shape;
      let t = tf.reshape(this.proj_in.forward(this.norm.forward(x)), [n, h * w, this.inner]) as tf.Tensor3D;
      for (const block of this.transformer_blocks) t = block.forward(t, context);
      const y = this.proj_out.forward(tf.reshape(t, [n, h, w, this.inner]) as tf.Tensor4D);
      return tf.add(y, x) as tf.Tensor4D;
    });
  }
}
