import * as tf from "@tensorflow/tfjs";
import { f32, makeOutput, offsetOf, simdModule, WasmBackend } from "./wasm_simd";

// Element-wise kernels that tfjs-wasm runs slowly in training: Identity and same-type Cast copy their input
// (tensors are immutable, so sharing the data is enough; the engine clones every tensor a custom gradient
// saves), and Relu and Step (ReLU's gradient mask) take about 3 ns per entry. Here they share the data or make
// one SIMD pass.

const WAT = `
  (func $relu (param $x i32) (param $y i32) (param $bytes i32) (local $j i32)
    block $d loop $l
      local.get $j local.get $bytes i32.ge_u br_if $d
      local.get $y local.get $j i32.add local.get $x local.get $j i32.add v128.load v128.const f32x4 0 0 0 0 f32x4.max v128.store
      local.get $j i32.const 16 i32.add local.set $j br $l
    end end)
  (func $step (param $x i32) (param $y i32) (param $bytes i32) (param $alpha f32) (local $j i32) (local $v v128)
    block $d loop $l
      local.get $j local.get $bytes i32.ge_u br_if $d
      local.get $x local.get $j i32.add v128.load local.set $v
      ;; x > 0 ? 1 : alpha, and NaN stays NaN
      local.get $y local.get $j i32.add
      local.get $v
      v128.const f32x4 1 1 1 1 local.get $alpha f32x4.splat local.get $v v128.const f32x4 0 0 0 0 f32x4.gt v128.bitselect
      local.get $v local.get $v f32x4.ne v128.bitselect
      v128.store
      local.get $j i32.const 16 i32.add local.set $j br $l
    end end)`;

/** The output shares the input's data. */
function shared(backend: object, x: tf.TensorInfo): tf.TensorInfo {
  (backend as WasmBackend & { incRef(dataId: object): void }).incRef(x.dataId);
  return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
}

export function identityKernel(original: tf.KernelFunc): tf.KernelFunc {
  return (args) => ((args.inputs.x as tf.TensorInfo).dtype === "string" ? original(args) : shared(args.backend, args.inputs.x as tf.TensorInfo));
}

export function castKernel(original: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const x = args.inputs.x as tf.TensorInfo;
    return x.dtype !== "string" && x.dtype === (args.attrs as unknown as tf.CastAttrs).dtype ? shared(args.backend, x) : original(args);
  };
}

/** Relu or Step (`which`) on float32 in SIMD, the last entries past whole vectors in JS. */
export function unaryKernel(which: "relu" | "step", original: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const { inputs, attrs, backend } = args;
    const x = inputs.x as tf.TensorInfo;
    if (x.dtype !== "float32") return original(args);
    const n = tf.util.sizeFromShape(x.shape), vec = n - (n % 4);
    const alpha = which === "step" ? (attrs as unknown as tf.StepAttrs).alpha : 0;
    const y = makeOutput(backend, x.shape);
    const k = simdModule(backend, "unary", WAT);
    if (which === "relu") k.relu(offsetOf(backend, x), offsetOf(backend, y), vec * 4);
    else k.step(offsetOf(backend, x), offsetOf(backend, y), vec * 4, alpha);
    const xs = f32(backend, x), ys = f32(backend, y);
    for (let i = vec; i < n; i++) ys[i] = Number.isNaN(xs[i]) ? NaN : which === "relu" ? Math.max(xs[i], 0) : xs[i] > 0 ? 1 : alpha;
    return y;
  };
}
