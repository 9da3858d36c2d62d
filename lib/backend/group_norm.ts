import * as tf from "@tensorflow/tfjs";
import { at, f32, hasKernel, load, makeOutput, offsetOf, recordingSecondOrder, rowsFunc, Scratch, sigmoidInPlace, simdModule, SUM_ROWS } from "./wasm_simd";

// GroupNorm, optionally followed by SiLU, as one op: y = act((x - mean_g) / sqrt(var_g + eps) * gamma + beta) on
// NHWC tensors, statistics over H, W and the channels of each group. On wasm it runs as two fused SIMD kernels
// (forward; backward giving dx, dgamma, dbeta in two passes) instead of the ~15 forward and ~40 backward
// element-wise and reduction ops of the composite, whose five-dimensional broadcasts tfjs-wasm runs slowly and on
// one thread. Elsewhere, and while a second-order gradient is recorded, the public-op composite runs.

export interface GroupNormOptions {
  groups: number;
  eps: number;
  /** Apply SiLU, y * sigmoid(y), to the normalised output. */
  silu?: boolean;
}

const FORWARD = "D2gGroupNorm";
const BACKWARD = "D2gGroupNormGrad";

/** The composite: statistics with tf.moments, then one scale and shift per (image, channel). */
function composite(x: tf.Tensor4D, gamma: tf.Tensor1D, beta: tf.Tensor1D, o: GroupNormOptions): tf.Tensor4D {
  return tf.tidy(() => {
    const [n, h, w, c] = x.shape;
    const g = o.groups;
    const { mean, variance } = tf.moments(tf.reshape(x, [n, h, w, g, c / g]), [1, 2, 4], true);
    // a = gamma / sqrt(var + eps), b = beta - mean * a, y = x * a + b
    const a = tf.mul(tf.rsqrt(tf.add(variance, o.eps)), tf.reshape(gamma, [1, 1, 1, g, c / g]));
    const b = tf.sub(tf.reshape(beta, [1, 1, 1, g, c / g]), tf.mul(mean, a));
    const y = tf.add(tf.mul(x, tf.reshape(a, [n, 1, 1, c])), tf.reshape(b, [n, 1, 1, c])) as tf.Tensor4D;
    // silu(y) = y * sigmoid(y)
    return o.silu ? tf.mul(y, tf.sigmoid(y)) : y;
  });
}

function checkShapes(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, o: GroupNormOptions): void {
  const c = x.shape[3];
  if (x.rank !== 4 || gamma.rank !== 1 || beta.rank !== 1 || gamma.shape[0] !== c || beta.shape[0] !== c || c % o.groups !== 0) {
    throw new Error(`groupNorm: expected NHWC x with C divisible by ${o.groups} groups and gamma, beta of [C]; got x [${x.shape}], gamma [${gamma.shape}], beta [${beta.shape}]`);
  }
}

/** GroupNorm(x) * gamma + beta (then SiLU if o.silu), NHWC. */
export function groupNorm(x: tf.Tensor4D, gamma: tf.Tensor1D, beta: tf.Tensor1D, o: GroupNormOptions): tf.Tensor4D {
  checkShapes(x, gamma, beta, o);
  // the kernels move four channels at a time
  if (x.shape[3] % 4 !== 0 || !hasKernel(FORWARD) || recordingSecondOrder()) return composite(x, gamma, beta, o);
  const attrs = { groups: o.groups, eps: o.eps, silu: o.silu ?? false };
  const fused = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const [xs, g, b, save] = args as [tf.Tensor4D, tf.Tensor1D, tf.Tensor1D, tf.GradSaveFunc];
    save([xs, g, b]);
    return {
      value: tf.engine().runKernel(FORWARD, { x: xs, gamma: g, beta: b }, attrs) as tf.Tensor4D,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) =>
        tf.engine().runKernel(BACKWARD, { x: saved[0], gamma: saved[1], beta: saved[2], dy }, attrs) as tf.Tensor[],
    };
  });
  return fused(x, gamma, beta) as tf.Tensor4D;
}

/** $v = a x + b, $s = sigmoid($v) when the output passes through SiLU. */
const affine = (silu: boolean) =>
  `${load("$x")} ${load("$a")} f32x4.mul ${load("$b")} f32x4.add local.set $v` + (silu ? ` local.get $v local.set $s ${sigmoidInPlace("$s", "$t", "$n")}` : "");
/** $s = dL/d(a x + b) from the output gradient: dz, or dz * silu'(v) = dz * s (1 + v (1 - s)). */
const preActivationGrad = (silu: boolean) =>
  silu
    ? `${affine(true)} ${load("$dz")} local.get $s v128.const f32x4 1 1 1 1 local.get $v v128.const f32x4 1 1 1 1 local.get $s f32x4.sub f32x4.mul f32x4.add f32x4.mul f32x4.mul local.set $s`
    : `${load("$dz")} local.set $s`;

