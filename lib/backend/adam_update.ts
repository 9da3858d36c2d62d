import * as tf from "@tensorflow/tfjs";
import { f32, hasKernel, makeOutput, offsetOf, simdModule } from "./wasm_simd";

// The per-parameter arithmetic of an Adam step and the global gradient norm, each one kernel on wasm instead
// of a dozen element-wise ops per parameter (and a square and a sum per gradient): a training step of a small
// network otherwise spends much of its time launching tiny kernels. Elsewhere the same formulas run as public ops.

export interface AdamUpdateConfig {
  beta1: number;
  beta2: number;
  eps: number;
  /** lr / (1 - beta1^t) */
  stepSize: number;
  /** sqrt(1 - beta2^t) */
  biasCorrection2: number;
  /** Factor on the gradient (gradient-norm clipping). */
  gradScale: number;
}

const UPDATE = "D2gAdamUpdate";
const SUM_SQUARES = "D2gSumSquares";

const splat = (v: string) => `local.get ${v} f32x4.splat`;

const WAT = `
  (func $adam (param $p i32) (param $m i32) (param $v i32) (param $g i32) (param $po i32) (param $mo i32) (param $vo i32) (param $bytes i32)
      (param $b1 f32) (param $b2 f32) (param $eps f32) (param $step f32) (param $bc2 f32) (param $scale f32)
      (local $i i32) (local $gv v128) (local $mv v128) (local $vv v128)
    block $done loop $l
      local.get $i local.get $bytes i32.ge_u br_if $done
      local.get $g local.get $i i32.add v128.load ${splat("$scale")} f32x4.mul local.set $gv
      ;; m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
      local.get $m local.get $i i32.add v128.load ${splat("$b1")} f32x4.mul
      local.get $gv f32.const 1 local.get $b1 f32.sub f32x4.splat f32x4.mul f32x4.add local.set $mv
      local.get $v local.get $i i32.add v128.load ${splat("$b2")} f32x4.mul
      local.get $gv local.get $gv f32x4.mul f32.const 1 local.get $b2 f32.sub f32x4.splat f32x4.mul f32x4.add local.set $vv
      local.get $mo local.get $i i32.add local.get $mv v128.store
      local.get $vo local.get $i i32.add local.get $vv v128.store
      ;; p = p - step * m / (sqrt(v) / bc2 + eps)
      local.get $po local.get $i i32.add
      local.get $p local.get $i i32.add v128.load
      local.get $mv ${splat("$step")} f32x4.mul
      local.get $vv f32x4.sqrt ${splat("$bc2")} f32x4.div ${splat("$eps")} f32x4.add
      f32x4.div f32x4.sub v128.store
      local.get $i i32.const 16 i32.add local.set $i
      br $l
    end end)
  (func $sum_squares (param $x i32) (param $bytes i32) (result f32) (local $i i32) (local $acc v128) (local $v v128)
    block $done loop $l
      local.get $i local.get $bytes i32.ge_u br_if $done
      local.get $x local.get $i i32.add v128.load local.set $v
      local.get $acc local.get $v local.get $v f32x4.mul f32x4.add local.set $acc
      local.get $i i32.const 16 i32.add local.set $i
      br $l
    end end
    local.get $acc f32x4.extract_lane 0 local.get $acc f32x4.extract_lane 1 f32.add
    local.get $acc f32x4.extract_lane 2 f32.add local.get $acc f32x4.extract_lane 3 f32.add)`;

function composite(p: tf.Tensor, m: tf.Tensor, v: tf.Tensor, g: tf.Tensor, c: AdamUpdateConfig): tf.Tensor[] {
  return tf.tidy(() => {
    const gs = c.gradScale === 1 ? g : tf.mul(g, c.gradScale);
    // m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2
    const m1 = tf.add(tf.mul(m, c.beta1), tf.mul(gs, 1 - c.beta1));
    const v1 = tf.add(tf.mul(v, c.beta2), tf.mul(tf.square(gs), 1 - c.beta2));
    // p <- p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)   (PyTorch's form)
    const denom = tf.add(tf.div(tf.sqrt(v1), c.biasCorrection2), c.eps);
    return [tf.sub(p, tf.mul(tf.div(m1, denom), c.stepSize)), m1, v1];
  });
}

