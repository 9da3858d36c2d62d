import * as tf from "@tensorflow/tfjs";
import { Rng } from "../core/random";
import { EDM_DEFAULTS } from "../diffusion/edm";
import { SchedulerConfig } from "../diffusion/schedulers";
import { cloneModule, Module } from "../nn/module";
import { UNet2DConditionModel } from "../nn/sd/unet2d_condition";
import { SongUNet } from "../nn/unet";
import { augmentPair } from "../perceptual/augment";
import { Adam, lossAndGrads } from "../train/adam";
import { Ema, emaBetaAt, EmaRule } from "../train/ema";
import { runTraining, TrainResult } from "../train/loop";
import { ConditionalDiscriminator, DiffusionDiscriminator, DiscriminatorConfig, DISCRIMINATOR_DEFAULTS, DiscriminatorSwitches } from "./discriminator";
import { discriminatorBatchLoss, generatorGanLoss, mixAndMatchCount, mixAndMatchPairs, r1Penalty } from "./gan_loss";
import { generate, generateUNet2D, UNet2DGeneratorConfig, unet2dGeneratorDefaults } from "./generator";
import { OdePairs } from "./ode_pairs";
import { RegressionDeps, RegressionLoss, regressionLoss, RegressionLossName } from "./regression";
import { UNET2D_DISCRIMINATOR_DEFAULTS, UNet2DDiscriminator, UNet2DDiscriminatorConfig } from "./unet2d_discriminator";

// Diffusion2GAN: one-step generation as paired translation. The teacher's ODE pairs (z, c, x) are fixed data;
// the student G (teacher architecture, teacher weights) maps (z, c) to x in one evaluation (lib/distill/generator.ts).
// Loss: L_G = L_regression(G(z, c), x) + lambda_GAN L_GAN, with a regression-only phase first. One training loop
// serves every teacher family; a family says how G generates and which discriminator its teacher makes:
// the class-conditional CIFAR-10 SongUNet (trainDiffusion2Gan) and text-to-image UNet2DConditionModel teachers
// (trainDiffusion2GanT2I).

/** What every family shares: the two phases, the optimisers, the GAN terms and the EMA of G. */
export interface D2GTrainConfig extends EmaRule {
  batch: number;
  /** Steps with the regression loss alone, then steps with the GAN term added (0: no discriminator at all). */
  regressionSteps: number;
  ganSteps: number;
  lrG: number;
  lrD: number;
  /** Adam's (beta1, beta2) of G and D. */
  betas: [number, number];
  lambdaGan: number;
  /** R1 weight gamma (0: no R1). R1 is single-sample: on one real sample of the batch. */
  r1Gamma: number;
  /** Lazy regularisation: R1 every this many steps, scaled by it. */
  r1Every: number;
  /** Fraction of each batch's real samples re-paired with other (z, c) and labelled fake (0: no mix-and-match). */
  mixAndMatch: number;
  seed: number;
  ckptEvery: number;
}

// [NF] PAPER.md pins none of lambda_GAN, R1 gamma, the optimiser, the learning rates or the EMA
export const D2G_TRAIN_DEFAULTS: Omit<D2GTrainConfig, "batch" | "regressionSteps" | "ganSteps"> = {
  lrG: 1e-4, lrD: 1e-4, betas: [0.9, 0.99], lambdaGan: 0.1, r1Gamma: 0.1, r1Every: 16, mixAndMatch: 0.25,
  emaBeta: 0.999, emaHalflifeImages: 0, emaRampup: 0.05, seed: 0, ckptEvery: 500,
};

/** The class-conditional SongUNet case (CIFAR-10). */
export interface Diffusion2GanConfig extends D2GTrainConfig {
  /** Noise level G is evaluated at: x = D_student(sigma_G z; sigma_G, c). */
  sigmaG: number;
  disc: DiscriminatorConfig;
}

export const D2G_DEFAULTS: Omit<Diffusion2GanConfig, "batch" | "regressionSteps" | "ganSteps"> = {
  ...D2G_TRAIN_DEFAULTS, sigmaG: EDM_DEFAULTS.sigmaMax, disc: DISCRIMINATOR_DEFAULTS,
};

/** The text-to-image UNet2DConditionModel case. */
export interface T2IDiffusion2GanConfig extends D2GTrainConfig {
  generator: UNet2DGeneratorConfig;
  disc: UNet2DDiscriminatorConfig;
  regression: RegressionLossName;
  /** E-LatentLPIPS' augmentation (lib/perceptual/augment.ts ops or presets): "bg", the released default, or
   *  ["g", "o"], geometric + cutout, which a note on the paper names for distillation [NF]. */
  augment: string | readonly string[];
}

