import { before, test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as tf from "@tensorflow/tfjs";
import { initEngine } from "../lib/backend/engine";
import { ClipTokenizer } from "../lib/data/clip_tokenizer";
import { trainLatentDiffusion } from "../lib/diffusion/train_latent_diffusion";
import { OdePairs } from "../lib/distill/ode_pairs";
import { loadT2iTeacher, loadWorldTextEncoder, makeWorldPairs, T2I_TEACHERS, teacherReport, trainT2iTeacher, WORLD_SCHEDULER_CONFIG, WorldLatents, worldPairsDir, worldSchedulerConfig } from "../lib/experiments/t2i_teacher";
import { T2iWorld } from "../lib/experiments/t2i_world";
import { run as trainWorldClips, WORLD_CLIPS_CONFIGS, worldClipFile } from "../lib/experiments/world_clips";
import { taef2Codec } from "../lib/nn/latent_codec";

let world: T2iWorld;
let tmp: string;

before(async () => {
  await initEngine({ quiet: true });
  world = await T2iWorld.forScale("smoke");
  const codec = await taef2Codec();
  await world.build(codec, { splits: ["train", "test"] });
  codec.dispose();
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "d2g-t2i-teacher-"));
  // the smoke scale's CLIPs, where the teacher and its report look for them
  await trainWorldClips(WORLD_CLIPS_CONFIGS.smoke, world, { ckptRoot: path.join(tmp, "clips"), weightsFile: (name) => worldClipFile(name, "smoke") });
});

test("every scale's teacher ends on the prediction type of the world's scheduler config", () => {
  for (const scale of ["smoke", "cpu", "paper"] as const) assert.deepEqual(worldSchedulerConfig(T2I_TEACHERS[scale].training), WORLD_SCHEDULER_CONFIG, scale);
  assert.equal(WORLD_SCHEDULER_CONFIG.prediction_type, "v_prediction");
});

test("world latents: the cached latents of the scenes asked for, one of each scene's own captions, seeded by step", async () => {
  const tokenizer = await ClipTokenizer.load();
  const data = new WorldLatents(world, 32, tokenizer, 3);
  const idx = Int32Array.from([5, 0, 31]);
  const a = data.batch(idx, 4);
  const b = data.batch(idx, 4);
  assert.deepEqual(a.ids, b.ids);
  const cached = world.load("train", { count: 32 });
  const per = 8 * 8 * 32;
  assert.deepEqual(a.x.shape, [3, 8, 8, 32]);
  assert.deepEqual(Array.from(a.x.dataSync().subarray(0, per)), Array.from(cached.latents.subarray(5 * per, 6 * per)));
  idx.forEach((i, k) => assert.ok(world.captions("train", i).some((c) => tokenizer.tokenize(c)[0].join() === a.ids[k].join())));
  assert.deepEqual(data.emptyRow.slice(0, 3), [49406, 49407, 49407], "the empty caption: start, end, end padding");
  tf.dispose([a.x, b.x]);
});

test("latent diffusion training: resumed equals uninterrupted, no tensor growth, dropped captions become the empty one", async () => {
  const spec = T2I_TEACHERS.smoke;
  const tokenizer = await ClipTokenizer.load();
  const enc = loadWorldTextEncoder("smoke");
  const data = new WorldLatents(world, 32, tokenizer, 0);
  const counting = { size: data.size, emptyRow: data.emptyRow, batch: (i: Int32Array, s: number) => data.batch(i, s) };
  const cfg = { ...spec.training, steps: 6, ckptEvery: 3, captionDropout: 0.5 };
  const ck = path.join(tmp, "ldm-ckpt");
  const first = await trainLatentDiffusion({ ...cfg, steps: 3 }, counting, enc, { ckptDir: ck });
  first.unet.dispose();
  first.ema.dispose();
  const resumed = await trainLatentDiffusion(cfg, counting, enc, { ckptDir: ck });
  const straight = await trainLatentDiffusion(cfg, counting, enc);
  assert.equal(resumed.result.resumedFrom, 3);
  assert.deepEqual(resumed.result.history.map((h) => h.loss), straight.result.history.map((h) => h.loss));
  assert.equal(straight.result.tensorsAtEnd, straight.result.tensorsAfterFirstStep, "a step leaks no tensor");
  const [a, b] = [await resumed.ema.stateDict(), await straight.ema.stateDict()];
  for (const k of Object.keys(a)) assert.deepEqual(a[k].data, b[k].data, k);
  assert.ok(straight.result.history.every((h) => Number.isFinite(h.loss) && h.loss > 0));
  // with dropout 1 the UNet sees only the empty caption: the same loss as when the data gives only empty captions
  const dropped = await trainLatentDiffusion({ ...cfg, steps: 1, captionDropout: 1 }, counting, enc);
  const emptyOnly = { ...counting, batch: (i: Int32Array, s: number) => ({ ...data.batch(i, s), ids: Array.from(i, () => data.emptyRow) }) };
  const given = await trainLatentDiffusion({ ...cfg, steps: 1, captionDropout: 0 }, emptyOnly, enc);
  const kept = await trainLatentDiffusion({ ...cfg, steps: 1, captionDropout: 0 }, counting, enc);
  assert.equal(dropped.result.history[0].loss, given.result.history[0].loss);
  assert.notEqual(kept.result.history[0].loss, given.result.history[0].loss, "the captions reach the UNet when kept");
  for (const m of [resumed, straight, dropped, given, kept]) {
    m.unet.dispose();
    m.ema.dispose();
  }
  enc.dispose();
});

