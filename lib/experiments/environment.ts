import * as tf from "@tensorflow/tfjs";
import { runDir, settingsKey } from "../core/paths";
import { Rng } from "../core/random";
import { HostTensor } from "../io/host_tensor";
import { Module, Sequential } from "../nn/module";
import { Conv2d, Linear, ReLU } from "../nn/layers";
import { Adam, lossAndGrads } from "../train/adam";
import { runTraining } from "../train/loop";
import { Figure, lineFigure } from "../viz/plot";
import { Row } from "../viz/table";
import { Claim, committedTable, numberIn } from "./claims";
import { byScale, currentScale, Scale } from "./scale";

// Notebook 00: does the toolchain work end to end? A tiny convnet learns to classify synthetic 32x32 RGB images
// (CIFAR-10's shape, generated on the fly so the check needs no download): every piece the later notebooks rely on
// (engine, layers, gradients, optimiser, resumable training loop, progress display, figures, tables) runs once.
// Nothing here is from the paper; "paper" scale only trains longer.

export interface EnvironmentConfig {
  steps: number;
  batch: number;
  /** Channels of the first conv (the second has twice as many). */
  width: number;
  lr: number;
  /** Held-out images for the accuracy. */
  evalImages: number;
  /** Checkpoint every this many steps (and at the end) under runs/<scale>/environment/. */
  ckptEvery: number;
  seed: number;
}

export const ENVIRONMENT_CONFIGS: Record<Scale, EnvironmentConfig> = {
  smoke: { steps: 60, batch: 16, width: 16, lr: 1e-2, evalImages: 64, ckptEvery: 30, seed: 0 },
  cpu: { steps: 300, batch: 32, width: 16, lr: 2e-3, evalImages: 512, ckptEvery: 100, seed: 0 },
  paper: { steps: 2000, batch: 128, width: 32, lr: 1e-3, evalImages: 2048, ckptEvery: 500, seed: 0 },
};

export function environmentConfig(scale: Scale = currentScale()): EnvironmentConfig {
  return byScale(ENVIRONMENT_CONFIGS, scale);
}

const SIZE = 32;
const IMAGE = SIZE * SIZE * 3;
const CLASSES = 10;
/** Class c is a grating at c * 18 degrees; the name says so. */
export const SYNTHETIC_CLASSES = Array.from({ length: CLASSES }, (_, c) => `${c * 18}°`);

/**
 * n images, float32 NHWC in [-1, 1]: a sinusoidal grating whose orientation is the class, in a random colour and at
 * a random phase, plus Gaussian noise. Only the orientation tells the classes apart, so the net has to learn
 * oriented filters (a colour cue would be learnt in a few steps and prove little).
 */
export function syntheticBatch(rng: Rng, n: number): { images: HostTensor; labels: Int32Array } {
  const data = new Float32Array(n * IMAGE);
  const labels = new Int32Array(n);
  for (let b = 0; b < n; b++) {
    const c = rng.int(CLASSES);
    labels[b] = c;
    const theta = (Math.PI * c) / CLASSES;
    const [cx, cy] = [Math.cos(theta), Math.sin(theta)];
    const phase = rng.range(0, 2 * Math.PI);
    const hue = rng.range(0, 2 * Math.PI);
    const colour = [Math.cos(hue), Math.cos(hue + 2.1), Math.cos(hue + 4.2)];
    for (let y = 0; y < SIZE; y++) {
      for (let x = 0; x < SIZE; x++) {
        const wave = Math.sin((2 * Math.PI * (x * cx + y * cy)) / 8 + phase);
        for (let ch = 0; ch < 3; ch++) {
          const v = 0.5 * wave * (0.5 + 0.5 * colour[ch]) + 0.3 * colour[ch] + 0.25 * rng.normal();
          data[((b * SIZE + y) * SIZE + x) * 3 + ch] = Math.max(-1, Math.min(1, v));
        }
      }
    }
  }
  return { images: { dtype: "float32", shape: [n, SIZE, SIZE, 3], data }, labels };
}

/** Two strided convs, global average pooling, a linear classifier. */
export class TinyConvNet extends Module {
  features: Sequential;
  head: Linear;
  constructor(width: number, rng: Rng) {
    super();
    this.features = new Sequential([
      new Conv2d(3, width, 3, rng, { stride: 2 }),
      new ReLU(),
      new Conv2d(width, 2 * width, 3, rng, { stride: 2 }),
      new ReLU(),
    ]);
    this.head = new Linear(2 * width, CLASSES, rng);
  }
  /** Logits [B, 10]. */
  forward(x: tf.Tensor4D): tf.Tensor2D {
    return tf.tidy(() => this.head.forward(tf.mean(this.features.forward(x), [1, 2]) as tf.Tensor2D));
  }
}

export interface EnvironmentResult {
  scale: Scale;
  backend: string;
  config: EnvironmentConfig;
  parameters: number;
  /** Training loss (softmax cross-entropy) after each step. */
  losses: number[];
  /** Mean wall time of a training step (batch synthesis, forward, backward, Adam), over every session. */
  msPerStep: number;
  /** The step this session started from (the run is read back from its checkpoint when finished). */
  resumedFrom: number;
  /** Accuracy on held-out synthetic images. */
  accuracy: number;
  /** The first 16 held-out images and "label → prediction" captions, for an image grid. */
  samples: HostTensor;
  captions: string[];
}

