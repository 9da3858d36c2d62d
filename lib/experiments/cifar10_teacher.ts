import * as fs from "fs";
import * as path from "path";
import * as tf from "@tensorflow/tfjs";
import { yieldIfDue } from "../core/interrupt";
import { fromRoot } from "../core/paths";
import { Rng } from "../core/random";
import { Cifar10, cifar10Floats } from "../data/cifar10";
import { readTorchCheckpoint } from "../io/pth";
import { readSafetensors, writeSafetensors } from "../io/safetensors";
import { edmSigmas } from "../diffusion/edm";
import { FrozenEdmDenoiser } from "../diffusion/frozen_denoiser";
import { sampleOde } from "../diffusion/samplers";
import { EDM_TRAIN_DEFAULTS, EdmTrainConfig, LabelledData, rawNetOf, trainEdm } from "../diffusion/train_edm";
import { officialUNetRename, SongUNet, SongUNetConfig, DDPMPP_CIFAR10 } from "../nn/unet";
import { TrainResult } from "../train/loop";
import { byScale, Scale } from "./scale";

// The CIFAR-10 teacher of the convergence experiment. The paper distils the published EDM model (32x32,
// 55.7M parameters, Heun 18 steps); on two CPU cores we train a class-conditional DDPM++ at reduced width on
// CIFAR-10 downsampled to 16x16 (2x2 box average), and commit its EMA weights. The paper scale loads the
// official EDM checkpoint converted to a state dict (see data/README.md). Two stand-in trainings exist
// (TEACHER_TRAININGS): "short", the committed one, and "long", the same network trained 11x longer (issue #18:
// a blurry teacher makes every student blurry); the cpu scale uses "long" once its weights are in data/weights.

export interface TeacherSpec {
  net: SongUNetConfig;
  /** Where the weights live: a committed stand-in, or the converted official checkpoint. */
  weights: string;
  resolution: number;
}

/** CIFAR-10's classes in label order. */
export const CIFAR10_CLASS_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];

export const CIFAR16_TEACHER_NET: SongUNetConfig = {
  imgResolution: 16, inChannels: 3, outChannels: 3, labelDim: 10, augmentDim: 0,
  modelChannels: 16, channelMult: [1, 2, 2], channelMultEmb: 4, numBlocks: 1, attnResolutions: [8], dropout: 0.1,
};

/** How each stand-in teacher is trained (`npm run train:teacher -- --teacher NAME`). */
export const TEACHER_TRAININGS = {
  /** The committed teacher: 3,000 steps planned, cut to 1,800 for time (FID-C10 13.5; blurry class-coloured shapes). */
  short: { ...EDM_TRAIN_DEFAULTS, net: CIFAR16_TEACHER_NET, batch: 32, steps: 1800, lr: 1e-3, lrRampupSteps: 200, emaHalflifeImages: 10_000, ckptEvery: 100 },
  /**
   * The same network on 20,000 steps of 32 (640,000 images, 13 epochs, 11x the short one's), the EMA half-life
   * EDM's default fraction of that: sized to about 50 minutes at the 0.15 s a step measured on the 2-core machine
   * (lib/experiments/plan.ts, COSTS.cifarTeacherStepS). Checkpoints every 500 steps, so it resumes where stopped.
   * The committed run: 0.20 s a step beside another notebook, FID-C10 2.57 (environment.md).
   */
  long: { ...EDM_TRAIN_DEFAULTS, net: CIFAR16_TEACHER_NET, batch: 32, steps: 20_000, lr: 1e-3, lrRampupSteps: 200, emaHalflifeImages: 50_000, ckptEvery: 500 },
} satisfies Record<string, EdmTrainConfig>;

export type CifarTeacherName = keyof typeof TEACHER_TRAININGS;

/** Where a stand-in teacher's weights live (committed under data/weights). */
export function standinTeacherWeights(name: CifarTeacherName): string {
  return fromRoot("data", "weights", name === "short" ? "edm_cifar16_teacher.safetensors" : `edm_cifar16_teacher_${name}.safetensors`);
}

export const TEACHERS: Record<Scale, TeacherSpec> = {
  smoke: { net: CIFAR16_TEACHER_NET, weights: standinTeacherWeights("short"), resolution: 16 },
  cpu: { net: CIFAR16_TEACHER_NET, weights: standinTeacherWeights("long"), resolution: 16 },
  paper: { net: DDPMPP_CIFAR10, weights: fromRoot("data", "downloads", "weights", "edm-cifar10-32x32-cond-vp.pth"), resolution: 32 },
};

/** The teacher a scale uses: its TEACHERS entry, or at cpu scale the short teacher while the long one is not trained yet. */
export function cifarTeacherSpec(scale: Scale): TeacherSpec {
  const spec = byScale(TEACHERS, scale);
  return scale === "cpu" && !fs.existsSync(spec.weights) ? { ...spec, weights: standinTeacherWeights("short") } : spec;
}

/** CIFAR-10 as labelled data at `size` (32, or 16 by 2x2 box averaging), images in [-1, 1], one-hot labels. */
export function cifarLabelled(data: Cifar10, size: 16 | 32): LabelledData {
  return {
    size: data.n,
    batch(indices) {
      return tf.tidy(() => {
        const x = tf.tensor4d(cifar10Floats(data, indices), [indices.length, 32, 32, 3]);
        const labels = tf.oneHot(tf.tensor1d(Array.from(indices, (i) => data.labels[i]), "int32"), 10).toFloat() as tf.Tensor2D;
        return { x: size === 16 ? tf.avgPool(x, 2, 2, "valid") : x, labels };
      });
    },
  };
}

