import { test } from "node:test";
import assert from "node:assert/strict";
import { Rng } from "../lib/core/random";
import { AugmentDraw, DEFAULT_AUGMENT, geometricMatrix, resolveOps, sampleDraw } from "../lib/perceptual/augment";

// Each op's parameters follow the distribution of PAPER.md's table (p = 1). Host-only: draws are plain numbers.
// Moments are checked within 5 standard errors, so a correct sampler fails about once in 10^6 runs; the seed is
// fixed anyway, so the suite is deterministic.

const N = 40000;
const draw: AugmentDraw = sampleDraw(resolveOps("bgco"), DEFAULT_AUGMENT, N, new Rng(2024));

function moments(v: number[]): { mean: number; variance: number } {
  const mean = v.reduce((a, b) => a + b, 0) / v.length;
  const variance = v.reduce((a, b) => a + (b - mean) ** 2, 0) / (v.length - 1);
  return { mean, variance };
}

/** Mean and variance within 5 standard errors; mu4 is the distribution's fourth central moment. */
function checkMoments(name: string, v: number[], mean: number, variance: number, mu4: number): void {
  const m = moments(v);
  const seMean = Math.sqrt(variance / v.length);
  const seVar = Math.sqrt((mu4 - variance ** 2) / v.length);
  assert.ok(Math.abs(m.mean - mean) < 5 * seMean, `${name}: mean ${m.mean}, expected ${mean} +- ${5 * seMean}`);
  assert.ok(Math.abs(m.variance - variance) < 5 * seVar, `${name}: variance ${m.variance}, expected ${variance} +- ${5 * seVar}`);
}

function checkUniform(name: string, v: number[], lo: number, hi: number): void {
  assert.ok(v.every((x) => x >= lo && x < hi), `${name}: outside [${lo}, ${hi})`);
  checkMoments(name, v, (lo + hi) / 2, (hi - lo) ** 2 / 12, (hi - lo) ** 4 / 80);
  // Also flat: each quarter of the range holds a quarter of the draws (chi-square, 3 dof, p < 1e-5 at 25).
  chiSquare(name, v.map((x) => Math.min(3, Math.floor((4 * (x - lo)) / (hi - lo)))), [0.25, 0.25, 0.25, 0.25]);
}

function checkNormal(name: string, v: number[], mean: number, sd: number): void {
  checkMoments(name, v, mean, sd ** 2, 3 * sd ** 4);
  // Shape, not just moments: P(|z| < 1) = 0.6827.
  const inside = v.filter((x) => Math.abs(x - mean) < sd).length / v.length;
  assert.ok(Math.abs(inside - 0.6827) < 5 * Math.sqrt((0.6827 * 0.3173) / v.length), `${name}: P(|z|<1) = ${inside}`);
}

/** Counts of integer categories against probabilities; fails above the p = 1e-5 quantile for the table's dof. */
function chiSquare(name: string, cats: number[], probs: number[]): void {
  const counts = new Array<number>(probs.length).fill(0);
  for (const c of cats) counts[c]++;
  const stat = counts.reduce((a, c, i) => a + (c - cats.length * probs[i]) ** 2 / (cats.length * probs[i]), 0);
  const limit = [0, 19.5, 23.0, 25.9, 28.5, 30.9, 33.1, 35.3][probs.length - 1];
  assert.ok(stat < limit, `${name}: chi-square ${stat} over ${probs.length - 1} dof, counts ${counts}`);
}

test("xflip is a fair coin", () => {
  const v = draw.xflip!;
  assert.ok(v.every((x) => x === 0 || x === 1));
  chiSquare("xflip", v, [0.5, 0.5]);
});

test("rotate90 is uniform over 0..3 quarter turns", () => {
  const v = draw.rotate90!;
  assert.ok(v.every((k) => Number.isInteger(k) && k >= 0 && k < 4));
  chiSquare("rotate90", v, [0.25, 0.25, 0.25, 0.25]);
});

test("xint is U(-0.125, 0.125) of the size on each axis, independently, rounded to pixels when applied", () => {
  checkUniform("xint x", draw.xint!.x, -0.125, 0.125);
  checkUniform("xint y", draw.xint!.y, -0.125, 0.125);
  const corr = draw.xint!.x.reduce((a, x, i) => a + x * draw.xint!.y[i], 0) / (N * (0.25 ** 2 / 12));
  assert.ok(Math.abs(corr) < 5 / Math.sqrt(N), `xint x-y correlation ${corr}`);
  for (let b = 0; b < 100; b++) {
    const g = geometricMatrix({ xint: { x: [draw.xint!.x[b]], y: [draw.xint!.y[b]] } }, 0, 64, 48);
    assert.ok(Number.isInteger(g[2]) && Math.abs(g[2]) <= 6 && Number.isInteger(g[5]) && Math.abs(g[5]) <= 8);
  }
});

test("scale and aniso are log-normal: log2 ~ N(0, 0.2^2)", () => {
  checkNormal("log2 scale", draw.scale!.map(Math.log2), 0, 0.2);
  checkNormal("log2 aniso", draw.aniso!.map(Math.log2), 0, 0.2);
});

test("both rotations are U(-pi, pi), independently", () => {
  checkUniform("rotate pre", draw.rotatePre!, -Math.PI, Math.PI);
  checkUniform("rotate post", draw.rotatePost!, -Math.PI, Math.PI);
  const corr = draw.rotatePre!.reduce((a, x, i) => a + x * draw.rotatePost![i], 0) / (N * ((2 * Math.PI) ** 2 / 12));
  assert.ok(Math.abs(corr) < 5 / Math.sqrt(N), `rotation correlation ${corr}`);
});

test("xfrac is N(0, 0.125^2) of the size on each axis", () => {
  checkNormal("xfrac x", draw.xfrac!.x, 0, 0.125);
  checkNormal("xfrac y", draw.xfrac!.y, 0, 0.125);
});

test("brightness U(-0.5, 0.5), contrast U(0.5, 1.5), saturation U(0, 2), cutout centre U(0, 1)^2", () => {
  checkUniform("brightness", draw.brightness!, -0.5, 0.5);
  checkUniform("contrast", draw.contrast!, 0.5, 1.5);
  checkUniform("saturation", draw.saturation!, 0, 2);
  checkUniform("cutout x", draw.cutout!.x, 0, 1);
  checkUniform("cutout y", draw.cutout!.y, 0, 1);
});

test("ops that are off draw nothing", () => {
  const d = sampleDraw(resolveOps("c"), DEFAULT_AUGMENT, 4, new Rng(1));
  assert.deepEqual(Object.keys(d).sort(), ["brightness", "contrast", "saturation"]);
});