/** One Adam update of parameter p with moments m, v and gradient g: the new [p, m, v]. */
export function adamUpdate(p: tf.Tensor, m: tf.Tensor, v: tf.Tensor, g: tf.Tensor, c: AdamUpdateConfig): tf.Tensor[] {
  if (!hasKernel(UPDATE)) return composite(p, m, v, g, c);
  return tf.engine().runKernel(UPDATE, { p, m, v, g }, { ...c }) as tf.Tensor[];
}

/** sum_i sum(g_i^2) over a list of tensors, on the host. */
export function sumOfSquares(tensors: tf.Tensor[]): number {
  if (!hasKernel(SUM_SQUARES)) return tf.tidy(() => tf.addN(tensors.map((t) => tf.sum(tf.square(t)))).dataSync()[0]);
  const inputs: tf.NamedTensorMap = {};
  tensors.forEach((t, i) => (inputs[i] = t));
  const total = tf.engine().runKernel(SUM_SQUARES, inputs) as tf.Tensor;
  const value = total.dataSync()[0];
  total.dispose();
  return value;
}

function updateKernel({ inputs, attrs, backend }: Parameters<tf.KernelFunc>[0]): tf.TensorInfo[] {
  const { p, m, v, g } = inputs as Record<string, tf.TensorInfo>;
  const c = attrs as unknown as AdamUpdateConfig;
  const n = tf.util.sizeFromShape(p.shape);
  const outs = [makeOutput(backend, p.shape), makeOutput(backend, p.shape), makeOutput(backend, p.shape)];
  const ins = [p, m, v, g].map((t) => offsetOf(backend, t));
  const [po, mo, vo] = outs.map((t) => offsetOf(backend, t));
  const vec = n - (n % 4);
  simdModule(backend, "adam", WAT).adam(...ins, po, mo, vo, vec * 4, c.beta1, c.beta2, c.eps, c.stepSize, c.biasCorrection2, c.gradScale);
  if (vec < n) {
    // the last n % 4 entries: writing them as a vector would run past the tensors' memory
    const [pv, mv, vv, gv] = [p, m, v, g].map((t) => f32(backend, t));
    const [pn, mn, vn] = outs.map((t) => f32(backend, t));
    for (let i = vec; i < n; i++) {
      const gi = gv[i] * c.gradScale;
      mn[i] = c.beta1 * mv[i] + (1 - c.beta1) * gi;
      vn[i] = c.beta2 * vv[i] + (1 - c.beta2) * gi * gi;
      pn[i] = pv[i] - (c.stepSize * mn[i]) / (Math.sqrt(vn[i]) / c.biasCorrection2 + c.eps);
    }
  }
  return outs;
}

function sumSquaresKernel({ inputs, backend }: Parameters<tf.KernelFunc>[0]): tf.TensorInfo {
  const k = simdModule(backend, "adam", WAT);
  let total = 0;
  for (const t of Object.values(inputs) as tf.TensorInfo[]) {
    const n = tf.util.sizeFromShape(t.shape), vec = n - (n % 4);
    total += k.sum_squares(offsetOf(backend, t), vec * 4);
    const host = f32(backend, t);
    for (let i = vec; i < n; i++) total += host[i] * host[i];
  }
  const out = makeOutput(backend, []);
  f32(backend, out)[0] = total;
  return out;
}

export const ADAM_KERNELS: Array<[string, tf.KernelFunc]> = [
  [UPDATE, updateKernel as tf.KernelFunc],
  [SUM_SQUARES, sumSquaresKernel as tf.KernelFunc],
];
