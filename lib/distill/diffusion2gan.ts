import * as tf from "@tensorflow/tfjs";
import { Rng } from "../core/random";
import { EDM_DEFAULTS, edmDenoise } from "../diffusion/edm";
import { rawNetOf } from "../diffusion/train_edm";
import { cloneModule } from "../nn/module";
import { SongUNet } from "../nn/unet";
import { Adam, lossAndGrads } from "../train/adam";
import { Ema } from "../train/ema";
import { runTraining, TrainResult } from "../train/loop";
import { ConditionalDiscriminator, DiscriminatorConfig, DISCRIMINATOR_DEFAULTS } from "./discriminator";
import { discriminatorLoss, generatorGanLoss, mixAndMatchPairs, r1Penalty } from "./gan_loss";
import { OdePairs } from "./ode_pairs";
import { RegressionLoss } from "./regression";

// Diffusion2GAN: one-step generation as paired translation. The teacher's ODE pairs (z, c, x) are fixed data;
// the student G (teacher architecture, teacher weights) maps (z, c) to x in one evaluation at the terminal
// noise level. Loss: L_G = L_regression(G(z, c), x) + lambda_GAN L_GAN, with a regression-only phase first.

export interface Diffusion2GanConfig {
  /** Noise level G is evaluated at: x = D_student(sigma_G z; sigma_G, c). */
  sigmaG: number;
  batch: number;
  /** Steps with the regression loss alone, then steps with the GAN term added. */
  regressionSteps: number;
  ganSteps: number;
  lrG: number;
  lrD: number;
  lambdaGan: number;
  r1Gamma: number;
  /** Lazy regularisation: R1 every this many steps, scaled by it. */
  r1Every: number;
  /** Fraction of each batch's real samples re-paired with other (z, c) and labelled fake. */
  mixAndMatch: number;
  emaBeta: number;
  seed: number;
  ckptEvery: number;
  disc: DiscriminatorConfig;
}

export const D2G_DEFAULTS: Omit<Diffusion2GanConfig, "batch" | "regressionSteps" | "ganSteps"> = {
  sigmaG: EDM_DEFAULTS.sigmaMax, lrG: 1e-4, lrD: 1e-4, lambdaGan: 0.1, r1Gamma: 0.1, r1Every: 16, mixAndMatch: 0.25,
  emaBeta: 0.999, seed: 0, ckptEvery: 500, disc: DISCRIMINATOR_DEFAULTS,
};

/** The one-step generator: G(z, c) = D_student(sigma_G z; sigma_G, c). */
export function generate(student: SongUNet, z: tf.Tensor4D, c: tf.Tensor2D | undefined, sigmaG: number): tf.Tensor4D {
  return tf.tidy(() => edmDenoise(rawNetOf(student), tf.mul(z, sigmaG) as tf.Tensor4D, tf.fill([z.shape[0]], sigmaG) as tf.Tensor1D, c));
}

export interface D2GEvaluation {
  /** Metrics of the EMA generator; `sample` maps noise and condition to images. */
  (sample: (z: tf.Tensor4D, c: tf.Tensor2D) => tf.Tensor4D, stepsDone: number): Promise<Record<string, number>>;
}

export interface D2GOutput {
  generator: SongUNet;
  result: TrainResult;
}

export interface D2GRun {
  cfg: Diffusion2GanConfig;
  teacher: SongUNet;
  pairs: OdePairs;
  regression: RegressionLoss;
  ckptDir?: string;
  evalEvery?: number;
  evaluate?: D2GEvaluation;
  label?: string;
}

