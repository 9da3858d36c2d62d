import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as tf from "@tensorflow/tfjs";
import "@tensorflow/tfjs-backend-wasm";
import { fromRoot } from "../lib/core/paths";
import { setProgressSink } from "../lib/core/progress";
import { StableDiffusion } from "../lib/diffusion/sd_pipeline";
import { generatePairs, mergePairs, OdePairs, PairRecord } from "../lib/distill/ode_pairs";
import { promptTokenCondition, latentDiffusionTeacher } from "../lib/distill/sd_teacher";

// The ODE-pair store with a Stable Diffusion teacher (the tiny fixture folder): token rows as conditions, and each
// stored x is what generate() makes from the stored noise and that sample's prompt.

test("ODE pairs from a Stable Diffusion teacher: token rows in c, x equal to generate() from the same noise and prompt", async (t) => {
  await tf.setBackend("wasm");
  const prev = setProgressSink(() => undefined);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "d2g-sd-pairs-"));
  t.after(() => {
    setProgressSink(prev);
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const sd = StableDiffusion.fromFolder(fromRoot("test", "fixtures", "sd", "tiny_pipeline"));
  const prompts = ["a red bus on a street", "two cats on a sofa", "a lighthouse in a storm"];
  const teacher = { steps: 2, guidance: 5, sampler: "euler" as const, negativePrompt: "blurry" };
  const rec: PairRecord = { teacher: "tiny-sd", sampler: "euler", steps: 2, guidance: 5, seed: 1, count: 4, shardSize: 2, zShape: [8, 8, 4], cDim: 77 };
  const before = tf.memory().numTensors;
  await generatePairs(dir, rec, latentDiffusionTeacher(sd, teacher), promptTokenCondition(sd, prompts), { batch: 2 });
  assert.equal(tf.memory().numTensors, before, "the teacher leaves no tensors behind");
  const m = mergePairs(dir, rec);
  assert.equal(m.teacherEvals, 4 * 4, "2 guided steps: 4 evaluations a sample");
  const pairs = OdePairs.open(dir);
  const rows = sd.tokenize(prompts);
  for (const i of [0, 3]) {
    const b = pairs.take([i]);
    assert.deepEqual(Array.from(b.c.dataSync()), rows[i % 3], `sample ${i} holds the tokens of prompt ${i % 3}`);
    const want = await sd.generate({ prompt: prompts[i % 3], negativePrompt: "blurry", steps: 2, guidance: 5, sampler: "euler", latents: b.z });
    const err = tf.tidy(() => tf.max(tf.abs(tf.sub(b.x, want.latents))).dataSync()[0] / tf.max(tf.abs(want.latents)).dataSync()[0]);
    assert.ok(err < 1e-5, `sample ${i}: x differs from generate() by ${err}`);
    tf.dispose([b.z, b.c, b.x, want.latents, want.images]);
  }
  sd.dispose();
});
