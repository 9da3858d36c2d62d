import * as fs from "fs";
import * as path from "path";
import * as tf from "@tensorflow/tfjs";
import { Rng } from "../core/random";
import { u8ToUnit } from "../data/images";
import { COLOURS, makeScene, Scene, SHAPES, SIZES, Split, TEXTURES, TONES } from "../data/scenes";
import { writeSafetensors } from "../io/safetensors";
import { AttributeAccuracy, AttributeScore, AttributeScorer, AttributeScorerConfig, GRID_CHANNELS, scoreReading, summariseScores } from "../metrics/attribute_scorer";
import { Adam, adamVariables, lossAndGrads } from "../train/adam";
import { batchIndices } from "../train/data_order";
import { runTraining, TrainResult } from "../train/loop";
import { WarmupCosine, warmupCosine } from "../train/schedule";
import { Scale } from "./scale";
import { T2iWorld } from "./t2i_world";

// Training of the attribute scorer (lib/metrics/attribute_scorer.ts) on the TAEF2 round trips of the world's
// scorer split: generated images are decoded latents, so the scorer learns to read images that went through the
// same decoder. Horizontal flips double the data (every shape is mirror-symmetric up to its rotation jitter).
// Resumable through the common training loop; evaluated per attribute on the round trips of val and test.

/** Adam with warmupCosine. */
export interface ScorerTraining extends WarmupCosine {
  batch: number;
  seed: number;
  /** Random horizontal flips. */
  flip: boolean;
}

export const SCORER_TRAINING: Record<Scale, ScorerTraining> = {
  smoke: { steps: 4, batch: 8, lr: 2e-3, warmup: 2, seed: 5, flip: true },
  cpu: { steps: 1500, batch: 32, lr: 2e-3, warmup: 50, seed: 5, flip: true },
  paper: { steps: 1500, batch: 32, lr: 2e-3, warmup: 50, seed: 5, flip: true },
};

/** Labelled images: uint8 NHWC and the scene behind each. */
export interface ScorerData {
  images: Uint8Array;
  scenes: Scene[];
  size: number;
}

export interface ScorerTargets {
  /** [B, G, G]: 1 where an object's centre lies. */
  obj: tf.Tensor3D;
  /** [B, G, G, 2]: the centre's position inside its cell, in [0, 1). */
  offset: tf.Tensor4D;
  /** [B, G, G, K] one-hot per attribute, zero away from centres. */
  shape: tf.Tensor4D;
  colour: tf.Tensor4D;
  size: tf.Tensor4D;
  /** [B, K] one-hot. */
  texture: tf.Tensor2D;
  tone: tf.Tensor2D;
}

/** Targets of a batch of scenes on a G x G grid; a flipped image's objects sit at x -> 1 - x. */
export function scorerTargets(scenes: Scene[], flipped: boolean[], g: number): ScorerTargets {
  const b = scenes.length;
  const obj = new Float32Array(b * g * g);
  const offset = new Float32Array(b * g * g * 2);
  const cls = { shape: new Int32Array(b * g * g).fill(-1), colour: new Int32Array(b * g * g).fill(-1), size: new Int32Array(b * g * g).fill(-1) };
  scenes.forEach((s, i) => {
    for (const o of s.objects) {
      const x = flipped[i] ? 1 - o.x : o.x;
      const [cx, cy] = [Math.min(g - 1, Math.floor(x * g)), Math.min(g - 1, Math.floor(o.y * g))];
      const cell = (i * g + cy) * g + cx;
      if (obj[cell]) throw new Error(`scene ${s.split}/${s.index}: two object centres in grid cell (${cx}, ${cy}) of ${g}x${g}`);
      obj[cell] = 1;
      offset[2 * cell] = x * g - cx;
      offset[2 * cell + 1] = o.y * g - cy;
      cls.shape[cell] = SHAPES.indexOf(o.shape);
      cls.colour[cell] = COLOURS.indexOf(o.colour);
      cls.size[cell] = SIZES.indexOf(o.size);
    }
  });
  // oneHot of -1 is all zeros: no class away from centres
  const hot = (v: Int32Array, k: number) => tf.tidy(() => tf.reshape(tf.oneHot(tf.tensor1d(v, "int32"), k), [b, g, g, k]) as tf.Tensor4D);
  return {
    obj: tf.tensor3d(obj, [b, g, g]),
    offset: tf.tensor4d(offset, [b, g, g, 2]),
    shape: hot(cls.shape, SHAPES.length),
    colour: hot(cls.colour, COLOURS.length),
    size: hot(cls.size, SIZES.length),
    texture: tf.tidy(() => tf.oneHot(tf.tensor1d(scenes.map((s) => TEXTURES.indexOf(s.spec.texture)), "int32"), TEXTURES.length) as tf.Tensor2D),
    tone: tf.tidy(() => tf.oneHot(tf.tensor1d(scenes.map((s) => TONES.indexOf(s.spec.tone)), "int32"), TONES.length) as tf.Tensor2D),
  };
}

