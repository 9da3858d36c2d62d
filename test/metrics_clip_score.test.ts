import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as tf from "@tensorflow/tfjs";
import { fromRoot } from "../lib/core/paths";
import { readTorchCheckpoint } from "../lib/io/pth";
import { ClipTokenizer } from "../lib/data/clip_tokenizer";
import { loadTransformersClip } from "../lib/nn/clip/checkpoints";
import { clipCosines, clipScore, photoDepictsRows, summariseClipScores } from "../lib/metrics/clip_score";
import { nhwc, rowsOf } from "./support";

// Reference: GigaGAN's compute_clip_score (the authors' evaluation) with the tiny OpenAI CLIP of
// test/fixtures/clip/make_clip_model_fixture.py: tensor2pil, OpenAI's preprocessing, encode, cosine.
const FIX = fromRoot("test", "fixtures", "clip");
const io = readTorchCheckpoint(path.join(FIX, "clip_tiny_io.pth"));
const rows = rowsOf(io.ids);
const mirror = process.env.D2G_DATA_MIRROR;
const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "d2g-clip-score-"));
after(() => fs.rmSync(dataDir, { recursive: true, force: true }));

test("per-pair cosines match the authors' evaluation (8-bit truncation, PIL bicubic, centre crop, CLIP)", () => {
  const model = loadTransformersClip(path.join(FIX, "hf_tiny"));
  const images = nhwc(io.score_images);
  const before = tf.memory().numTensors;
  const cos = clipCosines(model, images, rows);
  assert.equal(tf.memory().numTensors, before);
  const want = io.score_cos.data as Float32Array;
  cos.forEach((c, i) => assert.ok(Math.abs(c - want[i]) < 1e-5, `pair ${i}: ${c} vs ${want[i]}`));
  assert.throws(() => clipCosines(model, images, rows.slice(1)), /3 images but 2 captions/);
  images.dispose();
  model.dispose();
});

test("streaming CLIP score over batches: mean cosine (the paper's number) and torchmetrics' max(100 mean, 0)", async () => {
  const model = loadTransformersClip(path.join(FIX, "hf_tiny"));
  const all = nhwc(io.score_images);
  const batches = [
    { images: tf.slice(all, [0, 0, 0, 0], [2, -1, -1, -1]) as tf.Tensor4D, rows: rows.slice(0, 2) },
    { images: tf.slice(all, [2, 0, 0, 0], [1, -1, -1, -1]) as tf.Tensor4D, rows: rows.slice(2) },
  ];
  const before = tf.memory().numTensors;
  const r = await clipScore(model, batches, { total: 3 });
  assert.equal(tf.memory().numTensors, before - 2, "each batch's images are disposed");
  const want = Array.from(io.score_cos.data as Float32Array);
  const mean = want.reduce((a, b) => a + b, 0) / 3;
  assert.equal(r.n, 3);
  assert.ok(Math.abs(r.meanCosine - mean) < 1e-5);
  // these random pairs have a negative mean: torchmetrics clamps the mean, not each pair
  assert.ok(mean < 0 && want.some((c) => c > 0));
  assert.equal(r.torchmetrics, 0);
  assert.ok(Math.abs(summariseClipScores(Float32Array.from([0.3, 0.25])).torchmetrics - 27.5) < 1e-5);
  assert.throws(() => summariseClipScores(new Float32Array(0)), /no samples/);
  await assert.rejects(clipScore(model, [{ images: tf.slice(all, [0, 0, 0, 0], [1, -1, -1, -1]) as tf.Tensor4D, captions: ["a cat"] }]), /need options\.tokenizer/);
  all.dispose();
  model.dispose();
});

test("\"A photo depicts\" token rows match GigaGAN's splice into OpenAI's tokenize, long captions included", { skip: mirror ? false : "D2G_DATA_MIRROR not set" }, async () => {
  const fix = JSON.parse(fs.readFileSync(path.join(FIX, "depicts_ids.json"), "utf8")) as { captions: string[]; ids: number[][] };
  const tok = await ClipTokenizer.load({ dataDir, mirror: mirror ?? null, log: () => undefined });
  assert.deepEqual(photoDepictsRows(tok, fix.captions), fix.ids);
  assert.deepEqual(photoDepictsRows(tok, ["a cat"], "none")[0].slice(0, 4), [49406, 320, 2368, 49407]);
  assert.throws(() => photoDepictsRows(tok, ["a"], "a-photo-of" as never), /unknown template "a-photo-of"/);
});
