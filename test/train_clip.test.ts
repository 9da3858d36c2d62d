import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as tf from "@tensorflow/tfjs";
import { initEngine } from "../lib/backend/engine";
import { fromRoot } from "../lib/core/paths";
import { Adam } from "../lib/train/adam";
import { latestCheckpoint } from "../lib/train/checkpoint";
import { warmupCosine } from "../lib/train/schedule";
import { CaptionedImages, CLIP_TRAIN_DEFAULTS, ClipTrainConfig, tinyClipConfig, trainClip, worldClipPair } from "../lib/train/train_clip";
import { clipParameterShapes, MAX_LOGIT_SCALE } from "../lib/nn/clip/clip_model";
import { retrievalRecall } from "../lib/metrics/clip_zero_shot";

before(() => initEngine({ quiet: true }));
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "d2g-train-clip-"));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

test("AdamW: decoupled weight decay on the masked parameters matches torch.optim.AdamW", () => {
  // test/fixtures/train/make_adamw_fixture.py: two parameter groups, weight decay 0.2 and 0, lr per step
  const ref = JSON.parse(fs.readFileSync(fromRoot("test", "fixtures", "train", "adamw.json"), "utf8"));
  const w = tf.variable(tf.tensor2d(ref.w0));
  const b = tf.variable(tf.tensor1d(ref.b0));
  const adam = new Adam([w, b], { beta1: ref.betas[0], beta2: ref.betas[1], eps: ref.eps, weightDecay: ref.weight_decay }, [true, false]);
  ref.grads.forEach(([gw, gb]: [number[][], number[]], i: number) => {
    const g = [tf.tensor2d(gw), tf.tensor1d(gb)];
    adam.apply(g, ref.lrs[i]);
    tf.dispose(g);
  });
  const close = (got: ArrayLike<number>, want: number[], what: string) => want.forEach((v, i) => assert.ok(Math.abs(got[i] - v) < 1e-6, `${what}[${i}]: ${got[i]} vs torch ${v}`));
  close(w.dataSync(), ref.w.flat(), "decayed");
  close(b.dataSync(), ref.b, "not decayed");
  assert.throws(() => new Adam([w, b], {}, [true]), /decay mask has 1 entries for 2 parameters/);
  adam.dispose();
  tf.dispose([w, b]);
});

test("warm-up then cosine: linear ramp, peak, cosine to zero (open_clip's cosine_lr)", () => {
  const s = { lr: 1, warmup: 2, steps: 6 };
  const got = [0, 1, 2, 3, 4, 5].map((i) => warmupCosine(s, i));
  const want = [0.5, 1, 1, (1 + Math.cos(Math.PI / 4)) / 2, 0.5, (1 + Math.cos((3 * Math.PI) / 4)) / 2];
  got.forEach((g, i) => assert.ok(Math.abs(g - want[i]) < 1e-12, `step ${i}: ${g}`));
});

test("retrieval recall@k: ties count against the pair; both directions", () => {
  // image 0 prefers its own text, image 1 ties between texts 0 and 1, image 2 prefers text 0
  const img = tf.tensor2d([[1, 0], [Math.SQRT1_2, Math.SQRT1_2], [1, 0]]);
  const txt = tf.tensor2d([[1, 0], [0, 1], [0, 1]]);
  const r1 = retrievalRecall(img, txt, 1);
  // image->text: 0 yes; 1: text 0 scores the same as its own text 1 (tie) -> no; 2: own text 2 scores 0 < 1 -> no
  assert.ok(Math.abs(r1.imageToText - 1 / 3) < 1e-9);
  // text->image: text 0 -> image 0 ties with image 2 -> no; text 1 -> image 1 (0.707) vs image 2 (0) -> yes; text 2 -> image 2 (0) < image 1 -> no
  assert.ok(Math.abs(r1.textToImage - 1 / 3) < 1e-9);
  assert.equal(retrievalRecall(img, txt, 3).imageToText, 1);
  assert.throws(() => retrievalRecall(img, tf.zeros([2, 2]) as tf.Tensor2D), /3 images but 2 captions/);
  tf.dispose([img, txt]);
});

