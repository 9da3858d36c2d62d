import * as tf from "@tensorflow/tfjs";
import { Rng } from "../core/random";
import { HostTensor } from "../io/host_tensor";
import { AugmentConfig, AugmentDraw, sampleAugmentRows } from "../perceptual/augment";
import { PairAugment } from "../perceptual/latent_lpips";
import { Adam, lossAndGrads } from "../train/adam";
import { runTraining } from "../train/loop";
import { warmupCosine } from "../train/schedule";
import { decodeClipped, evaluateLatent, noiseLatent, pixelLpips, Scene } from "./reconstruction_eval";

// The optimisation of notebooks 01 and 05: Adam on a latent that starts as noise, under one loss, scored every
// evalEvery steps (lib/experiments/reconstruction_eval.ts). The protocol follows elatentlpips' overfitting_exp.py:
// the pure perceptual term, no added L1. The target may hold several rows (photograph, seed): they are independent
// problems in one batch, each with its own start latent and augmentation stream, and the loss is the sum of their
// terms, so each row's gradient, and with Adam (element-wise) its whole trajectory, is the one it would have alone.
// Each optimisation is a resumable unit: given a folder, it checkpoints the latents, Adam's moments and step, the
// augmentation RNGs and the curves every ckptEvery steps and at the end, so a stopped run resumes where it stopped
// and a finished one is only read back (lib/train/loop.ts).

export const LOSS_KINDS = ["latent-mse", "lpips", "latent-lpips", "e-latent-lpips"] as const;
export type LossKind = (typeof LOSS_KINDS)[number];

export interface LossSpec {
  kind: LossKind;
  /** Name in tables and legends. */
  label: string;
  /** e-latent-lpips only: a preset name or a list of ops/presets (lib/perceptual/augment.ts). */
  augment?: string | readonly string[];
  /** Overrides the config's steps for this loss (a pixel-LPIPS step costs many latent steps on a CPU). */
  steps?: number;
}

/** "cosine" anneals lr to zero over the run. */
export type LrDecay = "none" | "cosine";

/** The settings of the optimisation, shared by every loss of an experiment. */
export interface OptimiseSettings {
  steps: number;
  /** Adam learning rate (overfitting_exp.py: 1e-2, constant). */
  lr: number;
  /** "cosine" anneals lr to zero over the run: with a few hundred steps instead of 15 000, the stochastic
   * E-LatentLPIPS gradient needs the decay to settle. */
  lrDecay: LrDecay;
  /** The latent starts as N(0, initStd^2) (TAEF2's latents have std about 0.85). */
  initStd: number;
  /** PSNR and LatentLPIPS of the current latent every this many steps (each costs one decode). */
  evalEvery: number;
  /** Checkpoint every this many steps (and at the end) when the run has a folder. */
  ckptEvery: number;
  /** Augmentation settings other than the ops, which each loss names. */
  augment: Partial<AugmentConfig>;
}

/** What one optimisation needs besides its loss. */
export interface OptimiseContext extends Scene, OptimiseSettings {}

/** The learning rate of step (1-based). */
export function learningRate(ctx: Pick<OptimiseContext, "lr" | "lrDecay" | "steps">, step: number): number {
  if (ctx.lrDecay === "none") return ctx.lr;
  // cosine decay over the run, no warm-up: lr_t = lr / 2 (1 + cos(pi (t - 1) / steps))
  return warmupCosine({ lr: ctx.lr, warmup: 0, steps: ctx.steps }, step - 1);
}

export interface LossRun {
  spec: LossSpec;
  /** Adam steps taken (the spec's own count, else the config's). */
  steps: number;
  /** The optimised loss after each step (the sum over the target's rows). */
  losses: number[];
  /** Steps at which the latent was evaluated (0 = the noise it starts from, the last = steps). */
  evalSteps: number[];
  /** Per target row, per evaluation: PSNR (dB, 8-bit) of decode(z) against decode(target latent). */
  psnr: number[][];
  /** Per target row, per evaluation: plain LatentLPIPS (no augmentation, no L1) of z against the target latent. */
  latentLpips: number[][];
  /** Per target row: pixel LPIPS of the final decode against the decoded target. */
  finalLpips: number[];
  /** Mean wall time of one optimisation step of the whole batch (loss, gradient, Adam), evaluations excluded, over
   * every session. */
  msPerStep: number;
  /** The final latents decoded, [rows, S, S, 3] in [-1, 1]. */
  decoded: HostTensor;
  /** e-latent-lpips: the augmentation drawn at each step of this session (one row of the draw per target row). */
  draws: AugmentDraw[];
  /** Live tensors after each step of this session (a leak shows as growth). */
  tensors: number[];
  /** The step this session started from: 0 for a fresh run, `steps` for one read back finished. */
  resumedFrom: number;
}

/**
 * The loss of latents z against the target, summed over rows; e-latent-lpips draws one augmentation per call, row k
 * from rngs[k], into `draws`.
 */
