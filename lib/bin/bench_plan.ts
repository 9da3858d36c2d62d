// npm run bench:plan -- [cifar] [reconstruction]: per-unit costs that lib/experiments/plan.ts records.
//   cifar           notebook 02 at the cpu-scale settings of lib/experiments/cifar10_convergence.ts (16x16 stand-in
//                   teacher, batch sizes, LPIPS size, FID-C10 on evalSamples samples against refImages test images):
//                   a teacher evaluation per image, a Diffusion2GAN regression step and GAN step, a
//                   consistency-distillation step, one FID evaluation, the reference features
//   reconstruction  notebooks 01 and 05: one evaluation of a latent (TAEF2 decode, PSNR, LatentLPIPS) at 128 and
//                   256 px (their step costs are the ms/step the notebooks report; a LatentLPIPS step is timed
//                   too, to compare with those); a pixel-LPIPS step against an E-LatentLPIPS one at 256 px (notebook
//                   01); an E-LatentLPIPS step on batches of 1, 6 and 18 photographs x seeds at notebook 05's size
// A few steps of each, in a temporary folder; about five minutes on two cores. Both sections by default.
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { initEngine } from "../backend/engine";
import { Rng } from "../core/random";
import { loadCifar10 } from "../data/cifar10";
import { trainConsistency } from "../distill/consistency";
import { trainDiffusion2Gan } from "../distill/diffusion2gan";
import { generate } from "../distill/generator";
import { generatePairs, mergePairs, OdePairs, PairRecord } from "../distill/ode_pairs";
import { regressionLoss } from "../distill/regression";
import { loadC10FeatureNet } from "../metrics/cifar_classifier";
import { evaluate, ImageDataset } from "../metrics/evaluate";
import { loadStandinLpips } from "../perceptual/standins";
import { CONFIGS } from "../experiments/cifar10_convergence";
import { cifarLabelled, classCycledSamples, loadCifarTeacher, teacherSamples } from "../experiments/cifar10_teacher";
import { ABLATION_IMAGES, ablationConfig } from "../experiments/augmentation_ablation";
import { LossSpec, optimiseLatent, OptimiseContext } from "../experiments/latent_optimisation";
import { reconstructionConfig, withTarget } from "../experiments/reconstruction";
import { noiseProbes } from "../experiments/reconstruction_eval";

const STEPS = 6;
const PAIRS = 64;

async function seconds<T>(f: () => Promise<T>): Promise<[T, number]> {
  const t0 = performance.now();
  const r = await f();
  return [r, (performance.now() - t0) / 1000];
}

const SECTIONS = ["cifar", "reconstruction"];

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
  const batches: Array<[string[], number[]]> = [[ABLATION_IMAGES.slice(0, 1), [0]], [ABLATION_IMAGES, [0]], [ABLATION_IMAGES, [0, 1, 2]]];
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
    const d2g = async (regressionSteps: number, ganSteps: number) =>
      (await trainDiffusion2Gan({ cfg: { ...cfg.d2g, regressionSteps, ganSteps, ckptEvery: 1e9 }, teacher, pairs, regression: lpipsLoss })).result.secondsPerStep;
    const regS = await d2g(STEPS, 0);
    const ganS = await d2g(0, STEPS);
    const cd = await trainConsistency({ cfg: { ...cfg.cd, steps: STEPS, ckptEvery: 1e9 }, teacher, data: cifarLabelled(train, res as 16 | 32), distance: lpipsLoss });
    const cdS = cd.result.secondsPerStep;

    return [
      `  teacher evaluation per image (batch ${cfg.pairBatch}, ${res}x${res}): ${teacherEvalMs.toFixed(3)} ms`,
      `  reference features (${cfg.refImages} images): ${(tFirst - tFid).toFixed(2)} s`,
      `  one FID evaluation (${cfg.evalSamples} one-step samples): ${tFid.toFixed(2)} s`,
      `  Diffusion2GAN regression step (batch ${cfg.d2g.batch}): ${(1000 * regS).toFixed(0)} ms`,
      `  Diffusion2GAN GAN step (batch ${cfg.d2g.batch}): ${(1000 * ganS).toFixed(0)} ms`,
      `  consistency-distillation step (batch ${cfg.cd.batch}): ${(1000 * cdS).toFixed(0)} ms`,
    ];
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
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
    lines.push(...(section === "cifar" ? await cifar() : await reconstruction()));
    loads.push(os.loadavg()[0]);
  }
  console.log(`${engine.engine}, ${engine.threads} threads, load average ${loads.map((l) => l.toFixed(1)).join(" -> ")}, ${new Date().toISOString().slice(0, 10)}:`);
  for (const l of lines) console.log(l);
}

main().catch((e: Error) => {
  console.error(`bench:plan: ${e.message}`);
  process.exitCode = 1;
});
