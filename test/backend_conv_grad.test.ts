import { before, test } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { initEngine } from "../lib/backend/engine";
import { Rng } from "../lib/core/random";
import { assertClose, compareWithCpu, on, randn as randnHost } from "./support";

// The wasm convolution kernels (lib/backend/wasm_kernels.ts, lib/backend/gemm.ts) against tfjs's reference cpu
// backend: the same inputs go through both and every output and gradient must agree to 1e-4 relative to its
// largest entry.

type Pad = "same" | "valid" | number | [[0, 0], [number, number], [number, number], [0, 0]];

const rng = new Rng(20240901);
const randn = (shape: number[]) => randnHost(rng, shape);
const compare = compareWithCpu;

/** Gradients of <f(x, w), r> with respect to x and w, so dy = r is not all ones. */
function gradsOf(f: (x: tf.Tensor4D, w: tf.Tensor4D) => tf.Tensor4D) {
  return (x: tf.Tensor, w: tf.Tensor, r: tf.Tensor) =>
    tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(f(a as tf.Tensor4D, b as tf.Tensor4D), r)))([x, w]);
}

before(async () => {
  await initEngine({ backend: "wasm", quiet: true });
});

const convCases: Array<{ h: number; w: number; k: number; stride: number; pad: Pad }> = [
  { h: 9, w: 7, k: 3, stride: 1, pad: "same" },
  { h: 9, w: 7, k: 3, stride: 2, pad: "same" },
  { h: 9, w: 7, k: 3, stride: 1, pad: "valid" },
  { h: 9, w: 7, k: 3, stride: 2, pad: "valid" },
  { h: 8, w: 8, k: 3, stride: 2, pad: 1 },
  { h: 7, w: 6, k: 5, stride: 1, pad: 2 },
  { h: 8, w: 9, k: 4, stride: 2, pad: "same" },
  { h: 8, w: 8, k: 3, stride: 2, pad: [[0, 0], [1, 2], [0, 1], [0, 0]] },
  { h: 6, w: 6, k: 1, stride: 1, pad: "valid" },
  { h: 6, w: 6, k: 1, stride: 2, pad: "valid" },
];

test("conv2d and its gradients on wasm match cpu (y, dx and dW)", async () => {
  // 3 input channels take the public-op dW of wasm_kernels.ts, 8 the GEMM kernel of gemm.ts
  for (const cin of [3, 8]) {
    for (const c of convCases) {
      const x = randn([2, c.h, c.w, cin]), w = randn([c.k, c.k, cin, 5]);
      const out = tf.tidy(() => tf.conv2d(tf.zeros([2, c.h, c.w, cin]) as tf.Tensor4D, tf.zeros([c.k, c.k, cin, 5]) as tf.Tensor4D, c.stride, c.pad));
      const r = randn(out.shape);
      out.dispose();
      const f = (a: tf.Tensor, b: tf.Tensor, rr: tf.Tensor) => [tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, c.stride, c.pad), ...gradsOf((p, q) => tf.conv2d(p, q, c.stride, c.pad))(a, b, rr)];
      await compare(`conv2d cin ${cin} ${JSON.stringify(c)}`, [x, w, r], f);
    }
  }
});

test("dilated conv2d on wasm matches cpu", async () => {
  const x = randn([2, 9, 8, 4]), w = randn([3, 3, 4, 6]);
  await compare("conv2d dilation 2", [x, w], (a, b) => [tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, 1, "same", "NHWC", 2)]);
});

test("conv2dTranspose (the Conv2DBackpropInput kernel) on wasm matches cpu", async () => {
  const dy = randn([2, 5, 4, 6]), w = randn([3, 3, 3, 6]);
  await compare("conv2dTranspose stride 2", [dy, w], (a, b) => [tf.conv2dTranspose(a as tf.Tensor4D, b as tf.Tensor4D, [2, 9, 7, 3], 2, "same")]);
});

const depthwiseCases: Array<{ mult: number; stride: number; pad: Pad; dilation: number }> = [
  { mult: 1, stride: 1, pad: "same", dilation: 1 },
  { mult: 2, stride: 2, pad: "same", dilation: 1 },
  { mult: 2, stride: 1, pad: "valid", dilation: 1 },
  { mult: 1, stride: 2, pad: 1, dilation: 1 },
];

