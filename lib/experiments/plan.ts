import { ABLATION_CONFIGS } from "./augmentation_ablation";
import { armConfig, ARMS, CONFIGS as CONVERGENCE_CONFIGS, evaluationSteps, pairEvaluations, searchConfig, ArmConfig } from "./cifar10_convergence";
import { ENVIRONMENT_CONFIGS } from "./environment";
import { LossKind } from "./latent_optimisation";
import { RECONSTRUCTION_CONFIGS } from "./reconstruction";
import { Scale } from "./scale";
import * as fs from "fs";
import * as path from "path";
import { d2gEvaluations, DISCRIMINATOR_LADDER, T2IDiffusion2GanConfig } from "../distill/diffusion2gan";
import { RegressionLossName } from "../distill/regression";
import { COCO_TABLES_CONFIGS } from "./coco_tables";
import { distillationArms, HEADLINE_RUNGS, T2I_DISTILLATION_CONFIGS } from "./t2i_distillation";
import { T2I_TEACHERS, worldPairsDir } from "./t2i_teacher";

// How long each notebook will take, before it runs: its experiment's config at the chosen scale (steps, sizes,
// counts) times per-unit costs measured on the project's 2-core machine (wasm engine, 2 threads). `npm run
// reproduce` prints these before it starts. Costs are wall times on that machine; another engine or machine
// changes them all, and a rerun that resumes from checkpoints takes less.

export interface PlanPart {
  what: string;
  seconds: number;
}

export interface NotebookPlan {
  /** File stem, e.g. 01_latent_lpips_reconstruction. */
  notebook: string;
  /** What it runs, in a line. */
  summary: string;
  parts: PlanPart[];
  seconds: number;
}

interface Estimate {
  summary: string;
  parts: PlanPart[];
}

const plural = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

/** A cost in ms as a function of latent pixels ((size / 8)^2 for TAEF2), through the measured points. */
function perLatentPixel(points: ReadonlyArray<readonly [sizePx: number, ms: number]>): (sizePx: number) => number {
  const px = (s: number) => (s / 8) ** 2;
  if (points.length === 1) return (s) => (points[0][1] * px(s)) / px(points[0][0]);
  const [[s1, m1], [s2, m2]] = points;
  // ms = a + b * latent pixels, the line through both points, never below a tenth of the smaller one
  const b = (m2 - m1) / (px(s2) - px(s1));
  return (s) => Math.max(0.1 * Math.min(m1, m2), m1 + b * (px(s) - px(s1)));
}

/**
 * One optimisation step of one image under notebook 01's losses, in ms: at 128 px the cpu run of notebook 01
 * (figures/01_summary.csv, 2026-11-30 09:18-09:28 UTC, wasm SIMD kernels, load average about 2); at 256 px a few
 * steps of each after a warm-up step (08:35 UTC, load average 3-4.5, so probably high). Re-measure on a quiet
 * machine (npm run bench:plan -- reconstruction).
 */
const STEP_MS: Record<LossKind, (sizePx: number) => number> = {
  "latent-mse": perLatentPixel([[128, 0.5]]),
  lpips: perLatentPixel([[128, 314.8], [256, 2230]]),
  "latent-lpips": perLatentPixel([[128, 17.2], [256, 100]]),
  "e-latent-lpips": perLatentPixel([[128, 25.9], [256, 110]]),
};

