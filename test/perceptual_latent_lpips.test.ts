import { before, test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as tf from "@tensorflow/tfjs";
import { Rng } from "../lib/core/random";
import { fromRoot } from "../lib/core/paths";
import { readTorchCheckpoint } from "../lib/io/pth";
import { writeSafetensors } from "../lib/io/safetensors";
import { loadStandinLatentLpips } from "../lib/perceptual/standins";
import { LATENT_SCALINGS, LatentLpips, LatentLpipsConfig, PairAugment } from "../lib/perceptual/latent_lpips";
import { nhwc, assertRelClose } from "./support";

before(async () => {
  await tf.setBackend("cpu");
});

const FIX = fromRoot("test", "fixtures", "lpips");
const CKPT = path.join(FIX, "latent_lpips.pth");

function fixtureMetric(extra: Partial<LatentLpipsConfig> = {}): LatentLpips {
  const m = new LatentLpips({ latentChannels: 4, width: 1 / 32, ...extra }, new Rng(0));
  m.loadReleasedFile(CKPT);
  return m;
}

// The fixture's augmentation, T(x) = 1.5 * flip_w(x) + 0.25 on both inputs (NHWC: W is axis 2).
const fixtureAug: PairAugment = (a, b) => {
  const t = (x: tf.Tensor4D) => tf.add(tf.mul(tf.reverse(x, 2), 1.5), 0.25) as tf.Tensor4D;
  return [t(a), t(b)];
};

test("LatentLPIPS in the released key layout equals PyTorch: with and without L1, SD3 scaling, augmented", () => {
  const ref = readTorchCheckpoint(path.join(FIX, "latent_lpips_reference.pth"));
  const [x0, x1] = [nhwc(ref.x0), nhwc(ref.x1)];
  const cases: Array<[string, Partial<LatentLpipsConfig>, PairAugment | undefined]> = [
    ["dist", {}, undefined],
    ["dist_nol1", { l1: false }, undefined],
    ["dist_sd3", { scaling: LATENT_SCALINGS.sd3 }, undefined],
    ["dist_aug", {}, fixtureAug],
  ];
  for (const [key, cfg, aug] of cases) {
    const m = fixtureMetric(cfg);
    const d = m.distance(x0, x1, aug);
    assertRelClose(d.dataSync(), ref[key].data as Float32Array, 1e-4, key);
    d.dispose();
    m.dispose();
  }
  tf.dispose([x0, x1]);
});

test("releasedStateDict reproduces the released file's keys (with the lins alias) and values", async () => {
  const file = readTorchCheckpoint(CKPT);
  const m = fixtureMetric();
  const sd = await m.releasedStateDict();
  assert.deepEqual(Object.keys(sd).sort(), Object.keys(file).sort());
  for (const [k, h] of Object.entries(sd)) {
    assert.deepEqual(h.shape, file[k].shape, k);
    const want = Float32Array.from(file[k].data as ArrayLike<number | bigint>, Number);
    assertRelClose(h.data as Float32Array, want, 1e-7, k);
  }
  m.dispose();
});

test("LatentLPIPS and E-LatentLPIPS: d(x,x) = 0, symmetric, finite input gradients", () => {
  const m = fixtureMetric();
  const draw = new Rng(3);
  // a random per-call draw shared by both inputs, as E-LatentLPIPS requires
  const randomFlip: PairAugment = (a, b) => (draw.uniform() < 0.5 ? [a, b] : [tf.reverse(a, 2), tf.reverse(b, 2)]);
  const x0 = tf.randomNormal([2, 8, 8, 4], 0, 1, "float32", 9) as tf.Tensor4D;
  const x1 = tf.randomNormal([2, 8, 8, 4], 0, 1, "float32", 10) as tf.Tensor4D;
  const metrics = [
    ["LatentLPIPS", (a: tf.Tensor4D, b: tf.Tensor4D) => m.distance(a, b)],
    ["E-LatentLPIPS", (a: tf.Tensor4D, b: tf.Tensor4D) => m.distance(a, b, randomFlip)],
  ] as const;
  for (const [name, d] of metrics) {
    const self = d(x0, x0).dataSync();
    assert.ok(self.every((v) => v === 0), `${name}: d(x,x) = ${self}`);
    // symmetry under one draw of T
    const state = draw.state;
    const d01 = d(x0, x1).dataSync();
    draw.state = state;
    assertRelClose(d(x1, x0).dataSync(), d01, 1e-6, `${name} symmetry`);
    const g = tf.grad((x: tf.Tensor) => tf.sum(d(x as tf.Tensor4D, x1)))(x0);
    const gv = g.dataSync();
    assert.ok(gv.every(Number.isFinite) && gv.some((v) => v !== 0), `${name}: gradient not finite or all zero`);
    g.dispose();
  }
  tf.dispose([x0, x1]);
  m.dispose();
});

test("wrong latent channel count is an error naming the expectation", () => {
  const m = fixtureMetric();
  const x = tf.zeros([1, 8, 8, 16]) as tf.Tensor4D;
  assert.throws(() => m.distance(x, x), /4 channels/);
  x.dispose();
  m.dispose();
});

test("a stage 1 wider than the width multiplier gives (stem) is built, saved and read back by the stand-in loader", async () => {
  // 8 latent channels into a 1/16-width trunk would be 4 channels wide at stage 1; the stem keeps it at 16
  const m = new LatentLpips({ latentChannels: 8, width: 1 / 16, stem: 16, l1: false }, new Rng(6));
  assert.deepEqual(m.net.tapChannels, [16, 8, 16, 32, 32]);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "d2g-stem-"));
  const file = path.join(dir, "trunk.safetensors");
  const sd = await m.net.stateDict();
  writeSafetensors(file, Object.fromEntries(Object.entries(sd).map(([k, t]) => [`net.${k}`, t])));
  const loaded = loadStandinLatentLpips({ trunk: file, l1: false });
  assert.match(loaded.trunk, /w0\.0625, stage 1 16 wide \(8 channels\)/);
  const [x0, x1] = [1, 2].map((seed) => tf.randomNormal([2, 8, 8, 8], 0, 1, "float32", seed) as tf.Tensor4D);
  const [want, got] = [m.distance(x0, x1), loaded.latentLpips.distance(x0, x1)];
  assertRelClose(got.dataSync(), want.dataSync(), 1e-6, "distance after the round trip");
  tf.dispose([x0, x1, want, got]);
  m.dispose();
  loaded.latentLpips.dispose();
  fs.rmSync(dir, { recursive: true });
});
