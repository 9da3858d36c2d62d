// Train the stand-in networks that replace ImageNet- and BAPPS-trained ones (unreachable here) and write them with a
// log each to runs/standins/out/ (--out data/weights replaces the committed ones). Every run is resumable
// (checkpoints in runs/standins/<name>/).
//   npm run train:standins -- encode [--train N] [--test N] [--budget-min M]
//       TAEF2 latents of a CIFAR-10 subset (32 -> 64 px bilinear, so 8x8x32 latents), cached in runs/standins/
//   npm run train:standins -- latent [--steps N] [--out DIR]   latent VGG16-BN trunk on those latents
//   npm run train:standins -- pixel [--steps N] [--out DIR]    pixel VGG16 trunk on CIFAR-10 32x32
//   npm run train:standins -- c10 [--steps N] [--out DIR]      FID-C10 classifier on CIFAR-10 16x16
import * as fs from "fs";
import * as path from "path";
import * as tf from "@tensorflow/tfjs";
import { EngineInfo, formatEngine, initEngine } from "../backend/engine";
import { stopOnCtrlC } from "../core/interrupt";
import { fromRoot } from "../core/paths";
import { Progress } from "../core/progress";
import { Rng } from "../core/random";
import { Cifar10, cifar10Floats, loadCifar10 } from "../data/cifar10";
import { readNpy, writeNpy } from "../io/npy";
import { writeSafetensors } from "../io/safetensors";
import { HostTensor } from "../io/host_tensor";
import { torchvisionInit } from "../nn/init";
import { taef2Codec } from "../nn/latent_codec";
import { Module } from "../nn/module";
import { ClassifierHead, LatentVgg16Bn, Vgg16 } from "../nn/vgg";
import { Adam, adamVariables, lossAndGrads } from "../train/adam";
import { batchIndices } from "../train/data_order";
import { runTraining } from "../train/loop";
import { WarmupCosine, warmupCosine } from "../train/schedule";
import { C10_CLASSIFIER, C10_WEIGHTS, C10Classifier } from "../metrics/cifar_classifier";
import { IMAGENET_SHIFT, IMAGENET_SCALE, STANDIN_FILES, STANDIN_WIDTH } from "../perceptual/standins";
import { runCli, UsageError } from "./args";

// ---- data -------------------------------------------------------------------------------------------------------

/** The latent subset: the first N of a fixed permutation of the training set (prefix-stable), the first M test images. */
const LATENT_DATA = { seed: 0, imageSize: 64, chunk: 500, dir: fromRoot("runs", "standins", "taef2_cifar64_seed0") };

function latentSubset(split: "train" | "test", n: number): Int32Array {
  if (split === "test") return Int32Array.from({ length: n }, (_, i) => i);
  return new Rng(LATENT_DATA.seed).permutation(50000).slice(0, n);
}

function chunkFile(split: string, k: number): string {
  return path.join(LATENT_DATA.dir, `${split}_${String(k).padStart(3, "0")}.npy`);
}

/** Encode the chunks not yet cached, stopping after the chunk that passes the time budget. */
async function encode(trainN: number, testN: number, budgetMin: number): Promise<void> {
  fs.mkdirSync(LATENT_DATA.dir, { recursive: true });
  const codec = await taef2Codec();
  const t0 = Date.now();
  for (const [split, n] of [["train", trainN], ["test", testN]] as const) {
    const data = await loadCifar10(split);
    const subset = latentSubset(split, n);
    const chunks = Math.ceil(n / LATENT_DATA.chunk);
    const todo = Array.from({ length: chunks }, (_, k) => k).filter((k) => !fs.existsSync(chunkFile(split, k)));
    const progress = new Progress(`TAEF2 ${split} chunks`, todo.length);
    for (const k of todo) {
      if ((Date.now() - t0) / 60000 > budgetMin) {
        console.log(`time budget of ${budgetMin} min spent; run encode again to continue`);
        return;
      }
      const idx = subset.slice(k * LATENT_DATA.chunk, Math.min(n, (k + 1) * LATENT_DATA.chunk));
      const parts: Float32Array[] = [];
      for (let b = 0; b < idx.length; b += 50) {
        const z = tf.tidy(() => {
          const sub = idx.slice(b, b + 50);
          const x = tf.tensor4d(cifar10Floats(data, sub), [sub.length, 32, 32, 3]);
          // torch's F.interpolate(bilinear, align_corners=False): half-pixel centres
          const up = tf.image.resizeBilinear(x, [LATENT_DATA.imageSize, LATENT_DATA.imageSize], false, true);
          return codec.encode(up);
        });
        parts.push((await z.data()) as Float32Array);
        z.dispose();
      }
      const side = LATENT_DATA.imageSize / codec.factor;
      const all = new Float32Array(parts.reduce((s, p) => s + p.length, 0));
      parts.reduce((o, p) => (all.set(p, o), o + p.length), 0);
      writeNpy(chunkFile(split, k), { dtype: "float32", shape: [idx.length, side, side, codec.channels], data: all });
      progress.tick(1);
    }
    progress.finish();
  }
  codec.dispose();
}