export const COSTS = {
  reconstructionStepMs: STEP_MS,
  /**
   * One evaluation of one latent (TAEF2 decode on the inference engine, PSNR, LatentLPIPS) in ms, measured with the
   * 256 px step costs: 128 ms at 128 px (1,228 ms for a batch of 12 rows, 102 ms a row), 450 ms at 256 px.
   */
  reconstructionEvalMs: perLatentPixel([[128, 110], [256, 450]]),
  /**
   * What each further row of a batched reconstruction step (notebook 05: all photographs x seeds of a variant in one
   * batch) adds, as a fraction of a one-row step at the same size. Notebook 05's cpu run (2026-11-30 08:41-09:18 UTC,
   * load average 4-5) took 165 ms per 12-row LatentLPIPS step and 97-227 ms (mean 175) per E-LatentLPIPS one against
   * 17.2 and 25.9 ms for one row in notebook 01's quieter run: 0.56 per further row, which reproduces 05's 2,235 s.
   * Some of it is the difference in load: a side-by-side measurement at 08:35 (load 3-4.5) gave 171-193 ms for 12
   * rows against 47-53 ms for one (0.24). Proportional to latent pixels at other sizes (the earlier engine gave
   * 0.055 at 64 px).
   */
  batchRowFraction: (sizePx: number) => Math.min(1, perLatentPixel([[128, 0.56]])(sizePx)),
  /**
   * The same for a pixel-LPIPS step (decode + VGG16 forward and backward), which does not batch: at 128 px, 4 rows
   * took 2,032 ms and 12 rows 5,468 ms a step (2026-11-30 15:34 UTC, beside a teacher's training), 430 ms per further
   * row against about 450 ms for one row under that load.
   */
  pixelBatchRowFraction: 1,
  /** Tiny convnet of notebook 00: ms per image and step at width 16 (figures/00_summary.csv: 13.3 ms at batch 32). */
  environmentImageStepMs: 13.3 / 32,
  // Notebook 02 at its cpu settings (16x16 stand-in teacher, batch 32, LPIPS at 32 px, FID-C10 of 500 samples
  // against 2,000 test images): its cpu run of 2026-11-30 with the wasm SIMD kernels and onnxruntime for the
  // teacher (load average about 2): 1,024 pairs of 35 evaluations in 34.9 s; 300 regression steps in 93 s, 150 GAN
  // steps in 173 s and 375 CD steps in 184 s, each with its FIDs (about 1 s of features and sampling each) included.
  // The MSE and pseudo-Huber regression steps (no LPIPS) were timed beside the LPIPS one (2026-11-30, 4 steps each
  // after a warm-up, twice, batch 32, under load average 4.1-4.2 from another run): MSE 245-286 ms, pseudo-Huber
  // 174-492 ms, LPIPS at 32 px 420-497 ms; so 0.55 of the LPIPS step here. `npm run bench:plan -- cifar` the same
  // day under load average 5.8-6.3 (other sessions' runs): LPIPS regression 776 ms, MSE 426, pseudo-Huber 369, GAN
  // step 2,483, CD step 751, one FID of 500 samples 2.33 s, a teacher evaluation 2.16 ms a sample: 2.2-2.5x the
  // costs below, so at that load notebook 02's cpu run takes over two hours. Re-measure on a quiet machine.
  teacherEvalMsPerImage: 34_900 / (1024 * 35),
  d2gRegressionStepS: { lpips: 93 / 300, mse: 0.55 * (93 / 300), "pseudo-huber": 0.55 * (93 / 300) } as Record<string, number>,
  d2gGanStepS: 173 / 150,
  cdStepS: 184 / 375,
  fidEvalS: 1,
  /**
   * The held-out correspondence per sample: a student sample and an LPIPS evaluation against the teacher's, costed
   * as an FID sample (not measured separately).
   */
  heldOutSampleS: 1 / 500,
  /**
   * One EDM training step of the 16x16 stand-in teacher at batch 32: 225 ms (2026-11-30, load average 4.2, beside
   * student steps 1.4-1.6x the ones above) and 313 ms in bench:plan under load 6 (beside an LPIPS regression step of
   * 776 ms, 2.5x the 310 ms above): about 0.13 s at the load of the costs above, rounded up.
   */
  cifarTeacherStepS: 0.15,
  /** An earlier run (load average 8.5): 0.41 s; the later one could not separate it from the noise. */
  referenceFeaturesS: 0.41,
  /**
   * Per notebook, what does not grow with the config: kernel start, TypeScript compile of the imports, engine,
   * weights, Chromium's start for the first figure. The smoke-scale wall times of 2026-11-30 (34.6, 62, 182 and 86 s
   * under load average 12-18) divided by the same 2.74, less each one's estimated work. Re-measure on a quiet
   * machine (`D2G_SCALE=smoke npm run reproduce` prints each notebook's time beside its estimate).
   */
  notebookFixedS: { "00_environment": 9, "01_latent_lpips_reconstruction": 20, "02_cifar10_convergence": 42, "03b_t2i_distillation": 40, "03a_t2i_teacher": 30, "04_coco_tables": 40, "05_augmentation_ablation": 27 } as Record<string, number>,
  /**
   * The world teacher (4.2M-parameter UNet2DConditionModel on 8x8x32 latents, 77 context tokens): one UNet
   * evaluation of one sample inside a batch of 100 rows (50 guided), ms, and per sampled image the TAEF2 decode and
   * the scoring (attribute scorer, eval CLIP), ms. The cpu runs of 2026-11-30 12:01-12:15 UTC (nothing else
   * running): 500 guided DDIM-50 pairs in 283 s (5.65 ms an evaluation); the report's guided rows 200 samples in
   * 112-115 s, so about 10 ms a sample besides its 100 evaluations.
   */
  worldTeacherEvalMs: 5.7,
  worldImageScoreMs: 10,
  /**
   * Notebook 03 at its cpu config (the world teacher's UNet2DConditionModel as G and D, batch 16, 8x8x32 latents,
   * 77-token captions): ms per training step by regression loss and by ladder row (R1 apart), one single-sample R1,
   * and per evaluated image a student's one-step sample with its correspondence metrics (LatentLPIPS, 4
   * E-LatentLPIPS draws, TAEF2 decodes and LPIPS), besides the judging (worldImageScoreMs). `npm run bench:plan --
   * t2i`, 2026-11-30 11:40 UTC, under nice 19 beside a CPU-heavy training (load average 3.9-5.4): upper bounds, to
   * be measured again on a quiet machine. The same bench gave 7.7 ms per guided teacher evaluation and 28 ms of
   * judging per image under that load (the quiet runs above: 5.7 and 10).
   */
  t2iBatch: 16,
  t2iRegressionStepMs: { mse: 852, "pseudo-huber": 569, lpips: 3608, latentlpips: 700, "e-latentlpips": 458 } as Record<RegressionLossName, number>,
  t2iGanStepMs: [2506, 2441, 2410, 2520, 3097],
  t2iR1Ms: 814,
  t2iStudentImageMs: 75.4,
  /**
   * Notebook 04 at cpu scale, the world teacher on onnxruntime (the inference engine): one UNet evaluation of one
   * sample in a guided batch of 50, and one TAEF2 decode per image, ms. Measured side by side with tfjs
   * (2026-11-30 13:10 UTC, under nice 19 beside notebook 03b's cpu run, load average 6.2): 7.3 ms against tfjs's
   * 14.2-15.9 ms an evaluation, 38 ms against 79-100 ms a decode; scaled by the quiet tfjs cost above (5.7 ms):
   * 2.8 and 15 ms. Per UNet evaluation at batch 1 (the latency column): tfjs 118 ms, onnxruntime 15.8 ms (load
   * average 2.9). Re-measure on a quiet machine.
   */
  cocoOrtEvalMs: 2.8,
  cocoOrtDecodeMs: 15,
  cocoBatch1EvalMs: { tfjs: 118, onnxruntime: 15.8 },
  /** One SD1.5 UNet evaluation at 64x64x4 on this machine (tfjs JS backend: wasm cannot hold it), environment.md. */
  sd15UnetEvalS: 2027,
};

