import * as tf from "@tensorflow/tfjs";
import { f32, makeOutput, offsetOf, simdModule, SUM_ROWS } from "./wasm_simd";

// Sum and Mean over a block of axes that does not end at the last one, e.g. a bias gradient (sum over N, H, W
// of NHWC) or a spatial mean. tfjs-wasm transposes the reduced axes to the end first (a full copy), then sums;
// here the input is read once, in place: viewed as [outer, reduced, inner], every outer slice adds its rows
// into the inner-sized output with SIMD column sums. Other reductions go to tfjs-wasm's own kernel.

type Reduce = "Sum" | "Mean";

function contiguous(axes: number[]): boolean {
  return axes.every((a, i) => i === 0 || a === axes[i - 1] + 1);
}

/** A replacement for tfjs-wasm's Sum or Mean kernel that handles the column-sum case and hands back the rest. */
export function columnReduce(kind: Reduce, original: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const { inputs, attrs, backend } = args;
    const x = inputs.x as tf.TensorInfo;
    const { axis, keepDims } = attrs as unknown as tf.SumAttrs;
    const rank = x.shape.length;
    const axes = [...new Set(tf.util.parseAxisParam(axis, x.shape))].sort((a, b) => a - b);
    const size = tf.util.sizeFromShape(x.shape);
    if (x.dtype !== "float32" || axes.length === 0 || size === 0 || !contiguous(axes) || axes[axes.length - 1] === rank - 1) return original(args);
    const outer = tf.util.sizeFromShape(x.shape.slice(0, axes[0]));
    const reduced = tf.util.sizeFromShape(x.shape.slice(axes[0], axes[axes.length - 1] + 1));
    const inner = tf.util.sizeFromShape(x.shape.slice(axes[axes.length - 1] + 1));
    if (inner % 4 !== 0) return original(args);
    const outShape = keepDims ? x.shape.map((d, i) => (axes.includes(i) ? 1 : d)) : x.shape.filter((_, i) => !axes.includes(i));
    const out = makeOutput(backend, outShape);
    f32(backend, out).fill(0);
    const k = simdModule(backend, "reduce", SUM_ROWS);
    const xp = offsetOf(backend, x), op = offsetOf(backend, out);
    // out[o, i] = sum_r x[o, r, i]
    for (let o = 0; o < outer; o++) k.sum_rows(xp + o * reduced * inner * 4, op + o * inner * 4, reduced, inner);
    if (kind === "Mean") {
      const v = f32(backend, out);
      for (let i = 0; i < v.length; i++) v[i] /= reduced;
    }
    return out;
  };
}
