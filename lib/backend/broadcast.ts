import * as tf from "@tensorflow/tfjs";
import { at, f32, load, makeOutput, offsetOf, rowsFunc, simdModule } from "./wasm_simd";

// Add, Sub, Multiply and RealDiv where one operand is broadcast over a block of axes of the other: a bias
// [C] over [N, H, W, C], a per-image embedding [N, 1, 1, C], a per-image scalar [N, 1, 1, 1]. tfjs-wasm spends
// about 0.8 ms of CPU on any broadcasting binary op, whatever its size (the same op without broadcasting takes
// 0.07 ms on 131k entries), and a training step of a small network runs hundreds of them. Here the full operand
// is viewed as [outer, mid, inner] and the small one as [outer, 1, inner]; each outer slice is one SIMD pass.
// Other shapes go to tfjs-wasm's kernels.

const OPS = { Add: "f32x4.add", Sub: "f32x4.sub", Multiply: "f32x4.mul", RealDiv: "f32x4.div" } as const;
type Op = keyof typeof OPS;

const splat = (ptr: string) => `local.get ${ptr} v128.load32_splat`;

function wat(op: Op): string {
  const f = OPS[op];
  return [false, true]
    .flatMap((swap) => {
      const [first, second] = swap ? ["$b", "$x"] : ["$x", "$b"];
      const tag = swap ? "_swapped" : "";
      return [
        // y[r, c] = x[r, c] op b[c] (swapped: b[c] op x[r, c])
        rowsFunc(`rows${tag}`, ["$x i32", "$b i32", "$y i32"], ["$x", "$y"], `${at("$y")} ${load(first)} ${load(second)} ${f} v128.store`),
        // y[i] = x[i] op s for `bytes` of x (swapped: s op x[i]), s the float at $b
        `(func $scalar${tag} (param $x i32) (param $b i32) (param $y i32) (param $bytes i32) (local $j i32)
          block $d loop $l
            local.get $j local.get $bytes i32.ge_u br_if $d
            ${at("$y")} ${swap ? `${splat("$b")} ${load("$x")}` : `${load("$x")} ${splat("$b")}`} ${f} v128.store
            local.get $j i32.const 16 i32.add local.set $j br $l
          end end)`,
      ];
    })
    .join("\n");
}

const scalarOp: Record<Op, (a: number, b: number) => number> = {
  Add: (a, b) => a + b,
  Sub: (a, b) => a - b,
  Multiply: (a, b) => a * b,
  RealDiv: (a, b) => a / b,
};

interface Plan {
  outShape: number[];
  /** The small operand comes first in the op (Sub, RealDiv: out = small op full). */
  swap: boolean;
  full: tf.TensorInfo;
  small: tf.TensorInfo;
  outer: number;
  mid: number;
  inner: number;
}

/** How out = a op b splits into one full operand and one broadcast over a block of axes, if it does. */
function plan(a: tf.TensorInfo, b: tf.TensorInfo): Plan | undefined {
  const outShape = tf.backend_util.assertAndGetBroadcastShape(a.shape, b.shape);
  const size = tf.util.sizeFromShape(outShape);
  const aFull = tf.util.sizeFromShape(a.shape) === size, bFull = tf.util.sizeFromShape(b.shape) === size;
  if (aFull === bFull) return undefined;
  const [full, small] = aFull ? [a, b] : [b, a];
  const rank = outShape.length;
  const s = [...new Array(rank - small.shape.length).fill(1), ...small.shape];
  const spread = outShape.map((d, i) => s[i] === 1 && d !== 1);
  const lo = spread.indexOf(true), hi = spread.lastIndexOf(true);
  // every axis between the first and last broadcast one must be broadcast too (or have size 1)
  if (outShape.slice(lo, hi + 1).some((d, i) => d !== 1 && !spread[lo + i])) return undefined;
  const prod = (xs: number[]) => xs.reduce((p, d) => p * d, 1);
  return { outShape, swap: !aFull, full, small, outer: prod(outShape.slice(0, lo)), mid: prod(outShape.slice(lo, hi + 1)), inner: prod(outShape.slice(hi + 1)) };
}

/** A replacement for tfjs-wasm's `op` kernel that runs the broadcast cases above and hands back the rest. */
export function broadcastBinary(op: Op, original: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const { inputs, backend } = args;
    const { a, b } = inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
    if (a.dtype !== "float32" || b.dtype !== "float32") return original(args);
    const p = plan(a, b);
    if (!p || (p.inner % 4 !== 0 && p.inner !== 1) || p.outer * p.mid * p.inner === 0) return original(args);
    const k = simdModule(backend, `broadcast_${op}`, wat(op));
    const out = makeOutput(backend, p.outShape);
    const xp = offsetOf(backend, p.full), bp = offsetOf(backend, p.small), yp = offsetOf(backend, out);
    const tag = p.swap ? "_swapped" : "";
    const slice = p.mid * p.inner;
    // whole vectors of each slice; with one value per slice (inner 1) a slice may end in a partial vector
    const vec = p.inner === 1 ? slice - (slice % 4) : slice;
    for (let o = 0; o < p.outer; o++) {
      if (p.inner === 1) k[`scalar${tag}`](xp + o * slice * 4, bp + o * 4, yp + o * slice * 4, vec * 4);
      else k[`rows${tag}`](xp + o * slice * 4, bp + o * p.inner * 4, yp + o * slice * 4, p.mid, p.inner);
    }
    if (vec < slice) {
      const x = f32(backend, p.full), s = f32(backend, p.small), y = f32(backend, out), fn = scalarOp[op];
      for (let o = 0; o < p.outer; o++) {
        for (let i = o * slice + vec; i < (o + 1) * slice; i++) y[i] = p.swap ? fn(s[o], x[i]) : fn(x[i], s[o]);
      }
    }
    return out;
  };
}

export const BROADCAST_OPS = Object.keys(OPS) as Op[];
