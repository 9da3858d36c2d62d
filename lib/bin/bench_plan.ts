// npm run bench:plan -- [cifar] [reconstruction] [t2i]: per-unit costs that lib/experiments/plan.ts records.
//   cifar           notebook 02 at the cpu-scale settings of lib/experiments/cifar10_convergence.ts (16x16 stand-in
//                   teacher, batch sizes, LPIPS size, FID-C10 on evalSamples samples against refImages test images):
//                   a teacher evaluation per image, a Diffusion2GAN regression step per loss (LPIPS, MSE,
//                   pseudo-Huber) and GAN step, a consistency-distillation step, one FID evaluation, the reference
//                   features, and an EDM training step of the long stand-in teacher
//   reconstruction  notebooks 01 and 05: one evaluation of a latent (TAEF2 decode, PSNR, LatentLPIPS) at 128 and
//                   256 px (their step costs are the ms/step the notebooks report; a LatentLPIPS step is timed
//                   too, to compare with those); a pixel-LPIPS step against an E-LatentLPIPS one at 256 px (notebook
//                   01); an E-LatentLPIPS step on batches of 1, 6 and 18 photographs x seeds at notebook 05's size
//   t2i             notebook 03 at the cpu-scale settings of lib/experiments/t2i_distillation.ts (the world teacher's
//                   UNet2DConditionModel, random weights when the committed ones are absent: time does not depend on
//                   them; synthetic ODE pairs of 77-token captions): a training step of every regression loss and of
//                   every GAN row of the ladder, single-sample R1, a guided teacher evaluation, judging an image
//                   (TAEF2 decode, attribute scorer, eval CLIP) and a student's correspondence metrics
// A few steps of each, in a temporary folder; about five minutes on two cores per section. All sections by default.
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as tf from "@tensorflow/tfjs";
import { initEngine } from "../backend/engine";
import { Rng } from "../core/random";
import { loadCifar10 } from "../data/cifar10";
import { trainConsistency } from "../distill/consistency";
import { trainDiffusion2Gan } from "../distill/diffusion2gan";
import { trainEdm } from "../diffusion/train_edm";
import { generate } from "../distill/generator";
import { generatePairs, mergePairs, OdePairs, PairRecord } from "../distill/ode_pairs";
import { regressionLoss } from "../distill/regression";
import { loadC10FeatureNet } from "../metrics/cifar_classifier";
import { evaluate, ImageDataset } from "../metrics/evaluate";
import { loadStandinLpips } from "../perceptual/standins";
import { armById, armConfig, CONFIGS } from "../experiments/cifar10_convergence";
import { cifarLabelled, classCycledSamples, loadCifarTeacher, TEACHER_TRAININGS, teacherSamples } from "../experiments/cifar10_teacher";
import { ablationConfig } from "../experiments/augmentation_ablation";
import { LossSpec, optimiseLatent, OptimiseContext } from "../experiments/latent_optimisation";
import { PHOTOGRAPHS, reconstructionConfig, withTarget } from "../experiments/reconstruction";
import { decodeClipped, loadPerceptualNets, noiseProbes } from "../experiments/reconstruction_eval";
import { clipPreprocess } from "../data/clip_image";
import { ClipTokenizer } from "../data/clip_tokenizer";
import { LatentDiffusion } from "../diffusion/latent_diffusion";
import { DISCRIMINATOR_LADDER, ladderRung, T2IDiffusion2GanConfig, trainDiffusion2GanT2I } from "../distill/diffusion2gan";
import { generateUNet2D } from "../distill/generator";
import { clipTokenCondition } from "../distill/ode_pairs";
import { RegressionLossName } from "../distill/regression";
import { loadAttributeScorer } from "../metrics/attribute_scorer";
import { ClipModel } from "../nn/clip/clip_model";
import { taef2Codec } from "../nn/latent_codec";
import { parseUNet2DConditionConfig, UNet2DConditionModel } from "../nn/sd/unet2d_condition";
import { augmentPair } from "../perceptual/augment";
import { tinyClipConfig, worldClipPair } from "../train/train_clip";
import { t2iDistillationConfig, WORLD_DDIM } from "../experiments/t2i_distillation";
import { loadT2iTeacher, promptNoise, T2I_TEACHERS, WORLD_SCHEDULER_CONFIG, WORLD_TEACHER_UNET, loadWorldTextEncoder } from "../experiments/t2i_teacher";

