import { before, test } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { Rng } from "../lib/core/random";
import {
  Augment,
  AugmentConfig,
  AugmentDraw,
  DEFAULT_AUGMENT,
  augmentPair,
  geometricMatrix,
  resolveOps,
  sameOps,
  sampleAugment,
} from "../lib/perceptual/augment";

// Behaviour of the E-LatentLPIPS augmentation on small images (cpu engine: it has every gradient kernel).

before(async () => {
  await tf.setBackend("cpu");
});

const BILINEAR: AugmentConfig = { ...DEFAULT_AUGMENT, resample: "bilinear" };

function image(rng: Rng, shape: [number, number, number, number], integer = false): tf.Tensor4D {
  const n = shape.reduce((a, b) => a * b, 1);
  return tf.tensor4d(Array.from({ length: n }, () => (integer ? rng.int(100) : rng.normal())), shape);
}

function maxDiff(a: tf.Tensor, b: tf.Tensor): number {
  return tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]);
}

function same(a: tf.Tensor, b: tf.Tensor): void {
  assert.deepEqual(a.shape, b.shape);
  assert.deepEqual(Array.from(a.dataSync()), Array.from(b.dataSync()));
}

test("with every op off the image comes back unchanged", () => {
  const x = image(new Rng(1), [2, 8, 8, 4]);
  same(new Augment({}, 2).apply(x), x);
  same(sampleAugment({ ops: [] }, 2, new Rng(2)).apply(x), x);
});

test("an identity draw through either resampler returns the input up to float error", () => {
  // sym6 is orthogonal, so the wavelet path's upsample-then-downsample is the identity.
  const x = image(new Rng(3), [2, 9, 7, 3]);
  const identity: AugmentDraw = { xflip: [0, 0], rotate90: [0, 0] };
  assert.ok(maxDiff(new Augment(identity, 2).apply(x), x) < 1e-5);
  assert.ok(maxDiff(new Augment(identity, 2, BILINEAR).apply(x), x) < 1e-6);
});

test("quarter turns and flips through the bilinear resampler are exact index permutations", () => {
  const x = image(new Rng(4), [2, 9, 9, 3], true);
  const t = tf.transpose(x, [0, 2, 1, 3]);
  const turn = (k: number) => new Augment({ rotate90: [k, k] }, 2, BILINEAR).apply(x);
  // G_inv = R(k pi/2) with y pointing down: one turn reads out[i][j] = in[j][W-1-i].
  same(turn(1), tf.reverse(t, 1));
  same(turn(2), tf.reverse(x, [1, 2]));
  same(turn(3), tf.reverse(t, 2));
  same(new Augment({ xflip: [1, 1] }, 2, BILINEAR).apply(x), tf.reverse(x, 2));
  // Mirror after a quarter turn is a transpose; it commutes with the separable wavelet filters, so it is exact there too.
  same(new Augment({ xflip: [1, 1], rotate90: [1, 1] }, 2, BILINEAR).apply(x), t);
  assert.ok(maxDiff(new Augment({ xflip: [1, 1], rotate90: [1, 1] }, 2).apply(x), t) < 1e-4);
});

test("four quarter turns are the identity", () => {
  const g = geometricMatrix({ rotate90: [1] }, 0, 9, 9);
  let m = [1, 0, 0, 0, 1, 0, 0, 0, 1];
  for (let i = 0; i < 4; i++) {
    const r = new Array<number>(9).fill(0);
    for (let a = 0; a < 3; a++) for (let b = 0; b < 3; b++) for (let k = 0; k < 3; k++) r[3 * a + b] += m[3 * a + k] * g[3 * k + b];
    m = r;
  }
  assert.deepEqual(m, [1, 0, 0, 0, 1, 0, 0, 0, 1]);
  const x = image(new Rng(5), [1, 8, 8, 4], true);
  const turn = new Augment({ rotate90: [1] }, 1, BILINEAR);
  same(turn.apply(turn.apply(turn.apply(turn.apply(x)))), x);
});

test("integer translation shifts by whole pixels with reflected borders, in both resamplers", () => {
  const x = image(new Rng(6), [1, 9, 9, 2]);
  // round(2/9 * 9) = 2 columns right: out[:, j] = in[:, j - 2], with j - 2 = -2, -1 reflected to 2, 1.
  const shifted = tf.gather(x, [2, 1, 0, 1, 2, 3, 4, 5, 6], 2);
  const draw: AugmentDraw = { xint: { x: [2 / 9], y: [0] } };
  same(new Augment(draw, 1, BILINEAR).apply(x), shifted);
  assert.ok(maxDiff(new Augment(draw, 1).apply(x), shifted) < 1e-5);
});