interface HostSet {
  /** NHWC values; uint8 sets are turned into floats per batch by `affine` (CIFAR-10 at 32 px stays 150 MB). */
  x: Float32Array | Uint8Array;
  /** [n, h, w, c] */
  shape: [number, number, number, number];
  labels: Uint8Array;
  /** value = x * mul[c] + add[c] */
  affine?: { mul: number[]; add: number[] };
}

function loadLatents(split: "train" | "test", n: number, labels: Uint8Array): HostSet {
  const chunks = Math.ceil(n / LATENT_DATA.chunk);
  const parts: HostTensor[] = [];
  for (let k = 0; k < chunks; k++) {
    const f = chunkFile(split, k);
    if (!fs.existsSync(f)) throw new Error(`${f}: missing TAEF2 latent chunk; run 'train_standins.js encode --${split} ${n}' first`);
    parts.push(readNpy(f));
  }
  const [, h, w, c] = parts[0].shape;
  const x = new Float32Array(n * h * w * c);
  parts.reduce((o, p) => (x.set(p.data as Float32Array, o), o + p.data.length), 0);
  return { x, shape: [n, h, w, c], labels: Uint8Array.from(latentSubset(split, n), (i) => labels[i]) };
}

/** CIFAR-10 at 32 px as bytes, mapped to [-1, 1] and then through (v - shift) / scale per channel. */
function cifar32(data: Cifar10, shift = [0, 0, 0], scale = [1, 1, 1]): HostSet {
  // x / 127.5 - 1, then (v - shift) / scale
  const mul = scale.map((s) => 1 / (127.5 * s));
  const add = shift.map((sh, c) => (-1 - sh) / scale[c]);
  return { x: data.images, shape: [data.n, 32, 32, 3], labels: data.labels, affine: { mul, add } };
}

/** CIFAR-10 at 16 px by 2x2 box averaging, float32 NHWC in [-1, 1]. */
function cifar16(data: Cifar10): HostSet {
  const x = new Float32Array(data.n * 16 * 16 * 3);
  const src = data.images;
  for (let i = 0; i < data.n; i++)
    for (let y = 0; y < 16; y++)
      for (let xx = 0; xx < 16; xx++)
        for (let c = 0; c < 3; c++) {
          const at = (yy: number, xq: number) => src[((i * 32 + yy) * 32 + xq) * 3 + c];
          const mean = (at(2 * y, 2 * xx) + at(2 * y, 2 * xx + 1) + at(2 * y + 1, 2 * xx) + at(2 * y + 1, 2 * xx + 1)) / 4;
          x[((i * 16 + y) * 16 + xx) * 3 + c] = mean / 127.5 - 1;
        }
  return { x, shape: [data.n, 16, 16, 3], labels: data.labels };
}

/**
 * A batch of `set` at `indices`, optionally augmented (random horizontal flip; random translation by up to `pad`
 * pixels with zero fill, i.e. the usual pad-and-crop), drawn from `rng`.
 */
function hostBatch(set: HostSet, indices: ArrayLike<number>, aug?: { rng: Rng; flip: boolean; pad: number }): { x: tf.Tensor4D; y: tf.Tensor1D } {
  const [, h, w, c] = set.shape;
  const per = h * w * c;
  const b = indices.length;
  const out = new Float32Array(b * per);
  const labels = new Int32Array(b);
  for (let k = 0; k < b; k++) {
    const i = indices[k];
    labels[k] = set.labels[i];
    const flip = aug?.flip && aug.rng.uniform() < 0.5;
    const dy = aug && aug.pad > 0 ? aug.rng.int(2 * aug.pad + 1) - aug.pad : 0;
    const dx = aug && aug.pad > 0 ? aug.rng.int(2 * aug.pad + 1) - aug.pad : 0;
    for (let y = 0; y < h; y++) {
      const sy = y + dy;
      if (sy < 0 || sy >= h) continue;
      for (let x = 0; x < w; x++) {
        const sx0 = x + dx;
        if (sx0 < 0 || sx0 >= w) continue;
        const sx = flip ? w - 1 - sx0 : sx0;
        const src = i * per + (sy * w + sx) * c;
        const dst = k * per + (y * w + x) * c;
        for (let ch = 0; ch < c; ch++) out[dst + ch] = set.affine ? set.x[src + ch] * set.affine.mul[ch] + set.affine.add[ch] : set.x[src + ch];
      }
    }
  }
  return { x: tf.tensor4d(out, [b, h, w, c]), y: tf.tensor1d(labels, "int32") };
}