const STEPS = 6;
const PAIRS = 64;

async function seconds<T>(f: () => Promise<T>): Promise<[T, number]> {
  const t0 = performance.now();
  const r = await f();
  return [r, (performance.now() - t0) / 1000];
}

const SECTIONS = ["cifar", "reconstruction", "t2i"];

/** One evaluation at each size: an optimisation with 4 cheap steps and 5 evaluations, less one noise probe. */
async function reconstruction(): Promise<string[]> {
  const lines: string[] = [];
  for (const size of [128, 256]) {
    const config = { ...reconstructionConfig("cpu"), size };
    await withTarget(config, undefined, async (ctx) => {
      await noiseProbes(ctx, [0.1], 0);
      const [, tProbe] = await seconds(() => noiseProbes(ctx, [0.1], 0));
      const [, tRun] = await seconds(() => optimiseLatent({ ...ctx, steps: 4, evalEvery: 1 }, { kind: "latent-mse", label: "bench" }));
      // a LatentLPIPS step too: set against the notebooks' own ms/step it tells how loaded the machine was
      const steps = await optimiseLatent({ ...ctx, steps: 6, evalEvery: 100 }, { kind: "latent-lpips", label: "bench" });
      lines.push(`  latent evaluation at ${size} px: ${((1000 * (tRun - tProbe)) / 4).toFixed(0)} ms; LatentLPIPS step ${steps.msPerStep.toFixed(1)} ms`);
      if (size === 256) {
        const [pixel, ens] = [await stepMs(ctx, { kind: "lpips", label: "bench" }, 3), await stepMs(ctx, { kind: "e-latent-lpips", label: "bench", augment: "bg" }, 6)];
        lines.push(`  at 256 px: pixel-LPIPS step ${ms(pixel)}, E-LatentLPIPS (bg) step ${ms(ens)} (${(pixel.wall / ens.wall).toFixed(1)}x wall, ${(pixel.cpu / ens.cpu).toFixed(1)}x CPU)`);
      }
    });
  }
  // notebook 05: every (photograph, seed) of a variant in one batch
  const cpu = ablationConfig("cpu");
  const batches: Array<[string[], number[]]> = [[PHOTOGRAPHS.slice(0, 1), [0]], [PHOTOGRAPHS, [0]], [PHOTOGRAPHS, [0, 1, 2]]];
  const perBatch: string[] = [];
  for (const [images, seeds] of batches) {
    await withTarget({ ...cpu, images, seeds }, undefined, async (ctx) => {
      perBatch.push(`${images.length * seeds.length} rows ${ms(await stepMs(ctx, { kind: "e-latent-lpips", label: "bench", augment: "bg" }, 6))}`);
    });
  }
  lines.push(`  E-LatentLPIPS (bg) step at ${cpu.size} px by batch: ${perBatch.join(", ")}`);
  return lines;
}

/**
 * One optimisation step: the mean wall ms of `steps` steps after a one-step run that compiles the kernels and builds
 * the resampling plans, and the CPU ms per step (the difference of the two runs' CPU time over the extra steps),
 * which a loaded machine distorts far less than wall time.
 */
async function stepMs(ctx: OptimiseContext, spec: LossSpec, steps: number): Promise<{ wall: number; cpu: number }> {
  const settings = { ...ctx, evalEvery: 1000 };
  const cpuOf = async (n: number) => {
    const c = process.cpuUsage();
    const r = await optimiseLatent({ ...settings, steps: n }, spec);
    const d = process.cpuUsage(c);
    return { run: r, cpu: (d.user + d.system) / 1000 };
  };
  const one = await cpuOf(1);
  const many = await cpuOf(steps + 1);
  return { wall: many.run.msPerStep, cpu: (many.cpu - one.cpu) / steps };
}

const ms = (t: { wall: number; cpu: number }) => `${t.wall.toFixed(0)} ms (CPU ${t.cpu.toFixed(0)} ms)`;