export interface ScorerLoss {
  total: tf.Scalar;
  /** Host values of each term. */
  parts: Record<string, tf.Scalar>;
}

/**
 * L = sum over cells of BCE(objectness) per image + |offset error|_1 + CE(shape) + CE(colour) + CE(size) per object
 *     + CE(texture) + CE(tone) per image.
 */
export function scorerLoss(scorer: AttributeScorer, x: tf.Tensor4D, t: ScorerTargets): ScorerLoss {
  const C = GRID_CHANNELS;
  const { grid, background } = scorer.forward(x);
  const b = x.shape[0];
  const g = grid.shape[1];
  const slice = (from: number, n: number) => tf.slice(grid, [0, 0, 0, from], [b, g, g, n]);
  const objects = tf.maximum(tf.sum(t.obj), 1);
  const logit = tf.squeeze(slice(C.obj, 1), [3]);
  // BCE with logits: max(l, 0) - l t + log(1 + exp(-|l|))
  const bce = tf.add(tf.sub(tf.relu(logit), tf.mul(logit, t.obj)), tf.log1p(tf.exp(tf.neg(tf.abs(logit)))));
  const mask = tf.expandDims(t.obj, 3);
  const offsetL1 = tf.sum(tf.mul(tf.abs(tf.sub(tf.sigmoid(slice(C.offset, 2)), t.offset)), mask));
  // cross-entropy at object centres only: the one-hot targets are zero elsewhere
  const ce = (from: number, n: number, target: tf.Tensor4D) => tf.div(tf.neg(tf.sum(tf.mul(tf.logSoftmax(slice(from, n)), target))), objects) as tf.Scalar;
  const bgCe = (from: number, n: number, target: tf.Tensor2D) =>
    tf.div(tf.neg(tf.sum(tf.mul(tf.logSoftmax(tf.slice(background, [0, from], [b, n])), target))), b) as tf.Scalar;
  const parts: Record<string, tf.Scalar> = {
    obj: tf.div(tf.sum(bce), b),
    offset: tf.div(offsetL1, objects),
    shape: ce(C.shape, SHAPES.length, t.shape),
    colour: ce(C.colour, COLOURS.length, t.colour),
    size: ce(C.size, SIZES.length, t.size),
    texture: bgCe(0, TEXTURES.length, t.texture),
    tone: bgCe(TEXTURES.length, TONES.length, t.tone),
  };
  return { total: tf.addN(Object.values(parts)) as tf.Scalar, parts };
}

/** Images at `indices` in [-1, 1], flipped where asked. */
function imageBatch(data: ScorerData, indices: ArrayLike<number>, flipped: boolean[]): tf.Tensor4D {
  const s = data.size;
  const per = s * s * 3;
  const out = new Uint8Array(indices.length * per);
  for (let k = 0; k < indices.length; k++) {
    const src = data.images.subarray(indices[k] * per, (indices[k] + 1) * per);
    if (!flipped[k]) {
      out.set(src, k * per);
      continue;
    }
    for (let y = 0; y < s; y++) for (let x = 0; x < s; x++) for (let c = 0; c < 3; c++) out[k * per + (y * s + x) * 3 + c] = src[(y * s + (s - 1 - x)) * 3 + c];
  }
  return tf.tensor4d(u8ToUnit(out), [indices.length, s, s, 3]);
}