test("the world teacher at smoke scale: trained, loaded as a LatentDiffusion, reported per guidance, its pairs generated and resumed", async () => {
  const weights = path.join(tmp, "teacher.safetensors");
  const t = await trainT2iTeacher("smoke", { world, weights, ckptDir: path.join(tmp, "teacher-ckpt") });
  assert.equal(t.steps, T2I_TEACHERS.smoke.training.steps);
  assert.ok(fs.existsSync(weights.replace(/\.safetensors$/, ".log.csv")));
  const teacher = await loadT2iTeacher("smoke", weights);
  assert.equal(teacher.unet.numParameters(), t.parameters);
  const cond = teacher.encode(["a red circle on a grey background"], 3);
  const z = teacher.noise(0, 1, 8, 8);
  const out = await teacher.sampleLatents(z, cond, { steps: 3, sampler: "ddim" });
  assert.equal(out.nfe, 6, "3 guided steps: two UNet evaluations each");
  assert.deepEqual(out.latents.shape, [1, 8, 8, 32]);
  tf.dispose([z, cond.cond, cond.guidance!.uncond, out.latents]);
  teacher.dispose();

  const before = tf.memory().numTensors;
  const r = await teacherReport("smoke", { weights });
  assert.deepEqual(r.rows.map((x) => x.guidance), ["real", 1, 3, 8]);
  assert.deepEqual(r.rows.map((x) => x.nfe), [0, 3, 6, 6]);
  for (const row of r.rows) {
    assert.equal(row.samples, T2I_TEACHERS.smoke.report.prompts);
    for (const v of [row.attributes.shape, row.attributes.colour, row.attributes.allCorrect]) assert.ok(v >= 0 && v <= 1);
    assert.ok(Number.isFinite(row.fidWClip) && Number.isFinite(row.clipScore));
  }
  assert.equal(r.figure.images["8"].length, r.figure.n * 64 * 64 * 3);
  assert.ok(tf.memory().numTensors <= before, "the report leaves no tensors behind");
  const again = await teacherReport("smoke", { weights });
  // (as JSON: an attribute no prompt asks about is NaN, and null once cached)
  assert.deepEqual(JSON.stringify(again.rows), JSON.stringify(r.rows), "a rerun reads the cached rows");

  const dirs = T2I_TEACHERS.smoke.pairs.guidances.map((g) => worldPairsDir(g, "smoke"));
  dirs.forEach((d) => fs.rmSync(d, { recursive: true, force: true }));
  const manifests = await makeWorldPairs("smoke", { weights });
  const p = T2I_TEACHERS.smoke.pairs;
  assert.deepEqual(manifests.map((m) => [m.guidance, m.count, m.cDim, m.teacherEvals]), p.guidances.map((g) => [g, p.count, 77, p.count * 2 * p.steps]));
  // a lost shard is made again, the same as before
  const shard = path.join(dirs[0], "shard-00001.safetensors");
  const bytes = fs.readFileSync(shard);
  fs.rmSync(shard);
  fs.rmSync(path.join(dirs[0], "manifest.json"));
  await makeWorldPairs("smoke", { weights });
  assert.deepEqual(fs.readFileSync(shard), bytes);
  const pairs = OdePairs.open(dirs[1]);
  assert.equal(pairs.size, p.count);
  const row = Array.from(pairs.c.subarray(0, 77));
  assert.equal(row[0], 49406, "conditions are CLIP token rows");
});
