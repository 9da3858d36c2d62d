import * as tf from "@tensorflow/tfjs";
import { Rng } from "../core/random";
import { EDM_DEFAULTS, EdmConfig, edmDenoise, RawNet } from "../diffusion/edm";
import { LabelledData, rawNetOf } from "../diffusion/train_edm";
import { cloneModule } from "../nn/module";
import { SongUNet } from "../nn/unet";
import { Adam, lossAndGrads } from "../train/adam";
import { batchIndices } from "../train/data_order";
import { Ema, emaBetaAt, EmaRule } from "../train/ema";
import { runTraining, TrainResult } from "../train/loop";
import { RegressionLoss } from "./regression";

// Consistency distillation (Song et al. 2023), the paper's CIFAR-10 baseline. The student f_theta maps any
// point of the teacher's ODE trajectory to its end; it is trained so that f_theta(x_{n+1}, t_{n+1}) agrees
// with f_theta-(x^_n, t_n), where x^_n is one Heun step of the teacher from x_{n+1} and theta- is an EMA target.

/** The evaluation EMA follows EmaRule (a fixed rate, or EDM's half-life with ramp-up), as Diffusion2GAN's does. */
export interface ConsistencyConfig extends EmaRule {
  /** Number of discretisation levels t_1 = sigma_min < ... < t_N = sigma_max (EDM's rho schedule). */
  N: number;
  batch: number;
  steps: number;
  lr: number;
  /** Adam's (beta1, beta2). */
  betas: [number, number];
  /** EMA rate mu of the target network theta- (0: the online network itself under stop-gradient). */
  targetEma: number;
  /** Intermediate noise level of two-step sampling (not pinned by our sources; tune per model). */
  twoStepSigma: number;
  seed: number;
  ckptEvery: number;
  edm: EdmConfig;
}

// The official CIFAR-10 consistency distillation (openai/consistency_models_cifar10 at d086e77) trains against the
// online network itself: jcm/losses.py:892-896, get_ema_scales_fn returns (None, None) for training.loss
// "consistency" (configs/cifar10_ve_cd.py:12), so get_step_fn calls loss_fn without target_params and
// jcm/losses.py:305-306 sets target_params = params, under stop_gradient (stopgrad = True): mu = 0. The 0.9999 of
// configs/cifar10_ve_cd.py:46 is model.ema_rate, the evaluation EMA (PAPER.md's "EMA 0.9999 for the target" reads
// it as the target's). The PyTorch repository's fixed target rate 0.95 (openai/consistency_models at e32b69e,
// scripts/launch.sh:22-31, --target_ema_mode fixed --start_ema 0.95) is its ImageNet-64 and LSUN setting, not
// CIFAR-10's. Optimiser there: RAdam, lr 4e-4, beta2 0.999 (cifar10_ve_cd.py:74-75, default_cifar10_configs.py:65),
// batch 512, no warm-up on the RAdam path; this trainer uses Adam.
export const CD_DEFAULTS: Omit<ConsistencyConfig, "batch" | "steps"> = {
  N: 18, lr: 4e-4, betas: [0.9, 0.999], targetEma: 0, emaBeta: 0.9999, emaHalflifeImages: 0, emaRampup: 0.05, twoStepSigma: 0.821, seed: 0, ckptEvery: 500, edm: EDM_DEFAULTS,
};

/**
 * Network evaluations per sample of one CD step, for the cost axes (the rule of d2gEvaluations: every forward pass
 * of a network on one sample counts one): the teacher's Heun step (two teacher evaluations), the online network
 * and the target network once each.
 */
export const CD_EVALS_PER_SAMPLE = { teacher: 2, student: 2 };

/** Ascending levels t_1..t_N: t_i = (sigma_min^(1/rho) + (i-1)/(N-1) (sigma_max^(1/rho) - sigma_min^(1/rho)))^rho. */
export function karrasLevels(n: number, cfg: EdmConfig = EDM_DEFAULTS): number[] {
  const a = cfg.sigmaMin ** (1 / cfg.rho);
  const b = cfg.sigmaMax ** (1 / cfg.rho);
  return Array.from({ length: n }, (_, i) => (a + (i / (n - 1)) * (b - a)) ** cfg.rho);
}

/**
 * f(x, t) = c_skip(t) x + c_out(t) F(c_in(t) x, c_noise(t)) with the boundary-condition parametrisation
 * c_skip(t) = sigma_d^2 / ((t - sigma_min)^2 + sigma_d^2), c_out(t) = sigma_d (t - sigma_min) / sqrt(sigma_d^2 + t^2),
 * so that f(x, sigma_min) = x exactly.
 */
