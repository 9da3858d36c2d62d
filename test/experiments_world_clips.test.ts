import { before, test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as tf from "@tensorflow/tfjs";
import { initEngine } from "../lib/backend/engine";
import { ClipTokenizer } from "../lib/data/clip_tokenizer";
import { toFloat32 } from "../lib/io/dtype";
import { readSafetensors } from "../lib/io/safetensors";
import { ClipModel } from "../lib/nn/clip/clip_model";
import { T2iWorld } from "../lib/experiments/t2i_world";
import { run, WorldCaptions, WORLD_CLIPS_CONFIGS } from "../lib/experiments/world_clips";

before(async () => {
  await initEngine({ quiet: true });
});

test("world captions: rendered images as they are, one of the scene's own captions per step, the same on a rerun", async () => {
  const world = await T2iWorld.forScale("smoke");
  const tokenizer = await ClipTokenizer.load();
  const data = await WorldCaptions.load(world, "train", 8, tokenizer, 5);
  const idx = Int32Array.from([3, 0, 7]);
  const a = data.batch(idx, 2);
  const b = data.batch(idx, 2);
  assert.deepEqual(a.ids, b.ids, "a step's captions are a function of (seed, step)");
  idx.forEach((i, k) => {
    const own = world.captions("train", i).map((c) => tokenizer.tokenize(c)[0]);
    assert.ok(own.some((r) => r.join() === a.ids[k].join()), `scene ${i}: the caption is one of its own`);
  });
  const rendered = await world.cache.images("train", 3, 1);
  const first = tf.tidy(() => tf.round(tf.mul(tf.add(a.images.slice(0, 1), 1), 127.5)));
  assert.deepEqual(Array.from(first.dataSync()), Array.from(rendered), "no flip or other change to the image");
  await assert.rejects(WorldCaptions.load(world, "train", 10_000, tokenizer, 5), /train has 32 scenes, asked for 10000/);
  tf.dispose([a.images, b.images, first]);
});

test("world CLIPs at smoke scale: trained, scored on held-out groups, resumed to the same model, saved in float16", async () => {
  const cfg = WORLD_CLIPS_CONFIGS.smoke;
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "d2g-world-clips-"));
  const world = await T2iWorld.forScale("smoke");
  const weightsFile = (name: string) => path.join(root, `${name}.safetensors`);
  const kept = () => {
    const models: ClipModel[] = [];
    return { models, keep: (_: string, m: ClipModel) => models.push(m) };
  };
  const part = kept();
  const first = await run({ ...cfg, steps: 2 }, world, { ckptRoot: root, weightsFile: null, keep: part.keep });
  assert.deepEqual(first.map((r) => r.name), ["text", "eval"]);
  for (const r of first) {
    assert.equal(r.chance, 1 / cfg.group);
    assert.ok(r.retrieval >= 0 && r.retrieval <= 1 && r.history.every((h) => Number.isFinite(h.loss)));
  }
  part.models.forEach((m) => m.dispose());
  const before = tf.memory().numTensors;
  const resumed = kept();
  const full = await run(cfg, world, { ckptRoot: root, weightsFile, keep: resumed.keep });
  assert.ok(full.every((r) => r.history.length === cfg.steps), "the second run continued from step 2");
  const fresh = kept();
  const straight = await run(cfg, world, { ckptRoot: null, weightsFile: null, keep: fresh.keep });
  for (let k = 0; k < full.length; k++) {
    assert.deepEqual(full[k].history.map((h) => h.loss), straight[k].history.map((h) => h.loss), "resumed equals uninterrupted");
    assert.equal(full[k].retrieval, straight[k].retrieval);
    const [a, b] = [await resumed.models[k].stateDict(), await fresh.models[k].stateDict()];
    for (const key of Object.keys(a)) assert.deepEqual(a[key].data, b[key].data, key);
  }
  // the float16 file: every weight within half precision of the trained one, the spec and result in its metadata
  const { tensors, metadata } = readSafetensors(weightsFile("eval"));
  assert.equal(JSON.parse(metadata.spec).act, "gelu");
  assert.equal(JSON.parse(metadata.result).retrieval, full[1].retrieval);
  const trained = await resumed.models[1].stateDict();
  for (const [key, t] of Object.entries(tensors)) {
    assert.equal(t.dtype, "float16", key);
    const got = toFloat32(t, key);
    trained[key].data.forEach((v, i) => assert.ok(Math.abs((v as number) - got[i]) <= 1e-3 * Math.max(1, Math.abs(v as number)), `${key}[${i}]`));
  }
  [...resumed.models, ...fresh.models].forEach((m) => m.dispose());
  assert.ok(tf.memory().numTensors <= before, "no tensors left behind");
  fs.rmSync(root, { recursive: true });
});