function toTensors(b: { images: HostTensor; labels: Int32Array }): { x: tf.Tensor4D; y: tf.Tensor2D } {
  return {
    x: tf.tensor4d(b.images.data as Float32Array, b.images.shape as [number, number, number, number]),
    y: tf.tidy(() => tf.oneHot(tf.tensor1d(b.labels, "int32"), CLASSES) as tf.Tensor2D),
  };
}

/**
 * Train (resuming from the run's checkpoint folder, by default runs/<scale>/environment/<settings key>/) and evaluate,
 * on the engine already chosen (the notebook calls initEngine first).
 */
export async function run(config: EnvironmentConfig = environmentConfig(), dir = runDir(currentScale(), "environment", settingsKey(config))): Promise<EnvironmentResult> {
  const rng = new Rng(config.seed);
  const net = new TinyConvNet(config.width, rng);
  const params = net.parameters();
  const adam = new Adam(params, { lr: config.lr });
  const vars: Record<string, tf.Variable> = {};
  net.namedVariables().forEach(([n, v], i) => {
    vars[`net.${n}`] = v;
    vars[`adam.m.${n}`] = adam.m[i];
    vars[`adam.v.${n}`] = adam.v[i];
  });
  const { history, resumedFrom, msPerStep } = await runTraining({
    label: "train tiny convnet",
    totalSteps: config.steps,
    ckptDir: dir,
    ckptEvery: config.ckptEvery,
    vars,
    rngs: { data: rng },
    extraState: adam.checkpointState,
    step() {
      const { x, y } = toTensors(syntheticBatch(rng, config.batch));
      const { loss, grads } = lossAndGrads(() => tf.losses.softmaxCrossEntropy(y, net.forward(x)) as tf.Scalar, params);
      adam.apply(grads);
      tf.dispose([x, y, ...grads]);
      return { loss };
    },
  });
  const losses = history.map((h) => h.loss);

  const held = syntheticBatch(new Rng(config.seed + 1), config.evalImages);
  const pixels = held.images.data as Float32Array;
  const predicted = new Int32Array(config.evalImages);
  for (let s = 0; s < config.evalImages; s += config.batch) {
    const e = Math.min(config.evalImages, s + config.batch);
    const x = tf.tensor4d(pixels.subarray(s * IMAGE, e * IMAGE), [e - s, SIZE, SIZE, 3]);
    const argmax = tf.tidy(() => tf.argMax(net.forward(x), 1));
    predicted.set(await argmax.data(), s);
    tf.dispose([x, argmax]);
  }
  const correct = predicted.reduce((n, p, i) => n + (p === held.labels[i] ? 1 : 0), 0);
  const shown = Math.min(16, config.evalImages);
  const parameters = net.numParameters();
  adam.dispose();
  net.dispose();
  return {
    scale: currentScale(),
    backend: tf.getBackend(),
    config,
    parameters,
    losses,
    msPerStep,
    resumedFrom,
    accuracy: correct / config.evalImages,
    samples: { dtype: "float32", shape: [shown, SIZE, SIZE, 3], data: pixels.slice(0, shown * IMAGE) },
    captions: Array.from({ length: shown }, (_, i) => `${SYNTHETIC_CLASSES[held.labels[i]]} → ${SYNTHETIC_CLASSES[predicted[i]]}`),
  };
}

export function lossFigure(r: EnvironmentResult): Figure {
  return lineFigure(`Tiny convnet on synthetic 32x32 gratings: training loss`, [{ name: "train loss", y: r.losses }], {
    x: "training step",
    y: "softmax cross-entropy (nats)",
    subtitle: `${r.scale} scale, batch ${r.config.batch}, ${r.parameters.toLocaleString("en")} parameters, Adam lr ${r.config.lr}, engine ${r.backend}`,
  });
}

/** Chance level of the ten-class held-out accuracy. */
export const CHANCE = 1 / CLASSES;

export function summaryRows(r: EnvironmentResult): Row[] {
  return [
    {
      backend: r.backend,
      steps: r.config.steps,
      batch: r.config.batch,
      parameters: r.parameters,
      "first loss": r.losses[0],
      "last loss": r.losses[r.losses.length - 1],
      "held-out accuracy (%)": Math.round(1000 * r.accuracy) / 10,
      "chance (%)": 100 * CHANCE,
      "ms/step": Math.round(r.msPerStep * 10) / 10,
    },
  ];
}

/**
 * Notebook 00 checks the toolchain, not the paper: its one claim is that training works on this engine, i.e. the
 * held-out accuracy of the committed cpu-scale run (figures/00_summary.csv) is far above chance (here: 3x).
 */
export function claims(): Claim[] {
  const table = "00_summary";
  const [row] = committedTable(table, "00_environment");
  const acc = numberIn(row, "held-out accuracy (%)", table);
  const held = acc >= 300 * CHANCE;
  return [
    {
      claim: "the toolchain trains a network on this engine (held-out accuracy at least 3x chance)",
      paper: "none: an environment check, not a result of the paper",
      ours: `${acc.toFixed(1)}% held-out accuracy (chance ${(100 * CHANCE).toFixed(0)}%) after ${numberIn(row, "steps", table)} steps, ${numberIn(row, "ms/step", table)} ms/step on ${row.backend}`,
      verdict: held ? "held" : "did not hold",
      why: held ? undefined : "the training or the engine is broken: rerun notebook 00 and read its loss curve",
    },
  ];
}