/** Defaults for a teacher with this scheduler, whose pairs DDIM made in `ddimSteps` steps. */
export function t2iDiffusion2GanDefaults(scheduler: SchedulerConfig, ddimSteps: number): Omit<T2IDiffusion2GanConfig, "batch" | "regressionSteps" | "ganSteps"> {
  return { ...D2G_TRAIN_DEFAULTS, generator: unet2dGeneratorDefaults(scheduler, ddimSteps), disc: UNET2D_DISCRIMINATOR_DEFAULTS, regression: "e-latentlpips", augment: "bg" };
}

/** The rows of the paper's discriminator ablation, each adding one component to the row before. */
export const DISCRIMINATOR_LADDER = ["E-LatentLPIPS only", "+ diffusion discriminator", "+ z-conditioning", "+ single-sample R1", "+ multi-scale", "+ mix-and-match"] as const;

/**
 * Row k of the ladder from the full recipe: the first k components on, the others off, the same number of steps.
 * Row 0 spends the GAN phase's steps on the regression loss alone (no discriminator is built).
 */
export function ladderRung<T extends D2GTrainConfig & { disc: DiscriminatorSwitches }>(full: T, k: number): T {
  if (!Number.isInteger(k) || k < 0 || k >= DISCRIMINATOR_LADDER.length) throw new Error(`ladderRung: row ${k} is not one of 0..${DISCRIMINATOR_LADDER.length - 1} (${DISCRIMINATOR_LADDER.join(", ")})`);
  const gan = k >= 1;
  return {
    ...full,
    regressionSteps: gan ? full.regressionSteps : full.regressionSteps + full.ganSteps,
    ganSteps: gan ? full.ganSteps : 0,
    disc: { ...full.disc, zCond: k >= 2, multiScale: k >= 4 },
    r1Gamma: k >= 3 ? full.r1Gamma : 0,
    mixAndMatch: k >= 5 ? full.mixAndMatch : 0,
  };
}

/**
 * Network evaluations per sample after `steps` steps, for the paper's cost axes. Rule: every forward pass of G or D
 * on one sample counts one evaluation, backward passes count nothing. A regression step: G once. A GAN step: G on
 * the batch for D's fakes; D on the reals, the fakes and the mix-and-match pairs; D on the R1 sample on R1 steps
 * (the pass its gradient of a gradient goes through); then G and D once more each for G's update.
 */
export function d2gEvaluations(cfg: D2GTrainConfig, steps: number): { studentEvals: number; discEvals: number } {
  const gan = Math.max(0, Math.min(steps, cfg.regressionSteps + cfg.ganSteps) - cfg.regressionSteps);
  let r1 = 0;
  if (cfg.r1Gamma > 0) for (let i = cfg.regressionSteps; i < cfg.regressionSteps + gan; i++) if (i % cfg.r1Every === 0) r1++;
  return {
    studentEvals: steps * cfg.batch + gan * cfg.batch,
    discEvals: gan * (3 * cfg.batch + mixAndMatchCount(cfg.batch, cfg.mixAndMatch)) + r1,
  };
}

/** Metrics of the EMA generator (`sample`) and of the trained weights themselves (`raw`): each maps noise and condition to samples. */
export interface D2GEvaluation<C extends tf.Tensor = tf.Tensor2D> {
  (sample: (z: tf.Tensor4D, c: C) => tf.Tensor4D, stepsDone: number, raw: (z: tf.Tensor4D, c: C) => tf.Tensor4D): Promise<Record<string, number>>;
}

export interface D2GOutput<N extends Module = SongUNet> {
  /** The EMA generator. */
  generator: N;
  result: TrainResult;
}

/** A teacher family as the training loop sees it. */
interface Family<N extends Module, C extends tf.Tensor> {
  /** A copy of the teacher, its weights included (G's network and its EMA copy). */
  copy(rng: Rng): N;
  /** G(z, c) computed by `net`. */
  generate(net: N, z: tf.Tensor4D, c: C): tf.Tensor4D;
  discriminator(rng: Rng): DiffusionDiscriminator<C>;
}

