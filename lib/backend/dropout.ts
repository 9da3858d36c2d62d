import * as tf from "@tensorflow/tfjs";
import { f32, hasKernel, makeOutput, offsetOf, simdModule } from "./wasm_simd";

// Dropout as one kernel on wasm: y = x * m / keep with m[i] = [u(seed, i) < keep], u a counter-based uniform
// (a 32-bit integer hash of the seed and the element index, Wellons' "lowbias32"). tf.dropout draws its
// uniforms one by one in JavaScript and then runs four element-wise ops. The gradient of y with respect to x is
// the same masked scaling of dy, so the op's gradient is the op itself, differentiable any number of times.
// Elsewhere tf.dropout runs (with its own random stream: the masks differ between engines).

const KERNEL = "D2gDropout";

/** lowbias32(index + seed * golden), the top 24 bits as a uniform in [0, 1). */
function uniform(seedMix: number, i: number): number {
  let h = (i + seedMix) | 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x7feb352d);
  h ^= h >>> 15;
  h = Math.imul(h, 0x846ca68b);
  h ^= h >>> 16;
  return (h >>> 8) / 16777216;
}

const i32 = (v: number) => `v128.const i32x4 ${v} ${v} ${v} ${v}`;

const WAT = `
  (func $dropout (param $x i32) (param $y i32) (param $bytes i32) (param $seedMix i32) (param $keep f32) (param $scale f32)
      (local $j i32) (local $idx v128) (local $h v128)
    local.get $seedMix i32x4.splat v128.const i32x4 0 1 2 3 i32x4.add local.set $idx
    block $d loop $l
      local.get $j local.get $bytes i32.ge_u br_if $d
      ;; h = lowbias32(index + seedMix)
      local.get $idx local.get $idx i32.const 16 i32x4.shr_u v128.xor local.set $h
      local.get $h ${i32(0x7feb352d)} i32x4.mul local.set $h
      local.get $h local.get $h i32.const 15 i32x4.shr_u v128.xor local.set $h
      local.get $h ${i32(0x846ca68b | 0)} i32x4.mul local.set $h
      local.get $h local.get $h i32.const 16 i32x4.shr_u v128.xor local.set $h
      ;; y = x * (u < keep ? 1 / keep : 0), u = (h >>> 8) / 2^24
      local.get $y local.get $j i32.add
      local.get $x local.get $j i32.add v128.load
      local.get $h i32.const 8 i32x4.shr_u f32x4.convert_i32x4_s v128.const f32x4 ${2 ** -24} ${2 ** -24} ${2 ** -24} ${2 ** -24} f32x4.mul
      local.get $keep f32x4.splat f32x4.lt local.get $scale f32x4.splat v128.and
      f32x4.mul v128.store
      local.get $idx ${i32(4)} i32x4.add local.set $idx
      local.get $j i32.const 16 i32.add local.set $j br $l
    end end)`;

function kernel({ inputs, attrs, backend }: Parameters<tf.KernelFunc>[0]): tf.TensorInfo {
  const x = inputs.x as tf.TensorInfo;
  const { keep, seedMix } = attrs as unknown as { keep: number; seedMix: number };
  const n = tf.util.sizeFromShape(x.shape), vec = n - (n % 4);
  const y = makeOutput(backend, x.shape);
  simdModule(backend, "dropout", WAT).dropout(offsetOf(backend, x), offsetOf(backend, y), vec * 4, seedMix, keep, 1 / keep);
  if (vec < n) {
    // as the vector code computes it: keep and 1 / keep in float32
    const xs = f32(backend, x), ys = f32(backend, y), k32 = Math.fround(keep), scale = Math.fround(1 / keep);
    for (let i = vec; i < n; i++) ys[i] = uniform(seedMix, i) < k32 ? xs[i] * scale : 0;
  }
  return y;
}

/** Dropout with probability `rate`, its mask a function of `seed` (a uint32) and the element index. */
export function dropout<T extends tf.Tensor>(x: T, rate: number, seed: number): T {
  if (!(rate >= 0 && rate < 1)) throw new Error(`dropout: rate must be in [0, 1), got ${rate}`);
  if (rate === 0) return x.clone();
  if (!hasKernel(KERNEL) || x.dtype !== "float32") return tf.dropout(x, rate, undefined, seed) as T;
  const attrs = { keep: 1 - rate, seedMix: Math.imul(seed, 0x9e3779b9) };
  const op = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => ({
    value: tf.engine().runKernel(KERNEL, { x: args[0] as tf.Tensor }, attrs) as tf.Tensor,
    // dL/dx = dL/dy * m / keep: the same mask applied to dy
    gradFunc: (dy: tf.Tensor) => dropout(dy, rate, seed),
  }));
  return op(x) as T;
}

export const DROPOUT_KERNELS: Array<[string, tf.KernelFunc]> = [[KERNEL, kernel as tf.KernelFunc]];
