import { before, test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as tf from "@tensorflow/tfjs";
import { Interrupted, requestInterrupt } from "../lib/core/interrupt";
import { setProgressSink } from "../lib/core/progress";
import { initEngine } from "../lib/backend/engine";
import { Rng } from "../lib/core/random";
import { LatentLpips } from "../lib/perceptual/latent_lpips";
import { Lpips } from "../lib/perceptual/lpips";
import { STANDIN_WIDTH } from "../lib/perceptual/standins";
import { taef2Codec } from "../lib/nn/latent_codec";
import { variantLoss } from "../lib/experiments/augmentation_ablation";
import { LOSS_KINDS, optimiseLatent, OptimiseContext } from "../lib/experiments/latent_optimisation";
import { reconstructionConfig, run, runSpread } from "../lib/experiments/reconstruction";
import { claims, spreadRows, spreadSummary } from "../lib/experiments/reconstruction_report";
import { Row } from "../lib/viz/table";
import { disposeTarget, loadTarget, PerceptualNets } from "../lib/experiments/reconstruction_eval";

// The experiment's mechanics, not the stand-ins' quality: the nets have the stand-ins' architecture with random
// weights, so the test needs neither trained weights nor minutes. Data (TAEF2, the photograph) comes from the
// mirror, D2G_DATA_MIRROR.

before(async () => {
  await initEngine({ quiet: true });
});

function randomNets(l1 = false): PerceptualNets {
  return {
    lpips: new Lpips(new Rng(0), { width: STANDIN_WIDTH }),
    lpipsTrunk: "random VGG16",
    latent: new LatentLpips({ latentChannels: 32, width: STANDIN_WIDTH, l1 }, new Rng(1)),
    latentTrunk: "random latent VGG16-BN",
  };
}

function disposeNets(n: PerceptualNets): void {
  n.lpips.dispose();
  n.latent.dispose();
}

test("run() at smoke scale: finite curves for every loss, no tensors left behind", async () => {
  const config = reconstructionConfig("smoke");
  assert.deepEqual(new Set(config.losses.map((l) => l.kind)), new Set(LOSS_KINDS), "the smoke config covers every loss kind");
  const nets = randomNets(config.l1);
  // Loading TAEF2 leaves tensors behind (Module.loadStateDict does not dispose what it assigns); run() loads it once,
  // so it may leave exactly that many and nothing else.
  let before = tf.memory().numTensors;
  (await taef2Codec()).dispose();
  const codecLeak = tf.memory().numTensors - before;
  before = tf.memory().numTensors;
  const base = fs.mkdtempSync(path.join(os.tmpdir(), "d2g-recon-"));
  const r = await run(config, nets, base);
  assert.equal(tf.memory().numTensors - before, codecLeak, "run() disposes everything it made");
  assert.equal(fs.readdirSync(base).filter((f) => f.startsWith("noise-probes-")).length, 1, "the yardstick is cached beside the runs");
  assert.equal(r.runs.length, config.losses.length);
  const finite = (xs: number[], what: string) => xs.forEach((v, i) => assert.ok(Number.isFinite(v), `${what}[${i}] = ${v}`));
  for (const x of r.runs) {
    const name = x.spec.label;
    assert.equal(x.losses.length, config.steps, `${name}: one loss per step`);
    finite(x.losses, `${name} loss`);
    finite(x.psnr.flat(), `${name} PSNR`);
    finite(x.latentLpips.flat(), `${name} LatentLPIPS`);
    assert.deepEqual(x.evalSteps, [0, 3, 6], `${name}: evaluated at the start, every evalEvery steps and at the end`);
    assert.ok(x.finalLpips.length === 1 && Number.isFinite(x.finalLpips[0]) && x.msPerStep > 0, name);
    assert.deepEqual(x.decoded.shape, [1, config.size, config.size, 3]);
    // the first evaluation is the shared starting noise, so every run begins at the same PSNR
    assert.equal(x.psnr[0][0], r.runs[0].psnr[0][0], `${name} starts from the same noise latent`);
    assert.equal(x.draws.length, x.spec.kind === "e-latent-lpips" ? config.steps : 0, `${name}: one augmentation draw per step`);
  }
  // a rerun of the finished notebook reads every run back and only decodes the final latents again
  const again = await run(config, nets, base);
  for (const [k, x] of again.runs.entries()) {
    assert.equal(x.resumedFrom, x.steps, `${x.spec.label} was read back, not recomputed`);
    assert.deepEqual([x.losses, x.psnr, x.latentLpips, x.finalLpips, x.msPerStep], [r.runs[k].losses, r.runs[k].psnr, r.runs[k].latentLpips, r.runs[k].finalLpips, r.runs[k].msPerStep]);
    assert.deepEqual(x.decoded.data, r.runs[k].decoded.data);
  }
  assert.deepEqual(again.probes, r.probes);
  disposeNets(nets);
  fs.rmSync(base, { recursive: true });
});

test("a stopped optimisation keeps its checkpoint and resumes to the same result as an unbroken one", async () => {
  const config = { ...reconstructionConfig("smoke"), steps: 4, evalEvery: 2, ckptEvery: 3 };
  const codec = await taef2Codec();
  const nets = randomNets();
  const target = await loadTarget(config.images, config.seeds, config.size, codec);
  const ctx: OptimiseContext = { codec, nets, target, ...config };
  const spec = variantLoss("bgc", ["bgc"]);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "d2g-unit-"));
  const straight = await optimiseLatent(ctx, spec);
  // the stop button pressed during the first step (progress always reports step 1, so the request lands in the run)
  const previous = setProgressSink((s) => {
    if (s.step === 1 && !s.done) requestInterrupt();
  });
  try {
    await assert.rejects(optimiseLatent(ctx, spec, { dir }), (e: Error) => e instanceof Interrupted && /stopped at step 1 of 4; checkpoint kept in/.test(e.message));
  } finally {
    setProgressSink(previous);
  }
  assert.deepEqual(fs.readdirSync(dir).filter((f) => f.startsWith("ckpt-")), ["ckpt-00000001.safetensors"]);
  const resumed = await optimiseLatent(ctx, spec, { dir });
  assert.equal(resumed.resumedFrom, 1);
  assert.equal(resumed.draws.length, 3, "only the steps after the resume drew here");
  assert.deepEqual([resumed.losses, resumed.evalSteps, resumed.psnr, resumed.latentLpips, resumed.finalLpips], [straight.losses, straight.evalSteps, straight.psnr, straight.latentLpips, straight.finalLpips]);
  assert.deepEqual(resumed.decoded.data, straight.decoded.data);
  disposeTarget(target);
  codec.dispose();
  disposeNets(nets);
  fs.rmSync(dir, { recursive: true });
});

