import * as tf from "@tensorflow/tfjs";
import { Rng } from "../../core/random";
import { Linear } from "../layers";
import { Module } from "../module";
import { activation, ActFn } from "./activations";

// diffusers' Timesteps (get_timestep_embedding) and TimestepEmbedding, as UNet2DConditionModel uses them.

/**
 * Sinusoidal timestep features [N, dim]. With half = dim // 2:
 * freq_i = exp(-ln(maxPeriod) i / (half - freqShift)), i = 0..half-1; features [sin(t freq), cos(t freq)],
 * or [cos, sin] when flipSinToCos; a zero column is appended when dim is odd.
 * The frequencies are rounded to float32 the way torch computes them, so the features match to float32 precision.
 */
export function timestepFeatures(t: tf.Tensor1D, dim: number, flipSinToCos: boolean, freqShift: number, maxPeriod = 10000): tf.Tensor2D {
  const half = Math.floor(dim / 2);
  const f32 = Math.fround;
  const freqs = Float32Array.from({ length: half }, (_, i) => f32(Math.exp(f32(f32(f32(-Math.log(maxPeriod)) * i) / f32(half - freqShift)))));
  return tf.tidy(() => {
    const arg = tf.mul(tf.reshape(t, [-1, 1]), tf.tensor2d(freqs, [1, half]));
    const parts = flipSinToCos ? [tf.cos(arg), tf.sin(arg)] : [tf.sin(arg), tf.cos(arg)];
    if (dim % 2 === 1) parts.push(tf.zeros([t.shape[0], 1]));
    return tf.concat(parts, 1) as tf.Tensor2D;
  });
}

/** linear_1 -> act -> linear_2 (-> post_act), with the optional cond_proj of timestep_cond added to the input first. */
export class TimestepEmbedding extends Module {
  linear_1: Linear;
  linear_2: Linear;
  cond_proj?: Linear;
  private readonly act: (x: tf.Tensor) => tf.Tensor;
  private readonly postAct?: (x: tf.Tensor) => tf.Tensor;

  constructor(inChannels: number, embedDim: number, act: ActFn, postAct: ActFn | null, condProjDim: number | null, rng: Rng) {
    super();
    this.linear_1 = new Linear(inChannels, embedDim, rng);
    this.act = activation(act);
    this.linear_2 = new Linear(embedDim, embedDim, rng);
    if (postAct) this.postAct = activation(postAct);
    if (condProjDim !== null) this.cond_proj = new Linear(condProjDim, inChannels, rng, false);
  }

  forward(sample: tf.Tensor2D, condition?: tf.Tensor2D): tf.Tensor2D {
    return tf.tidy(() => {
      let x: tf.Tensor2D = sample;
      if (condition) {
        if (!this.cond_proj) throw new Error("TimestepEmbedding: a timestep condition was given but the config has no time_cond_proj_dim");
        x = tf.add(x, this.cond_proj.forward(condition));
      }
      const h = this.linear_2.forward(this.act(this.linear_1.forward(x)) as tf.Tensor2D);
      return (this.postAct ? this.postAct(h) : h) as tf.Tensor2D;
    });
  }
}