const fixed = (notebook: string): PlanPart => ({ what: "kernel, engine, weights, figures", seconds: COSTS.notebookFixedS[notebook] ?? 0 });

function environmentPlan(scale: Scale): Estimate {
  const c = ENVIRONMENT_CONFIGS[scale];
  // conv cost grows with the square of the width (its second conv is width -> 2 width)
  const perImage = COSTS.environmentImageStepMs * (c.width / 16) ** 2;
  const what = `tiny convnet: ${c.steps} steps, batch ${c.batch}`;
  return { summary: what, parts: [fixed("00_environment"), { what, seconds: (c.steps * c.batch * perImage) / 1000 }] };
}

/** Adam steps on a batch of `rows` problems plus the evaluations (of every row) at step 0, every evalEvery steps and at the end. */
function optimisationS(kind: LossKind, steps: number, size: number, evalEvery: number, rows = 1): number {
  const evals = 1 + Math.floor(steps / evalEvery) + (steps % evalEvery === 0 ? 0 : 1);
  const fraction = kind === "lpips" ? COSTS.pixelBatchRowFraction : COSTS.batchRowFraction(size);
  const stepMs = COSTS.reconstructionStepMs[kind](size) * (1 + (rows - 1) * fraction);
  return (steps * stepMs + evals * rows * COSTS.reconstructionEvalMs(size)) / 1000;
}