export async function trainDiffusion2Gan(run: D2GRun): Promise<D2GOutput> {
  const { cfg, pairs } = run;
  const rng = new Rng(cfg.seed);
  const student = cloneModule(run.teacher, SongUNet, rng);
  const gParams = student.parameters();
  const gOpt = new Adam(gParams, { lr: cfg.lrG, beta1: 0.9, beta2: 0.99 });
  const ema = new Ema(gParams);
  const emaNet = cloneModule(run.teacher, SongUNet, rng);
  const disc = new ConditionalDiscriminator(run.teacher.cfg, cfg.disc, rng, run.teacher);
  const dParams = disc.parameters();
  const dOpt = new Adam(dParams, { lr: cfg.lrD, beta1: 0.9, beta2: 0.99 });
  const gRng = new Rng(cfg.seed + 11);

  const vars: Record<string, tf.Variable> = {};
  student.namedVariables().forEach(([n, v], i) => {
    vars[`G.${n}`] = v;
    vars[`G_ema.${n}`] = ema.shadow[i];
    vars[`G_adam.m.${n}`] = gOpt.m[i];
    vars[`G_adam.v.${n}`] = gOpt.v[i];
  });
  disc.namedVariables().forEach(([n, v], i) => {
    vars[`D.${n}`] = v;
    vars[`D_adam.m.${n}`] = dOpt.m[i];
    vars[`D_adam.v.${n}`] = dOpt.v[i];
  });

  const total = cfg.regressionSteps + cfg.ganSteps;
  // student network evaluations so far (per sample), for the paper's cost axis
  let studentEvals = 0;
  const result = await runTraining({
    label: run.label ?? "Diffusion2GAN",
    totalSteps: total,
    ckptDir: run.ckptDir,
    ckptEvery: cfg.ckptEvery,
    vars,
    rngs: { gan: gRng },
    extraState: {
      save: () => ({ gStep: gOpt.step, dStep: dOpt.step, studentEvals }),
      load: (s) => {
        gOpt.step = s.gStep as number;
        dOpt.step = s.dStep as number;
        studentEvals = s.studentEvals as number;
      },
    },
    evalEvery: run.evalEvery,
    evaluate: run.evaluate
      ? async (done) => {
          ema.copyTo(emaNet.parameters());
          return { ...(await run.evaluate!((z, c) => generate(emaNet, z, c, cfg.sigmaG), done)), studentEvals };
        }
      : undefined,
    step(i) {
      const { z, c, x } = pairs.batchAt(i, cfg.batch, cfg.seed);
      const metrics: Record<string, number> = {};
      const gan = i >= cfg.regressionSteps;
      if (gan) {
        // discriminator: real (x | z, c) vs fake (G(z, c) | z, c), plus mix-and-match (x_i | z_j, c_j) as fake
        const fake = generate(student, z, c, cfg.sigmaG);
        studentEvals += cfg.batch;
        const mm = mixAndMatchPairs(cfg.batch, Math.round(cfg.mixAndMatch * cfg.batch), gRng);
        const d = lossAndGrads(() => {
          const real = disc.logits(x, z, c);
          let fakeLogits = disc.logits(fake, z, c);
          if (mm.length) {
            const rows = tf.tensor1d(mm.map(([r]) => r), "int32");
            const cols = tf.tensor1d(mm.map(([, q]) => q), "int32");
            const mmLogits = disc.logits(tf.gather(x, rows), tf.gather(z, cols), tf.gather(c, cols));
            fakeLogits = fakeLogits.map((l, h) => tf.concat([l, mmLogits[h]]));
          }
          return discriminatorLoss(real, fakeLogits);
        }, dParams);
        dOpt.apply(d.grads);
        tf.dispose(d.grads);
        metrics.lossD = d.loss;
        if (cfg.r1Gamma > 0 && i % cfg.r1Every === 0) {
          // single-sample R1 with lazy regularisation: one real sample, every r1Every steps, weight x r1Every
          const j = gRng.int(cfg.batch);
          const [x0, z0, c0] = [x, z, c].map((t) => tf.slice(t, [j], [1])) as [tf.Tensor4D, tf.Tensor4D, tf.Tensor2D];
          const r1 = lossAndGrads(() => r1Penalty((xx) => disc.logits(xx, z0, c0), x0, cfg.r1Gamma * cfg.r1Every), dParams);
          dOpt.apply(r1.grads);
          tf.dispose([x0, z0, c0, ...r1.grads]);
          metrics.r1 = r1.loss / cfg.r1Every;
        }
        fake.dispose();
      }
      const g = lossAndGrads(() => {
        const out = generate(student, z, c, cfg.sigmaG);
        const reg = run.regression(out, x);
        metrics.regression = reg.dataSync()[0];
        return gan ? (tf.add(reg, tf.mul(generatorGanLoss(disc.logits(out, z, c)), cfg.lambdaGan)) as tf.Scalar) : reg;
      }, gParams);
      studentEvals += cfg.batch;
      gOpt.apply(g.grads);
      ema.update(cfg.emaBeta);
      tf.dispose([z, c, x, ...g.grads]);
      metrics.lossG = g.loss;
      return metrics;
    },
  });
  ema.copyTo(emaNet.parameters());
  tf.dispose([...gOpt.m, ...gOpt.v, ...dOpt.m, ...dOpt.v]);
  ema.dispose();
  disc.dispose();
  student.dispose();
  return { generator: emaNet, result };
}
