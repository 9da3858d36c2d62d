import * as tf from "@tensorflow/tfjs";
import { groupNorm } from "../backend/group_norm";
import { Rng } from "../core/random";
import { Layer, Module, param, torchUniform } from "./module";

// Tensors are NHWC (the layout every tfjs engine supports); weights convert from PyTorch layout on load.

export interface Conv2dOptions {
  stride?: number;
  /** Symmetric zero padding in pixels, as in torch.nn.Conv2d (default k // 2). */
  padding?: number;
  dilation?: number;
  bias?: boolean;
}

export class Conv2d extends Layer {
  weight: tf.Variable;
  bias?: tf.Variable;
  readonly stride: number;
  readonly padding: number;
  readonly dilation: number;
  constructor(readonly inC: number, readonly outC: number, readonly k: number, rng: Rng, o: Conv2dOptions = {}) {
    super();
    this.stride = o.stride ?? 1;
    this.padding = o.padding ?? Math.floor(k / 2);
    this.dilation = o.dilation ?? 1;
    const fanIn = inC * k * k;
    this.weight = param(torchUniform([k, k, inC, outC], fanIn, rng), "conv");
    if (o.bias ?? true) this.bias = param(torchUniform([outC], fanIn, rng));
  }
  forward(x: tf.Tensor4D): tf.Tensor4D {
    return tf.tidy(() => {
      // torch pads symmetrically; tfjs 'same' pads asymmetrically at stride 2, so pad explicitly.
      const pad = this.padding === 0 ? "valid" : this.padding;
      const y = tf.conv2d(x, this.weight as tf.Tensor4D, this.stride, pad, "NHWC", this.dilation);
      return this.bias ? tf.add(y, this.bias) : y;
    });
  }
}

export class Linear extends Layer {
  weight: tf.Variable;
  bias?: tf.Variable;
  /** PyTorch's default init, or with `normalStd` weight ~ N(0, std^2) and a zero bias (transformers' _init_weights). */
  constructor(readonly inF: number, readonly outF: number, rng: Rng, bias = true, normalStd?: number) {
    super();
    const w = normalStd === undefined ? torchUniform([inF, outF], inF, rng) : tf.randomNormal([inF, outF], 0, normalStd, "float32", rng.seed());
    this.weight = param(w, "linear");
    if (bias) this.bias = param(normalStd === undefined ? torchUniform([outF], inF, rng) : tf.zeros([outF]));
  }
  /** Acts on the last axis of any rank (Layer's 4D signature is the common case of a 1x1 map). */
  forward<T extends tf.Tensor>(x: T): T {
    return tf.tidy(() => {
      const flat = tf.reshape(x, [-1, this.inF]);
      let y = tf.matMul(flat, this.weight as tf.Tensor2D);
      if (this.bias) y = tf.add(y, this.bias);
      return tf.reshape(y, [...x.shape.slice(0, -1), this.outF]) as T;
    });
  }
}

/** GroupNorm, followed by SiLU when `act` is "silu" (one fused op, lib/backend/group_norm.ts). */
export class GroupNorm extends Layer {
  weight: tf.Variable;
  bias: tf.Variable;
  constructor(readonly groups: number, readonly channels: number, readonly eps = 1e-5, readonly act?: "silu") {
    super();
    if (channels % groups !== 0) throw new Error(`GroupNorm: ${channels} channels do not split into ${groups} groups`);
    this.weight = param(tf.ones([channels]));
    this.bias = param(tf.zeros([channels]));
  }
  forward(x: tf.Tensor4D): tf.Tensor4D {
    return groupNorm(x, this.weight as tf.Tensor1D, this.bias as tf.Tensor1D, { groups: this.groups, eps: this.eps, silu: this.act === "silu" });
  }
}

/**
 * BatchNorm2d with PyTorch's state: weight, bias, running_mean, running_var, num_batches_tracked.
 * Training mode normalises with batch statistics and updates the running ones (momentum 0.1, unbiased var).
 */
