import { before, test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as tf from "@tensorflow/tfjs";
import { initEngine } from "../lib/backend/engine";
import { Rng } from "../lib/core/random";
import { savePng } from "../lib/data/images";
import { writeNpy } from "../lib/io/npy";
import { bappsBatches, calibrateHeads, channelDistances, headDistances, headVector, TwoAfcBatch, twoAfcFeatures, TwoAfcFeatures, twoAfcScore } from "../lib/perceptual/calibrate";
import { LatentLpips } from "../lib/perceptual/latent_lpips";
import { Lpips, LpipsHeads } from "../lib/perceptual/lpips";

before(async () => {
  await initEngine({ quiet: true });
});

/** Random non-negative heads, so the identity below is checked for weights other than all ones. */
function randomiseHeads(heads: LpipsHeads, rng: Rng): void {
  for (const l of heads.lins) l.weight.assign(tf.randomUniform(l.weight.shape, 0, 2, "float32", rng.seed()));
}

test("channelDistances . heads + offset equals the distance of LPIPS and of LatentLPIPS (with scaling and L1)", async () => {
  const rng = new Rng(3);
  const lpips = new Lpips(rng, { width: 1 / 16 });
  const latent = new LatentLpips({ latentChannels: 4, width: 1 / 16, scaling: { shift: 0.1, scale: 0.5 }, l1: true }, rng);
  randomiseHeads(lpips.heads, rng);
  randomiseHeads(latent.heads, rng);
  const cases: Array<[string, Lpips | LatentLpips, [number, number, number, number]]> = [["LPIPS", lpips, [3, 16, 16, 3]], ["LatentLPIPS", latent, [3, 8, 8, 4]]];
  for (const [name, metric, shape] of cases) {
    const x0 = tf.randomUniform(shape, -1, 1, "float32", rng.seed()) as tf.Tensor4D;
    const x1 = tf.randomUniform(shape, -1, 1, "float32", rng.seed()) as tf.Tensor4D;
    const want = metric.distance(x0, x1);
    const { phi, offset } = channelDistances(metric, x0, x1);
    const f: TwoAfcFeatures = { n: 3, channels: phi.shape[1], phi0: phi.dataSync() as Float32Array, phi1: phi.dataSync() as Float32Array, offset0: offset.dataSync() as Float32Array, offset1: offset.dataSync() as Float32Array, judge: new Float32Array(3) };
    const { d0 } = headDistances(metric.heads, f);
    const w = want.dataSync();
    for (let i = 0; i < 3; i++) assert.ok(Math.abs(d0[i] - w[i]) <= 1e-4 * Math.max(1, w[i]), `${name}[${i}]: phi . w + offset = ${d0[i]}, distance = ${w[i]}`);
    tf.dispose([x0, x1, want, phi, offset]);
  }
  lpips.dispose();
  latent.dispose();
});

test("2AFC score follows lpips' convention: judge is the fraction preferring p1", () => {
  // d0 < d1 says p0 is closer: agreeing people are 1 - judge of them
  assert.equal(twoAfcScore([1, 3, 2], [2, 1, 2], [0.25, 0.75, 0.9]), (0.75 + 0.75 + 0.5) / 3);
});

/**
 * Triplets whose per-channel differences are independent uniforms, judged by 5 simulated people who weigh only
 * `important` channels (weights `truth`): P(p1 closer) = sigmoid((d0* - d1*) / tau), d* = phi . truth.
 */
function syntheticTriplets(n: number, channels: number, truth: Float32Array, rng: Rng): TwoAfcFeatures {
  const phi0 = Float32Array.from({ length: n * channels }, () => rng.uniform());
  const phi1 = Float32Array.from({ length: n * channels }, () => rng.uniform());
  const judge = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    let diff = 0;
    for (let c = 0; c < channels; c++) diff += (phi0[i * channels + c] - phi1[i * channels + c]) * truth[c];
    const p = 1 / (1 + Math.exp(-diff / 0.2));
    let votes = 0;
    for (let k = 0; k < 5; k++) votes += rng.uniform() < p ? 1 : 0;
    judge[i] = votes / 5;
  }
  return { n, channels, phi0, phi1, offset0: new Float32Array(n), offset1: new Float32Array(n), judge };
}

