import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as tf from "@tensorflow/tfjs";
import { initEngine } from "../lib/backend/engine";
import { Rng } from "../lib/core/random";
import { SongUNet, SongUNetConfig } from "../lib/nn/unet";
import { edmSigmas, edmDenoiser } from "../lib/diffusion/edm";
import { sampleOde } from "../lib/diffusion/samplers";
import { LabelledData, rawNetOf } from "../lib/diffusion/train_edm";
import { generatePairs, mergePairs, OdePairs, PairRecord } from "../lib/distill/ode_pairs";
import { D2G_DEFAULTS, trainDiffusion2Gan } from "../lib/distill/diffusion2gan";
import { CD_DEFAULTS, trainConsistency } from "../lib/distill/consistency";
import { regressionLoss } from "../lib/distill/regression";

const TINY: SongUNetConfig = { imgResolution: 8, inChannels: 3, outChannels: 3, labelDim: 3, augmentDim: 0, modelChannels: 8, channelMult: [1, 2], channelMultEmb: 2, numBlocks: 1, attnResolutions: [4], dropout: 0 };
const tmp = (tag: string) => fs.mkdtempSync(path.join(os.tmpdir(), `d2g-${tag}-`));

async function tinyPairs(teacher: SongUNet): Promise<OdePairs> {
  const dir = tmp("pairs");
  const rec: PairRecord = { teacher: "tiny", sampler: "heun", steps: 4, guidance: 1, seed: 1, count: 8, shardSize: 8, zShape: [8, 8, 3], cDim: 3 };
  const D = edmDenoiser(rawNetOf(teacher));
  await generatePairs(dir, rec, async (z, c) => {
    const sig = edmSigmas(4);
    const x0 = tf.mul(z, sig[0]) as tf.Tensor4D;
    const r = await sampleOde(D, x0, { sigmas: sig, method: "heun", cond: c });
    x0.dispose();
    return { x: r.x, nfe: r.nfe };
  }, (rng) => { const c = [0, 0, 0]; c[rng.int(3)] = 1; return c; }, { batch: 8 });
  mergePairs(dir, rec);
  return OdePairs.open(dir);
}

test("Diffusion2GAN trains through both phases, evaluates on schedule, counts evaluations and resumes exactly", async () => {
  await initEngine({ quiet: true });
  const teacher = new SongUNet(TINY, new Rng(3));
  const pairs = await tinyPairs(teacher);
  assert.equal(pairs.manifest.teacherEvals, 8 * 7);
  const cfg = { ...D2G_DEFAULTS, batch: 4, regressionSteps: 2, ganSteps: 2, r1Every: 2, ckptEvery: 2 };
  const evals: number[] = [];
  const run = (steps: { regressionSteps: number; ganSteps: number }, dir: string) =>
    trainDiffusion2Gan({ cfg: { ...cfg, ...steps }, teacher, pairs, regression: regressionLoss("mse"), ckptDir: dir, evalEvery: 2,
      evaluate: async (sample, step) => {
        evals.push(step);
        const m = tf.tidy(() => tf.mean(sample(tf.zeros([2, 8, 8, 3]) as tf.Tensor4D, tf.oneHot(tf.tensor1d([0, 1], "int32"), 3).toFloat() as tf.Tensor2D)).dataSync()[0]);
        return { sampleMean: m };
      } });
  const a = await run({ regressionSteps: 2, ganSteps: 2 }, tmp("d2g-a"));
  assert.deepEqual(evals, [2, 4]);
  const h = a.result.history;
  assert.equal(h.length, 4);
  assert.ok(h.every((e) => Number.isFinite(e.lossG) && Number.isFinite(e.regression)));
  assert.equal(h[0].lossD, undefined, "no discriminator update in the regression phase");
  assert.ok(Number.isFinite(h[2].lossD) && Number.isFinite(h[2].r1), "GAN phase: D loss, and R1 at step 3 (index 2, a multiple of r1Every)");
  // one student evaluation per sample for each G update, one more per sample for each D update's fakes
  assert.equal(h[3].studentEvals, 4 * 4 + 2 * 4);
  assert.equal(a.result.tensorsAtEnd, a.result.tensorsAfterFirstStep);

  const dirB = tmp("d2g-b");
  await run({ regressionSteps: 2, ganSteps: 1 }, dirB);
  const b = await run({ regressionSteps: 2, ganSteps: 2 }, dirB);
  assert.equal(b.result.resumedFrom, 3);
  const wa = a.generator.parameters().map((v) => v.dataSync());
  b.generator.parameters().forEach((v, i) => assert.deepEqual(v.dataSync(), wa[i], `generator tensor ${i} differs after resume`));
});

test("consistency distillation trains, counts teacher and student evaluations, and evaluates its EMA student", async () => {
  await initEngine({ quiet: true });
  const teacher = new SongUNet(TINY, new Rng(4));
  const data: LabelledData = {
    size: 8,
    batch: (idx) => tf.tidy(() => ({ x: tf.gather(tf.randomUniform([8, 8, 8, 3], -1, 1, "float32", 5), tf.tensor1d(Array.from(idx), "int32")) as tf.Tensor4D, labels: tf.oneHot(tf.tensor1d(Array.from(idx, (i) => i % 3), "int32"), 3).toFloat() as tf.Tensor2D })),
  };
  let evaluated = 0;
  const out = await trainConsistency({ cfg: { ...CD_DEFAULTS, batch: 4, steps: 3, ckptEvery: 10, targetEma: 0.9, emaBeta: 0.9 }, teacher, data, distance: regressionLoss("mse"), evalEvery: 3,
    evaluate: async () => { evaluated++; return {}; } });
  const last = out.result.history[2];
  assert.equal(evaluated, 1);
  assert.equal(last.teacherEvals, 3 * 2 * 4);
  assert.equal(last.studentEvals, 3 * 2 * 4);
  assert.ok(out.result.history.every((e) => Number.isFinite(e.loss)));
  assert.equal(out.result.tensorsAtEnd, out.result.tensorsAfterFirstStep);
});