export class BatchNorm2d extends Layer {
  weight: tf.Variable;
  bias: tf.Variable;
  running_mean: tf.Variable;
  running_var: tf.Variable;
  num_batches_tracked: tf.Variable;
  training = false;
  constructor(readonly channels: number, readonly eps = 1e-5, readonly momentum = 0.1) {
    super();
    this.weight = param(tf.ones([channels]));
    this.bias = param(tf.zeros([channels]));
    this.running_mean = param(tf.zeros([channels]), "plain", false);
    this.running_var = param(tf.ones([channels]), "plain", false);
    this.num_batches_tracked = param(tf.zeros([]), "plain", false);
  }
  forward(x: tf.Tensor4D): tf.Tensor4D {
    if (!this.training) {
      // y = (x - running_mean) / sqrt(running_var + eps) * weight + bias, folded into one scale and shift per
      // channel (tf.batchNorm's gradient tiles full-size tensors, which is slow on wasm)
      return tf.tidy(() => {
        const scale = tf.mul(this.weight, tf.rsqrt(tf.add(this.running_var, this.eps)));
        return tf.add(tf.mul(x, scale), tf.sub(this.bias, tf.mul(this.running_mean, scale))) as tf.Tensor4D;
      });
    }
    const { mean, variance } = tf.moments(x, [0, 1, 2]);
    const m = x.size / this.channels;
    tf.tidy(() => {
      // running <- (1 - momentum) running + momentum batch, with the unbiased batch variance as torch does
      const mom = this.momentum;
      this.running_mean.assign(tf.add(tf.mul(this.running_mean, 1 - mom), tf.mul(mean, mom)));
      this.running_var.assign(tf.add(tf.mul(this.running_var, 1 - mom), tf.mul(variance, (mom * m) / Math.max(1, m - 1))));
      this.num_batches_tracked.assign(tf.add(this.num_batches_tracked, 1));
    });
    const y = tf.tidy(() => tf.batchNorm(x, mean, variance, this.bias, this.weight, this.eps) as tf.Tensor4D);
    mean.dispose();
    variance.dispose();
    return y;
  }
}

export class ReLU extends Layer {
  forward(x: tf.Tensor4D): tf.Tensor4D {
    return tf.relu(x);
  }
}

export class SiLU extends Layer {
  forward(x: tf.Tensor4D): tf.Tensor4D {
    // silu(x) = x * sigmoid(x)
    return tf.tidy(() => tf.mul(x, tf.sigmoid(x)));
  }
}

/** torch.nn.MaxPool2d(k) (stride k, floor mode: a trailing odd row or column is dropped). */
export class MaxPool2d extends Layer {
  constructor(readonly k = 2, readonly stride = k) {
    super();
  }
  forward(x: tf.Tensor4D): tf.Tensor4D {
    return tf.maxPool(x, this.k, this.stride, "valid");
  }
}

/**
 * torch's F.max_pool2d / F.avg_pool2d with symmetric padding (floor mode). Padding never wins a max; whether it
 * counts in an average is countIncludePad (torch's default true; TensorFlow graphs, such as the FID Inception,
 * leave it out, and so does a tfjs pool given a numeric padding).
 */
export class Pool2d extends Layer {
  constructor(readonly mode: "max" | "avg", readonly k: number, readonly stride = k, readonly padding = 0, readonly countIncludePad = true) {
    super();
  }
  forward(x: tf.Tensor4D): tf.Tensor4D {
    const { k, stride, padding: p } = this;
    if (this.mode === "max") return tf.maxPool(x, k, stride, p === 0 ? "valid" : p);
    if (p === 0 || !this.countIncludePad) return tf.avgPool(x, k, stride, p === 0 ? "valid" : p);
    return tf.tidy(() => tf.avgPool(tf.pad(x, [[0, 0], [p, p], [p, p], [0, 0]]), k, stride, "valid"));
  }
}

/** torch.nn.LayerNorm over the last axis, with weight and bias. */
export class LayerNorm extends Module {
  weight: tf.Variable;
  bias: tf.Variable;
  constructor(readonly features: number, readonly eps = 1e-5) {
    super();
    this.weight = param(tf.ones([features]));
    this.bias = param(tf.zeros([features]));
  }
  forward<T extends tf.Tensor>(x: T): T {
    return tf.tidy(() => {
      const { mean, variance } = tf.moments(x, -1, true);
      // y = (x - mean) / sqrt(var + eps) * gamma + beta, with the biased variance as torch uses
      return tf.add(tf.mul(tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, this.eps))), this.weight), this.bias) as T;
    });
  }
}

/** torch.nn.Embedding: row `id` of weight [num, dim]. Out-of-range ids are the caller's to reject (gather does not). */
export class Embedding extends Module {
  weight: tf.Variable;
  constructor(readonly num: number, readonly dim: number, init: tf.Tensor) {
    super();
    if (init.shape.length !== 2 || init.shape[0] !== num || init.shape[1] !== dim) throw new Error(`Embedding: init has shape [${init.shape}], expected [${num},${dim}]`);
    this.weight = param(init);
  }
  forward(ids: tf.Tensor): tf.Tensor {
    return tf.tidy(() => tf.gather(this.weight, ids.dtype === "int32" ? ids : tf.cast(ids, "int32")));
  }
}