function reconstructionPlan(scale: Scale): Estimate {
  const c = RECONSTRUCTION_CONFIGS[scale];
  const byLoss = c.losses.map((l) => ({ label: l.label, kind: l.kind, steps: l.steps ?? c.steps }));
  const rows = c.spread.images.length * c.spread.seeds.length;
  const counts = [...new Set(byLoss.map((l) => l.steps))].map((n) => `${plural(byLoss.filter((l) => l.steps === n).length, "loss", "losses")} x ${n} steps`);
  return {
    summary: `${counts.join(" + ")} at ${c.size} px, ${plural(c.probeSigmas.length, "noise probe")}, the spread on ${plural(rows, "problem")}`,
    parts: [
      fixed("01_latent_lpips_reconstruction"),
      ...byLoss.map((l) => ({ what: `${l.label}: ${l.steps} steps at ${c.size} px`, seconds: optimisationS(l.kind, l.steps, c.size, c.evalEvery) })),
      { what: plural(c.probeSigmas.length, "noise probe"), seconds: (c.probeSigmas.length * (COSTS.reconstructionEvalMs(c.size) + COSTS.reconstructionStepMs.lpips(c.size) / 3)) / 1000 },
      ...c.spread.losses.map((l) => ({
        what: `spread, ${l.label}: ${plural(rows, "problem")} x ${l.steps ?? c.steps} steps`,
        seconds: optimisationS(l.kind, l.steps ?? c.steps, c.size, c.evalEvery, rows),
      })),
    ],
  };
}

/**
 * Variants that notebooks/05_augmentation_ablation.ipynb runs (its VARIANTS cell: "none", the presets b, g, c, o and
 * the combinations bg, bgc, bgco); test/experiments_plan.test.ts checks the count against the notebook.
 */
export const ABLATION_VARIANTS = 8;

function ablationPlan(scale: Scale): Estimate {
  const c = ABLATION_CONFIGS[scale];
  const rows = c.images.length * c.seeds.length;
  const batch = `${c.steps} steps at ${c.size} px on ${plural(c.images.length, "photograph")} x ${plural(c.seeds.length, "seed")} (one batch of ${rows})`;
  return {
    summary: `${ABLATION_VARIANTS} variants x ${batch}`,
    parts: [
      fixed("05_augmentation_ablation"),
      { what: `"none" (LatentLPIPS): ${batch}`, seconds: optimisationS("latent-lpips", c.steps, c.size, c.evalEvery, rows) },
      { what: `${ABLATION_VARIANTS - 1} E-LatentLPIPS variants x ${batch}`, seconds: (ABLATION_VARIANTS - 1) * optimisationS("e-latent-lpips", c.steps, c.size, c.evalEvery, rows) },
    ],
  };
}

/** Seconds of one training of notebook 02 (steps at the measured batch-32 costs, scaled by batch), scorings apart. */
function armTrainingS(a: ArmConfig, loss: string): number {
  if (a.method === "CD") return (a.cd.batch / 32) * a.cd.steps * COSTS.cdStepS;
  return (a.d2g.batch / 32) * (a.d2g.regressionSteps * COSTS.d2gRegressionStepS[loss] + a.d2g.ganSteps * COSTS.d2gGanStepS);
}

function convergencePlan(scale: Scale): Estimate {
  const c = CONVERGENCE_CONFIGS[scale];
  const teacherEvals = 2 * c.teacherLevels - 1;
  const fidS = (samples: number) => COSTS.fidEvalS * (samples / 500);
  // a scoring: the EMA and the raw FID, and the held-out correspondence
  const scoringS = 2 * fidS(c.evalSamples) + c.heldOut * COSTS.heldOutSampleS;
  const rate = c.lrSearch.rates[0];
  const search = ARMS.map((arm) => c.lrSearch.rates.length * (armTrainingS(searchConfig(armConfig(c, arm, rate, 0), c.lrSearch.steps), arm.loss) + fidS(c.lrSearch.samples)));
  const arms = ARMS.map((arm) => {
    const a = armConfig(c, arm, rate, 0);
    const steps = a.method === "CD" ? a.cd.steps : `${a.d2g.regressionSteps}${a.d2g.ganSteps ? ` + ${a.d2g.ganSteps} GAN` : ""}`;
    const scorings = evaluationSteps(c, a).length + 1;
    return { what: `${arm.label}: ${c.seeds.length} x ${steps} steps, ${scorings} scorings each`, seconds: c.seeds.length * (armTrainingS(a, arm.loss) + scorings * scoringS) };
  });
  return {
    summary: `${ARMS.length} arms x ${c.seeds.length} seeds at ${c.budget.toLocaleString("en")} network evaluations each (${c.pairs} ODE pairs), a learning-rate search of ${c.lrSearch.rates.length} rates x ${c.lrSearch.steps} steps per arm`,
    parts: [
      fixed("02_cifar10_convergence"),
      { what: `${c.pairs} ODE pairs and ${c.heldOut} held-out ones (${teacherEvals} teacher evaluations each)`, seconds: ((pairEvaluations(c) + c.heldOut * teacherEvals) * COSTS.teacherEvalMsPerImage) / 1000 },
      { what: `teacher FID (${c.evalSamples} samples) and reference features`, seconds: (c.evalSamples * teacherEvals * COSTS.teacherEvalMsPerImage) / 1000 + fidS(c.evalSamples) + COSTS.referenceFeaturesS * (c.refImages / 2000) },
      { what: `learning-rate search: ${ARMS.length} arms x ${c.lrSearch.rates.length} rates x ${c.lrSearch.steps} steps`, seconds: search.reduce((a, b) => a + b, 0) },
      ...arms,
      { what: "noise floor (one more FID)", seconds: fidS(c.evalSamples) },
    ],
  };
}