// ---- training ---------------------------------------------------------------------------------------------------

/** Adam with warmupCosine. */
interface ClassifierTraining extends WarmupCosine {
  batch: number;
  seed: number;
  flip: boolean;
  /** Random translation in pixels (pad-and-crop), 0 for none. */
  pad: number;
}

interface ClassifierJob {
  name: string;
  cfg: ClassifierTraining;
  /** Modules whose variables the checkpoints hold, by prefix. */
  modules: Record<string, Module>;
  /** BatchNorm: batch statistics while training, running ones for evaluation. */
  setTraining?(on: boolean): void;
  logits(x: tf.Tensor4D): tf.Tensor2D;
  train: HostSet;
  test: HostSet;
}

/** Top-1 accuracy on the first `n` images of a set, in inference mode. */
function accuracy(job: ClassifierJob, set: HostSet, n = set.shape[0]): number {
  job.setTraining?.(false);
  let right = 0;
  for (let b = 0; b < n; b += 250) {
    const idx = Int32Array.from({ length: Math.min(250, n - b) }, (_, k) => b + k);
    const { x, y } = hostBatch(set, idx);
    const hits = tf.tidy(() => tf.sum(tf.cast(tf.equal(tf.argMax(job.logits(x), 1), y), "int32")).dataSync()[0]);
    right += hits;
    tf.dispose([x, y]);
  }
  return right / n;
}

interface JobResult {
  steps: number;
  seconds: number;
  testAcc: number;
  history: Array<Record<string, number>>;
}

async function trainClassifier(job: ClassifierJob): Promise<JobResult> {
  const { cfg } = job;
  const named = Object.entries(job.modules).flatMap(([p, m]) => m.namedVariables(p));
  const params = named.map(([, v]) => v).filter((v) => v.trainable);
  const opt = new Adam(params, { lr: cfg.lr });
  const size = job.train.shape[0];
  const order = new Map<number, Int32Array>();
  const result = await runTraining({
    label: job.name,
    totalSteps: cfg.steps,
    ckptDir: fromRoot("runs", "standins", job.name),
    ckptEvery: 100,
    vars: { ...Object.fromEntries(named), ...adamVariables(opt) },
    rngs: {},
    extraState: opt.checkpointState,
    step: (i) => {
      // augmentation draws depend only on (seed, step), so a resumed run sees the same batches
      const aug = { rng: new Rng((cfg.seed * 7919 + i) >>> 0), flip: cfg.flip, pad: cfg.pad };
      const { x, y } = hostBatch(job.train, batchIndices(cfg.seed, size, cfg.batch, i, order), aug);
      job.setTraining?.(true);
      const onehot = tf.oneHot(y, 10);
      const { loss, grads } = lossAndGrads(() => tf.losses.softmaxCrossEntropy(onehot, job.logits(x)) as tf.Scalar, params);
      const lr = warmupCosine(cfg, i);
      opt.apply(grads, lr);
      tf.dispose([x, y, onehot, ...grads]);
      return { loss, lr };
    },
  });
  const seconds = result.seconds;
  const testAcc = accuracy(job, job.test);
  opt.dispose();
  console.log(`${job.name}: ${cfg.steps} steps, ${seconds.toFixed(0)} s, test accuracy ${(100 * testAcc).toFixed(2)}% on ${job.test.shape[0]} images`);
  return { steps: cfg.steps, seconds, testAcc, history: result.history };
}

/** Weights with metadata, plus a CSV of the training curve (every `every`-th step) next to them. */
async function save(file: string, sd: Record<string, HostTensor>, meta: Record<string, unknown>, r: JobResult, every = 10): Promise<void> {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const strings = Object.fromEntries(Object.entries(meta).map(([k, v]) => [k, typeof v === "string" ? v : JSON.stringify(v)]));
  writeSafetensors(file, sd, strings);
  const rows = r.history.filter((h) => h.step % every === 0 || h.step === r.steps).map((h) => `${h.step},${h.loss.toFixed(5)},${h.lr.toExponential(3)}`);
  fs.writeFileSync(file.replace(/\.safetensors$/, ".log.csv"), ["step,loss,lr", ...rows].join("\n") + "\n");
  console.log(`wrote ${path.relative(fromRoot(), file)} (${(fs.statSync(file).size / 1024).toFixed(0)} KiB)`);
}