export function consistencyFn(net: SongUNet, x: tf.Tensor4D, t: tf.Tensor1D, c: tf.Tensor2D | undefined, cfg: EdmConfig = EDM_DEFAULTS): tf.Tensor4D {
  return tf.tidy(() => {
    const sd = cfg.sigmaData;
    const tt = tf.reshape(t, [-1, 1, 1, 1]);
    const tm = tf.sub(tt, cfg.sigmaMin);
    const cSkip = tf.div(sd * sd, tf.add(tf.square(tm), sd * sd));
    const cOut = tf.div(tf.mul(tm, sd), tf.sqrt(tf.add(tf.square(tt), sd * sd)));
    const cIn = tf.rsqrt(tf.add(tf.square(tt), sd * sd));
    const f = net.forward(tf.mul(x, cIn) as tf.Tensor4D, tf.div(tf.log(t), 4) as tf.Tensor1D, c);
    return tf.add(tf.mul(x, cSkip), tf.mul(f, cOut)) as tf.Tensor4D;
  });
}

/** One-step (and, with twoStepSigma, two-step) sampling from noise z. */
export function consistencySample(net: SongUNet, z: tf.Tensor4D, c: tf.Tensor2D | undefined, cfg: Pick<ConsistencyConfig, "edm" | "twoStepSigma">, steps: 1 | 2, rng?: Rng): tf.Tensor4D {
  return tf.tidy(() => {
    const n = z.shape[0];
    const e = cfg.edm;
    let x = consistencyFn(net, tf.mul(z, e.sigmaMax) as tf.Tensor4D, tf.fill([n], e.sigmaMax) as tf.Tensor1D, c, e);
    if (steps === 2) {
      if (!rng) throw new Error("two-step consistency sampling needs an Rng for the re-noising");
      const t = cfg.twoStepSigma;
      // x_t = x + sqrt(t^2 - sigma_min^2) n, then f(x_t, t)
      const noisy = tf.add(x, tf.mul(tf.randomNormal(z.shape, 0, 1, "float32", rng.seed()), Math.sqrt(t * t - e.sigmaMin ** 2))) as tf.Tensor4D;
      x = consistencyFn(net, noisy, tf.fill([n], t) as tf.Tensor1D, c, e);
    }
    return x;
  });
}

/** The teacher's Heun step from t_{n+1} down to t_n, per-sample levels, batched (two teacher evaluations). */
export function heunStep(teacher: RawNet, x: tf.Tensor4D, tFrom: number[], tTo: number[], c: tf.Tensor2D | undefined, sigmaData: number): tf.Tensor4D {
  return tf.tidy(() => {
    const n = x.shape[0];
    const s = tf.tensor1d(tFrom);
    const s2 = tf.tensor1d(tTo);
    const col = (t: tf.Tensor1D) => tf.reshape(t, [n, 1, 1, 1]);
    const h = col(tf.sub(s2, s) as tf.Tensor1D);
    // d = (x - D(x; t_{n+1})) / t_{n+1};  x_e = x + (t_n - t_{n+1}) d
    const d = tf.div(tf.sub(x, edmDenoise(teacher, x, s, c, sigmaData)), col(s));
    const xe = tf.add(x, tf.mul(d, h)) as tf.Tensor4D;
    // d' = (x_e - D(x_e; t_n)) / t_n;  x^_n = x + (t_n - t_{n+1}) (d + d') / 2
    const d2 = tf.div(tf.sub(xe, edmDenoise(teacher, xe, s2, c, sigmaData)), col(s2));
    return tf.add(x, tf.mul(tf.add(d, d2), tf.div(h, 2))) as tf.Tensor4D;
  });
}

export interface CdOutput {
  /** The evaluation-EMA student. */
  student: SongUNet;
  result: TrainResult;
}

export interface CdRun {
  cfg: ConsistencyConfig;
  teacher: SongUNet;
  data: LabelledData;
  distance: RegressionLoss;
  ckptDir?: string;
  evalEvery?: number;
  /** Evaluate after exactly these step counts instead of every evalEvery; evalAtStart also before the first step. */
  evalAt?: number[];
  evalAtStart?: boolean;
  /** Metrics of the evaluation-EMA student (`sample`) and of the online weights (`raw`), one-step sampling. */
  evaluate?: (sample: (z: tf.Tensor4D, c: tf.Tensor2D) => tf.Tensor4D, stepsDone: number, raw: (z: tf.Tensor4D, c: tf.Tensor2D) => tf.Tensor4D) => Promise<Record<string, number>>;
  label?: string;
}

