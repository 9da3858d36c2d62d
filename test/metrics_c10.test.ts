import { before, test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as tf from "@tensorflow/tfjs";
import { initEngine } from "../lib/backend/engine";
import { fromRoot } from "../lib/core/paths";
import { cifar10Batch, loadCifar10 } from "../lib/data/cifar10";
import { readTorchCheckpoint } from "../lib/io/pth";
import { writeSafetensors } from "../lib/io/safetensors";
import { C10_WEIGHTS, loadC10Classifier } from "../lib/metrics/cifar_classifier";
import { metricLabel } from "../lib/metrics/feature_net";
import { loadStandinLatentLpips, loadStandinLpips, STANDIN_FILES } from "../lib/perceptual/standins";
import { nhwc } from "./support";

// The committed stand-in weights (data/weights/) check themselves: they load, and the FID-C10 classifier still
// scores what its metadata recorded on the same test images.

before(async () => {
  await initEngine({ quiet: true });
});

test("the committed C10 classifier loads as the FID-C10 feature net with its stated dimension", async () => {
  const { model, net, metadata } = loadC10Classifier();
  assert.equal(metricLabel("FID", net), "FID-C10");
  assert.equal(net.dim, JSON.parse(metadata.config).widths.at(-1));
  assert.match(net.name, /^c10-classifier16-[0-9a-f]{8}$/);
  const x32 = tf.randomUniform([4, 32, 32, 3], -1, 1, "float32", 1) as tf.Tensor4D;
  const f32 = await net.features(x32);
  assert.deepEqual(f32.shape, [4, net.dim]);
  // 32 px inputs are box-averaged to the classifier's 16 px
  const x16 = tf.avgPool(x32, 2, 2, "valid");
  const f16 = await net.features(x16);
  assert.ok(tf.max(tf.abs(tf.sub(f32, f16))).dataSync()[0] < 1e-5);
  await assert.rejects(net.features(tf.zeros([1, 24, 24, 3]) as tf.Tensor4D), /multiple of 16/);
  tf.dispose([x32, x16, f32, f16]);
  model.dispose();
});

test("the committed C10 classifier's accuracy on the first 500 CIFAR-10 test images matches its metadata", async (t) => {
  if (!process.env.D2G_DATA_MIRROR) {
    t.skip("D2G_DATA_MIRROR not set");
    return;
  }
  const { model, metadata } = loadC10Classifier();
  const data = await loadCifar10("test");
  let right = 0;
  for (let b = 0; b < 500; b += 100) {
    const { x, y } = cifar10Batch(data, Int32Array.from({ length: 100 }, (_, k) => b + k));
    right += tf.tidy(() => tf.sum(tf.cast(tf.equal(tf.argMax(model.logits(tf.avgPool(x, 2, 2, "valid")), 1), y), "int32")).dataSync()[0]);
    tf.dispose([x, y]);
  }
  const acc = right / 500;
  const recorded = Number(metadata.test_acc_first500);
  // engines differ in the last bits, which can flip a few borderline images
  assert.ok(Math.abs(acc - recorded) <= 0.01, `accuracy on 500 test images ${acc}, recorded ${recorded}`);
  assert.ok(Math.abs(acc - Number(metadata.test_acc)) <= 0.06, `accuracy on 500 test images ${acc}, recorded on all ${metadata.test_images}: ${metadata.test_acc}`);
  model.dispose();
});

test("the committed stand-in trunks load into LPIPS and LatentLPIPS: d(x, x) = 0 < d(x, y)", () => {
  const pixel = loadStandinLpips();
  const latent = loadStandinLatentLpips();
  assert.match(pixel.trunk, /^stand-in VGG16 w1\/8 .*test acc \d+\.\d%$/);
  assert.match(latent.trunk, /^stand-in latent VGG16-BN w1\/8 .*test acc \d+\.\d%$/);
  assert.equal(pixel.heads, "all-ones heads (uncalibrated)");
  // a stage 1 narrower than the latent would hide part of every latent from the distance
  assert.ok(latent.latentLpips.net.tapChannels[0] >= latent.latentLpips.config.latentChannels, `stage 1 of ${latent.trunk}`);
  const cases: Array<[string, (a: tf.Tensor4D, b: tf.Tensor4D) => tf.Tensor1D, [number, number, number, number]]> = [
    ["LPIPS", (a, b) => pixel.lpips.distance(a, b), [2, 32, 32, 3]],
    ["LatentLPIPS", (a, b) => latent.latentLpips.distance(a, b), [2, 8, 8, 32]],
  ];
  for (const [name, d, shape] of cases) {
    const x = tf.randomUniform(shape, -1, 1, "float32", 2) as tf.Tensor4D;
    const y = tf.randomUniform(shape, -1, 1, "float32", 3) as tf.Tensor4D;
    const same = d(x, x).dataSync();
    const diff = d(x, y).dataSync();
    same.forEach((v) => assert.ok(Math.abs(v) < 1e-6, `${name} d(x, x) = ${v}`));
    diff.forEach((v) => assert.ok(v > 0.01, `${name} d(x, y) = ${v}`));
    tf.dispose([x, y]);
  }
  pixel.lpips.dispose();
  latent.latentLpips.dispose();
  assert.ok(fs.statSync(STANDIN_FILES.pixel).size + fs.statSync(STANDIN_FILES.latent).size + fs.statSync(C10_WEIGHTS).size < 10e6);
});

test("given official-format paths (either trunk key layout), the loaders reproduce PyTorch's LPIPS and LatentLPIPS", () => {
  const fix = fromRoot("test", "fixtures", "lpips");
  const cases: Array<[string, (a: tf.Tensor4D, b: tf.Tensor4D) => tf.Tensor1D, () => void, string]> = [];
  const pixel = loadStandinLpips({ trunk: path.join(fix, "vgg16.pth"), heads: path.join(fix, "lpips_heads.pth") });
  cases.push(["lpips_reference.pth", (a, b) => pixel.lpips.distance(a, b), () => pixel.lpips.dispose(), "dist"]);
  const released = path.join(fix, "latent_lpips.pth");
  const latent = loadStandinLatentLpips({ trunk: released, heads: released });
  cases.push(["latent_lpips_reference.pth", (a, b) => latent.latentLpips.distance(a, b), () => latent.latentLpips.dispose(), "dist"]);
  assert.equal(latent.heads, "heads from latent_lpips.pth");
  // the classification checkpoint's layout: torchvision vgg16_bn `features.{i}.*` under DataParallel's `module.`
  const tv = Object.fromEntries(Object.entries(readTorchCheckpoint(released)).flatMap(([k, t]) => {
    const m = /^net\.slice\d\.(.*)$/.exec(k);
    return m ? [[`module.features.${m[1]}`, t]] : [];
  }));
  const tvFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "d2g-c10-")), "latent_vgg16.safetensors");
  writeSafetensors(tvFile, tv);
  const fromTv = loadStandinLatentLpips({ trunk: tvFile, heads: released });
  cases.push(["latent_lpips_reference.pth", (a, b) => fromTv.latentLpips.distance(a, b), () => fromTv.latentLpips.dispose(), "dist"]);
  for (const [file, d, dispose, key] of cases) {
    const ref = readTorchCheckpoint(path.join(fix, file));
    const [x0, x1] = [nhwc(ref.x0), nhwc(ref.x1)];
    const got = d(x0, x1).dataSync();
    const want = ref[key].data as Float32Array;
    want.forEach((w, i) => assert.ok(Math.abs(got[i] - w) <= 1e-4 * Math.abs(w), `${file}[${i}]: ${got[i]} vs PyTorch ${w}`));
    tf.dispose([x0, x1]);
    dispose();
  }
  fs.rmSync(path.dirname(tvFile), { recursive: true, force: true });
});
