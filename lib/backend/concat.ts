import * as tf from "@tensorflow/tfjs";
import { makeOutput, offsetOf, simdModule } from "./wasm_simd";

// Concat and SplitV of float32 tensors along any axis, as block copies: viewed as [outer, inner] with the axis
// in `inner`, each part is a column block of the whole. tfjs-wasm copies such blocks with one typed-array call per
// row, which dominates for the UNet's channel concatenations (rows of 16 to 64 floats).

const WAT = `
  ;; copy_rows(src, srcStride, dst, dstStride, rows, bytes): the first bytes (a multiple of 4) of each row
  (func $copy_rows (param $src i32) (param $ss i32) (param $dst i32) (param $ds i32) (param $rows i32) (param $bytes i32)
      (local $r i32) (local $j i32)
    block $rd loop $rl
      local.get $r local.get $rows i32.ge_u br_if $rd
      i32.const 0 local.set $j
      block $vd loop $vl
        local.get $j i32.const 16 i32.add local.get $bytes i32.gt_u br_if $vd
        local.get $dst local.get $j i32.add local.get $src local.get $j i32.add v128.load v128.store
        local.get $j i32.const 16 i32.add local.set $j br $vl
      end end
      block $sd loop $sl
        local.get $j local.get $bytes i32.ge_u br_if $sd
        local.get $dst local.get $j i32.add local.get $src local.get $j i32.add f32.load f32.store
        local.get $j i32.const 4 i32.add local.set $j br $sl
      end end
      local.get $src local.get $ss i32.add local.set $src
      local.get $dst local.get $ds i32.add local.set $dst
      local.get $r i32.const 1 i32.add local.set $r br $rl
    end end)`;

function copyRows(backend: object, src: number, srcStride: number, dst: number, dstStride: number, rows: number, bytes: number): void {
  simdModule(backend, "concat", WAT).copy_rows(src, srcStride, dst, dstStride, rows, bytes);
}

export function concatKernel(original: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const { inputs, attrs, backend } = args;
    const parts = (inputs as unknown as tf.TensorInfo[]).filter((t) => tf.util.sizeFromShape(t.shape) > 0);
    if (parts.length < 2 || parts.some((t) => t.dtype !== "float32")) return original(args);
    const axis = tf.util.parseAxisParam((attrs as unknown as tf.ConcatAttrs).axis, parts[0].shape)[0];
    tf.backend_util.assertParamsConsistent(parts.map((t) => t.shape), axis);
    const outShape = tf.backend_util.computeOutShape(parts.map((t) => t.shape), axis);
    const out = makeOutput(backend, outShape);
    const outer = tf.util.sizeFromShape(outShape.slice(0, axis)), total = tf.util.sizeFromShape(outShape.slice(axis));
    const op = offsetOf(backend, out);
    let offset = 0;
    for (const t of parts) {
      const inner = tf.util.sizeFromShape(t.shape.slice(axis));
      copyRows(backend, offsetOf(backend, t), inner * 4, op + offset * 4, total * 4, outer, inner * 4);
      offset += inner;
    }
    return out;
  };
}

export function splitKernel(original: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const { inputs, attrs, backend } = args;
    const x = inputs.x as tf.TensorInfo;
    if (x.dtype !== "float32") return original(args);
    const { numOrSizeSplits, axis } = attrs as unknown as tf.SplitVAttrs;
    const a = tf.util.parseAxisParam(axis, x.shape)[0];
    const sizes = tf.backend_util.prepareSplitSize(x as unknown as tf.Tensor, numOrSizeSplits, a);
    const outer = tf.util.sizeFromShape(x.shape.slice(0, a)), rowOf = tf.util.sizeFromShape(x.shape.slice(a + 1));
    const total = x.shape[a] * rowOf, xp = offsetOf(backend, x);
    let offset = 0;
    return sizes.map((s) => {
      const out = makeOutput(backend, x.shape.map((d, i) => (i === a ? s : d)));
      copyRows(backend, xp + offset * 4, total * 4, offsetOf(backend, out), s * rowOf * 4, outer, s * rowOf * 4);
      offset += s * rowOf;
      return out;
    });
  };
}
