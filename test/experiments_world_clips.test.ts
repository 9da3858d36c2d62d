import { before, test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as tf from "@tensorflow/tfjs";
import { initEngine } from "../lib/backend/engine";
import { ClipTokenizer } from "../lib/data/clip_tokenizer";
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

test("world CLIPs at smoke scale: trained, scored on held-out groups, resumed to the same model", async () => {
  const cfg = WORLD_CLIPS_CONFIGS.smoke;
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "d2g-world-clips-"));
  const world = await T2iWorld.forScale("smoke");
  const models: ClipModel[] = [];
  const [r] = await run({ ...cfg, steps: 2 }, world, { ckptRoot: root, keep: (_, m) => models.push(m) });
  assert.equal(r.chance, 1 / cfg.group);
  assert.ok(r.retrieval >= 0 && r.retrieval <= 1 && r.history.every((h) => Number.isFinite(h.loss)));
  const before = tf.memory().numTensors;
  const [full] = await run(cfg, world, { ckptRoot: root, keep: (_, m) => models.push(m) });
  assert.equal(full.history.length, cfg.steps, "the second run continued from step 2");
  const straight = await run(cfg, world, { ckptRoot: null, keep: (_, m) => models.push(m) });
  assert.deepEqual(full.history.map((h) => h.loss), straight[0].history.map((h) => h.loss), "resumed equals uninterrupted");
  assert.equal(full.retrieval, straight[0].retrieval);
  const [a, b] = [await models[1].stateDict(), await models[2].stateDict()];
  for (const k of Object.keys(a)) assert.deepEqual(a[k].data, b[k].data, k);
  models.forEach((m) => m.dispose());
  assert.ok(tf.memory().numTensors <= before, "no tensors left behind");
  fs.rmSync(root, { recursive: true });
});
