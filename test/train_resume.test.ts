import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as tf from "@tensorflow/tfjs";
import { batchIndices } from "../lib/train/data_order";
import { EDM_TRAIN_DEFAULTS, EdmTrainConfig, LabelledData, trainEdm } from "../lib/diffusion/train_edm";
import { latestCheckpoint, loadCheckpoint, saveCheckpoint } from "../lib/train/checkpoint";
import { runTraining } from "../lib/train/loop";

const CFG: EdmTrainConfig = {
  ...EDM_TRAIN_DEFAULTS,
  net: { imgResolution: 8, inChannels: 3, outChannels: 3, labelDim: 4, augmentDim: 0, modelChannels: 8, channelMult: [1, 2], channelMultEmb: 2, numBlocks: 1, attnResolutions: [4], dropout: 0.1 },
  batch: 4, steps: 6, ckptEvery: 2, lrRampupSteps: 2,
};

// 16 fixed random "images" with labels: deterministic, so two runs see identical data.
const DATA: LabelledData = {
  size: 16,
  batch(idx) {
    return tf.tidy(() => {
      const all = tf.randomUniform([16, 8, 8, 3], -1, 1, "float32", 7);
      const ii = tf.tensor1d(Array.from(idx), "int32");
      return { x: tf.gather(all, ii) as tf.Tensor4D, labels: tf.oneHot(tf.mod(ii, tf.scalar(4, "int32")) as tf.Tensor1D, 4).toFloat() as tf.Tensor2D };
    });
  },
};

async function weights(dir: string | undefined, steps: number): Promise<Float32Array[]> {
  const out = await trainEdm({ ...CFG, steps }, DATA, dir);
  const w = out.ema.namedVariables().map(([, v]) => v.dataSync() as Float32Array).concat(out.net.parameters().map((v) => v.dataSync() as Float32Array));
  out.net.dispose();
  out.ema.dispose();
  return w;
}

test("a resumed EDM training run ends with the same weights as an uninterrupted one", async () => {
  await tf.setBackend("cpu");
  const dirA = fs.mkdtempSync(path.join(os.tmpdir(), "d2g-resume-a-"));
  const dirB = fs.mkdtempSync(path.join(os.tmpdir(), "d2g-resume-b-"));
  const straight = await weights(dirA, 6);
  await weights(dirB, 3); // "killed" after step 3 (checkpoint at 2, final save at 3)
  assert.match(path.basename(latestCheckpoint(dirB)!), /ckpt-00000003/);
  const resumed = await weights(dirB, 6);
  assert.equal(resumed.length, straight.length);
  for (let i = 0; i < straight.length; i++) assert.deepEqual(resumed[i], straight[i], `tensor ${i} differs after resume`);
  fs.rmSync(dirA, { recursive: true });
  fs.rmSync(dirB, { recursive: true });
});

test("training steps do not grow the live tensor count", async () => {
  await tf.setBackend("cpu");
  const out = await trainEdm({ ...CFG, steps: 4 }, DATA);
  assert.equal(out.result.tensorsAtEnd, out.result.tensorsAfterFirstStep);
  out.net.dispose();
  out.ema.dispose();
});

test("batch order is a pure function of (seed, step) and covers each epoch once", () => {
  const seen = new Set<number>();
  for (let s = 0; s < 4; s++) batchIndices(3, 16, 4, s).forEach((i) => seen.add(i));
  assert.equal(seen.size, 16);
  assert.deepEqual(batchIndices(3, 16, 4, 5), batchIndices(3, 16, 4, 5, new Map()));
});

test("loading a checkpoint leaves no tensors behind (each resume used to keep one per variable)", async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "d2g-ckpt-"));
  const vars = { a: tf.variable(tf.tensor2d([[1, 2], [3, 4]])), b: tf.variable(tf.tensor1d([5])) };
  await saveCheckpoint(dir, vars, { step: 1, history: [], rngs: {} });
  vars.a.assign(tf.zeros([2, 2]));
  const before = tf.memory().numTensors;
  loadCheckpoint(latestCheckpoint(dir)!, vars);
  assert.equal(tf.memory().numTensors, before);
  assert.deepEqual(Array.from(vars.a.dataSync()), [1, 2, 3, 4]);
  tf.dispose(Object.values(vars));
  fs.rmSync(dir, { recursive: true });
});

test("evalAt scores exactly at the listed steps (and at step 0 with evalAtStart), and a resumed run keeps the earlier scores", async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "d2g-evalat-"));
  const x = tf.variable(tf.scalar(0));
  const spec = (totalSteps: number) => ({
    label: "evalAt", totalSteps, ckptDir: dir, ckptEvery: 1, vars: { x }, rngs: {}, evalAt: [2, 5], evalAtStart: true,
    step: () => {
      tf.tidy(() => x.assign(tf.add(x, 1)));
      return { loss: 0 };
    },
    evaluate: async (done: number) => ({ score: done, x: x.dataSync()[0] }),
  });
  await runTraining(spec(3));
  const r = await runTraining(spec(6));
  assert.equal(r.resumedFrom, 3);
  assert.deepEqual(r.history.filter((h) => h.score !== undefined).map((h) => [h.step, h.x]), [[0, 0], [2, 2], [5, 5]]);
  x.dispose();
  fs.rmSync(dir, { recursive: true, force: true });
});