test("wavelet path matches an independent PyTorch statement of ADA's geometric pipeline", () => {
  // Expected values: torch 1.13, F.pad reflect + upfirdn2d (conv2d) + affine_grid/grid_sample + downsample, with
  // G_inv composed from the draw by ADA's formulas (our own restatement, run once; float64).
  const rng = new Rng(11);
  const x = tf.tensor4d(Array.from({ length: 2 * 7 * 6 }, () => Math.round(rng.normal() * 1000) / 1000), [2, 7, 6, 1]);
  const draw: AugmentDraw = {
    xflip: [1, 0],
    rotate90: [3, 1],
    xint: { x: [0.1, -0.05], y: [-0.13, 0.2] },
    scale: [0.8, 1.25],
    rotatePre: [0.7, -0.4],
    aniso: [1.3, 0.85],
    rotatePost: [-2.1, 1.2],
    xfrac: { x: [0.05, -0.03], y: [-0.02, 0.04] },
  };
  const expected = [
    -0.23595, -1.25003, -0.71158, 0.03238, -0.97749, -0.14571, -0.64736, 0.53969, -0.32542, -1.52657, -1.13511,
    -0.64836, -1.57549, -1.29766, 0.09566, -0.48469, -0.7251, -1.47027, -1.47942, 0.25045, -0.50755, -0.21989,
    0.51213, -0.53168, -0.33405, -0.45584, -0.8228, -0.44176, 0.25442, 0.72901, -0.6825, -0.16718, 0.41306, 1.61891,
    1.39903, 0.08091, 1.30385, 0.29182, 0.18547, -0.04114, -0.68896, 0.24991, -0.30182, -1.48202, -0.52123, 1.02706,
    0.66546, -0.91818, -1.18895, -0.2267, -0.21736, -0.5095, 0.32522, 0.64694, -0.47277, 0.24633, -0.32535, -1.06163,
    -1.03316, 0.48407, -0.12069, -0.15195, -1.26432, -0.09104, 0.07506, 0.30676, 0.36478, 1.23708, 1.03041, 0.4851,
    -0.96309, -1.01987, -0.12317, -0.61009, 1.16993, 2.27518, -0.48419, -0.667, 2.11672, 1.68046, 0.31841, 1.80826,
    0.81982, 0.20495,
  ];
  const y = new Augment(draw, 2).apply(x);
  assert.ok(maxDiff(y, tf.tensor4d(expected, [2, 7, 6, 1])) < 2e-5);
});

test("the gradient reaches the input, finite, non-zero and equal to the adjoint", () => {
  // T is affine in x, so <T(x) - T(0), r> = <x, d<T(x), r>/dx> checks the custom gradients exactly.
  const rng = new Rng(7);
  const x = image(rng, [2, 8, 8, 4]);
  const r = image(rng, [2, 8, 8, 4]);
  for (const resample of ["wavelet", "bilinear"] as const) {
    const aug = sampleAugment({ ops: "bgco", resample }, 2, new Rng(8));
    const g = tf.grad((v) => tf.sum(tf.mul(aug.apply(v as tf.Tensor4D), r)))(x);
    const gv = g.dataSync();
    assert.ok(gv.every(Number.isFinite));
    assert.ok(tf.max(tf.abs(g)).dataSync()[0] > 0);
    const lhs = tf.sum(tf.mul(tf.sub(aug.apply(x), aug.apply(tf.zerosLike(x))), r)).dataSync()[0];
    const rhs = tf.sum(tf.mul(x, g)).dataSync()[0];
    assert.ok(Math.abs(lhs - rhs) < 1e-4 * Math.max(1, Math.abs(lhs)), `${resample}: ${lhs} vs ${rhs}`);
  }
});

test("one draw acts identically on both inputs", () => {
  const rng = new Rng(9);
  const x0 = image(rng, [3, 8, 8, 4]);
  const c = image(rng, [3, 8, 8, 4]);
  const aug = sampleAugment({ ops: "bgco" }, 3, new Rng(10));
  same(aug.apply(x0), aug.apply(x0));
  // Geometry is linear: T(x0 + c) - T(x0) = T(c).
  const geo = sampleAugment({ ops: "bg" }, 3, new Rng(11));
  assert.ok(maxDiff(tf.sub(geo.apply(tf.add(x0, c)), geo.apply(x0)), geo.apply(c)) < 1e-5);
  const [a, b] = augmentPair(x0, x0, { ops: "bgco" }, new Rng(10));
  same(a, aug.apply(x0));
  same(b, aug.apply(x0));
});

test("the same seed gives the same draw and output; another seed does not", () => {
  const x = image(new Rng(12), [2, 8, 8, 4]);
  const a = sampleAugment({ ops: "bgco" }, 2, new Rng(13));
  const b = sampleAugment({ ops: "bgco" }, 2, new Rng(13));
  const c = sampleAugment({ ops: "bgco" }, 2, new Rng(14));
  assert.deepEqual(a.draw, b.draw);
  assert.notDeepEqual(a.draw, c.draw);
  same(a.apply(x), b.apply(x));
});

