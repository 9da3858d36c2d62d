import { before, test } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { Rng } from "../lib/core/random";
import { DEFAULT_ELPIPS, ElpipsDraw, ElpipsTransform, dropoutMask, sampleElpips } from "../lib/perceptual/elpips_augment";

// The E-LPIPS input transform: its draws (stratified as in mkettune/elpips) and what a hand-made draw does.

before(async () => {
  await tf.setBackend("cpu");
});

function image(rng: Rng, shape: [number, number, number, number]): tf.Tensor4D {
  return tf.tensor4d(Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => rng.int(100)), shape);
}

function same(a: tf.Tensor, b: tf.Tensor): void {
  assert.deepEqual(a.shape, b.shape);
  assert.deepEqual(Array.from(a.dataSync()), Array.from(b.dataSync()));
}

/** A draw that does nothing but the always-on offset padding. */
function plain(batch: number, channels: number): ElpipsDraw {
  return {
    scale: 1,
    scalePhase: [0, 0],
    offsetY: new Array<number>(batch).fill(0),
    offsetX: new Array<number>(batch).fill(0),
    flip: new Array<number>(batch).fill(3),
    swap: false,
    permutation: Array.from({ length: batch }, () => Array.from({ length: channels }, (_, c) => c)),
    colour: Array.from({ length: batch }, () => new Array<number>(channels).fill(1)),
  };
}

/** Chi-square against the p = 1e-5 quantile for the table's dof. */
function chiSquare(name: string, cats: number[], probs: number[]): void {
  const counts = new Array<number>(probs.length).fill(0);
  for (const c of cats) counts[c]++;
  const stat = counts.reduce((a, c, i) => a + (c - cats.length * probs[i]) ** 2 / (cats.length * probs[i]), 0);
  const limit = [0, 19.5, 23.0, 25.9, 28.5, 30.9, 33.1, 35.3][probs.length - 1];
  assert.ok(stat < limit, `${name}: chi-square ${stat}, counts ${counts}`);
}

test("scale level has P(s) ~ 1/s^2 over 1..8; offsets are uniform over 0..7; transpose is a fair coin", () => {
  const rng = new Rng(1);
  const draws = Array.from({ length: 20000 }, () => sampleElpips({}, 1, 3, rng).draw);
  const z = Array.from({ length: 8 }, (_, i) => 1 / (i + 1) ** 2).reduce((a, b) => a + b, 0);
  chiSquare("scale", draws.map((d) => d.scale - 1), Array.from({ length: 8 }, (_, i) => 1 / (i + 1) ** 2 / z));
  chiSquare("offset y", draws.map((d) => d.offsetY[0]), new Array<number>(8).fill(1 / 8));
  chiSquare("offset x", draws.map((d) => d.offsetX[0]), new Array<number>(8).fill(1 / 8));
  chiSquare("swap", draws.map((d) => (d.swap ? 1 : 0)), [0.5, 0.5]);
  // The box phase is uniform below the scale.
  assert.ok(draws.every((d) => d.scalePhase.every((p) => Number.isInteger(p) && p >= 0 && p < d.scale)));
  chiSquare("phase at s=2", draws.filter((d) => d.scale === 2).map((d) => d.scalePhase[1]), [0.5, 0.5]);
});

test("flips, permutations and colour scales are stratified over the batch", () => {
  const rng = new Rng(2);
  for (let rep = 0; rep < 20; rep++) {
    const d = sampleElpips({}, 12, 3, rng).draw;
    // Each flip code 3 times in 12, each of the 3! permutations twice.
    assert.deepEqual([0, 1, 2, 3].map((f) => d.flip.filter((v) => v === f).length), [3, 3, 3, 3]);
    const perms = new Map<string, number>();
    d.permutation.forEach((p) => perms.set(p.join(), (perms.get(p.join()) ?? 0) + 1));
    assert.equal(perms.size, 6);
    assert.ok([...perms.values()].every((n) => n === 2));
    // factor = 0.2 + 0.8 u with one u in each twelfth, per channel.
    for (let c = 0; c < 3; c++) {
      const bins = d.colour.map((f) => Math.floor(((f[c] - 0.2) / 0.8) * 12)).sort((a, b) => a - b);
      assert.deepEqual(bins, Array.from({ length: 12 }, (_, i) => i));
    }
  }
  // Latent channel counts: 4! = 24 permutations, stratified the same way; 16 channels draw them independently.
  const d4 = sampleElpips({}, 24, 4, new Rng(3)).draw;
  assert.equal(new Set(d4.permutation.map((p) => p.join())).size, 24);
  const d16 = sampleElpips({}, 2, 16, new Rng(4)).draw;
  assert.ok(d16.permutation.every((p) => [...p].sort((a, b) => a - b).join() === Array.from({ length: 16 }, (_, i) => i).join()));
});

test("offset padding reflects: the image lands offsetMax - offset pixels in", () => {
  const x = image(new Rng(5), [2, 10, 9, 3]);
  const draw = plain(2, 3);
  draw.offsetY = [0, 7];
  draw.offsetX = [3, 7];
  const y = new ElpipsTransform(draw).apply(x);
  assert.deepEqual(y.shape, [2, 17, 16, 3]);
  const v = y.arraySync() as number[][][][];
  const u = x.arraySync() as number[][][][];
  // Sample 0: 7 rows and 4 columns before; row 7 - k mirrors row k.
  assert.deepEqual(v[0][7][4], u[0][0][0]);
  assert.deepEqual(v[0][9][8], u[0][2][4]);
  assert.deepEqual(v[0][5][4], u[0][2][0]);
  assert.deepEqual(v[0][7][1], u[0][0][3]);
  // Sample 1: nothing before, 7 after, mirrored about the last row/column.
  assert.deepEqual(v[1][0][0], u[1][0][0]);
  assert.deepEqual(v[1][11][10], u[1][7][6]);
});

