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

/** softmax(q k^T / sqrt(d)) v for one head, q [L, d], k and v [S, d]; q is scaled first (L d products, not L S). */
function headAttention(q: tf.Tensor2D, k: tf.Tensor2D, v: tf.Tensor2D, scale: number): tf.Tensor2D {
  return tf.tidy(() => tf.matMul(tf.softmax(tf.matMul(tf.mul(q, scale), k, false, true)), v));
}

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

  /**
   * x [N, L, queryDim], context [N, S, crossAttentionDim] (or none: self-attention) -> [N, L, queryDim].
   * Each (image, head) pair is one pair of 2-D matMuls: batched matMul is much slower on wasm, and one head's
   * L x S scores (4096^2 floats = 64 MB for SD1.5's first level) are freed before the next head's are made.
   */
  forward(x: tf.Tensor3D, context?: tf.Tensor3D): tf.Tensor3D {
    return tf.tidy(() => {
      const [n, l] = x.shape;
      const ctx = context ?? x;
      const s = ctx.shape[1];
      const d = this.dimHead;
      const q = this.to_q.forward(x);
      const k = this.to_k.forward(ctx);
      const v = this.to_v.forward(ctx);
      const rows: tf.Tensor2D[] = [];
      for (let b = 0; b < n; b++) {
        const heads: tf.Tensor2D[] = [];
        for (let h = 0; h < this.heads; h++) {
          const part = (t: tf.Tensor3D, len: number) => tf.reshape(tf.slice(t, [b, 0, h * d], [1, len, d]), [len, d]) as tf.Tensor2D;
          heads.push(headAttention(part(q, l), part(k, s), part(v, s), 1 / Math.sqrt(d)));
        }
        rows.push(heads.length === 1 ? heads[0] : tf.concat(heads, 1));
      }
      // a one-row stack as expandDims: tfjs hands the gradient of a one-output unstack a lone dy where it expects a
      // list, so a gradient of a gradient through tf.stack([row]) fails (single-sample R1 takes one)
      const a = (rows.length === 1 ? tf.expandDims(rows[0], 0) : tf.stack(rows)) as tf.Tensor3D;
      return this.to_out[0].forward(a);
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