test("calibration recovers a hidden channel weighting and raises 2AFC agreement well above all-ones heads", () => {
  const widths = [4, 8, 16, 16, 16];
  const channels = widths.reduce((a, b) => a + b, 0);
  const rng = new Rng(7);
  const important = Array.from(rng.permutation(channels).slice(0, 6));
  const truth = new Float32Array(channels);
  important.forEach((c, k) => (truth[c] = 1 + k / 3));
  const train = syntheticTriplets(1500, channels, truth, rng);
  const heldOut = syntheticTriplets(1000, channels, truth, rng);
  const heads = new LpipsHeads(widths);
  const score = () => {
    const { d0, d1 } = headDistances(heads, heldOut);
    return twoAfcScore(d0, d1, heldOut.judge);
  };
  const ones = score();
  const ceiling = (() => {
    const d = (phi: Float32Array) => Float32Array.from({ length: heldOut.n }, (_, i) => truth.reduce((s, t, c) => s + t * phi[i * channels + c], 0));
    return twoAfcScore(d(heldOut.phi0), d(heldOut.phi1), heldOut.judge);
  })();
  const r = calibrateHeads(heads, train, { epochs: 8, decayEpochs: 4, batch: 100, lr: 0.03, beta1: 0.5, dropout: 0, hidden: 32, seed: 1 });
  const calibrated = score();
  console.log(`2AFC held out: all-ones ${ones.toFixed(3)}, calibrated ${calibrated.toFixed(3)}, hidden ${ceiling.toFixed(3)}; BCE ${r.epochLoss.map((l) => l.toFixed(3)).join(" ")}`);
  assert.ok(r.epochLoss[r.epochLoss.length - 1] < r.epochLoss[0], `BCE did not fall: ${r.epochLoss.map((l) => l.toFixed(3)).join(", ")}`);
  assert.ok(calibrated > ones + 0.1, `2AFC held out: all-ones ${ones.toFixed(3)}, calibrated ${calibrated.toFixed(3)}`);
  assert.ok(calibrated > ceiling - 0.03, `2AFC held out: calibrated ${calibrated.toFixed(3)}, hidden weighting ${ceiling.toFixed(3)}`);
  const w = headVector(heads);
  assert.ok(w.every((v) => v >= 0), "heads must stay non-negative (clamped after every step)");
  const top = Array.from(w.keys()).sort((a, b) => w[b] - w[a]).slice(0, important.length);
  assert.deepEqual(top.sort((a, b) => a - b), [...important].sort((a, b) => a - b), `largest calibrated channels ${top} vs hidden ${important}`);
  r.ranking.dispose();
  heads.dispose();
});

test("twoAfcFeatures reduces triplets through a metric, and calibrated heads drive its distance", async () => {
  const rng = new Rng(5);
  const metric = new Lpips(rng, { width: 1 / 16 });
  const batches: TwoAfcBatch[] = [0, 1].map(() => {
    const ref = tf.randomUniform([8, 16, 16, 3], -1, 1, "float32", rng.seed()) as tf.Tensor4D;
    return {
      ref,
      p0: tf.tidy(() => tf.add(ref, tf.randomNormal(ref.shape, 0, 0.1, "float32", rng.seed()))) as tf.Tensor4D,
      p1: tf.tidy(() => tf.add(ref, tf.randomNormal(ref.shape, 0, 0.4, "float32", rng.seed()))) as tf.Tensor4D,
      judge: Array.from({ length: 8 }, () => rng.int(3) / 10),
    };
  });
  const refs = batches.map((b) => tf.clone(b.ref));
  const p1s = batches.map((b) => tf.clone(b.p1));
  const f = await twoAfcFeatures(metric, batches);
  assert.equal(f.n, 16);
  assert.equal(f.channels, metric.vgg.tapChannels.reduce((a, b) => a + b, 0));
  calibrateHeads(metric.heads, f, { epochs: 2, decayEpochs: 1, batch: 8, lr: 0.01, beta1: 0.5, dropout: 0.5, hidden: 32, seed: 2 }).ranking.dispose();
  const { d1 } = headDistances(metric.heads, f);
  const direct = metric.distance(tf.concat(refs) as tf.Tensor4D, tf.concat(p1s) as tf.Tensor4D).dataSync();
  for (let i = 0; i < f.n; i++) assert.ok(Math.abs(direct[i] - d1[i]) <= 1e-4 * Math.max(1, direct[i]), `triplet ${i}: ${direct[i]} vs ${d1[i]}`);
  tf.dispose([...refs, ...p1s]);
  metric.dispose();
});

test("bappsBatches reads the BAPPS 2AFC layout in id order, batched, through an optional transform", async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "d2g-bapps-"));
  try {
    const ids = ["000002", "000000", "000001"];
    for (const sub of ["ref", "p0", "p1", "judge"]) fs.mkdirSync(path.join(dir, sub));
    for (const [k, id] of ids.entries()) {
      // pixel value k / 2 - 0.5 marks the triplet; p0 and p1 add their own offsets
      for (const [sub, add] of [["ref", 0], ["p0", 0.25], ["p1", 0.5]] as const) {
        const img = tf.fill([8, 8, 3], (k - 1) / 4 + add);
        await savePng(img, path.join(dir, sub, `${id}.png`));
        img.dispose();
      }
      writeNpy(path.join(dir, "judge", `${id}.npy`), { dtype: "float64", shape: [1], data: Float64Array.of(k / 10) });
    }
    const got: TwoAfcBatch[] = [];
    for await (const b of bappsBatches(dir, { batch: 2, transform: (x) => tf.avgPool(x, 2, 2, "valid") })) got.push(b);
    assert.deepEqual(got.map((b) => b.ref.shape), [[2, 4, 4, 3], [1, 4, 4, 3]]);
    // ids sorted: 000000 (k = 1), 000001 (k = 2), 000002 (k = 0)
    assert.deepEqual(got.flatMap((b) => Array.from(b.judge)), [0.1, 0.2, 0]);
    const firstPixel = (t: tf.Tensor) => Array.from(t.dataSync()).filter((_, i) => i % 48 === 0);
    const near = (a: number[], b: number[]) => a.every((v, i) => Math.abs(v - b[i]) < 0.01);
    assert.ok(near([...firstPixel(got[0].ref), ...firstPixel(got[1].ref)], [0, 0.25, -0.25]));
    assert.ok(near(firstPixel(got[0].p1), [0.5, 0.75]));
    got.forEach((b) => tf.dispose([b.ref, b.p0, b.p1]));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