function lossFunction(spec: LossSpec, ctx: OptimiseContext, z: tf.Variable, rngs: Rng[], draws: AugmentDraw[]): () => tf.Scalar {
  const { codec, nets, target } = ctx;
  const z4 = z as tf.Tensor as tf.Tensor4D;
  switch (spec.kind) {
    case "latent-mse":
      // sum over rows of mean (z - z_target)^2
      return () => tf.sum(tf.mean(tf.squaredDifference(z, target.latent), [1, 2, 3]));
    case "lpips":
      // LPIPS(decode(z), decode(z_target)): the pixel-space route E-LatentLPIPS avoids
      return () => tf.sum(nets.lpips.distance(codec.decode(z4), target.decoded));
    case "latent-lpips":
      return () => tf.sum(nets.latent.distance(z4, target.latent));
    case "e-latent-lpips": {
      if (spec.augment === undefined) throw new Error(`reconstruction: loss "${spec.label}" is e-latent-lpips but names no augmentation`);
      const options = { ...ctx.augment, ops: spec.augment };
      const augment: PairAugment = (a, b) => {
        const t = sampleAugmentRows(options, rngs);
        draws.push(t.draw);
        return [t.apply(a), t.apply(b)];
      };
      // E_T d(T(z), T(z_target)), one sample of T per row and step
      return () => tf.sum(nets.latent.distance(z4, target.latent, augment));
    }
  }
}

/** Per-row scores kept beside the training history (which holds their means, for the progress line). */
interface RowScores {
  psnr: number[][];
  latentLpips: number[][];
  lpips: number[];
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

/**
 * Adam on a noise latent under one loss; evaluates at step 0, every evalEvery steps and at the end. With `dir` the
 * run is resumable (see above); `label` names its progress bar.
 */
export async function optimiseLatent(ctx: OptimiseContext, spec: LossSpec, opts: { label?: string; dir?: string } = {}): Promise<LossRun> {
  const seeds = ctx.target.rows.map((r) => r.seed);
  const init = noiseLatent(ctx.target.latent.shape, ctx.initStd, seeds);
  const z = tf.variable(init, true);
  init.dispose();
  // Adam's constructor leaves its zerosLike tensors behind (the variables keep the data); the tidy collects them.
  let adam!: Adam;
  tf.tidy(() => {
    adam = new Adam([z], { lr: ctx.lr });
  });
  const steps = spec.steps ?? ctx.steps;
  const draws: AugmentDraw[] = [];
  // One draw per row and step, from the row's own stream, so that every E-LatentLPIPS run of a row (in any batch)
  // sees the same sequence of draws.
  const augmentRngs = seeds.map((s) => new Rng(s + 1));
  const loss = lossFunction(spec, ctx, z, augmentRngs, draws);
  const scores: RowScores = { psnr: seeds.map(() => []), latentLpips: seeds.map(() => []), lpips: [] };
  const tensors: number[] = [];
  let finalDecoded: tf.Tensor4D | undefined;
  try {
    const { history, resumedFrom, msPerStep } = await runTraining({
      label: opts.label ?? `reconstruct ${spec.label}`,
      totalSteps: steps,
      ckptDir: opts.dir,
      ckptEvery: ctx.ckptEvery,
      vars: { z, "adam.m": adam.m[0], "adam.v": adam.v[0] },
      // a single row keeps the stream's name of single-image runs
      rngs: Object.fromEntries(augmentRngs.map((r, k) => [k === 0 ? "augment" : `augment.${k}`, r])),
      extraState: {
        save: () => ({ adamStep: adam.step, rowScores: scores }),
        load: (s) => {
          adam.step = s.adamStep as number;
          Object.assign(scores, s.rowScores as RowScores);
        },
      },
      step(i) {
        const { loss: value, grads } = lossAndGrads(loss, [z]);
        adam.apply(grads, learningRate({ ...ctx, steps }, i + 1));
        tf.dispose(grads);
        tensors.push(tf.memory().numTensors);
        if (!Number.isFinite(value)) throw new Error(`reconstruction: loss "${spec.label}" is ${value} at step ${i + 1}`);
        return { loss: value };
      },
      evalEvery: ctx.evalEvery,
      evalAtStart: true,
      async evaluate(done) {
        const e = await evaluateLatent(ctx, z as tf.Tensor as tf.Tensor4D);
        e.psnr.forEach((v, k) => scores.psnr[k].push(v));
        e.latentLpips.forEach((v, k) => scores.latentLpips[k].push(v));
        const metrics: Record<string, number> = { psnr: mean(e.psnr), latentLpips: mean(e.latentLpips) };
        if (done === steps) {
          finalDecoded = e.decoded;
          scores.lpips = await pixelLpips(ctx, e.decoded);
          metrics.lpips = mean(scores.lpips);
        } else e.decoded.dispose();
        return metrics;
      },
    });
    // a run read back finished has its scores in the history; only the picture is decoded again
    finalDecoded ??= await decodeClipped(ctx.codec, z as tf.Tensor as tf.Tensor4D);
    const evals = history.filter((h) => h.psnr !== undefined);
    return {
      spec,
      steps,
      losses: history.filter((h) => h.step > 0).map((h) => h.loss),
      evalSteps: evals.map((h) => h.step),
      psnr: scores.psnr,
      latentLpips: scores.latentLpips,
      finalLpips: scores.lpips,
      msPerStep,
      decoded: { dtype: "float32", shape: finalDecoded.shape, data: (await finalDecoded.data()) as Float32Array },
      draws,
      tensors,
      resumedFrom,
    };
  } finally {
    finalDecoded?.dispose();
    adam.dispose();
    z.dispose();
  }
}