/** At cpu scale the CLIPs and the teacher are committed: the report and the pairs are the work. */
function worldTeacherPlan(scale: Scale): Estimate {
  const t = T2I_TEACHERS[scale];
  const r = t.report;
  const nfe = (g: number) => (g > 1 ? 2 : 1) * r.steps;
  const p = t.pairs;
  const reportS = (r.prompts * (r.guidances.reduce((a, g) => a + nfe(g), 0) * COSTS.worldTeacherEvalMs + (r.guidances.length + 1) * COSTS.worldImageScoreMs)) / 1000;
  const pairsS = (p.count * p.guidances.reduce((a, g) => a + nfe(g), 0) * COSTS.worldTeacherEvalMs) / 1000;
  return {
    summary: `guidance ${r.guidances.join(", ")} on ${r.prompts} test captions (DDIM ${r.steps}), ${p.count} ODE pairs each at guidance ${p.guidances.join(" and ")}`,
    parts: [
      fixed("03a_t2i_teacher"),
      { what: `guidance sweep: ${r.prompts} samples at each of ${r.guidances.join(", ")}, scored`, seconds: reportS },
      { what: `ODE pairs: ${p.count} x ${p.guidances.length} (DDIM ${p.steps}, guided)`, seconds: pairsS },
    ],
  };
}

/**
 * Notebook 03: every arm's steps at its loss's and ladder row's cost (scaled by batch from the measured batch 16),
 * the teacher rows, the judging of every arm, and the world's pairs when notebook 03a has not made them yet.
 */