/** Accuracy per attribute of the scorer's readings against the scenes' own specs. */
export async function evaluateScorer(scorer: AttributeScorer, data: ScorerData, batch = 100): Promise<AttributeAccuracy> {
  const scores: AttributeScore[] = [];
  for (let b = 0; b < data.scenes.length; b += batch) {
    const idx = Array.from({ length: Math.min(batch, data.scenes.length - b) }, (_, k) => b + k);
    const x = imageBatch(data, idx, idx.map(() => false));
    const readings = await scorer.read(x);
    x.dispose();
    readings.forEach((r, k) => scores.push(scoreReading(r, data.scenes[idx[k]].spec)));
  }
  return summariseScores(scores);
}

/** Train (or resume training) `scorer` on `data`; checkpoints in ckptDir. */
export async function trainAttributeScorer(scorer: AttributeScorer, data: ScorerData, cfg: ScorerTraining, ckptDir?: string): Promise<TrainResult> {
  if (data.size !== scorer.config.imageSize) throw new Error(`attribute scorer training: images are ${data.size} px, the scorer reads ${scorer.config.imageSize} px`);
  const named = scorer.namedVariables();
  // the background norm's running statistics are checkpointed but not optimised
  const params = named.map(([, v]) => v).filter((v) => v.trainable);
  const opt = new Adam(params, { lr: cfg.lr });
  const order = new Map<number, Int32Array>();
  const g = scorer.gridSize;
  const r = await runTraining({
    label: "attribute scorer",
    totalSteps: cfg.steps,
    ckptDir,
    ckptEvery: 100,
    vars: { ...Object.fromEntries(named), ...adamVariables(opt) },
    rngs: {},
    extraState: opt.checkpointState,
    step: (i) => {
      const idx = batchIndices(cfg.seed, data.scenes.length, cfg.batch, i, order);
      // flips depend only on (seed, step), so a resumed run sees the same batches
      const rng = new Rng((cfg.seed * 7919 + i) >>> 0);
      const flipped = Array.from(idx, () => cfg.flip && rng.uniform() < 0.5);
      const x = imageBatch(data, idx, flipped);
      const t = scorerTargets(Array.from(idx, (k) => data.scenes[k]), flipped, g);
      const parts: Record<string, number> = {};
      scorer.setTraining(true);
      const { loss, grads } = lossAndGrads(() => {
        const l = scorerLoss(scorer, x, t);
        for (const [k, v] of Object.entries(l.parts)) parts[k] = v.dataSync()[0];
        return l.total;
      }, params);
      scorer.setTraining(false);
      const lr = warmupCosine(cfg, i);
      opt.apply(grads, lr);
      tf.dispose([x, ...Object.values(t), ...grads]);
      return { loss, lr, ...parts };
    },
  });
  opt.dispose();
  return r;
}

/** A split of the world as scorer data: its TAEF2 round trips from the cache, or fresh renders (`clean`). */
export async function worldScorerData(world: T2iWorld, split: Split, o: { count?: number; clean?: boolean } = {}): Promise<ScorerData> {
  const count = o.count ?? world.config.counts[split];
  const scenes = Array.from({ length: count }, (_, i) => makeScene(world.config.seed, split, i));
  const images = o.clean ? await world.cache.images(split, 0, count) : world.load(split, { roundTrip: true }).roundtrip!.subarray(0, count * world.config.imageSize ** 2 * 3);
  return { images, scenes, size: world.config.imageSize };
}

/** Write the weights with their record, and the loss curve as CSV next to them (every `every`-th step). */
export async function saveAttributeScorer(file: string, scorer: AttributeScorer, meta: Record<string, unknown>, run: TrainResult, every = 10): Promise<void> {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const strings = Object.fromEntries(Object.entries({ config: scorer.config satisfies AttributeScorerConfig, ...meta }).map(([k, v]) => [k, typeof v === "string" ? v : JSON.stringify(v)]));
  writeSafetensors(file, await scorer.stateDict(), strings);
  const cols = ["step", "loss", "lr", "obj", "offset", "shape", "colour", "size", "texture", "tone"];
  const rows = run.history.filter((h) => h.step % every === 0 || h.step === run.history.length).map((h) => cols.map((c) => (c === "step" ? String(h[c]) : c === "lr" ? h[c].toExponential(3) : h[c].toFixed(5))).join(","));
  fs.writeFileSync(file.replace(/\.safetensors$/, ".log.csv"), [cols.join(","), ...rows].join("\n") + "\n");
}