interface LoopRun<N extends Module, C extends tf.Tensor> {
  cfg: D2GTrainConfig;
  family: Family<N, C>;
  pairs: OdePairs<C>;
  regression: RegressionLoss;
  /** Random streams the regression loss draws from, checkpointed with the run's own. */
  lossRngs: Record<string, Rng>;
  ckptDir?: string;
  evalEvery?: number;
  /** Evaluate after exactly these step counts instead of every evalEvery; evalAtStart also before the first step. */
  evalAt?: number[];
  evalAtStart?: boolean;
  evaluate?: D2GEvaluation<C>;
  label: string;
}

async function trainLoop<N extends Module, C extends tf.Tensor>(run: LoopRun<N, C>): Promise<D2GOutput<N>> {
  const { cfg, pairs, family } = run;
  const rng = new Rng(cfg.seed);
  const student = family.copy(rng);
  const gNamed = student.namedVariables().filter(([, v]) => v.trainable);
  const gParams = gNamed.map(([, v]) => v);
  const [beta1, beta2] = cfg.betas;
  const gOpt = new Adam(gParams, { lr: cfg.lrG, beta1, beta2 });
  const ema = new Ema(gParams);
  const emaNet = family.copy(rng);
  const disc = cfg.ganSteps > 0 ? family.discriminator(rng) : undefined;
  const dParams = disc ? disc.parameters() : [];
  const dOpt = new Adam(dParams, { lr: cfg.lrD, beta1, beta2 });
  const gRng = new Rng(cfg.seed + 11);

  const vars: Record<string, tf.Variable> = {};
  for (const [n, v] of student.namedVariables()) vars[`G.${n}`] = v;
  gNamed.forEach(([n], i) => {
    vars[`G_ema.${n}`] = ema.shadow[i];
    vars[`G_adam.m.${n}`] = gOpt.m[i];
    vars[`G_adam.v.${n}`] = gOpt.v[i];
  });
  disc?.namedVariables().forEach(([n, v], i) => {
    vars[`D.${n}`] = v;
    vars[`D_adam.m.${n}`] = dOpt.m[i];
    vars[`D_adam.v.${n}`] = dOpt.v[i];
  });

  const G = (net: N, z: tf.Tensor4D, c: C) => family.generate(net, z, c);
  const result = await runTraining({
    label: run.label,
    totalSteps: cfg.regressionSteps + cfg.ganSteps,
    ckptDir: run.ckptDir,
    ckptEvery: cfg.ckptEvery,
    vars,
    rngs: { gan: gRng, ...run.lossRngs },
    extraState: {
      save: () => ({ gStep: gOpt.step, dStep: dOpt.step }),
      load: (s) => {
        gOpt.step = s.gStep as number;
        dOpt.step = s.dStep as number;
      },
    },
    evalEvery: run.evalEvery,
    evalAt: run.evalAt,
    evalAtStart: run.evalAtStart,
    evaluate: run.evaluate
      ? async (done) => {
          ema.copyTo(emaNet.parameters());
          return { ...(await run.evaluate!((z, c) => G(emaNet, z, c), done, (z, c) => G(student, z, c))), ...d2gEvaluations(cfg, done) };
        }
      : undefined,
    step(i) {
      const { z, c, x } = pairs.batchAt(i, cfg.batch, cfg.seed);
      const metrics: Record<string, number> = {};
      const d = i >= cfg.regressionSteps ? disc : undefined;
      if (d) {
        // discriminator: real (x | z, c) vs fake (G(z, c) | z, c), plus mix-and-match (x_i | z_j, c_j) as fake
        const fake = G(student, z, c);
        const mm = mixAndMatchPairs(cfg.batch, mixAndMatchCount(cfg.batch, cfg.mixAndMatch), gRng);
        const dl = lossAndGrads(() => discriminatorBatchLoss((xx, zz, cc: C) => d.logits(xx, zz, cc), x, fake, z, c, mm), dParams);
        dOpt.apply(dl.grads);
        tf.dispose(dl.grads);
        metrics.lossD = dl.loss;
        if (cfg.r1Gamma > 0 && i % cfg.r1Every === 0) {
          // single-sample R1 with lazy regularisation: one real sample, every r1Every steps, weight x r1Every
          const j = gRng.int(cfg.batch);
          const [x0, z0] = [x, z].map((t) => tf.slice(t, [j], [1])) as [tf.Tensor4D, tf.Tensor4D];
          const c0 = tf.slice(c, [j], [1]) as C;
          const r1 = lossAndGrads(() => r1Penalty((xx) => d.logits(xx, z0, c0), x0, cfg.r1Gamma * cfg.r1Every), dParams);
          dOpt.apply(r1.grads);
          tf.dispose([x0, z0, c0, ...r1.grads]);
          metrics.r1 = r1.loss / cfg.r1Every;
        }
        fake.dispose();
      }
      const g = lossAndGrads(() => {
        const out = G(student, z, c);
        const reg = run.regression(out, x);
        metrics.regression = reg.dataSync()[0];
        return d ? (tf.add(reg, tf.mul(generatorGanLoss(d.logits(out, z, c)), cfg.lambdaGan)) as tf.Scalar) : reg;
      }, gParams);
      gOpt.apply(g.grads);
      ema.update(emaBetaAt(cfg, cfg.batch, i + 1));
      tf.dispose([z, c, x, ...g.grads]);
      metrics.lossG = g.loss;
      return { ...metrics, ...d2gEvaluations(cfg, i + 1) };
    },
  });
  ema.copyTo(emaNet.parameters());
  tf.dispose([...gOpt.m, ...gOpt.v, ...dOpt.m, ...dOpt.v]);
  ema.dispose();
  disc?.dispose();
  student.dispose();
  return { generator: emaNet, result };
}