test("depthwise conv gradients on wasm match cpu (dx and dW)", async () => {
  for (const c of depthwiseCases) {
    const x = randn([2, 9, 7, 3]), w = randn([3, 3, 3, c.mult]);
    const out = tf.tidy(() => tf.depthwiseConv2d(tf.zeros([2, 9, 7, 3]) as tf.Tensor4D, tf.zeros([3, 3, 3, c.mult]) as tf.Tensor4D, c.stride, c.pad, "NHWC", c.dilation));
    const r = randn(out.shape);
    out.dispose();
    const f = gradsOf((a, b) => tf.depthwiseConv2d(a, b, c.stride, c.pad, "NHWC", c.dilation));
    await compare(`depthwiseConv2d ${JSON.stringify(c)}`, [x, w, r], f);
  }
});

/** A 3x3 filter with dilation 2 as the 5x5 filter it acts as (zeros between the taps). */
function dilate2(w: { shape: number[]; data: Float32Array }): { shape: number[]; data: Float32Array } {
  const [k, , c, m] = w.shape, kd = 2 * k - 1, out = new Float32Array(kd * kd * c * m);
  for (let i = 0; i < k; i++) for (let j = 0; j < k; j++) out.set(w.data.subarray((i * k + j) * c * m, (i * k + j + 1) * c * m), (2 * i * kd + 2 * j) * c * m);
  return { shape: [kd, kd, c, m], data: out };
}

test("depthwise backprop kernels with dilation 2 on wasm match the equivalent undilated filter", async () => {
  // tfjs refuses gradients of dilated depthwise convs and its cpu kernels ignore dilation, so the wasm kernels
  // are called directly and checked against the gradients of a 5x5 filter with zeros between the taps.
  const x = randn([2, 9, 7, 3]), w = randn([3, 3, 3, 2]), dy = randn([2, 9, 7, 6]);
  const [wantDx, wantDwFull] = await on("cpu", [x, dilate2(w), dy], gradsOf((a, b) => tf.depthwiseConv2d(a, b, 1, "same")));
  const attrs = { strides: 1, pad: "same", dilations: 2 };
  const [gotDx, gotDw] = await on("wasm", [x, w, dy], (a, b, d) => [
    tf.engine().runKernel("DepthwiseConv2dNativeBackpropInput", { dy: d, filter: b }, { ...attrs, inputShape: a.shape }) as tf.Tensor,
    tf.engine().runKernel("DepthwiseConv2dNativeBackpropFilter", { x: a, dy: d }, { ...attrs, filterShape: b.shape }) as tf.Tensor,
  ]);
  assertClose(gotDx, wantDx, "dilated depthwise dx");
  const wantDw = new Float32Array(gotDw.length);
  for (let i = 0; i < 3; i++) for (let j = 0; j < 3; j++) wantDw.set(wantDwFull.subarray((2 * i * 5 + 2 * j) * 6, (2 * i * 5 + 2 * j + 1) * 6), (i * 3 + j) * 6);
  assertClose(gotDw, wantDw, "dilated depthwise dW");
});

test("gather gradient (unsortedSegmentSum) on wasm matches cpu", async () => {
  const table = randn([10, 6]), r = randn([7, 6]);
  const ids = [3, 1, 3, 0, 9, 3, 1];
  await compare("gather grad", [table, r], (t, rr) => [tf.grad((a: tf.Tensor) => tf.sum(tf.mul(tf.gather(a, tf.tensor1d(ids, "int32")), rr)))(t)]);
  // Ids outside [0, numSegments) are dropped, as on cpu.
  const seg = [2, -1, 0, 4, 2, 5, 1];
  await compare("unsortedSegmentSum", [r], (rr) => [tf.unsortedSegmentSum(rr, tf.tensor1d(seg, "int32"), 5)]);
});

test("repeated gradients on wasm do not leak tensors", async () => {
  await tf.setBackend("wasm");
  const x = tf.randomNormal([2, 8, 8, 3]) as tf.Tensor4D;
  const w = tf.variable(tf.randomNormal([3, 3, 3, 4]));
  const dw = tf.variable(tf.randomNormal([3, 3, 4, 2]));
  const table = tf.variable(tf.randomNormal([10, 4]));
  const ids = tf.tensor1d([1, 2, 1, 7], "int32");
  const loss = () =>
    tf.add(
      tf.sum(tf.depthwiseConv2d(tf.conv2d(x, w as tf.Tensor4D, 2, "same"), dw as tf.Tensor4D, 1, "same")),
      tf.sum(tf.gather(table, ids)),
    ) as tf.Scalar;
  const counts: number[] = [];
  for (let i = 0; i < 5; i++) {
    const { value, grads } = tf.variableGrads(loss);
    tf.dispose([value, ...Object.values(grads)]);
    counts.push(tf.memory().numTensors);
  }
  assert.deepEqual(counts, counts.map(() => counts[0]), `tensor counts ${counts}`);
  tf.dispose([x, w, dw, table, ids]);
});