const gradSums = (silu: boolean) =>
  `${preActivationGrad(silu)} ${at("$sg")} ${load("$sg")} local.get $s f32x4.add v128.store
   ${at("$sgx")} ${load("$sgx")} local.get $s ${load("$x")} f32x4.mul f32x4.add v128.store`;

const WAT = [
  SUM_ROWS,
  // acc[c] += sum_r (x[r, c] - mean[c])^2
  rowsFunc("sq_dev_rows", ["$x i32", "$mean i32", "$acc i32"], ["$x"],
    `${load("$x")} ${load("$mean")} f32x4.sub local.set $v ${at("$acc")} ${load("$acc")} local.get $v local.get $v f32x4.mul f32x4.add v128.store`),
  ...[false, true].map((silu) =>
    // y = a x + b, or silu(a x + b)
    rowsFunc(silu ? "affine_silu_rows" : "affine_rows", ["$x i32", "$a i32", "$b i32", "$y i32"], ["$x", "$y"],
      `${at("$y")} ${affine(silu)} local.get $v ${silu ? "local.get $s f32x4.mul" : ""} v128.store`)),
  // with g = dL/d(a x + b): sg[c] += sum_r g, sgx[c] += sum_r g x (the SiLU variant also stores g, for grad_apply)
  rowsFunc("grad_sums", ["$x i32", "$dz i32", "$a i32", "$b i32", "$sg i32", "$sgx i32"], ["$x", "$dz"], gradSums(false)),
  rowsFunc("grad_sums_silu", ["$x i32", "$dz i32", "$a i32", "$b i32", "$sg i32", "$sgx i32", "$g i32"], ["$x", "$dz", "$g"], `${gradSums(true)} ${at("$g")} local.get $s v128.store`),
  // dx = P g + Q x + R
  rowsFunc("grad_apply", ["$x i32", "$g i32", "$p i32", "$q i32", "$rr i32", "$dx i32"], ["$x", "$g", "$dx"],
    `${at("$dx")} ${load("$p")} ${load("$g")} f32x4.mul ${load("$q")} ${load("$x")} f32x4.mul f32x4.add ${load("$rr")} f32x4.add v128.store`),
].join("\n");

interface Attrs {
  groups: number;
  eps: number;
  silu: boolean;
}

/**
 * Per image: mean and 1/sqrt(var + eps) of each group (two passes: the sum, then squared deviations from the
 * mean, which stays accurate when |mean| >> std), and the folded a = gamma r, b = beta - mean a per channel.
 * Scratch layout (C floats each): acc, mean per channel, a, b; returns the per-group mean and r.
 */
function imageStats(k: ReturnType<typeof simdModule>, s: Scratch, x: number, rows: number, c: number, gamma: Float32Array, beta: Float32Array, attrs: Attrs) {
  const cg = c / attrs.groups, m = rows * cg;
  const mean = new Float64Array(attrs.groups), rstd = new Float64Array(attrs.groups);
  s.view(0, c).fill(0);
  k.sum_rows(x, s.at(0), rows, c);
  let acc = s.view(0, c);
  const meanC = s.view(c, c);
  for (let g = 0; g < attrs.groups; g++) {
    let sum = 0;
    for (let j = g * cg; j < (g + 1) * cg; j++) sum += acc[j];
    mean[g] = sum / m;
    meanC.fill(mean[g], g * cg, (g + 1) * cg);
  }
  acc.fill(0);
  k.sq_dev_rows(x, s.at(c), s.at(0), rows, c);
  acc = s.view(0, c);
  const a = s.view(2 * c, c), b = s.view(3 * c, c);
  for (let g = 0; g < attrs.groups; g++) {
    let sq = 0;
    for (let j = g * cg; j < (g + 1) * cg; j++) sq += acc[j];
    rstd[g] = 1 / Math.sqrt(sq / m + attrs.eps);
    for (let j = g * cg; j < (g + 1) * cg; j++) {
      a[j] = rstd[g] * gamma[j];
      b[j] = beta[j] - mean[g] * a[j];
    }
  }
  return { mean, rstd };
}