test("box downscaling pads to a multiple of s at the drawn phase and averages s x s boxes", () => {
  const x = tf.tensor4d([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15], [1, 4, 4, 1]);
  const draw = plain(1, 1);
  draw.scale = 2;
  draw.scalePhase = [1, 0];
  const t = new ElpipsTransform(draw, { ...DEFAULT_ELPIPS, offsetMax: 0 });
  // Rows padded 1 before, 1 after (reflect): [4..7], [0..3], [4..7], [8..11], [12..15], [8..11];
  // columns 0 before, 2 after: c0 c1 c2 c3 c2 c1. Box means of 2x2:
  const rows = [
    [4, 5, 6, 7],
    [0, 1, 2, 3],
    [4, 5, 6, 7],
    [8, 9, 10, 11],
    [12, 13, 14, 15],
    [8, 9, 10, 11],
  ].map((r) => [...r, r[2], r[1]]);
  const want: number[] = [];
  for (let i = 0; i < 3; i++) {
    for (let j = 0; j < 3; j++) {
      want.push((rows[2 * i][2 * j] + rows[2 * i][2 * j + 1] + rows[2 * i + 1][2 * j] + rows[2 * i + 1][2 * j + 1]) / 4);
    }
  }
  same(t.apply(x), tf.tensor4d(want, [1, 3, 3, 1]));
});

test("flips, transpose, channel permutation and colour scale act as drawn", () => {
  const x = image(new Rng(6), [4, 9, 9, 3]);
  const draw = plain(4, 3);
  draw.flip = [0, 1, 2, 3];
  const noPad = { ...DEFAULT_ELPIPS, offsetMax: 0 };
  const flipped = new ElpipsTransform(draw, noPad).apply(x);
  const parts = tf.split(x, 4, 0);
  same(flipped, tf.concat([tf.reverse(parts[0], 2), tf.reverse(parts[1], 1), tf.reverse(parts[2], [1, 2]), parts[3]], 0));
  const d2 = plain(4, 3);
  d2.swap = true;
  d2.permutation = [[2, 0, 1], [0, 1, 2], [1, 2, 0], [2, 1, 0]];
  d2.colour = [[0.2, 0.5, 1], [1, 1, 1], [0.3, 0.3, 0.3], [0.9, 0.4, 0.25]];
  const y = new ElpipsTransform(d2, noPad).apply(x);
  const t = tf.transpose(x, [0, 2, 1, 3]);
  for (let b = 0; b < 4; b++) {
    for (let c = 0; c < 3; c++) {
      const got = tf.slice(y, [b, 0, 0, c], [1, 9, 9, 1]);
      const want = tf.mul(tf.slice(t, [b, 0, 0, d2.permutation[b][c]], [1, 9, 9, 1]), d2.colour[b][c]);
      assert.ok(tf.max(tf.abs(tf.sub(got, want))).dataSync()[0] < 1e-4);
    }
  }
});

test("one draw for both images; seeded; differentiable with the adjoint as gradient", () => {
  const rng = new Rng(7);
  const x0 = tf.div(image(rng, [3, 16, 16, 3]), 100) as tf.Tensor4D;
  const r0 = sampleElpips({ numScales: 2 }, 3, 3, new Rng(8));
  same(r0.apply(x0), r0.apply(x0));
  assert.deepEqual(r0.draw, sampleElpips({ numScales: 2 }, 3, 3, new Rng(8)).draw);
  for (const scale of [1, 2]) {
    const d = { ...r0.draw, scale, scalePhase: [1, 0] as [number, number], swap: true };
    const t = new ElpipsTransform(d);
    const y = t.apply(x0);
    const r = tf.randomNormal(y.shape, 0, 1, "float32", 9);
    const g = tf.grad((v) => tf.sum(tf.mul(t.apply(v as tf.Tensor4D), r)))(x0);
    assert.ok(g.dataSync().every(Number.isFinite));
    // Linear in x: <T(x), r> = <x, T^T r>, and reflected borders carry gradient back.
    const lhs = tf.sum(tf.mul(y, r)).dataSync()[0];
    const rhs = tf.sum(tf.mul(x0, g)).dataSync()[0];
    assert.ok(Math.abs(lhs - rhs) < 1e-4 * Math.max(1, Math.abs(lhs)), `scale ${scale}: ${lhs} vs ${rhs}`);
  }
});

test("dropout mask: zeros or 1/keep, about keep of them kept, reproducible from the seed", () => {
  const m = dropoutMask([64, 64, 16], 0.99, new Rng(10));
  const v = m.dataSync();
  assert.ok(v.every((x) => x === 0 || Math.abs(x - 1 / 0.99) < 1e-6));
  const kept = v.filter((x) => x > 0).length / v.length;
  assert.ok(Math.abs(kept - 0.99) < 5 * Math.sqrt((0.99 * 0.01) / v.length), `kept ${kept}`);
  same(m, dropoutMask([64, 64, 16], 0.99, new Rng(10)));
});