test("E-LatentLPIPS draws a different augmentation every step, the same sequence on a rerun; tensors stay flat", async () => {
  const config = { ...reconstructionConfig("smoke"), steps: 4, evalEvery: 4 };
  const codec = await taef2Codec();
  const nets = randomNets();
  const target = await loadTarget(config.images, config.seeds, config.size, codec);
  const ctx: OptimiseContext = { codec, nets, target, ...config };
  const spec = variantLoss("bgc", ["bgc"]);
  const a = await optimiseLatent(ctx, spec);
  const b = await optimiseLatent(ctx, spec);

  for (let s = 1; s < a.draws.length; s++) {
    assert.notDeepEqual(a.draws[s], a.draws[s - 1], `step ${s + 1} drew the same augmentation as step ${s}`);
  }
  assert.deepEqual(b.draws, a.draws, "same seed, same draws");
  assert.deepEqual(b.losses, a.losses, "same seed, same loss curve");
  assert.ok(a.draws.every((d) => d.rotate90 && d.scale && d.brightness && !d.cutout), "bgc draws blit, geometric and colour ops, no cutout");

  // one step's tensors are all released: the live count after every step is the same
  assert.ok(a.tensors.every((n) => n === a.tensors[0]), `live tensors per step: ${a.tensors.join(", ")}`);
  const other = await optimiseLatent({ ...ctx, target: { ...target, rows: target.rows.map((r) => ({ ...r, seed: r.seed + 7 })) } }, spec);
  assert.notDeepEqual(other.draws[0], a.draws[0], "another seed draws other augmentations");

  disposeTarget(target);
  codec.dispose();
  disposeNets(nets);
});

test("rows of a batch are independent problems: each ends where it would alone, whatever shares its batch", async () => {
  const config = { ...reconstructionConfig("smoke"), steps: 3, evalEvery: 3 };
  const codec = await taef2Codec();
  const nets = randomNets();
  const spec = variantLoss("bg", ["bg"]);
  const images = [config.images[0], "images/kodak/kodim04.png"];
  const batch = await loadTarget(images, [0, 5], config.size, codec);
  assert.deepEqual(batch.rows.map((r) => `${r.image.split("/").pop()}/${r.seed}`), ["astronaut.png/0", "astronaut.png/5", "kodim04.png/0", "kodim04.png/5"]);
  const together = await optimiseLatent({ codec, nets, target: batch, ...config }, spec);
  assert.equal(together.psnr.length, 4);
  assert.equal(together.draws[0].scale!.length, 4, "one draw per row");
  for (const [k, row] of batch.rows.entries()) {
    const alone = await loadTarget([row.image], [row.seed], config.size, codec);
    const r = await optimiseLatent({ codec, nets, target: alone, ...config }, spec);
    for (const [i, v] of r.psnr[0].entries()) assert.ok(Math.abs(v - together.psnr[k][i]) < 0.01, `row ${k} eval ${i}: alone ${v} dB, in the batch ${together.psnr[k][i]} dB`);
    assert.deepEqual(r.draws.map((d) => d.scale), together.draws.map((d) => [d.scale![k]]), `row ${k} draws what it draws alone`);
    disposeTarget(alone);
  }
  assert.notEqual(together.psnr[0][0], together.psnr[1][0], "another seed starts from another latent");
  disposeTarget(batch);
  codec.dispose();
  disposeNets(nets);
});

