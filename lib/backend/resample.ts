import * as tf from "@tensorflow/tfjs";
import { countLoop, hasKernel, makeOutput, offsetOf, simdModule } from "./wasm_simd";

// 2x resampling of NHWC images with the [1,1] filter of EDM's DDPM++: up = nearest neighbour (each pixel to a
// 2x2 block), down = the mean of each 2x2 block. Each is the other's transpose up to a factor 4 (up^T = 4 down,
// down^T = up / 4), so their gradients are each other and stay differentiable any number of times (R1 takes
// gradients of gradients). On wasm each is one SIMD pass; elsewhere, and for channel counts that are not a
// multiple of 4, they are reshapes with a broadcast multiply or a mean.

const UP = "D2gUpsample2x";
const DOWN = "D2gDownsample2x";

/** Walks the pixels of `rows` image rows of `w` pixels (cb bytes each), one vector of channels at a time. */
function pixelLoop(name: string, setup: string, body: string, next: string): string {
  return `
  (func $${name} (param $x i32) (param $y i32) (param $rows i32) (param $w i32) (param $cb i32)
      (local $r i32) (local $j i32) (local $c i32) (local $xp i32) (local $yp i32) (local $rb i32) (local $v v128)
    ${setup}
    ${countLoop("$r", "local.get $rows", 1, countLoop("$j", "local.get $w", 1, `${countLoop("$c", "local.get $cb", 16, body)} ${next}`))})`;
}

const xAt = "local.get $xp local.get $c i32.add";
const yAt = "local.get $yp local.get $c i32.add";

const WAT = [
  // up2(x, y, n h, w, cb): input pixel (r, j) to output pixels (2r + a, 2j + b); an output row is $rb = 2 w cb bytes
  pixelLoop(
    "up2",
    "local.get $x local.set $xp local.get $y local.set $yp local.get $w local.get $cb i32.mul i32.const 1 i32.shl local.set $rb",
    `${xAt} v128.load local.set $v
          ${yAt} local.get $v v128.store
          ${yAt} local.get $cb i32.add local.get $v v128.store
          ${yAt} local.get $rb i32.add local.get $v v128.store
          ${yAt} local.get $rb i32.add local.get $cb i32.add local.get $v v128.store`,
    `local.get $xp local.get $cb i32.add local.set $xp
        local.get $yp local.get $cb i32.const 1 i32.shl i32.add local.set $yp
        ;; the end of an input row skips the second output row
        local.get $j i32.const 1 i32.add local.get $w i32.eq if local.get $yp local.get $rb i32.add local.set $yp end`,
  ),
  // down2(x, y, n h_out, w_out, cb): output pixel (r, j) = mean of input pixels (2r + a, 2j + b); input rows $rb = 2 w cb
  pixelLoop(
    "down2",
    "local.get $x local.set $xp local.get $y local.set $yp local.get $w local.get $cb i32.mul i32.const 1 i32.shl local.set $rb",
    `${yAt}
          ${xAt} v128.load ${xAt} local.get $cb i32.add v128.load f32x4.add
          ${xAt} local.get $rb i32.add v128.load f32x4.add ${xAt} local.get $rb i32.add local.get $cb i32.add v128.load f32x4.add
          v128.const f32x4 0.25 0.25 0.25 0.25 f32x4.mul v128.store`,
    `local.get $yp local.get $cb i32.add local.set $yp
        local.get $xp local.get $cb i32.const 1 i32.shl i32.add local.set $xp
        local.get $j i32.const 1 i32.add local.get $w i32.eq if local.get $xp local.get $rb i32.add local.set $xp end`,
  ),
].join("\n");

function kernel(up: boolean) {
  return ({ inputs, backend }: Parameters<tf.KernelFunc>[0]): tf.TensorInfo => {
    const x = inputs.x as tf.TensorInfo;
    const [n, h, w, c] = x.shape;
    const out = makeOutput(backend, up ? [n, 2 * h, 2 * w, c] : [n, h / 2, w / 2, c]);
    const k = simdModule(backend, "resample", WAT);
    if (up) k.up2(offsetOf(backend, x), offsetOf(backend, out), n * h, w, c * 4);
    else k.down2(offsetOf(backend, x), offsetOf(backend, out), (n * h) / 2, w / 2, c * 4);
    return out;
  };
}

function fast(x: tf.Tensor4D, kernelName: string): boolean {
  return x.shape[3] % 4 === 0 && x.dtype === "float32" && hasKernel(kernelName);
}

/** Nearest-neighbour 2x upsampling. */
export function upsample2x(x: tf.Tensor4D): tf.Tensor4D {
  const [n, h, w, c] = x.shape;
  if (!fast(x, UP)) return tf.tidy(() => tf.reshape(tf.mul(tf.reshape(x, [n, h, 1, w, 1, c]), tf.ones([1, 1, 2, 1, 2, 1])), [n, 2 * h, 2 * w, c]));
  const op = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => ({
    value: tf.engine().runKernel(UP, { x: args[0] as tf.Tensor }) as tf.Tensor4D,
    // up^T dy = sum over each 2x2 block = 4 down(dy)
    gradFunc: (dy: tf.Tensor) => tf.mul(downsample2x(dy as tf.Tensor4D), 4),
  }));
  return op(x) as tf.Tensor4D;
}

/** The mean of each 2x2 block (H and W even). */
export function downsample2x(x: tf.Tensor4D): tf.Tensor4D {
  const [n, h, w, c] = x.shape;
  if (h % 2 !== 0 || w % 2 !== 0) throw new Error(`downsample2x: height and width must be even, got [${x.shape}]`);
  if (!fast(x, DOWN)) return tf.tidy(() => tf.mean(tf.reshape(x, [n, h / 2, 2, w / 2, 2, c]), [2, 4]) as tf.Tensor4D);
  const op = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => ({
    value: tf.engine().runKernel(DOWN, { x: args[0] as tf.Tensor }) as tf.Tensor4D,
    // down^T dy = each value / 4 over its 2x2 block = up(dy) / 4
    gradFunc: (dy: tf.Tensor) => tf.mul(upsample2x(dy as tf.Tensor4D), 0.25),
  }));
  return op(x) as tf.Tensor4D;
}

export const RESAMPLE_KERNELS: Array<[string, tf.KernelFunc]> = [
  [UP, kernel(true) as tf.KernelFunc],
  [DOWN, kernel(false) as tf.KernelFunc],
];
