import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as tf from "@tensorflow/tfjs";
import { initEngine } from "../lib/backend/engine";
import { loadCifar10 } from "../lib/data/cifar10";
import { ClipTokenizer } from "../lib/data/clip_tokenizer";
import { caption, CifarCaptions, clipCifarConfig, run } from "../lib/experiments/clip_cifar10";

const mirror = process.env.D2G_DATA_MIRROR;
const skip = mirror ? false : "D2G_DATA_MIRROR not set";
const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "d2g-clip-cifar-"));
const o = { dataDir, mirror: mirror ?? null, log: () => undefined };
before(() => initEngine({ quiet: true }));
after(() => fs.rmSync(dataDir, { recursive: true, force: true }));

test("class captions: articles, templates, and batches that depend only on (seed, step)", { skip }, async () => {
  assert.equal(caption("a photo of {a}.", "airplane"), "a photo of an airplane.");
  assert.equal(caption("{a} seen from far away.", "pickup truck"), "a pickup truck seen from far away.");
  assert.equal(caption("a picture of the {}.", "deer"), "a picture of the deer.");
  const data = new CifarCaptions(await loadCifar10("test", o), await ClipTokenizer.load(o), 100, 16, 5);
  const idx = Int32Array.from([3, 1, 4, 1, 5, 9, 2, 6]);
  const a = data.batch(idx, 7);
  const b = data.batch(idx, 7);
  const c = data.batch(idx, 8);
  assert.deepEqual(a.ids, b.ids);
  assert.deepEqual(Array.from(a.images.dataSync()), Array.from(b.images.dataSync()));
  assert.notDeepEqual(a.ids, c.ids);
  assert.deepEqual(a.images.shape, [8, 32, 32, 3]);
  assert.ok(a.ids.every((r) => r.length === 16 && r.includes(49407)));
  tf.dispose([a.images, b.images, c.images]);
});

test("smoke scale: a micro CLIP trained for seconds classifies CIFAR-10 zero-shot well above chance", { skip }, async () => {
  const cfg = clipCifarConfig("smoke");
  const [r] = await run(cfg, { ...o, ckptRoot: null });
  if (process.env.D2G_PRINT_ERRORS) console.log(r.zeroShot, r.secondsPerStep, r.history.map((h) => h.loss.toFixed(3)).join(" "));
  assert.equal(r.history.length, cfg.steps);
  // chance is 10%; 500 test images put 15% about four standard deviations above it
  assert.ok(r.zeroShot > 0.15, `zero-shot top-1 ${r.zeroShot}`);
  assert.ok(r.history[cfg.steps - 1].loss < r.history[0].loss);
});
