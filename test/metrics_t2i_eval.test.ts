import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as tf from "@tensorflow/tfjs";
import { fromRoot } from "../lib/core/paths";
import { Rng } from "../lib/core/random";
import { ClipTokenizer } from "../lib/data/clip_tokenizer";
import { savePng } from "../lib/data/images";
import { readNpz } from "../lib/io/npy";
import { FeatureNet } from "../lib/metrics/feature_net";
import { loadStats } from "../lib/metrics/stats";
import { captionSeed, centreCropLongEdge, evaluateT2i, gigaganTransform, protocolImages, referenceStats, T2iJudges } from "../lib/metrics/t2i_eval";
import { clipModelFromConfig } from "../lib/nn/clip/clip_model";

const FIX = fromRoot("test", "fixtures", "t2i_eval");
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "d2g-t2i-eval-"));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));
const mirror = process.env.D2G_DATA_MIRROR;

test("GigaGAN's transform: torchvision's centre crop to the short side, then PIL's Lanczos, match PIL (shrink and enlarge)", () => {
  const z = readNpz(path.join(FIX, "crop_lanczos.npz"));
  for (const name of ["landscape", "portrait"]) {
    const src = z[`${name}_src`];
    const [h, w] = src.shape;
    for (const size of [20, 45]) {
      const got = gigaganTransform(src.data as Uint8Array, h, w, size);
      const want = z[`${name}_${size}`].data as Uint8Array;
      assert.equal(got.length, want.length);
      let worst = 0;
      got.forEach((v, i) => (worst = Math.max(worst, Math.abs(v - want[i]))));
      assert.equal(worst, 0, `${name} ${h}x${w} -> ${size}: max |diff| ${worst}`);
    }
  }
  // (48 - 31) / 2 = 8.5: Python's round gives 8, not 9
  const img = Uint8Array.from({ length: 31 * 48 }, (_, i) => i % 48);
  assert.equal(centreCropLongEdge(img, 31, 48, 1).data[0], 8);
  assert.throws(() => centreCropLongEdge(img, 31, 47, 1), /expected 31x47x1 values/);
});

test("generated images are saved to 8 bits (rounded) before the transform; size null keeps them, clipped", () => {
  const x = tf.tensor4d([-1.2, 0.002, 1, 0.5, -0.5, 0, 0.3, 0.7, -0.9, 1.5, 0.1, -0.1], [1, 2, 2, 3]);
  const same = protocolImages(x, null);
  assert.deepEqual(Array.from(same.dataSync()).map((v) => +v.toFixed(3)), [-1, 0.002, 1, 0.5, -0.5, 0, 0.3, 0.7, -0.9, 1, 0.1, -0.1]);
  const big = protocolImages(x, 2);
  // round((x + 1) * 127.5) / 127.5 - 1: 0.002 -> 128 -> 0.00392
  assert.ok(Math.abs(big.dataSync()[1] - (128 / 127.5 - 1)) < 1e-6);
  tf.dispose([x, same, big]);
});