// Tiny captioned data: 24 random images of 3 "classes" (a tinted square), captions are rows naming the class.
const DATA: CaptionedImages = {
  size: 24,
  batch(idx, step) {
    const ids = Array.from(idx, (i) => [49406, 320 + (i % 3), (step + i) % 2 ? 1125 : 2368, 49407, 49407, 49407]);
    const images = tf.tidy(() => {
      const all = tf.randomUniform([24, 16, 16, 3], -1, 1, "float32", 5);
      return tf.gather(all, tf.tensor1d(Array.from(idx), "int32")) as tf.Tensor4D;
    });
    return { images, ids };
  },
};
const SPEC = {
  imageSize: 16, patchSize: 8, visionWidth: 16, visionLayers: 1, visionHeads: 2, visionMlpRatio: 4,
  textWidth: 16, textLayers: 1, textHeads: 2, contextLength: 6, embedDim: 8, act: "quick_gelu" as const,
};
const CFG: ClipTrainConfig = { ...CLIP_TRAIN_DEFAULTS, model: tinyClipConfig(SPEC), batch: 8, steps: 6, lr: 5e-3, warmup: 2, seed: 3, ckptEvery: 2, evalEvery: 3 };

async function trainedWeights(steps: number, dir?: string): Promise<Float32Array[]> {
  const { model } = await trainClip({ ...CFG, steps }, DATA, { ckptDir: dir });
  const w = model.namedVariables().map(([, v]) => v.dataSync() as Float32Array);
  model.dispose();
  return w;
}

test("CLIP training: seeded, resumes bit for bit, evaluates on schedule, no tensor growth, temperature clamped", async () => {
  const straight = await trainedWeights(6);
  const dir = path.join(tmp, "resume");
  await trainedWeights(3, dir);
  assert.match(path.basename(latestCheckpoint(dir)!), /ckpt-00000003/);
  const resumed = await trainedWeights(6, dir);
  straight.forEach((w, i) => assert.deepEqual(resumed[i], w, `tensor ${i} differs after resume`));
  const evals: number[] = [];
  const hot = { ...CFG, model: { ...CFG.model, logitScaleInit: 6 }, lr: 0.05 };
  const { model, result } = await trainClip(hot, DATA, { evaluate: async (_m, s) => (evals.push(s), { probe: s }) });
  assert.deepEqual(evals, [3, 6]);
  assert.equal(result.history[2].probe, 3);
  assert.equal(result.tensorsAtEnd, result.tensorsAfterFirstStep);
  // exp(6) = 403 would exceed 100: clamped to ln 100 from the first step
  assert.ok(result.history.every((h) => h.logitScale <= 100 + 1e-3), JSON.stringify(result.history.map((h) => h.logitScale)));
  assert.ok(model.logit_scale.dataSync()[0] <= MAX_LOGIT_SCALE + 1e-6);
  model.dispose();
});

test("the world's two CLIP configs: plain objects, different towers, sizes", () => {
  const pair = worldClipPair(64);
  const count = (s: typeof pair.text) => clipParameterShapes(tinyClipConfig(s)).reduce((a, [, sh]) => a + sh.reduce((x, y) => x * y, 1), 0);
  assert.deepEqual([pair.text.patchSize, pair.eval.patchSize], [16, 8]);
  assert.deepEqual([pair.text.act, pair.eval.act], ["quick_gelu", "gelu"]);
  assert.equal(tinyClipConfig(pair.eval).vision.intermediateSize, 279);
  assert.deepEqual(JSON.parse(JSON.stringify(pair)), pair);
  // parameters at 64 px; both carry the 49,408 x 64 token table (3,162,112 of them)
  assert.deepEqual([count(pair.text), count(pair.eval)], [3625793, 3603869]);
  assert.throws(() => worldClipPair(60), /not a multiple of 8/);
});
