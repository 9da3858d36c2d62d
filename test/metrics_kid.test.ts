import { before, test } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { initEngine } from "../lib/backend/engine";
import { Rng } from "../lib/core/random";
import { FeatureMatrix, kernelInceptionDistance } from "../lib/metrics/kid";

function gaussian(rows: number, dim: number, rng: Rng, shift = 0, scale = 1): FeatureMatrix {
  return { data: new Float32Array(rows * dim).map(() => shift + scale * rng.normal()), rows, dim };
}

/** The unbiased MMD^2 with k(x, y) = (x.y/d + 1)^3 over whole sets, directly in float64. */
function bruteMmd(x: FeatureMatrix, y: FeatureMatrix): number {
  const d = x.dim;
  const k = (a: FeatureMatrix, i: number, b: FeatureMatrix, j: number): number => {
    let dot = 0;
    for (let t = 0; t < d; t++) dot += a.data[i * d + t] * b.data[j * d + t];
    return (dot / d + 1) ** 3;
  };
  const n = x.rows;
  let xx = 0, yy = 0, xy = 0;
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      if (i !== j) {
        xx += k(x, i, x, j);
        yy += k(y, i, y, j);
      }
      xy += k(x, i, y, j);
    }
  }
  return (xx + yy) / (n * (n - 1)) - (2 * xy) / (n * n);
}

before(async () => {
  await initEngine({ backend: "wasm", quiet: true });
});

test("KID on one subset holding every sample is the unbiased MMD^2 computed directly", async () => {
  await tf.setBackend("wasm");
  const rng = new Rng(1);
  const x = gaussian(40, 16, rng);
  const y = gaussian(40, 16, rng, 0.3, 1.2);
  const got = await kernelInceptionDistance(x, y, { subsets: 1, subsetSize: 1000 });
  assert.equal(got.subsetSize, 40);
  const want = bruteMmd(x, y);
  assert.ok(Math.abs(got.mean - want) < 1e-5 * Math.abs(want) + 1e-7, `${got.mean} vs ${want}`);
  assert.equal(got.std, 0);
});

test("KID is unbiased: two samples of one distribution average to 0 within the standard error", async () => {
  await tf.setBackend("wasm");
  const rng = new Rng(2);
  const seeds = 40;
  const values: number[] = [];
  for (let s = 0; s < seeds; s++) {
    const r = await kernelInceptionDistance(gaussian(30, 8, rng), gaussian(30, 8, rng), { subsets: 1 });
    values.push(r.mean);
  }
  const mean = values.reduce((a, b) => a + b, 0) / seeds;
  const sd = Math.sqrt(values.reduce((a, v) => a + (v - mean) ** 2, 0) / (seeds - 1));
  const se = sd / Math.sqrt(seeds);
  assert.ok(Math.abs(mean) < 3 * se, `mean ${mean} over ${seeds} draws, standard error ${se}`);
  // Some draws are negative: a biased (V-statistic) estimate would never be.
  assert.ok(values.some((v) => v < 0));
  // A shifted distribution is far outside that noise.
  const far = await kernelInceptionDistance(gaussian(30, 8, rng), gaussian(30, 8, rng, 0.5), { subsets: 5, subsetSize: 20 });
  assert.ok(far.mean > 10 * se + 3 * far.std / Math.sqrt(5), `shifted: ${far.mean} ± ${far.std}`);
});

test("KID subsets are capped by the sample counts and reproducible from the seed", async () => {
  await tf.setBackend("wasm");
  const rng = new Rng(3);
  const x = gaussian(25, 6, rng);
  const y = gaussian(60, 6, rng, 0.2);
  const a = await kernelInceptionDistance(x, y, { subsets: 4, seed: 9 });
  const b = await kernelInceptionDistance(x, y, { subsets: 4, seed: 9 });
  assert.equal(a.subsetSize, 25);
  assert.equal(a.mean, b.mean);
  assert.ok(a.std > 0);
  await assert.rejects(kernelInceptionDistance(x, gaussian(10, 5, rng)), /feature dims differ/);
});

test("KID through the wasm engine's GEMM (threads, long feature vectors) equals KID on the cpu backend", async () => {
  // 300-d features: the Gram products take more than one K block and are split between threads on wasm
  const rng = new Rng(4);
  const x = gaussian(120, 300, rng);
  const y = gaussian(110, 300, rng, 0.1, 1.1);
  const results: number[][] = [];
  for (const backend of ["cpu", "wasm"]) {
    await tf.setBackend(backend);
    const r = await kernelInceptionDistance(x, y, { subsets: 3, subsetSize: 100, seed: 5 });
    results.push([r.mean, r.std]);
  }
  const [[cpuMean, cpuStd], [wasmMean, wasmStd]] = results;
  assert.ok(Math.abs(wasmMean - cpuMean) < 1e-5 * Math.abs(cpuMean), `mean: wasm ${wasmMean}, cpu ${cpuMean}`);
  assert.ok(Math.abs(wasmStd - cpuStd) < 1e-3 * cpuStd, `std: wasm ${wasmStd}, cpu ${cpuStd}`);
});