test("reference statistics: clean-fid's .npz (mu, sigma) loads; a wrong width, a corrupt file and missing arrays are clear errors", async () => {
  const net4: FeatureNet = { name: "d4", label: "d4", dim: 4, features: async () => tf.zeros([1, 4]) };
  const s = await referenceStats({ statsFile: path.join(FIX, "stats_d4.npz") }, net4, { size: null, workDir: tmp });
  assert.equal(s.mu.length, 4);
  assert.ok(Number.isNaN(s.count));
  await assert.rejects(referenceStats({ statsFile: path.join(FIX, "stats_d4.npz") }, { ...net4, dim: 2048, name: "inception" }, { size: null, workDir: tmp }), /4-d features, but inception gives 2048-d/);
  const bytes = fs.readFileSync(path.join(FIX, "stats_d4.npz"));
  const cut = path.join(tmp, "truncated.npz");
  fs.writeFileSync(cut, bytes.subarray(0, bytes.length - 40));
  assert.throws(() => loadStats(cut), new RegExp(cut.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")));
  const junk = path.join(tmp, "junk.npz");
  fs.writeFileSync(junk, "not a zip at all");
  assert.throws(() => loadStats(junk), /junk\.npz/);
  assert.throws(() => loadStats(path.join(tmp, "missing.npz")), /no such statistics file/);
  await assert.rejects(referenceStats({ folder: path.join(tmp, "no-folder") }, net4, { size: 8, workDir: path.join(tmp, "w") }), /no such image folder/);
});

/** Mean colour and its spread per image: a feature net with nothing to learn, for the bookkeeping. */
const colourNet: FeatureNet = {
  name: "colour-moments", label: "moments", dim: 6,
  features: async (x) => tf.tidy(() => {
    const { mean, variance } = tf.moments(x, [1, 2]);
    return tf.concat([mean, tf.sqrt(variance)], 1) as tf.Tensor2D;
  }),
};

test("reference statistics from an image folder: each image cropped and resized as the samples are, written as stats.npz, resumed", async () => {
  const folder = path.join(tmp, "coco");
  fs.mkdirSync(folder);
  const rng = new Rng(3);
  for (let i = 0; i < 5; i++) {
    const [h, w] = [12 + i, 16 - i];
    await savePng({ width: w, height: h, data: Uint8Array.from({ length: h * w * 3 }, () => rng.int(256)) }, path.join(folder, `img${i}.png`));
  }
  const work = path.join(tmp, "ref");
  const a = await referenceStats({ folder }, colourNet, { size: 8, workDir: work, shardSize: 2, batch: 2 });
  assert.equal(a.count, 5);
  assert.deepEqual(Array.from(loadStats(path.join(work, "stats.npz")).mu), Array.from(a.mu));
  fs.rmSync(path.join(work, "shard-00001.npz"));
  const b = await referenceStats({ folder }, colourNet, { size: 8, workDir: work, shardSize: 2, batch: 2 });
  assert.deepEqual(Array.from(b.sigma), Array.from(a.sigma));
  await assert.rejects(referenceStats({ folder }, colourNet, { size: 16, workDir: work, shardSize: 2 }), /made with other settings/);
});

test("evaluation: a stopped run resumes from its shards and equals the uninterrupted one; tensor count flat", { skip: mirror ? false : "D2G_DATA_MIRROR not set" }, async () => {
  const tokenizer = await ClipTokenizer.load({ dataDir: path.join(tmp, "data"), mirror: mirror ?? null, log: () => undefined });
  const clip = clipModelFromConfig({
    model_type: "clip", projection_dim: 8,
    text_config: { vocab_size: 49408, hidden_size: 8, intermediate_size: 16, num_hidden_layers: 1, num_attention_heads: 2, max_position_embeddings: 77, hidden_act: "quick_gelu", bos_token_id: 49406, eos_token_id: 49407, pad_token_id: 0 },
    vision_config: { hidden_size: 8, intermediate_size: 16, num_hidden_layers: 1, num_attention_heads: 2, image_size: 16, patch_size: 8, hidden_act: "quick_gelu" },
  }, new Rng(1), "micro CLIP");
  const judges: T2iJudges = {
    fid: colourNet, referenceTag: "test", reference: { mu: new Float64Array(6).fill(0.1), sigma: Float64Array.from({ length: 36 }, (_, i) => (i % 7 === 0 ? 0.2 : 0)), count: 100 },
    clip: { model: clip, tokenizer, template: "a-photo-depicts", tag: "micro" },
  };
  const captions = Array.from({ length: 7 }, (_, i) => `a ${["red", "blue", "green"][i % 3]} cube number ${i}`);
  let calls = 0;
  let failAt = -1;
  // an image from its seed alone (so a resumed run redraws exactly what it would have), at 20 x 30: the transform crops and resizes it
  const generate = async (caps: string[], seeds: number[]) => {
    if (calls++ === failAt) throw new Error("stopped");
    assert.equal(caps.length, seeds.length);
    return tf.tidy(() => tf.concat(seeds.map((s) => tf.randomUniform([1, 20, 30, 3], -1, 1, "float32", s))) as tf.Tensor4D);
  };
  const settings = { seed: 5, batch: 2, shardSize: 4, size: 16 };
  const before = tf.memory().numTensors;
  const whole = await evaluateT2i(path.join(tmp, "whole"), captions, generate, judges, settings);
  assert.equal(tf.memory().numTensors, before, "tensor count flat");
  assert.equal(whole.samples, 7);
  assert.equal(whole.resumedShards, 0);
  assert.equal(whole.fidName, "FID-moments");
  assert.ok(Number.isFinite(whole.fid) && whole.fid > 0 && whole.clipScore! > -1 && whole.clipScore! < 1);
  calls = 0;
  failAt = 3; // the first shard (two calls) is written, the second stops half-way
  await assert.rejects(evaluateT2i(path.join(tmp, "stopped"), captions, generate, judges, settings), /stopped/);
  failAt = -1;
  const resumed = await evaluateT2i(path.join(tmp, "stopped"), captions, generate, judges, settings);
  assert.equal(resumed.resumedShards, 1);
  assert.equal(resumed.fid, whole.fid);
  assert.equal(resumed.clipScore, whole.clipScore);
  assert.equal(captionSeed(5, 3), 5 * 100_003 + 3);
  await assert.rejects(evaluateT2i(path.join(tmp, "stopped"), captions, generate, judges, { ...settings, seed: 6 }), /made with other settings/);
  const bad = async (caps: string[]) => tf.zeros([caps.length + 1, 8, 8, 3]) as tf.Tensor4D;
  await assert.rejects(evaluateT2i(path.join(tmp, "bad"), captions, bad, judges, settings), /gave images \[3,8,8,3\] for 2 captions/);
  clip.dispose();
});
