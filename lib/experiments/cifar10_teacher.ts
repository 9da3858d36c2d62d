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
// official EDM checkpoint converted to a state dict (see data/README.md).

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

export const TEACHERS: Record<Scale, TeacherSpec> = {
  smoke: { net: CIFAR16_TEACHER_NET, weights: fromRoot("data", "weights", "edm_cifar16_teacher.safetensors"), resolution: 16 },
  cpu: { net: CIFAR16_TEACHER_NET, weights: fromRoot("data", "weights", "edm_cifar16_teacher.safetensors"), resolution: 16 },
  paper: { net: DDPMPP_CIFAR10, weights: fromRoot("data", "downloads", "weights", "edm-cifar10-32x32-cond-vp.pth"), resolution: 32 },
};

/** How the committed stand-in was trained (lib/bin/train_teacher.ts). */
export const TEACHER_TRAINING: EdmTrainConfig = {
  ...EDM_TRAIN_DEFAULTS,
  net: CIFAR16_TEACHER_NET,
  batch: 32,
  steps: 1800,
  lr: 1e-3,
  lrRampupSteps: 200,
  emaHalflifeImages: 10_000,
  ckptEvery: 100,
};

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

/** Train the stand-in teacher (resumable from runs/teacher/) and write its EMA weights where TEACHERS points. */
export async function trainCifarTeacher(data: Cifar10, cfg: EdmTrainConfig = TEACHER_TRAINING, out = TEACHERS.cpu.weights): Promise<TrainResult> {
  const { net, ema, result } = await trainEdm(cfg, cifarLabelled(data, cfg.net.imgResolution as 16 | 32), fromRoot("runs", "teacher"));
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
  const spec = weights ? { ...byScale(TEACHERS, scale), weights } : byScale(TEACHERS, scale);
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
