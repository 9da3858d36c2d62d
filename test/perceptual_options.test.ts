import { before, test } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { Rng } from "../lib/core/random";
import { Augment, DEFAULT_AUGMENT, sampleAugment } from "../lib/perceptual/augment";
import { LatentLpips } from "../lib/perceptual/latent_lpips";
import { Lpips } from "../lib/perceptual/lpips";

// Issue #12: inputs too small for a trunk (LatentLPIPS on a 2x2 latent hung on wasm, LPIPS on 8x8 read out of
// bounds) and options that meant nothing (resample 'nearest', colour 'colour', numScales 0) are errors that say
// what is valid, before any kernel runs.

before(async () => {
  await tf.setBackend("cpu");
});

test("LPIPS needs at least 16x16 px: four 2x2 max-pools come before its last tap", () => {
  const lpips = new Lpips(new Rng(0), { width: 1 / 16 });
  assert.equal(lpips.vgg.minInputSize, 16);
  for (const [h, w] of [[8, 8], [1, 1], [16, 15]]) {
    const x = tf.zeros([1, h, w, 3]) as tf.Tensor4D;
    assert.throws(() => lpips.distance(x, x), new RegExp(`Lpips: inputs are ${h}x${w} px; .*at least 16x16`));
    x.dispose();
  }
  const x = tf.randomUniform([1, 16, 16, 3], -1, 1, "float32", 1) as tf.Tensor4D;
  const y = tf.randomUniform([1, 16, 16, 3], -1, 1, "float32", 2) as tf.Tensor4D;
  assert.ok(Number.isFinite(lpips.distance(x, y).dataSync()[0]));
  lpips.dispose();
});

test("LatentLPIPS and E-LatentLPIPS need at least 4x4 latents: two 2x2 max-pools (stages 4 and 5)", () => {
  const metric = new LatentLpips({ latentChannels: 4, width: 1 / 32 }, new Rng(0));
  assert.equal(metric.net.minInputSize, 4);
  const small = tf.zeros([1, 2, 2, 4]) as tf.Tensor4D;
  assert.throws(() => metric.distance(small, small), /LatentLpips: latents are 2x2; .*at least 4x4/);
  let augmented = false;
  assert.throws(() => metric.distance(small, small, (a, b) => ((augmented = true), [a, b])), /at least 4x4/);
  assert.equal(augmented, false, "the size is checked before augmenting");
  const x = tf.randomNormal([1, 4, 4, 4], 0, 1, "float32", 3) as tf.Tensor4D;
  assert.ok(Number.isFinite(metric.distance(x, tf.zerosLike(x)).dataSync()[0]));
  metric.dispose();
});

test("augmentation options: unknown names and values outside their range are errors naming what is valid", () => {
  const rng = new Rng(0);
  assert.throws(() => sampleAugment({ resample: "nearest" as "wavelet" }, 1, rng), /option 'resample' is "nearest", expected one of wavelet, bilinear/);
  assert.throws(() => sampleAugment({ reample: "bilinear" } as object, 1, rng), /unknown option 'reample'/);
  assert.throws(() => sampleAugment({ cutoutSize: 2 }, 1, rng), /'cutoutSize' is 2, expected a number in 0\.\.1/);
  assert.throws(() => sampleAugment({ scaleStd: -0.2 }, 1, rng), /'scaleStd' is -0\.2/);
  assert.throws(() => sampleAugment({ ops: "bgx" }, 1, rng), /unknown augmentation "bgx"/);
  assert.throws(() => new Augment({}, 1, { ...DEFAULT_AUGMENT, resample: "nearest" as "wavelet" }), /'resample' is "nearest"/);
  assert.ok(sampleAugment({ ops: ["xflip", "c"], resample: "bilinear", cutoutSize: 0.25 }, 2, rng) instanceof Augment);
});