function forwardKernel({ inputs, attrs, backend }: Parameters<tf.KernelFunc>[0]): tf.TensorInfo {
  const { x, gamma, beta } = inputs as { x: tf.TensorInfo; gamma: tf.TensorInfo; beta: tf.TensorInfo };
  const at = attrs as unknown as Attrs;
  const [n, h, w, c] = x.shape;
  const rows = h * w;
  const k = simdModule(backend, "group_norm", WAT);
  const y = makeOutput(backend, x.shape);
  const s = new Scratch(backend, 4 * c);
  const gammaHost = f32(backend, gamma).slice(), betaHost = f32(backend, beta).slice();
  const xp = offsetOf(backend, x), yp = offsetOf(backend, y);
  try {
    for (let i = 0; i < n; i++) {
      const off = i * rows * c * 4;
      imageStats(k, s, xp + off, rows, c, gammaHost, betaHost, at);
      (at.silu ? k.affine_silu_rows : k.affine_rows)(xp + off, s.at(2 * c), s.at(3 * c), yp + off, rows, c);
    }
  } finally {
    s.free();
  }
  return y;
}

/**
 * With x^ = (x - mean) r and g = dL/d(x^ gamma + beta): dbeta = sum g, dgamma = sum g x^, and per group
 *   dx = r (gamma g - A/m - x^ B/m),  A = sum gamma g,  B = sum gamma g x^,  m = rows * channels per group,
 * i.e. dx = P g + Q x + R per channel with P = r gamma, Q = -r^2 B/m, R = -r A/m + mean r^2 B/m.
 */
function backwardKernel({ inputs, attrs, backend }: Parameters<tf.KernelFunc>[0]): tf.TensorInfo[] {
  const { x, gamma, beta, dy } = inputs as { x: tf.TensorInfo; gamma: tf.TensorInfo; beta: tf.TensorInfo; dy: tf.TensorInfo };
  const at = attrs as unknown as Attrs;
  const [n, h, w, c] = x.shape;
  const rows = h * w, cg = c / at.groups, m = rows * cg;
  const k = simdModule(backend, "group_norm", WAT);
  const dx = makeOutput(backend, x.shape), dgamma = makeOutput(backend, [c]), dbeta = makeOutput(backend, [c]);
  // stats (4C) | sg, sgx (2C) | P, Q, R (3C); with SiLU, the pre-activation gradient g of one image, so that
  // its sigmoids are computed once
  const s = new Scratch(backend, 9 * c);
  const pre = at.silu ? new Scratch(backend, rows * c, false) : undefined;
  const gammaHost = f32(backend, gamma).slice(), betaHost = f32(backend, beta).slice();
  const dgammaSum = new Float64Array(c), dbetaSum = new Float64Array(c);
  const xp = offsetOf(backend, x), dyp = offsetOf(backend, dy), dxp = offsetOf(backend, dx);
  try {
    for (let i = 0; i < n; i++) {
      const off = i * rows * c * 4;
      const { mean, rstd } = imageStats(k, s, xp + off, rows, c, gammaHost, betaHost, at);
      s.view(4 * c, 2 * c).fill(0);
      if (pre) k.grad_sums_silu(xp + off, dyp + off, s.at(2 * c), s.at(3 * c), s.at(4 * c), s.at(5 * c), pre.ptr, rows, c);
      else k.grad_sums(xp + off, dyp + off, s.at(2 * c), s.at(3 * c), s.at(4 * c), s.at(5 * c), rows, c);
      const sg = s.view(4 * c, c), sgx = s.view(5 * c, c);
      const p = s.view(6 * c, c), q = s.view(7 * c, c), r = s.view(8 * c, c);
      for (let g = 0; g < at.groups; g++) {
        let A = 0, B = 0;
        for (let j = g * cg; j < (g + 1) * cg; j++) {
          // sum over the image of g x^ for channel j
          const gxhat = rstd[g] * (sgx[j] - mean[g] * sg[j]);
          dbetaSum[j] += sg[j];
          dgammaSum[j] += gxhat;
          A += gammaHost[j] * sg[j];
          B += gammaHost[j] * gxhat;
        }
        const r2 = rstd[g] * rstd[g];
        for (let j = g * cg; j < (g + 1) * cg; j++) {
          p[j] = rstd[g] * gammaHost[j];
          q[j] = (-r2 * B) / m;
          r[j] = (-rstd[g] * A) / m + (mean[g] * r2 * B) / m;
        }
      }
      k.grad_apply(xp + off, pre ? pre.ptr : dyp + off, s.at(6 * c), s.at(7 * c), s.at(8 * c), dxp + off, rows, c);
    }
  } finally {
    s.free();
    pre?.free();
  }
  f32(backend, dgamma).set(dgammaSum);
  f32(backend, dbeta).set(dbetaSum);
  return [dx, dgamma, dbeta];
}

export const GROUP_NORM_KERNELS: Array<[string, tf.KernelFunc]> = [
  [FORWARD, forwardKernel as tf.KernelFunc],
  [BACKWARD, backwardKernel as tf.KernelFunc],
];