export async function trainConsistency(run: CdRun): Promise<CdOutput> {
  const { cfg } = run;
  const rng = new Rng(cfg.seed);
  const online = cloneModule(run.teacher, rng);
  const params = online.parameters();
  const target = new Ema(params);
  const evalEma = new Ema(params);
  const evalNet = cloneModule(run.teacher, rng);
  const targetNet = cloneModule(run.teacher, rng);
  const opt = new Adam(params, { lr: cfg.lr, beta1: cfg.betas[0], beta2: cfg.betas[1] });
  const teacherNet = rawNetOf(run.teacher);
  const levels = karrasLevels(cfg.N, cfg.edm);
  const noiseRng = new Rng(cfg.seed + 21);
  const vars: Record<string, tf.Variable> = {};
  online.namedVariables().forEach(([n, v], i) => {
    vars[`online.${n}`] = v;
    vars[`target.${n}`] = target.shadow[i];
    vars[`ema.${n}`] = evalEma.shadow[i];
    vars[`adam.m.${n}`] = opt.m[i];
    vars[`adam.v.${n}`] = opt.v[i];
  });
  let teacherEvals = 0;
  let studentEvals = 0;
  const perm = new Map<number, Int32Array>();
  const result = await runTraining({
    label: run.label ?? "Consistency distillation",
    totalSteps: cfg.steps,
    ckptDir: run.ckptDir,
    ckptEvery: cfg.ckptEvery,
    vars,
    rngs: { noise: noiseRng },
    extraState: {
      save: () => ({ adamStep: opt.step, teacherEvals, studentEvals }),
      load: (s) => {
        opt.step = s.adamStep as number;
        teacherEvals = s.teacherEvals as number;
        studentEvals = s.studentEvals as number;
      },
    },
    evalEvery: run.evalEvery,
    evalAt: run.evalAt,
    evalAtStart: run.evalAtStart,
    evaluate: run.evaluate
      ? async (done) => {
          evalEma.copyTo(evalNet.parameters());
          const sample = (z: tf.Tensor4D, c: tf.Tensor2D) => consistencySample(evalNet, z, c, cfg, 1);
          const raw = (z: tf.Tensor4D, c: tf.Tensor2D) => consistencySample(online, z, c, cfg, 1);
          return { ...(await run.evaluate!(sample, done, raw)), teacherEvals, studentEvals };
        }
      : undefined,
    step(i) {
      const { x: y, labels } = run.data.batch(batchIndices(cfg.seed, run.data.size, cfg.batch, i, perm));
      // n ~ U{1, ..., N-1}: the pair of adjacent levels (t_n, t_{n+1})
      const ns = Array.from({ length: cfg.batch }, () => noiseRng.int(cfg.N - 1));
      const tHi = ns.map((n) => levels[n + 1]);
      const tLo = ns.map((n) => levels[n]);
      const xHi = tf.tidy(() => tf.add(y, tf.mul(tf.randomNormal(y.shape, 0, 1, "float32", noiseRng.seed()), tf.tensor4d(tHi, [cfg.batch, 1, 1, 1]))) as tf.Tensor4D);
      const xLo = heunStep(teacherNet, xHi, tHi, tLo, labels, cfg.edm.sigmaData);
      teacherEvals += CD_EVALS_PER_SAMPLE.teacher * cfg.batch;
      // the target comes from the EMA network theta- and is a constant for the gradient
      target.copyTo(targetNet.parameters());
      const goal = tf.tidy(() => consistencyFn(targetNet, xLo, tf.tensor1d(tLo), labels, cfg.edm));
      const { loss, grads } = lossAndGrads(() => {
        const pred = consistencyFn(online, xHi, tf.tensor1d(tHi), labels, cfg.edm);
        return run.distance(pred, goal);
      }, params);
      studentEvals += CD_EVALS_PER_SAMPLE.student * cfg.batch;
      opt.apply(grads);
      target.update(cfg.targetEma);
      evalEma.update(emaBetaAt(cfg, cfg.batch, i + 1));
      tf.dispose([y, labels, xHi, xLo, goal, ...grads]);
      return { loss };
    },
  });
  evalEma.copyTo(evalNet.parameters());
  tf.dispose([...opt.m, ...opt.v]);
  target.dispose();
  evalEma.dispose();
  online.dispose();
  targetNet.dispose();
  return { student: evalNet, result };
}