test("the spread runs the three routes on every problem from the main run's start; its first row is the main run's problem", async () => {
  const config = reconstructionConfig("smoke");
  assert.deepEqual(config.spread.losses.map((l) => l.kind).sort(), ["e-latent-lpips", "latent-lpips", "lpips"]);
  assert.equal(config.spread.images[0], config.images[0]);
  const nets = randomNets(config.l1);
  const base = fs.mkdtempSync(path.join(os.tmpdir(), "d2g-spread-"));
  const before = tf.memory().numTensors;
  const main = await run(config, nets, base);
  const afterMain = tf.memory().numTensors;
  const s = await runSpread(config, nets, base);
  assert.equal(tf.memory().numTensors, afterMain, "runSpread disposes everything it made");
  assert.ok(afterMain >= before);
  assert.ok(fs.existsSync(path.join(base, "spread")), "its units live under spread/");
  const problems = config.spread.images.length * config.spread.seeds.length;
  assert.equal(s.rows.length, problems);
  for (const x of s.runs) {
    const alone = main.runs.find((r) => r.spec.label === x.spec.label)!;
    assert.equal(x.psnr.length, problems);
    for (const [i, v] of alone.psnr[0].entries()) assert.ok(Math.abs(v - x.psnr[0][i]) < 0.01, `${x.spec.label} eval ${i}: main run ${v} dB, spread row 0 ${x.psnr[0][i]} dB`);
  }
  const rows = spreadRows(s);
  assert.equal(rows.length, problems * s.runs.length);
  assert.deepEqual(Object.keys(rows[0]), ["variant", "kind", "image", "seed", "steps", "PSNR (dB)", "LatentLPIPS", "LPIPS", "batch ms/step"]);
  const summary = spreadSummary(rows);
  assert.equal(summary.length, 3);
  assert.equal(summary.find((r) => r.loss === "E-LatentLPIPS (bg)")!["interval against 0"], "");
  const again = await runSpread(config, nets, base);
  assert.ok(again.runs.every((x) => x.resumedFrom === x.steps), "a rerun reads the spread back");
  disposeNets(nets);
  fs.rmSync(base, { recursive: true });
});

test("notebook 01's second claim is decided by the whole interval over photographs against -1 dB", () => {
  const summary: Row[] = [
    ["LatentLPIPS", 12], ["E-LatentLPIPS (bg)", 17], ["LPIPS (decode)", 18],
  ].map(([loss, psnr]) => ({ loss, steps: 1500, "PSNR (dB)": psnr, "ms/step": loss === "LPIPS (decode)" ? 300 : 25 }));
  const spread = (gaps: number[], pixelSteps = 1500): Row[] =>
    gaps.flatMap((g, k) => [
      { variant: "E-LatentLPIPS (bg)", image: `p${k}`, seed: 0, steps: 1500, "PSNR (dB)": 20 + g, "batch ms/step": 60 },
      { variant: "LPIPS (decode)", image: `p${k}`, seed: 0, steps: pixelSteps, "PSNR (dB)": 20, "batch ms/step": 1200 },
    ]);
  const second = (rows?: Row[]) => claims({ summary, spread: rows })[1];
  assert.equal(second(spread([-0.2, -0.3, -0.25, -0.35])).verdict, "held");
  assert.equal(second(spread([-2.2, -2.3, -2.25, -2.35])).verdict, "did not hold");
  const wide = second(spread([-3, 1, -2, 0.5]));
  assert.equal(wide.verdict, "undecided");
  assert.match(wide.why!, /both sides of -1 dB/);
  assert.equal(second(spread([-0.2, -0.3], 100)).verdict, "not tested", "fewer pixel steps decide nothing");
  assert.match(second(spread([-0.2, -0.3, -0.25, -0.35])).ours, /20\.0x/);
  assert.equal(second(undefined).verdict, "not tested", "without a spread, one problem decides nothing");
});