async function cifar(): Promise<string[]> {
  const cfg = CONFIGS.cpu;
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "d2g-bench-plan-"));
  try {
    const { net: teacher, spec } = loadCifarTeacher("cpu");
    const res = spec.resolution;
    const [train, test] = [await loadCifar10("train"), await loadCifar10("test")];
    const fnet = loadC10FeatureNet();
    const lpips = loadStandinLpips();
    const lpipsLoss = regressionLoss("lpips", { lpips: lpips.lpips, lpipsSize: cfg.lpipsSize });

    // teacher: one batch of ODE pairs (Heun, teacherLevels levels)
    const rec: PairRecord = { teacher: "bench", sampler: "heun", steps: cfg.teacherLevels, guidance: 1, seed: 0, count: PAIRS, shardSize: PAIRS, zShape: [res, res, 3], cDim: 10 };
    const onehot = (rng: Rng) => {
      const label = rng.int(10);
      return Array.from({ length: 10 }, (_, k) => (k === label ? 1 : 0));
    };
    const pairDir = path.join(tmp, "pairs");
    const [, tPairs] = await seconds(async () => generatePairs(pairDir, rec, (z, c) => teacherSamples(teacher, z, c, cfg.teacherLevels), onehot, { batch: cfg.pairBatch }));
    const manifest = mergePairs(pairDir, rec);
    const teacherEvalMs = (1000 * tPairs) / manifest.teacherEvals;

    // FID: the first evaluation also extracts the reference features, the second only the samples
    const labelled = cifarLabelled(test, res as 16 | 32);
    const ref: ImageDataset = {
      id: "bench-ref",
      size: cfg.refImages,
      async *batches(b: number) {
        for (let i = 0; i < cfg.refImages; i += b) {
          const { x, labels } = labelled.batch(Int32Array.from({ length: Math.min(b, cfg.refImages - i) }, (_, j) => i + j));
          labels.dispose();
          yield x;
        }
      },
    };
    const fid = () => evaluate({ stream: classCycledSamples((z, c) => generate(teacher, z, c, cfg.d2g.sigmaG), cfg.evalSamples, res, new Rng(1), 50), count: cfg.evalSamples }, ref, { net: fnet, batchSize: 100, cacheDir: path.join(tmp, "cache") });
    const [, tFirst] = await seconds(fid);
    const [, tFid] = await seconds(fid);

    const pairs = OdePairs.open(pairDir);
    const arm = (id: string) => armConfig(cfg, armById(id), 2e-4, 0);
    const d2gCfg = (id: string) => {
      const a = arm(id);
      if (a.method !== "Diffusion2GAN") throw new Error(`${id}: not a Diffusion2GAN arm`);
      return a.d2g;
    };
    const d2g = async (id: string, regressionSteps: number, ganSteps: number) => {
      const out = await trainDiffusion2Gan({ cfg: { ...d2gCfg(id), regressionSteps, ganSteps, ckptEvery: 1e9 }, teacher, pairs, regression: regressionLoss(armById(id).loss, { lpips: lpips.lpips, lpipsSize: cfg.lpipsSize }) });
      out.generator.dispose();
      return out.result.secondsPerStep;
    };
    const regS = await d2g("d2g-lpips", STEPS, 0);
    const mseS = await d2g("d2g-mse", STEPS, 0);
    const huberS = await d2g("d2g-pseudo-huber", STEPS, 0);
    const ganS = await d2g("d2g-lpips-gan", 0, STEPS);
    const cdArm = arm("cd");
    if (cdArm.method !== "CD") throw new Error("cd: not the CD arm");
    const cd = await trainConsistency({ cfg: { ...cdArm.cd, steps: STEPS, ckptEvery: 1e9 }, teacher, data: cifarLabelled(train, res as 16 | 32), distance: lpipsLoss });
    cd.student.dispose();
    const cdS = cd.result.secondsPerStep;
    const edm = await trainEdm({ ...TEACHER_TRAININGS.long, steps: STEPS + 1, ckptEvery: 1e9 }, cifarLabelled(train, 16));
    edm.net.dispose();
    edm.ema.dispose();

    return [
      `  teacher evaluation per image (batch ${cfg.pairBatch}, ${res}x${res}): ${teacherEvalMs.toFixed(3)} ms`,
      `  reference features (${cfg.refImages} images): ${(tFirst - tFid).toFixed(2)} s`,
      `  one FID evaluation (${cfg.evalSamples} one-step samples): ${tFid.toFixed(2)} s`,
      `  Diffusion2GAN regression step (batch ${cfg.batch}): LPIPS ${(1000 * regS).toFixed(0)} ms, MSE ${(1000 * mseS).toFixed(0)} ms, pseudo-Huber ${(1000 * huberS).toFixed(0)} ms`,
      `  Diffusion2GAN GAN step (batch ${cfg.batch}): ${(1000 * ganS).toFixed(0)} ms`,
      `  consistency-distillation step (batch ${cfg.batch}): ${(1000 * cdS).toFixed(0)} ms`,
      `  stand-in teacher EDM step (batch ${TEACHER_TRAININGS.long.batch}): ${edm.result.msPerStep.toFixed(0)} ms`,
    ];
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

/** The world teacher's UNet with random weights, with the committed text CLIP's text tower. */
async function randomWorldTeacher(): Promise<LatentDiffusion> {
  const unet = new UNet2DConditionModel(parseUNet2DConditionConfig(WORLD_TEACHER_UNET, "world teacher"), new Rng(0));
  const textEncoder = loadWorldTextEncoder("cpu");
  return new LatentDiffusion({ unet, textEncoder, tokenizer: await ClipTokenizer.load(), schedulerConfig: WORLD_SCHEDULER_CONFIG });
}

/**
 * Notebook 03's units at its cpu config: the mean wall ms of N steps after the first (which compiles the kernels and
 * draws R1 at step 0), per regression loss and ladder row; R1 on top; a teacher evaluation per sample and judging
 * per image.
 */
async function t2i(): Promise<string[]> {
  const STEPS = 3;
  const c = t2iDistillationConfig("cpu");
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "d2g-bench-t2i-"));
  const teacher = fs.existsSync(T2I_TEACHERS.cpu.weights) ? await loadT2iTeacher("cpu") : await randomWorldTeacher();
  const { unet, textEncoder, tokenizer } = teacher;
  const nets = loadPerceptualNets(c.latentL1);
  const codec = await taef2Codec();
  const { scorer } = loadAttributeScorer();
  const evalClip = new ClipModel(tinyClipConfig(worldClipPair(64).eval), new Rng(0));
  const lines: string[] = [];
  try {
    const captions = ["a red circle on a grey background", "two small blue squares to the left of a green star against a dotted white background"];
    const rows = captions.map((t) => tokenizer.tokenize(t)[0]);
    const rec: PairRecord = { teacher: "bench", sampler: "ddim", steps: c.pairSteps, guidance: 8, seed: 0, count: 4 * c.recipe.batch, shardSize: 4 * c.recipe.batch, zShape: [8, 8, unet.config.in_channels], cDim: 77 };
    const dir = path.join(tmp, "pairs");
    await generatePairs(dir, rec, (z) => ({ x: tf.mul(z, 0.5) as tf.Tensor4D, nfe: 1 }), (rng) => rows[rng.int(rows.length)], { batch: rec.count });
    mergePairs(dir, rec);
    const pairs = OdePairs.open(dir, clipTokenCondition(textEncoder));
    const perceptual = { latentLpips: nets.latent, lpips: nets.lpips, decode: (x: tf.Tensor4D) => codec.decode(x) };
    const train = async (cfg: T2IDiffusion2GanConfig) => {
      const out = await trainDiffusion2GanT2I({ cfg: { ...cfg, ckptEvery: 1e9 }, teacher: unet, scheduler: WORLD_DDIM, pairs, perceptual, label: "bench" });
      out.generator.dispose();
      return out.result.msPerStep * (cfg.regressionSteps + cfg.ganSteps);
    };
    // N steps after a first one: their mean, without the compile (and R1 when R1 is never due again)
    const perStep = async (cfg: T2IDiffusion2GanConfig, phase: "regressionSteps" | "ganSteps") => ((await train({ ...cfg, [phase]: STEPS + 1 })) - (await train({ ...cfg, [phase]: 1 }))) / STEPS;
    const reg = (loss: RegressionLossName) => ({ ...c.recipe, regression: loss, regressionSteps: 0, ganSteps: 0 });
    const regMs: string[] = [];
    for (const loss of c.losses) regMs.push(`${loss} ${(await perStep(reg(loss), "regressionSteps")).toFixed(0)}`);
    lines.push(`  t2i regression step (batch ${c.recipe.batch}), ms: ${regMs.join(", ")}`);
    const ganMs: string[] = [];
    for (let k = 1; k < DISCRIMINATOR_LADDER.length; k++) ganMs.push(`${k} ${(await perStep({ ...ladderRung(c.recipe, k), regressionSteps: 0, r1Every: 1e9 }, "ganSteps")).toFixed(0)}`);
    lines.push(`  t2i GAN step by ladder row without R1 (batch ${c.recipe.batch}), ms: ${ganMs.join(", ")}`);
    const full = { ...ladderRung(c.recipe, DISCRIMINATOR_LADDER.length - 1), regressionSteps: 0 };
    const r1 = (await perStep({ ...full, r1Every: 1 }, "ganSteps")) - (await perStep({ ...full, r1Every: 1e9 }, "ganSteps"));
    lines.push(`  t2i single-sample R1 (full recipe): ${r1.toFixed(0)} ms each (every ${c.recipe.r1Every} steps)`);

    // a guided teacher evaluation per sample: DDIM at guidance 8 on a batch of the evaluation's size
    const e = c.evaluation;
    const prompts = Array.from({ length: e.batch }, (_, i) => captions[i % 2]);
    const z = promptNoise(teacher, 0, 0, e.batch, 8);
    const cond = teacher.encode(prompts, 8);
    const sample = async (steps: number) => {
      const t0 = performance.now();
      const out = await teacher.sampleLatents(z, cond, { steps, sampler: "ddim" });
      out.latents.dispose();
      return { ms: performance.now() - t0, nfe: out.nfe };
    };
    await sample(1);
    const [one, five] = [await sample(1), await sample(5)];
    lines.push(`  t2i teacher evaluation per sample (guided, ${e.batch} prompts a batch): ${((five.ms - one.ms) / ((five.nfe - one.nfe) * e.batch)).toFixed(2)} ms`);

    // judging an image and a student's correspondence metrics, per image
    const latents = tf.mul(z, 0.5) as tf.Tensor4D;
    const judge = async () => {
      const images = await decodeClipped(codec, latents);
      await scorer.read(images);
      const f = tf.tidy(() => evalClip.imageFeatures(clipPreprocess(images, evalClip.config.vision.imageSize)));
      await f.data();
      tf.dispose([images, f]);
    };
    const correspond = async () => {
      const c1 = generateUNet2D(unet, z, cond.cond.slice([0], [e.batch]) as tf.Tensor3D, c.recipe.generator, WORLD_DDIM);
      const ds = [nets.latent.distance(c1, latents), ...Array.from({ length: e.eDraws }, (_, k) => nets.latent.distance(c1, latents, (a, b) => augmentPair(a, b, { ops: c.recipe.augment }, new Rng(k))))];
      const [a, b] = [await decodeClipped(codec, c1), await decodeClipped(codec, latents)];
      ds.push(nets.lpips.distance(a, b));
      for (const d of ds) await d.data();
      tf.dispose([c1, a, b, ...ds]);
    };
    await judge();
    await correspond();
    const [, tJudge] = await seconds(judge);
    const [, tCorr] = await seconds(correspond);
    lines.push(`  t2i judging per image (TAEF2 decode, attribute scorer, eval CLIP): ${((1000 * tJudge) / e.batch).toFixed(1)} ms; a student's one-step sample and correspondence per image: ${((1000 * tCorr) / e.batch).toFixed(1)} ms`);
    tf.dispose([z, latents, cond.cond, ...(cond.guidance ? [cond.guidance.uncond] : [])]);
  } finally {
    teacher.dispose();
    nets.latent.dispose();
    nets.lpips.dispose();
    codec.dispose();
    scorer.dispose();
    evalClip.dispose();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  return lines;
}

async function main(): Promise<void> {
  const asked = process.argv.slice(2);
  const unknown = asked.filter((a) => !SECTIONS.includes(a));
  if (unknown.length) {
    console.error(`bench:plan: unknown section ${unknown.join(", ")}; sections: ${SECTIONS.join(", ")}`);
    process.exitCode = 2;
    return;
  }
  const engine = await initEngine();
  const lines: string[] = [];
  const loads = [os.loadavg()[0]];
  for (const section of asked.length ? asked : SECTIONS) {
    lines.push(...(section === "cifar" ? await cifar() : section === "t2i" ? await t2i() : await reconstruction()));
    loads.push(os.loadavg()[0]);
  }
  console.log(`${engine.engine}, ${engine.threads} threads, load average ${loads.map((l) => l.toFixed(1)).join(" -> ")}, ${new Date().toISOString().slice(0, 10)}:`);
  for (const l of lines) console.log(l);
}

main().catch((e: Error) => {
  console.error(`bench:plan: ${e.message}`);
  process.exitCode = 1;
});
