import { test } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import * as fs from "fs";
import { initEngine } from "../lib/backend/engine";
import { Rng } from "../lib/core/random";
import { d2gEvaluations, t2iDiffusion2GanDefaults, T2IDiffusion2GanConfig, trainDiffusion2GanT2I } from "../lib/distill/diffusion2gan";
import { generateUNet2D } from "../lib/distill/generator";
import { UNet2DConditionModel } from "../lib/nn/sd/unet2d_condition";
import { LatentLpips } from "../lib/perceptual/latent_lpips";
import { checkpointPath } from "../lib/train/checkpoint";
import { DDIM_STEPS, SCHEDULER, tinyTextEncoder, tinyTextPairs, tinyUNet, tmp, tokenRow } from "./t2i_tiny";

// Diffusion2GAN trained from a tiny text-to-image teacher's ODE pairs: the pair store with token rows, the
// E-LatentLPIPS regression phase, and the GAN phase with every discriminator component on, resumed from a checkpoint.

const latentLpips = () => new LatentLpips({ latentChannels: 4, width: 1 / 16 }, new Rng(0));
const base = (): T2IDiffusion2GanConfig => ({ ...t2iDiffusion2GanDefaults(SCHEDULER, DDIM_STEPS), batch: 2, regressionSteps: 0, ganSteps: 0 });

test("text ODE pairs keep 77-token rows; batchAt hands the networks the text encoder's hidden states", async () => {
  await initEngine({ quiet: true });
  const encoder = tinyTextEncoder(4);
  const pairs = await tinyTextPairs(tinyUNet(1), encoder, 8);
  assert.equal(pairs.manifest.cDim, 77);
  assert.equal(pairs.manifest.teacherEvals, 8 * DDIM_STEPS);
  const rows = Array.from({ length: 8 }, (_, i) => Array.from(pairs.c.subarray(77 * i, 77 * (i + 1))));
  assert.ok(rows.every((r) => Array.from({ length: 6 }, (_, k) => tokenRow(k).join()).includes(r.join())), "each row is one of the six captions");
  const b = pairs.batchAt(1, 3, 0);
  assert.deepEqual(b.c.shape, [3, 77, 8]);
  const want = encoder.forward(Array.from(b.index, (i) => rows[i])).lastHiddenState;
  assert.deepEqual(b.c.dataSync(), want.dataSync());
});

test("E-LatentLPIPS steps bring the one-step generator closer to the teacher's ODE solutions", async () => {
  await initEngine({ quiet: true });
  const teacher = tinyUNet(1);
  const pairs = await tinyTextPairs(teacher, tinyTextEncoder(4), 8);
  const ll = latentLpips();
  const all = pairs.take(Array.from({ length: 8 }, (_, i) => i));
  const cfg = { ...base(), regressionSteps: 6, lrG: 3e-4, emaBeta: 0 };
  const distance = (net: UNet2DConditionModel) => tf.tidy(() => tf.mean(ll.distance(generateUNet2D(net, all.z, all.c, cfg.generator, SCHEDULER), all.x)).dataSync()[0]);
  const before = distance(teacher);
  const evaluated: number[] = [];
  const out = await trainDiffusion2GanT2I({
    cfg, teacher, scheduler: SCHEDULER, pairs, perceptual: { latentLpips: ll }, evalEvery: 3,
    evaluate: async (sample, done) => {
      evaluated.push(done);
      return { distance: tf.tidy(() => tf.mean(ll.distance(sample(all.z, all.c), all.x)).dataSync()[0]) };
    },
  });
  const after = distance(out.generator);
  assert.deepEqual(evaluated, [3, 6]);
  assert.ok(after < 0.85 * before, `LatentLPIPS to the ODE solutions: ${before} at init, ${after} after 6 steps`);
  assert.equal(out.result.history[5].distance, after);
  const h = out.result.history;
  assert.ok(h.every((e) => e.lossD === undefined && e.discEvals === 0), "no discriminator without a GAN phase");
  assert.equal(h[5].studentEvals, 6 * 2);
});

test("GAN phase with every component: counts follow the rule, tensors stay flat, and a run resumed from a checkpoint is the uninterrupted run, bit for bit", async () => {
  await initEngine({ quiet: true });
  const teacher = tinyUNet(1);
  const pairs = await tinyTextPairs(teacher, tinyTextEncoder(4), 8);
  const cfg: T2IDiffusion2GanConfig = {
    ...base(), regressionSteps: 1, ganSteps: 2, r1Every: 2, mixAndMatch: 0.5, ckptEvery: 2, lrD: 1e-3, lrG: 1e-3,
    emaHalflifeImages: 64, augment: ["g", "o"],
  };
  const run = (dir: string) => trainDiffusion2GanT2I({ cfg, teacher, scheduler: SCHEDULER, pairs, perceptual: { latentLpips: latentLpips() }, ckptDir: dir });
  // every forward pass of G is a forward() of its UNet; every pass of D runs the body's time embedding directly
  const proto = UNet2DConditionModel.prototype;
  const [forward, embed] = [proto.forward, proto.timeEmbedding];
  let gSamples = 0;
  let embedded = 0;
  proto.forward = function (this: UNet2DConditionModel, ...args: Parameters<typeof forward>) {
    gSamples += args[0].shape[0];
    return forward.apply(this, args);
  };
  proto.timeEmbedding = function (this: UNet2DConditionModel, ...args: Parameters<typeof embed>) {
    embedded += args[1];
    return embed.apply(this, args);
  };
  const dirA = tmp("t2i-a");
  let a;
  try {
    a = await run(dirA);
  } finally {
    [proto.forward, proto.timeEmbedding] = [forward, embed];
  }
  const h = a.result.history;
  assert.equal(h.length, 3);
  assert.ok(h[0].lossD === undefined && [1, 2].every((i) => Number.isFinite(h[i].lossD)));
  assert.deepEqual(h.map((e) => e.r1 !== undefined), [false, false, true], "R1 on the GAN steps whose index is a multiple of r1Every");
  assert.deepEqual({ studentEvals: h[2].studentEvals, discEvals: h[2].discEvals }, { studentEvals: gSamples, discEvals: embedded - gSamples });
  assert.deepEqual(d2gEvaluations(cfg, 3), { studentEvals: 3 * 2 + 2 * 2, discEvals: 2 * (3 * 2 + 1) + 1 });
  assert.equal(a.result.tensorsAtEnd, a.result.tensorsAfterFirstStep, "tensors leaked across steps");

  // a run killed after step 3, before its final checkpoint, leaves step 2's: resumed from it, it is the same run
  const dir = tmp("t2i-b");
  fs.copyFileSync(checkpointPath(dirA, 2), checkpointPath(dir, 2));
  const b = await run(dir);
  assert.equal(b.result.resumedFrom, 2);
  assert.deepEqual(b.result.history, h);
  const wa = a.generator.namedVariables();
  b.generator.namedVariables().forEach(([n, v], i) => assert.deepEqual(v.dataSync(), wa[i][1].dataSync(), `generator ${n} differs after resume`));
});