export interface D2GRun {
  cfg: Diffusion2GanConfig;
  teacher: SongUNet;
  pairs: OdePairs;
  regression: RegressionLoss;
  ckptDir?: string;
  evalEvery?: number;
  evalAt?: number[];
  evalAtStart?: boolean;
  evaluate?: D2GEvaluation;
  label?: string;
}

/** Diffusion2GAN from a class-conditional SongUNet teacher (CIFAR-10). */
export async function trainDiffusion2Gan(run: D2GRun): Promise<D2GOutput> {
  const { cfg, teacher } = run;
  return trainLoop<SongUNet, tf.Tensor2D>({
    cfg, pairs: run.pairs, regression: run.regression, lossRngs: {}, ckptDir: run.ckptDir, evalEvery: run.evalEvery, evalAt: run.evalAt, evalAtStart: run.evalAtStart, evaluate: run.evaluate,
    label: run.label ?? "Diffusion2GAN",
    family: {
      // the copies draw their (overwritten) init from the run's RNG, as the runs behind the committed results did
      copy: (rng) => cloneModule(teacher, rng),
      generate: (net, z, c) => generate(net, z, c, cfg.sigmaG),
      discriminator: (rng) => new ConditionalDiscriminator(teacher.config, cfg.disc, rng, teacher),
    },
  });
}

export interface T2IRun {
  cfg: T2IDiffusion2GanConfig;
  teacher: UNet2DConditionModel;
  /** The teacher's training schedule (its scheduler_config.json), which G's output is read with. */
  scheduler: SchedulerConfig;
  /** Pairs whose condition is the text encoder's hidden states (OdePairs.open(dir, clipTokenCondition(encoder))). */
  pairs: OdePairs<tf.Tensor3D>;
  /** The networks the regression loss needs: latentLpips for (E-)LatentLPIPS, lpips and decode for LPIPS. */
  perceptual: Omit<RegressionDeps, "augment">;
  ckptDir?: string;
  evalEvery?: number;
  evaluate?: D2GEvaluation<tf.Tensor3D>;
  label?: string;
}

/** Diffusion2GAN from a text-to-image UNet2DConditionModel teacher, in its latent space. */
export async function trainDiffusion2GanT2I(run: T2IRun): Promise<D2GOutput<UNet2DConditionModel>> {
  const { cfg, teacher } = run;
  // E-LatentLPIPS draws one augmentation per call, applied to both inputs; the stream is checkpointed
  const augmentRng = new Rng(cfg.seed + 13);
  const regression = regressionLoss(cfg.regression, { ...run.perceptual, augment: (a, b) => augmentPair(a, b, { ops: cfg.augment }, augmentRng) });
  return trainLoop<UNet2DConditionModel, tf.Tensor3D>({
    cfg, pairs: run.pairs, regression, lossRngs: { augment: augmentRng }, ckptDir: run.ckptDir, evalEvery: run.evalEvery, evaluate: run.evaluate,
    label: run.label ?? "Diffusion2GAN (text-to-image)",
    family: {
      // built without random init: SD1.5's UNet has 860M weights, all overwritten
      copy: () => cloneModule(teacher),
      generate: (net, z, c) => generateUNet2D(net, z, c, cfg.generator, run.scheduler),
      discriminator: (rng) => new UNet2DDiscriminator(teacher, cfg.disc, rng),
    },
  });
}
