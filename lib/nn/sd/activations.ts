import * as tf from "@tensorflow/tfjs";
import { silu } from "../unet";

// The activations diffusers configs name (diffusers' get_activation: "swish" and "silu" are the same function).

export const ACT_FNS = ["silu", "swish", "mish", "gelu", "relu"] as const;
export type ActFn = (typeof ACT_FNS)[number];

/** GELU as torch.nn.GELU() computes it (exact, not the tanh approximation): gelu(x) = x/2 (1 + erf(x / sqrt 2)). */
export function gelu(x: tf.Tensor): tf.Tensor {
  return tf.tidy(() => tf.mul(tf.mul(x, 0.5), tf.add(tf.erf(tf.mul(x, Math.SQRT1_2)), 1)));
}

export function activation(name: ActFn): (x: tf.Tensor) => tf.Tensor {
  switch (name) {
    case "silu":
    case "swish":
      return silu;
    // mish(x) = x tanh(softplus(x))
    case "mish":
      return (x) => tf.tidy(() => tf.mul(x, tf.tanh(tf.softplus(x))));
    case "gelu":
      return gelu;
    case "relu":
      return tf.relu;
  }
}