/**
 * `n` samples of a class-conditional sampler, clipped to [-1, 1], in batches: fresh N(0, I) noise from `rng` per
 * batch and classes cycling 0..9, so every class is equally represented (the FID sources of the CIFAR-10 runs).
 */
export async function* classCycledSamples(
  sample: (z: tf.Tensor4D, c: tf.Tensor2D) => tf.Tensor4D | Promise<tf.Tensor4D>, n: number, res: number, rng: Rng, batch: number,
): AsyncGenerator<tf.Tensor4D> {
  for (let i = 0; i < n; i += batch) {
    const m = Math.min(batch, n - i);
    const z = tf.randomNormal([m, res, res, 3], 0, 1, "float32", rng.seed()) as tf.Tensor4D;
    const c = tf.tidy(() => tf.oneHot(tf.tensor1d(Array.from({ length: m }, (_, j) => (i + j) % 10), "int32"), 10).toFloat() as tf.Tensor2D);
    const raw = await sample(z, c);
    const x = tf.clipByValue(raw, -1, 1) as tf.Tensor4D;
    tf.dispose([z, c, raw]);
    // an FID over thousands of samples is minutes of work: keep the notebook's displays and stop button alive
    await yieldIfDue();
    yield x;
  }
}

/** Train a stand-in teacher (resumable from runs/teacher/<name>/) and write its EMA weights to `out`. */
export async function trainCifarTeacher(data: Cifar10, name: CifarTeacherName, cfg: EdmTrainConfig, out: string): Promise<TrainResult> {
  const { net, ema, result } = await trainEdm(cfg, cifarLabelled(data, cfg.net.imgResolution as 16 | 32), fromRoot("runs", "teacher", name));
  const sd = await ema.stateDict();
  fs.mkdirSync(path.dirname(out), { recursive: true });
  const last = result.history.slice(-100);
  writeSafetensors(out, sd, {
    config: JSON.stringify(cfg),
    steps: String(cfg.steps),
    final_loss_mean_last_100: String(last.reduce((s, h) => s + h.loss, 0) / Math.max(1, last.length)),
  });
  net.dispose();
  ema.dispose();
  return result;
}

/** The teacher of a scale, with its weights loaded (from `weights` instead, e.g. a fresh training run's output);
 * errors name the file and how to get it. */
export function loadCifarTeacher(scale: Scale, weights?: string): { net: SongUNet; spec: TeacherSpec } {
  const spec = weights ? { ...cifarTeacherSpec(scale), weights } : cifarTeacherSpec(scale);
  if (!fs.existsSync(spec.weights)) {
    throw new Error(
      scale === "paper"
        ? `${spec.weights}: the official EDM CIFAR-10 checkpoint is missing; download edm-cifar10-32x32-cond-vp.pkl and convert it as data/README.md shows`
        : `${spec.weights}: the committed stand-in teacher is missing; run \`npm run train:teacher\``,
    );
  }
  const net = new SongUNet(spec.net, new Rng(0));
  const tensors = spec.weights.endsWith(".safetensors") ? readSafetensors(spec.weights).tensors : readTorchCheckpoint(spec.weights);
  net.loadStateDict(tensors, { source: spec.weights, rename: officialUNetRename });
  return { net, spec };
}

const frozen = new WeakMap<SongUNet, FrozenEdmDenoiser>();

/** The teacher's denoiser on the inference engine (onnxruntime: exported once per batch shape, then cached). */
export function teacherDenoiser(net: SongUNet): FrozenEdmDenoiser {
  let d = frozen.get(net);
  if (!d) frozen.set(net, (d = new FrozenEdmDenoiser("cifar-teacher", net.namedVariables(), rawNetOf(net))));
  return d;
}

/** Samples of the teacher: Heun with `levels` noise levels (18 = the paper's 35 evaluations), one class per row. */
export async function teacherSamples(net: SongUNet, z: tf.Tensor4D, labels: tf.Tensor2D, levels = 18): Promise<{ x: tf.Tensor4D; nfe: number }> {
  const sig = edmSigmas(levels);
  const x0 = tf.mul(z, sig[0]) as tf.Tensor4D;
  const r = await sampleOde(teacherDenoiser(net).D, x0, { sigmas: sig, method: "heun", cond: labels });
  x0.dispose();
  return { x: r.x, nfe: r.nfe };
}

/** Fixed noise and labels for figures: `perClass` samples of each of the 10 classes, cycling (a 10-column grid has one class per column). */
export function fixedNoise(perClass: number, resolution: number, seed = 123): { z: tf.Tensor4D; labels: tf.Tensor2D } {
  const n = 10 * perClass;
  const rng = new Rng(seed);
  const z = tf.randomNormal([n, resolution, resolution, 3], 0, 1, "float32", rng.seed()) as tf.Tensor4D;
  const labels = tf.tidy(() => tf.oneHot(tf.tensor1d(Array.from({ length: n }, (_, i) => i % 10), "int32"), 10).toFloat() as tf.Tensor2D);
  return { z, labels };
}