function prefixed(sd: Record<string, HostTensor>, prefix: string): Record<string, HostTensor> {
  return Object.fromEntries(Object.entries(sd).map(([k, t]) => [`${prefix}${k}`, t]));
}

const TRAINING = {
  latent: { steps: 360, batch: 64, lr: 2e-3, warmup: 20, seed: 1, flip: true, pad: 0 },
  pixel: { steps: 1200, batch: 64, lr: 1e-3, warmup: 50, seed: 2, flip: true, pad: 4 },
  c10: { steps: 2600, batch: 64, lr: 2e-3, warmup: 50, seed: 3, flip: true, pad: 2 },
} satisfies Record<string, ClassifierTraining>;

const LATENT_SPLIT = { train: 6000, test: 1000 };
/** Stage 1 of the latent trunk at the official 64 channels: at 8 (64 x 1/8) it would hide 3/4 of TAEF2's 32. */
const LATENT_STEM = 64;

interface CifarSplits {
  train: Cifar10;
  test: Cifar10;
}

/** Where a stand-in's weights go: the committed file's name, in `out`. */
const outFile = (out: string, committed: string) => path.join(out, path.basename(committed));

async function trainLatent(engine: EngineInfo, cifar: CifarSplits, steps: number, out: string): Promise<void> {
  const rng = new Rng(11);
  const train = loadLatents("train", LATENT_SPLIT.train, cifar.train.labels);
  const test = loadLatents("test", LATENT_SPLIT.test, cifar.test.labels);
  const net = new LatentVgg16Bn(train.shape[3], rng, { width: STANDIN_WIDTH, stem: LATENT_STEM });
  const head = new ClassifierHead(net.tapChannels[4], 10, rng);
  torchvisionInit([net, head], rng);
  const cfg = { ...TRAINING.latent, steps };
  const r = await trainClassifier({
    name: "latent_vgg16bn_taef2", cfg, modules: { net, classifier: head }, train, test,
    setTraining: (on) => net.setTraining(on),
    logits: (x) => head.forward(net.forward(x)),
  });
  net.setTraining(false);
  const sd = { ...prefixed(await net.stateDict(), "net."), ...prefixed(await head.stateDict(), "classifier.") };
  const description = `stand-in latent VGG16-BN w1/${1 / STANDIN_WIDTH} (stage 1 ${LATENT_STEM} wide) trained on TAEF2 latents of CIFAR-10 (${LATENT_SPLIT.train} images at 64 px), test acc ${(100 * r.testAcc).toFixed(1)}%`;
  await save(outFile(out, STANDIN_FILES.latent), sd, {
    description, width: STANDIN_WIDTH, stem: LATENT_STEM, latent_channels: train.shape[3], training: cfg, data: { ...LATENT_SPLIT, subsetSeed: LATENT_DATA.seed, upsample: `bilinear 32 -> ${LATENT_DATA.imageSize} px`, latentShape: train.shape.slice(1) },
    steps: r.steps, seconds: r.seconds.toFixed(0), test_acc: r.testAcc.toFixed(4), test_images: LATENT_SPLIT.test, engine: formatEngine(engine).replace(/^engine: /, ""), created: new Date().toISOString(),
  }, r);
}

async function trainPixel(engine: EngineInfo, cifar: CifarSplits, steps: number, out: string): Promise<void> {
  const rng = new Rng(12);
  // trained on what LPIPS' scaling layer feeds the trunk: ImageNet-normalised inputs
  const train = cifar32(cifar.train, IMAGENET_SHIFT, IMAGENET_SCALE);
  const test = cifar32(cifar.test, IMAGENET_SHIFT, IMAGENET_SCALE);
  const net = new Vgg16(rng, { width: STANDIN_WIDTH });
  const head = new ClassifierHead(net.tapChannels[4], 10, rng);
  torchvisionInit([net, head], rng);
  const cfg = { ...TRAINING.pixel, steps };
  const r = await trainClassifier({
    name: "vgg16_cifar", cfg, modules: { features: net.features, classifier: head }, train, test,
    logits: (x) => head.forward(net.forward(x)),
  });
  const sd = { ...await net.stateDict(), ...prefixed(await head.stateDict(), "classifier.") };
  const description = `stand-in VGG16 w1/${1 / STANDIN_WIDTH} trained on CIFAR-10 pixels (32x32), test acc ${(100 * r.testAcc).toFixed(1)}%`;
  await save(outFile(out, STANDIN_FILES.pixel), sd, {
    description, width: STANDIN_WIDTH, training: cfg, data: "CIFAR-10 train 50000, 32x32, ImageNet normalisation (LPIPS scaling layer)",
    steps: r.steps, seconds: r.seconds.toFixed(0), test_acc: r.testAcc.toFixed(4), test_images: test.shape[0], engine: formatEngine(engine).replace(/^engine: /, ""), created: new Date().toISOString(),
  }, r);
}