test("4 and 32 channels: geometry acts per channel, colour ops over the channels as specified", () => {
  const rng = new Rng(15);
  for (const channels of [4, 32]) {
    const x = image(rng, [2, 8, 8, channels]);
    const geo = sampleAugment({ ops: "bg" }, 2, new Rng(16));
    const y = geo.apply(x);
    assert.deepEqual(y.shape, [2, 8, 8, channels]);
    for (const ch of [0, channels - 1]) {
      const one = geo.apply(tf.slice(x, [0, 0, 0, ch], [2, 8, 8, 1]));
      assert.ok(maxDiff(one, tf.slice(y, [0, 0, 0, ch], [2, 8, 8, 1])) < 1e-5);
    }
    // saturation: (x - mean_C) s + mean_C keeps the channel mean and scales the deviation by s.
    const s = [0.3, 1.7];
    const sat = new Augment({ saturation: s }, 2).apply(x);
    const m = tf.mean(x, 3, true);
    assert.ok(maxDiff(tf.mean(sat, 3, true), m) < 1e-5);
    assert.ok(maxDiff(tf.sub(sat, m), tf.mul(tf.sub(x, m), tf.tensor4d(s, [2, 1, 1, 1]))) < 1e-5);
    // contrast: about the mean over C, H, W of each sample; brightness: added everywhere.
    const con = new Augment({ contrast: [0.5, 1.5], brightness: [0.25, -0.5] }, 2).apply(x);
    const mm = tf.mean(x, [1, 2, 3], true);
    const want = tf.add(tf.add(tf.mul(tf.sub(x, mm), tf.tensor4d([0.5, 1.5], [2, 1, 1, 1])), mm), tf.tensor4d([0.25, -0.5], [2, 1, 1, 1]));
    // Brightness comes first in the pipeline and shifts the mean with it, so the two orders agree.
    assert.ok(maxDiff(con, want) < 1e-5);
  }
});

test("cutout zeroes a half-size rectangle at the drawn centre", () => {
  const x = tf.ones([2, 8, 8, 4]) as tf.Tensor4D;
  const y = new Augment({ cutout: { x: [0.5, 0], y: [0.5, 0] } }, 2).apply(x);
  const v = y.arraySync() as number[][][][];
  // |(i + 0.5)/8 - 0.5| < 0.25 for i = 2..5; for centre 0, i = 0..1.
  for (let i = 0; i < 8; i++) {
    for (let j = 0; j < 8; j++) {
      assert.equal(v[0][i][j][0], i >= 2 && i <= 5 && j >= 2 && j <= 5 ? 0 : 1);
      assert.equal(v[1][i][j][3], i <= 1 && j <= 1 ? 0 : 1);
    }
  }
});

test("ops and presets resolve, and an unknown name is an error listing the valid ones", () => {
  assert.deepEqual(resolveOps("bg"), ["xflip", "rotate90", "xint", "scale", "rotate", "aniso", "xfrac"]);
  assert.deepEqual(resolveOps("co"), ["brightness", "contrast", "saturation", "cutout"]);
  assert.deepEqual(resolveOps(["cutout", "xflip", "g"]), ["xflip", "scale", "rotate", "aniso", "xfrac", "cutout"]);
  assert.throws(() => resolveOps(["xflip", "hue"]), /unknown augmentation "hue".*xflip, rotate90.*presets: b, g, c, o/);
  assert.ok(sameOps("bg", ["g", "b"]) && sameOps(["bg", "o"], ["cutout", "bg"]) && sameOps([], []));
  assert.ok(!sameOps("bg", ["bg", "o"]) && !sameOps([], "b"));
  assert.throws(() => new Augment({}, 2).apply(tf.zeros([3, 4, 4, 1]) as tf.Tensor4D), /batch 2/);
});

test("matrices follow ADA's composition: each op's inverse multiplied on the right, in order", () => {
  const close = (a: number[], b: number[]) => a.forEach((v, i) => assert.ok(Math.abs(v - b[i]) < 1e-12, `${a} vs ${b}`));
  // Zoom by 2: an output pixel at distance d from the centre reads the input at d / 2.
  close(geometricMatrix({ scale: [2] }, 0, 8, 8), [0.5, 0, 0, 0, 0.5, 0, 0, 0, 1]);
  // aniso a: x stretched by a, y by 1/a.
  close(geometricMatrix({ aniso: [2] }, 0, 8, 8), [0.5, 0, 0, 0, 2, 0, 0, 0, 1]);
  // Flip then translate: G = F T(-t), so the translation is mirrored: x_in = -(x_out - t).
  close(geometricMatrix({ xflip: [1], xfrac: { x: [0.25], y: [0] } }, 0, 8, 8), [-1, 0, 2, 0, 1, 0, 0, 0, 1]);
  // Pre-rotation, then aniso, then post-rotation: G = R(a) S(1/s, s) R(b).
  const [a, b, s] = [0.3, -1.1, 1.4];
  const g = geometricMatrix({ rotatePre: [a], aniso: [s], rotatePost: [b] }, 0, 8, 8);
  const ca = Math.cos(a), sa = Math.sin(a), cb = Math.cos(b), sb = Math.sin(b);
  const m00 = ca / s, m01 = -sa * s, m10 = sa / s, m11 = ca * s;
  close(g, [m00 * cb + m01 * sb, -m00 * sb + m01 * cb, 0, m10 * cb + m11 * sb, -m10 * sb + m11 * cb, 0, 0, 0, 1]);
});
