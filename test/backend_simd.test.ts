import { before, test } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { adamUpdate, sumOfSquares } from "../lib/backend/adam_update";
import { dropout } from "../lib/backend/dropout";
import { initEngine } from "../lib/backend/engine";
import { groupNorm } from "../lib/backend/group_norm";
import { downsample2x, upsample2x } from "../lib/backend/resample";
import { assembleWat } from "../lib/backend/wat";
import { Rng } from "../lib/core/random";
import { assertClose, compareWithCpu, HostArray, randn as randnHost } from "./support";

// Our WebAssembly SIMD kernels on the wasm engine (lib/backend/{wat,wasm_simd,group_norm,reduce,broadcast,dropout,
// resample,unary,concat,adam_update,gemm}.ts)
// against tfjs's reference cpu backend running the public-op composites: outputs, gradients, and gradients of
// gradients (R1 needs them), on small and odd shapes.

const rng = new Rng(20260301);
const randn = (shape: number[], std = 1, mean = 0): HostArray => randnHost(rng, shape, std, mean);

before(async () => {
  await initEngine({ backend: "wasm", quiet: true });
});

test("the WAT assembler: labels, locals, SIMD, atomics, on shared and plain memory", () => {
  const wat = `
    (func $scale_sum (param $p i32) (param $n i32) (param $s f32) (result f32) (local $i i32) (local $acc v128)
      block $done loop $next
        local.get $i local.get $n i32.ge_u br_if $done
        local.get $p local.get $i i32.add
        local.get $p local.get $i i32.add v128.load local.get $s f32x4.splat f32x4.mul
        v128.store
        local.get $acc local.get $p local.get $i i32.add v128.load f32x4.add local.set $acc
        local.get $i i32.const 16 i32.add local.set $i
        br $next
      end end
      local.get $acc f32x4.extract_lane 0 local.get $acc f32x4.extract_lane 3 f32.add)
    (func $bump (param $p i32) (result i32)
      local.get $p i32.const 5 i32.atomic.rmw.add offset=4)`;
  for (const shared of [false, true]) {
    const memory = new WebAssembly.Memory(shared ? { initial: 1, maximum: 65536, shared: true } : { initial: 1 });
    const k = new WebAssembly.Instance(new WebAssembly.Module(assembleWat(wat, shared)), { env: { memory } }).exports as Record<string, (...a: number[]) => number>;
    const f = new Float32Array(memory.buffer, 64, 8);
    f.set([1, 2, 3, 4, 5, 6, 7, 8]);
    // lanes 0 and 3 summed over both vectors: (1 + 5 + 4 + 8) * 2
    assert.equal(k.scale_sum(64, 32, 2), 36);
    assert.deepEqual(Array.from(f), [2, 4, 6, 8, 10, 12, 14, 16]);
    assert.equal(k.bump(128), 0);
    assert.equal(k.bump(128), 5);
  }
  assert.throws(() => assembleWat("(func $f f32x4.nonsense)", false), /unknown instruction f32x4.nonsense/);
  assert.throws(() => assembleWat("(func $f br $nowhere)", false), /no enclosing label \$nowhere/);
});

