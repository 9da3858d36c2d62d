import { before, test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "fs";
import * as path from "path";
import * as tf from "@tensorflow/tfjs";
import { Rng } from "../lib/core/random";
import { fromRoot } from "../lib/core/paths";
import { readTorchCheckpoint } from "../lib/io/pth";
import { Lpips } from "../lib/perceptual/lpips";
import { nhwc, assertRelClose } from "./support";

// Gradient tests need the cpu backend (wasm has no Conv2DBackpropFilter); the nets here are tiny, so use it throughout.
before(async () => {
  await tf.setBackend("cpu");
});

const FIX = fromRoot("test", "fixtures", "lpips");

function fixtureLpips(): Lpips {
  const m = new Lpips(new Rng(0), { width: 1 / 32 });
  m.loadTrunkFile(path.join(FIX, "vgg16.pth"));
  return m;
}

test("pixel LPIPS on the tiny torchvision VGG16 equals PyTorch (random and all-ones heads)", () => {
  const ref = readTorchCheckpoint(path.join(FIX, "lpips_reference.pth"));
  const m = fixtureLpips();
  const [x0, x1] = [nhwc(ref.x0), nhwc(ref.x1)];
  // heads not loaded yet: the "baseline" all-ones variant
  const base = m.distance(x0, x1);
  assertRelClose(base.dataSync(), ref.dist_baseline.data as Float32Array, 1e-4, "baseline distance");
  m.loadHeadsFile(path.join(FIX, "lpips_heads.pth"));
  const d = m.distance(x0, x1);
  assertRelClose(d.dataSync(), ref.dist.data as Float32Array, 1e-4, "distance");
  tf.dispose([x0, x1, base, d]);
  m.dispose();
});

test("official v0.1 vgg heads load from the legacy .pth with shapes [1,C,1,1] and the JSON's values", async (t) => {
  const mirror = process.env.D2G_DATA_MIRROR;
  const file = mirror && path.join(mirror, "weights", "lpips", "v0.1", "vgg.pth");
  if (!file || !fs.existsSync(file)) {
    t.skip("D2G_DATA_MIRROR/weights/lpips/v0.1/vgg.pth not found");
    return;
  }
  const m = new Lpips(new Rng(0));
  m.loadHeadsFile(file);
  const sd = await m.heads.stateDict();
  assert.deepEqual(Object.keys(sd), [0, 1, 2, 3, 4].map((k) => `lin${k}.model.1.weight`));
  assert.deepEqual(Object.values(sd).map((h) => h.shape), [64, 128, 256, 512, 512].map((c) => [1, c, 1, 1]));
  const json = JSON.parse(fs.readFileSync(file.replace(/\.pth$/, ".json"), "utf8")).tensors as Record<string, { data: number[] }>;
  for (const [k, h] of Object.entries(sd)) assertRelClose(h.data as Float32Array, json[k].data, 1e-7, k);
  m.dispose();
});

test("pixel LPIPS: d(x,x) = 0, symmetric, finite input gradients", () => {
  const m = fixtureLpips();
  m.loadHeadsFile(path.join(FIX, "lpips_heads.pth"));
  const x0 = tf.randomUniform([2, 16, 16, 3], -1, 1, "float32", 7) as tf.Tensor4D;
  const x1 = tf.randomUniform([2, 16, 16, 3], -1, 1, "float32", 8) as tf.Tensor4D;
  const self = m.distance(x0, x0).dataSync();
  assert.ok(self.every((v) => v === 0), `d(x,x) = ${self}`);
  assertRelClose(m.distance(x0, x1).dataSync(), m.distance(x1, x0).dataSync(), 1e-6, "d(x0,x1) vs d(x1,x0)");
  const g = tf.grad((x: tf.Tensor) => tf.sum(m.distance(x as tf.Tensor4D, x1)))(x0);
  const gv = g.dataSync();
  assert.ok(gv.every(Number.isFinite), "gradient has non-finite values");
  assert.ok(gv.some((v) => v !== 0), "gradient is all zero");
  tf.dispose([x0, x1, g]);
  m.dispose();
});