function t2iDistillationPlan(scale: Scale): Estimate {
  const c = T2I_DISTILLATION_CONFIGS[scale];
  const t = T2I_TEACHERS[scale];
  const e = c.evaluation;
  const perBatch = c.recipe.batch / COSTS.t2iBatch;
  if (c.teacher.kind === "sd15") return sd15DistillationPlan(scale);
  const armS = (cfg: T2IDiffusion2GanConfig, rung: number) => {
    const r1 = rung >= 3 && cfg.r1Gamma > 0 ? COSTS.t2iR1Ms / cfg.r1Every : 0;
    const gan = rung >= 1 ? COSTS.t2iGanStepMs[rung - 1] + r1 : 0;
    return (perBatch * (cfg.regressionSteps * COSTS.t2iRegressionStepMs[cfg.regression] + cfg.ganSteps * gan)) / 1000;
  };
  const arms = distillationArms(c);
  const sum = (table: string, extra: boolean) => arms.filter((a) => a.table === table && (a.cfg.seed !== c.recipe.seed) === extra).reduce((s, a) => s + armS(a.cfg, a.rung), 0);
  const guided = (g: number) => (g > 1 ? 2 : 1) * c.pairSteps;
  const judgeS = (images: number) => (images * COSTS.worldImageScoreMs) / 1000;
  const guidances = [c.regressionGuidance, c.ladderGuidance];
  const parts: PlanPart[] = [fixed("03b_t2i_distillation")];
  const missing = t.pairs.guidances.filter((g) => !fs.existsSync(path.join(worldPairsDir(g, scale), "manifest.json")));
  if (missing.length) parts.push({ what: `ODE pairs ${missing.map((g) => `CFG-${g}`).join(", ")}, not made yet by notebook 03a: ${t.pairs.count} each (DDIM ${t.pairs.steps})`, seconds: (t.pairs.count * missing.reduce((a, g) => a + guided(g), 0) * COSTS.worldTeacherEvalMs) / 1000 });
  const reg = arms.filter((a) => a.table === "regression");
  const extra = arms.filter((a) => a.cfg.seed !== c.recipe.seed);
  const aug = arms.filter((a) => a.table === "augmentation");
  parts.push(
    { what: `reference statistics (${e.reference} test scenes) and the teacher at guidance ${guidances.join(" and ")} (DDIM ${c.pairSteps}, ${e.prompts} prompts)`, seconds: judgeS(e.reference) + (e.prompts * guidances.reduce((a, g) => a + guided(g), 0) * COSTS.worldTeacherEvalMs) / 1000 + judgeS(2 * e.prompts) },
    { what: `regression-loss ablation: ${reg.length} losses x ${c.regressionAblationSteps} steps, batch ${c.recipe.batch}`, seconds: sum("regression", false) },
    { what: `discriminator ladder: ${DISCRIMINATOR_LADDER.length} rows x ${c.recipe.regressionSteps} regression + ${c.recipe.ganSteps} GAN steps`, seconds: sum("ladder", false) },
    { what: `headline rows at ${plural(c.extraSeeds.length, "more seed")}: ${plural(extra.length, "training")}`, seconds: sum("ladder", true) },
    { what: `E-LatentLPIPS augmentations: ${plural(aug.length, "more preset")} x ${c.regressionAblationSteps} steps (the others are regression-ablation arms)`, seconds: sum("augmentation", false) },
    { what: `judging ${plural(arms.length + 1, "student")} on ${e.prompts} prompts, with correspondence to the teacher`, seconds: ((arms.length + 1) * e.prompts * COSTS.t2iStudentImageMs) / 1000 + judgeS((arms.length + 1) * e.prompts) },
  );
  return {
    summary: `${arms.length} Diffusion2GAN trainings at batch ${c.recipe.batch} (${reg.length} regression losses x ${c.regressionAblationSteps} steps on CFG-${c.regressionGuidance}; ladder of ${DISCRIMINATOR_LADDER.length} x ${c.recipe.regressionSteps} + ${c.recipe.ganSteps} steps on CFG-${c.ladderGuidance}; ${extra.length} at more seeds; ${plural(aug.length, "augmentation preset")} x ${c.regressionAblationSteps} steps), each judged on ${e.prompts} test captions`,
    parts,
  };
}

/**
 * Notebook 03 on SD1.5 (paper scale), in SD1.5 UNet evaluations (a backward pass counted as two forward ones) times
 * one evaluation's cost on this machine: what a GPU user multiplies by their own cost per evaluation.
 */
function sd15DistillationPlan(scale: Scale): Estimate {
  const c = T2I_DISTILLATION_CONFIGS[scale];
  if (c.teacher.kind !== "sd15") throw new Error("sd15DistillationPlan: not an SD1.5 config");
  const pairs = Object.values(c.teacher.pairs).reduce((a, n) => a + n, 0);
  const pairEvals = pairs * 2 * c.pairSteps;
  const trainEvals = distillationArms(c).reduce((a, arm) => {
    const n = d2gEvaluations(arm.cfg, arm.cfg.regressionSteps + arm.cfg.ganSteps);
    return a + 3 * (n.studentEvals + n.discEvals);
  }, 0);
  const arms = distillationArms(c).length;
  const evalEvals = c.teacher.evaluationSamples * (arms + 1 + 2 * 2 * c.pairSteps);
  const s = (evals: number) => evals * COSTS.sd15UnetEvalS;
  const e = (n: number) => n.toExponential(2);
  return {
    summary: `SD1.5 (paper scale): ${e(pairEvals + trainEvals + evalEvals)} UNet evaluations; at ${COSTS.sd15UnetEvalS} s each on this machine, a GPU engine's job`,
    parts: [
      fixed("03b_t2i_distillation"),
      { what: `ODE pairs ${Object.entries(c.teacher.pairs).map(([g, n]) => `CFG-${g} ${n.toLocaleString("en")}`).join(", ")} (DDIM ${c.pairSteps}, guided): ${e(pairEvals)} UNet evaluations`, seconds: s(pairEvals) },
      { what: `${arms} trainings at batch ${c.recipe.batch}: ${e(trainEvals)} UNet evaluations`, seconds: s(trainEvals) },
      { what: `${c.teacher.evaluationSamples.toLocaleString("en")} samples per arm and teacher row: ${e(evalEvals)} UNet evaluations`, seconds: s(evalEvals) },
    ],
  };
}