test("fused GroupNorm (+ SiLU) on wasm matches the composite on cpu: output, gradients, second order", async () => {
  const cases = [
    { shape: [2, 5, 3, 8], groups: 2, silu: true },
    { shape: [3, 4, 4, 16], groups: 4, silu: false },
    { shape: [2, 7, 5, 12], groups: 3, silu: true },
    { shape: [1, 2, 2, 4], groups: 1, silu: true },
    // 6 channels are not a multiple of 4: the composite runs on wasm too
    { shape: [2, 3, 3, 6], groups: 3, silu: true },
  ];
  for (const c of cases) {
    const ch = c.shape[3];
    // a mean far from zero checks the two-pass variance
    const x = randn(c.shape, 2, 3), gamma = randn([ch], 0.3, 1), beta = randn([ch], 0.5), r = randn(c.shape);
    const o = { groups: c.groups, eps: 1e-5, silu: c.silu };
    const gn = (a: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => groupNorm(a as tf.Tensor4D, g as tf.Tensor1D, b as tf.Tensor1D, o);
    await compareWithCpu(`groupNorm ${JSON.stringify(c)}`, [x, gamma, beta, r], (a, g, b, rr) => [
      gn(a, g, b),
      ...tf.grads((p: tf.Tensor, q: tf.Tensor, s: tf.Tensor) => tf.sum(tf.mul(gn(p, q, s), rr)))([a, g, b]),
      // d/d(x, gamma) of |dL/dx|^2, as R1 takes it
      ...tf.grads((p: tf.Tensor, q: tf.Tensor) => tf.sum(tf.square(tf.grad((s: tf.Tensor) => tf.sum(tf.mul(gn(s, q, b), rr)))(p))))([a, g]),
    ]);
  }
});

test("sums and means over leading or middle axes on wasm match cpu", async () => {
  const cases: Array<[number[], number[]]> = [[[4, 5, 6, 8], [0, 1, 2]], [[4, 5, 6, 8], [1, 2]], [[4, 5, 6, 8], [0]], [[3, 5, 6], [0, 1]], [[3, 5, 7], [0, 1]], [[4, 5, 6, 8], [1, 2, 3]], [[4, 5, 6, 8], [0, 2]]];
  for (const [shape, axes] of cases) {
    for (const keepDims of [false, true]) {
      await compareWithCpu(`sum/mean ${shape} over ${axes}`, [randn(shape)], (x) => [tf.sum(x, axes, keepDims), tf.mean(x, axes, keepDims)], 1e-5);
    }
  }
});

test("broadcasting add, sub, mul, div on wasm match cpu, either operand first, with gradients", async () => {
  const cases: Array<[number[], number[]]> = [
    [[2, 3, 5, 8], [8]],
    [[2, 3, 5, 8], [2, 1, 1, 8]],
    // one value per image, 3 x 5 x 3 = 45 entries: the last vector of each image is partial
    [[2, 3, 5, 3], [2, 1, 1, 1]],
    [[2, 3, 5, 8], [3, 1, 8]],
    // not a block of axes, or a row length that is not a whole number of vectors: tfjs-wasm's own kernels
    [[2, 3, 5, 8], [2, 1, 5, 1]],
    [[2, 3, 5, 6], [6]],
    [[2, 3, 5, 8], []],
  ];
  for (const [full, small] of cases) {
    const x = randn(full), y = randn(small, 0.5, 2);
    const ops = (a: tf.Tensor, b: tf.Tensor) => [tf.add(a, b), tf.sub(a, b), tf.sub(b, a), tf.mul(a, b), tf.div(a, b), tf.div(b, a)];
    await compareWithCpu(`broadcast ${full} with ${small}`, [x, y], (a, b) => [
      ...ops(a, b),
      ...tf.grads((p: tf.Tensor, q: tf.Tensor) => tf.addN(ops(p, q).map((t) => tf.sum(tf.square(t)))))([a, b]),
    ], 1e-5);
  }
});

test("dropout on wasm: a mask per (seed, index), scaled by 1/keep; its gradient is the same mask, to any order", async () => {
  await tf.setBackend("wasm");
  const rate = 0.3;
  // 37 entries end in a partial vector: the mask must not depend on how an entry is reached
  const a = dropout(tf.ones([40]), rate, 12345).dataSync(), b = dropout(tf.ones([37]), rate, 12345).dataSync();
  assert.deepEqual(Array.from(b), Array.from(a.slice(0, 37)));
  const big = dropout(tf.ones([4, 50, 50]), rate, 7).dataSync();
  const kept = big.filter((v) => v !== 0);
  assert.ok(kept.every((v) => Math.abs(v - 1 / (1 - rate)) < 1e-6), "kept entries are scaled by 1/keep");
  assert.ok(Math.abs(kept.length / big.length - (1 - rate)) < 0.02, `kept fraction ${kept.length / big.length}`);
  assert.notDeepEqual(Array.from(dropout(tf.ones([40]), rate, 54321).dataSync()), Array.from(a));
  const x = tf.randomNormal([3, 5, 7]), r = tf.randomNormal([3, 5, 7]);
  const mask = dropout(tf.onesLike(x), rate, 99);
  const g = tf.grad((v: tf.Tensor) => tf.sum(tf.mul(dropout(v, rate, 99), r)))(x);
  const gg = tf.grad((v: tf.Tensor) => tf.sum(tf.square(tf.grad((u: tf.Tensor) => tf.sum(tf.square(dropout(u, rate, 99))))(v))))(x);
  // d/dx sum(r * drop(x)) = r * m/keep; d/dx |d/dx sum(drop(x)^2)|^2 = d/dx |2 x (m/keep)^2|^2 = 8 x (m/keep)^4
  assertClose(g.dataSync() as Float32Array, tf.mul(r, mask).dataSync() as Float32Array, "first order", 1e-6);
  assertClose(gg.dataSync() as Float32Array, tf.mul(tf.mul(x, 8), tf.pow(mask, 4)).dataSync() as Float32Array, "second order", 1e-5);
  tf.dispose([x, r, mask, g, gg]);
});

test("2x up- and downsampling on wasm match the composites on cpu, to second order", async () => {
  for (const shape of [[2, 3, 5, 8], [1, 4, 2, 4], [2, 2, 2, 6]]) {
    const [n, h, w, c] = shape;
    const x = randn(shape), down = randn([n, 2 * h, 2 * w, c]), r = randn([n, 2 * h, 2 * w, c]), rd = randn(shape);
    await compareWithCpu(`resample ${shape}`, [x, down, r, rd], (a, b, rr, rrd) => [
      upsample2x(a as tf.Tensor4D),
      downsample2x(b as tf.Tensor4D),
      tf.grad((p: tf.Tensor) => tf.sum(tf.mul(upsample2x(p as tf.Tensor4D), rr)))(a),
      tf.grad((p: tf.Tensor) => tf.sum(tf.mul(downsample2x(p as tf.Tensor4D), rrd)))(b),
      tf.grad((p: tf.Tensor) => tf.sum(tf.square(tf.grad((q: tf.Tensor) => tf.sum(tf.square(downsample2x(upsample2x(q as tf.Tensor4D)))))(p))))(a),
    ], 1e-5);
  }
});

test("relu, step, cast and identity on wasm match cpu (NaN included)", async () => {
  const x = randn([3, 7]);
  x.data[4] = NaN;
  x.data[9] = 0;
  await compareWithCpu("unary", [x], (a) => [tf.relu(a), tf.step(a), tf.step(a, 0.3), tf.cast(a, "float32"), tf.clone(a), tf.grad((p: tf.Tensor) => tf.sum(tf.relu(p)))(a)], 1e-7);
});

test("concat and split along each axis on wasm match cpu", async () => {
  const a = randn([2, 3, 4, 5]), b = randn([2, 3, 4, 3]), c = randn([2, 3, 4, 5]);
  for (const axis of [0, 1, 2, 3]) {
    const other = axis === 3 ? b : c;
    const r = randn(a.shape.map((d, i) => (i === axis ? d + other.shape[i] : d)));
    await compareWithCpu(`concat/split axis ${axis}`, [a, other, r], (p, q, rr) => [
      tf.concat([p, q], axis),
      ...tf.split(tf.concat([p, q, p], axis), [a.shape[axis], other.shape[axis], a.shape[axis]], axis),
      ...tf.split(p, axis === 3 ? 5 : a.shape[axis], axis),
      // the gradient of a concat is a split of dy, and of a split a concat
      ...tf.grads((u: tf.Tensor, v: tf.Tensor) => tf.sum(tf.mul(tf.concat([u, v], axis), rr)))([p, q]),
      tf.grad((u: tf.Tensor) => tf.addN(tf.split(u, [2, 3], 3).map((t, i) => tf.sum(tf.mul(t, i + 1)))))(p),
    ], 1e-6);
  }
});

test("the fused Adam update and gradient norm on wasm match the public-op formulas on cpu", async () => {
  const config = { beta1: 0.9, beta2: 0.999, eps: 1e-8, stepSize: 1e-3 / (1 - 0.9 ** 3), biasCorrection2: Math.sqrt(1 - 0.999 ** 3), gradScale: 0.7 };
  // sizes with and without a tail past the last whole vector
  for (const n of [1, 7, 16, 37]) {
    const p = randn([n]), m = randn([n], 0.1), v = { shape: [n], data: randn([n]).data.map((a) => a * a) }, g = randn([n]);
    await compareWithCpu(`adam n=${n}`, [p, m, v, g], (a, b, c, d) => adamUpdate(a, b, c, d, config), 1e-6);
  }
  const gs = [randn([5]), randn([3, 4]), randn([2, 2, 3])];
  const norms: number[] = [];
  for (const backend of ["cpu", "wasm"]) {
    await tf.setBackend(backend);
    const ts = gs.map((a) => tf.tensor(a.data, a.shape));
    norms.push(sumOfSquares(ts));
    tf.dispose(ts);
  }
  assert.ok(Math.abs(norms[0] - norms[1]) < 1e-5 * norms[0], `sum of squares ${norms}`);
});

test("matMul on wasm (our GEMM) matches cpu: transposes, batches, a shared batch of 1, odd sizes, long K", async () => {
  const cases: Array<[number[], number[], boolean, boolean]> = [
    [[5, 3], [3, 7], false, false],
    [[13, 300], [300, 17], false, false],
    [[300, 13], [300, 17], true, false],
    [[13, 300], [17, 300], false, true],
    [[300, 13], [17, 300], true, true],
    [[3, 9, 6], [3, 6, 10], false, false],
    [[3, 9, 6], [1, 10, 6], false, true],
    [[2, 2, 5, 4], [2, 2, 4, 9], false, false],
  ];
  for (const [sa, sb, ta, tb] of cases) {
    // tfjs's gradient of matMul does not reduce a broadcast batch: forward only there
    const broadcast = sa.slice(0, -2).join() !== sb.slice(0, -2).join();
    await compareWithCpu(`matMul ${sa} x ${sb} ${ta} ${tb}`, [randn(sa), randn(sb)], (a, b) => [
      tf.matMul(a, b, ta, tb),
      ...(broadcast ? [] : tf.grads((p: tf.Tensor, q: tf.Tensor) => tf.sum(tf.square(tf.matMul(p, q, ta, tb))))([a, b])),
    ], 1e-5);
  }
});

test("convolutions large enough to run on both threads match cpu", async () => {
  // 2 x 16 x 16 x 16 -> 16, 3x3: about 1.2M multiply-adds each, split between the main thread and a worker
  const x = randn([2, 16, 16, 16]), w = randn([3, 3, 16, 16]), r = randn([2, 16, 16, 16]);
  await compareWithCpu("conv2d 16 channels", [x, w, r], (a, b, rr) => [
    tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, 1, "same"),
    ...tf.grads((p: tf.Tensor, q: tf.Tensor) => tf.sum(tf.mul(tf.conv2d(p as tf.Tensor4D, q as tf.Tensor4D, 1, "same"), rr)))([a, b]),
  ]);
});
