import * as tf from "@tensorflow/tfjs";
import { Rng } from "../../core/random";
import { GroupNorm, Linear } from "../layers";
import { Module } from "../module";

// diffusers' Attention (attention_processor.py) with its default processor, in the two forms SD uses:
// the transformer blocks' self- and cross-attention (bias-free to_q/to_k/to_v, biased to_out.0), and the VAE's
// mid-block attention (group_norm first, biased q/k/v, residual added).

export interface AttentionOptions {
  queryDim: number;
  /** Width of the context for cross-attention; self-attention (context = the input) when absent. */
  crossAttentionDim?: number;
  heads: number;
  dimHead: number;
  /** Bias on to_q, to_k, to_v (to_out.0 always has one). */
  bias: boolean;
  /** The VAE form: GroupNorm before the projections and a residual connection around the whole. */
  groupNorm?: { groups: number; eps: number };
}

/**
 * (image, head) pairs per batched product: their L x S scores together stay under 2^24 floats (64 MB). SD1.5's
 * first level (L = S = 4096) gets one pair at a time; a tiny teacher's 8 x 8 latents against 77 tokens, all pairs
 * of a batch at once. Looping pair by pair at small sizes cost a slice per pair, and a slice's gradient is a
 * zero-padded copy of the whole input: thousands of them for a training batch (wasm ran out of memory at 64).
 */
const SCORE_BUDGET = 1 << 24;

export class Attention extends Module {
  group_norm?: GroupNorm;
  to_q: Linear;
  to_k: Linear;
  to_v: Linear;
  /** to_out.1 is a dropout, without parameters. */
  to_out: Linear[];
  readonly heads: number;
  readonly dimHead: number;

  constructor(o: AttentionOptions, rng: Rng) {
    super();
    this.heads = o.heads;
    this.dimHead = o.dimHead;
    const inner = o.heads * o.dimHead;
    const ctx = o.crossAttentionDim ?? o.queryDim;
    if (o.groupNorm) this.group_norm = new GroupNorm(o.groupNorm.groups, o.queryDim, o.groupNorm.eps);
    this.to_q = new Linear(o.queryDim, inner, rng, o.bias);
    this.to_k = new Linear(ctx, inner, rng, o.bias);
    this.to_v = new Linear(ctx, inner, rng, o.bias);
    this.to_out = [new Linear(inner, o.queryDim, rng)];
  }

  /** x [N, L, queryDim], context [N, S, crossAttentionDim] (or none: self-attention) -> [N, L, queryDim]. */
  forward(x: tf.Tensor3D, context?: tf.Tensor3D): tf.Tensor3D {
    return tf.tidy(() => {
      const [n, l] = x.shape;
      const ctx = context ?? x;
      const s = ctx.shape[1];
      const [h, d] = [this.heads, this.dimHead];
      // [N, len, H d] -> [N H, len, d]: one matrix per (image, head)
      const perHead = (t: tf.Tensor3D, len: number) => tf.reshape(tf.transpose(tf.reshape(t, [n, len, h, d]), [0, 2, 1, 3]), [n * h, len, d]) as tf.Tensor3D;
      // q is scaled first: L d products, not L S
      const q = perHead(tf.mul(this.to_q.forward(x), 1 / Math.sqrt(d)) as tf.Tensor3D, l);
      const k = perHead(this.to_k.forward(ctx), s);
      const v = perHead(this.to_v.forward(ctx), s);
      const chunk = Math.max(1, Math.floor(SCORE_BUDGET / (l * s)));
      const parts: tf.Tensor3D[] = [];
      for (let b = 0; b < n * h; b += chunk) {
        const m = Math.min(chunk, n * h - b);
        const take = (t: tf.Tensor3D, len: number) => (m === n * h ? t : (tf.slice(t, [b, 0, 0], [m, len, d]) as tf.Tensor3D));
        // softmax(q k^T / sqrt(d)) v
        parts.push(tf.matMul(tf.softmax(tf.matMul(take(q, l), take(k, s), false, true)), take(v, s)));
      }
      const o = parts.length === 1 ? parts[0] : tf.concat(parts, 0);
      return this.to_out[0].forward(tf.reshape(tf.transpose(tf.reshape(o, [n, h, l, d]), [0, 2, 1, 3]), [n, l, h * d]) as tf.Tensor3D);
    });
  }

  /** The VAE form on an image [N, H, W, C]: x + to_out(attention(group_norm(x))) over the H W positions. */
  forwardSpatial(x: tf.Tensor4D): tf.Tensor4D {
    return tf.tidy(() => {
      const [n, h, w, c] = x.shape;
      const normed = this.group_norm ? this.group_norm.forward(x) : x;
      const y = this.forward(tf.reshape(normed, [n, h * w, c]) as tf.Tensor3D);
      return tf.add(x, tf.reshape(y, [n, h, w, c])) as tf.Tensor4D;
    });
  }
}