/**
 * Notebook 04 on the world: the judges' reference, each row's samples (teacher rows guided: two evaluations a step;
 * students one) with their decodes and scores, and each row's latency runs at batch 1 on both engines. At paper
 * scale: SD1.5 UNet evaluations at this machine's cost, as notebook 03b's paper plan counts them.
 */
function cocoTablesPlan(scale: Scale): Estimate {
  const c = COCO_TABLES_CONFIGS[scale];
  if (c.kind === "sd15") {
    const evals = c.captions * (2 * c.steps + 1);
    return {
      summary: `SD1.5 and its student on ${c.captions.toLocaleString("en")} COCO2014 captions: ${evals.toExponential(2)} UNet evaluations; at ${COSTS.sd15UnetEvalS} s each on this machine, a GPU engine's job`,
      parts: [fixed("04_coco_tables"), { what: `${c.captions.toLocaleString("en")} samples of SD1.5 (DDIM ${c.steps}, guided) and of the student (1 step)`, seconds: evals * COSTS.sd15UnetEvalS }],
    };
  }
  const d = T2I_DISTILLATION_CONFIGS[scale];
  const nfe = (steps: number) => (c.guidance > 1 ? 2 : 1) * steps;
  const rows = [c.teacherSteps, ...c.fewSteps];
  const imageMs = COSTS.cocoOrtDecodeMs + COSTS.worldImageScoreMs;
  const sampleS = (c.prompts * (rows.reduce((a, s) => a + nfe(s), 0) + 2) * COSTS.cocoOrtEvalMs + (rows.length + 2) * c.prompts * imageMs) / 1000;
  const lat = (evals: number, reps: number) => ((reps + 1) * evals * (COSTS.cocoBatch1EvalMs.tfjs + COSTS.cocoBatch1EvalMs.onnxruntime)) / 1000;
  const latencyS = rows.reduce((a, s) => a + lat(nfe(s), s >= 10 ? c.latency.teacherReps : c.latency.reps), 0) + 3 * lat(1, c.latency.reps);
  const parts: PlanPart[] = [
    fixed("04_coco_tables"),
    { what: `the judges' reference (${d.evaluation.reference} rendered test scenes)`, seconds: (d.evaluation.reference * COSTS.worldImageScoreMs) / 1000 },
    { what: `${c.prompts} test captions through ${rows.length} teacher rows (DDIM ${rows.join(", ")}, guidance ${c.guidance}) and 2 students, on onnxruntime`, seconds: sampleS },
    { what: `latency at batch 1 on tfjs and onnxruntime (median of ${c.latency.reps}; ${c.latency.teacherReps} for the ${c.teacherSteps}-step teacher)`, seconds: latencyS },
    { what: `the noise floor: the full-recipe student on ${c.prompts} captions again, other noise`, seconds: (c.prompts * (COSTS.cocoOrtEvalMs + imageMs)) / 1000 },
  ];
  const arms = HEADLINE_RUNGS.map((k) => `ladder-${k}`);
  return { summary: `the world's teacher at DDIM ${rows.join(", ")} and notebook 03b's students (${arms.join(", ")}; 03b trains them) on ${c.prompts} test captions, with latency`, parts };
}

const PLANS: Record<string, (scale: Scale) => Estimate> = {
  "04_coco_tables": cocoTablesPlan,
  "00_environment": environmentPlan,
  "01_latent_lpips_reconstruction": reconstructionPlan,
  "02_cifar10_convergence": convergencePlan,
  "03b_t2i_distillation": t2iDistillationPlan,
  "03a_t2i_teacher": worldTeacherPlan,
  "05_augmentation_ablation": ablationPlan,
};

/** The estimate for a notebook (file stem), or undefined for a notebook this plan does not know. */
export function notebookPlan(notebook: string, scale: Scale): NotebookPlan | undefined {
  const plan = PLANS[notebook];
  if (!plan) return undefined;
  const { summary, parts } = plan(scale);
  return { notebook, summary, parts, seconds: parts.reduce((s, p) => s + p.seconds, 0) };
}