async function trainC10(engine: EngineInfo, cifar: CifarSplits, steps: number, out: string): Promise<void> {
  const rng = new Rng(13);
  const train = cifar16(cifar.train);
  const test = cifar16(cifar.test);
  const model = new C10Classifier(C10_CLASSIFIER, rng);
  torchvisionInit([model], rng);
  const cfg = { ...TRAINING.c10, steps };
  const job: ClassifierJob = {
    name: "c10_classifier16", cfg, modules: { "": model }, train, test,
    logits: (x) => model.logits(x),
  };
  const r = await trainClassifier(job);
  const acc500 = accuracy(job, test, 500);
  await save(outFile(out, C10_WEIGHTS), await model.stateDict(), {
    description: `FID-C10 classifier (${C10_CLASSIFIER.widths.join("-")} channels, ${model.dim}-d features) on CIFAR-10 16x16, test acc ${(100 * r.testAcc).toFixed(1)}%`,
    config: C10_CLASSIFIER, training: cfg, data: "CIFAR-10 train 50000, 2x2 box-averaged to 16x16, [-1, 1]",
    steps: r.steps, seconds: r.seconds.toFixed(0), test_acc: r.testAcc.toFixed(4), test_images: test.shape[0], test_acc_first500: acc500.toFixed(4),
    engine: formatEngine(engine).replace(/^engine: /, ""), created: new Date().toISOString(),
  }, r);
}

const COMMANDS = ["encode", "latent", "pixel", "c10"] as const;

const SPEC = {
  command: "npm run train:standins --",
  summary: "Train a stand-in network (resumable; checkpoints in runs/standins/<name>/): encode the TAEF2 latents first, then latent, pixel or c10.",
  positionals: { name: "COMMAND", help: "what to train", min: 1, max: 1, values: COMMANDS },
  flags: {
    steps: { type: "int", min: 1, max: 10_000_000, help: `training steps (latent, pixel, c10; defaults ${TRAINING.latent.steps}, ${TRAINING.pixel.steps}, ${TRAINING.c10.steps})` },
    out: { type: "string", arg: "DIR", help: "folder for the weights and logs (latent, pixel, c10; default runs/standins/out; data/weights replaces the committed ones)" },
    train: { type: "int", min: 1, max: 50_000, help: `encode: training images (default ${LATENT_SPLIT.train})` },
    test: { type: "int", min: 1, max: 10_000, help: `encode: test images (default ${LATENT_SPLIT.test})` },
    "budget-min": { type: "number", above: 0, arg: "M", help: "encode: stop after the chunk that passes M minutes (default 7)" },
  },
} as const;

runCli(SPEC, async ({ flags, positionals: [cmd] }) => {
  const notFor: Array<keyof typeof flags> = cmd === "encode" ? ["steps", "out"] : ["train", "test", "budget-min"];
  const wrong = notFor.find((name) => flags[name] !== undefined);
  if (wrong) throw new UsageError(`--${wrong} does not apply to '${cmd}'`);
  stopOnCtrlC();
  const engine = await initEngine();
  if (cmd === "encode") return encode(flags.train ?? LATENT_SPLIT.train, flags.test ?? LATENT_SPLIT.test, flags["budget-min"] ?? 7);
  const cifar = { train: await loadCifar10("train"), test: await loadCifar10("test") };
  const steps = flags.steps ?? TRAINING[cmd as keyof typeof TRAINING].steps;
  const out = flags.out !== undefined ? path.resolve(flags.out) : fromRoot("runs", "standins", "out");
  if (cmd === "latent") await trainLatent(engine, cifar, steps, out);
  else if (cmd === "pixel") await trainPixel(engine, cifar, steps, out);
  else await trainC10(engine, cifar, steps, out);
});
