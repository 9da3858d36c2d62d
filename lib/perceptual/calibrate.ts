import * as fs from "fs";
import * as path from "path";
import * as tf from "@tensorflow/tfjs";
import { Rng } from "../core/random";
import { loadImages } from "../data/images";
import { readNpy } from "../io/npy";
import { Linear } from "../nn/layers";
import { Module } from "../nn/module";
import { Adam, lossAndGrads } from "../train/adam";
import { batchIndices } from "../train/data_order";
import { LatentLpips } from "./latent_lpips";
import { Lpips, LpipsHeads } from "./lpips";

// The LPIPS paper's calibration of the linear heads (Zhang et al. 2018, Sec. 3, "lin"; richzhang/PerceptualSimilarity
// lpips/trainer.py): on BAPPS 2AFC triplets (ref, p0, p1, judge = fraction of people who found p1 closer to ref)
// with the trunk frozen, the distances d0 = d(ref, p0), d1 = d(ref, p1) go through a small ranking network
//   G(d0, d1) = sigmoid(MLP(d0, d1, d0 - d1, d0 / (d1 + eps), d1 / (d0 + eps))),  eps = 0.1, 32 hidden, LeakyReLU 0.2
// trained jointly with the heads on BCE(G, judge); the heads are clamped to w >= 0 after every step.
//
// With the trunk frozen, a distance is linear in the heads:
//   d(x0, x1) = sum_l sum_c w_lc phi_lc + offset,   phi_lc = mean_hw (n(f_l(x0)) - n(f_l(x1)))_c^2
// (offset: LatentLPIPS' L1 term, 0 for LPIPS). So each triplet is reduced once to its phi vectors, and calibration
// is a pass over small host arrays. LPIPS' dropout acts on the unpooled difference maps; here it acts on phi.

/** A batch of BAPPS-format triplets: NHWC inputs of the metric (images in [-1, 1], or latents), judge in [0, 1]. */
export interface TwoAfcBatch {
  ref: tf.Tensor4D;
  p0: tf.Tensor4D;
  p1: tf.Tensor4D;
  judge: ArrayLike<number>;
}

export interface BappsOptions {
  batch?: number;
  /** Maps each image batch to the metric's input, e.g. `(x) => codec.encode(x)` to calibrate a LatentLPIPS. */
  transform?: (images: tf.Tensor4D) => tf.Tensor4D;
  /** Use only the first n triplets (in file-name order). */
  limit?: number;
}

/**
 * A BAPPS 2AFC folder (e.g. dataset/2afc/train/traditional): ref/, p0/, p1/ hold <id>.png (64x64 RGB) and judge/
 * <id>.npy the fraction of people who chose p1, as the official download lays them out.
 */
export async function* bappsBatches(dir: string, o: BappsOptions = {}): AsyncGenerator<TwoAfcBatch> {
  const judgeDir = path.join(dir, "judge");
  if (!fs.existsSync(judgeDir)) throw new Error(`${dir}: not a BAPPS 2AFC folder (expected ref/, p0/, p1/ and judge/)`);
  const ids = fs.readdirSync(judgeDir).filter((f) => f.endsWith(".npy")).map((f) => f.slice(0, -4)).sort().slice(0, o.limit);
  if (ids.length === 0) throw new Error(`${judgeDir}: no .npy judgements`);
  const batch = o.batch ?? 50;
  for (let b = 0; b < ids.length; b += batch) {
    const part = ids.slice(b, b + batch);
    const load = async (sub: string): Promise<tf.Tensor4D> => {
      const x = await loadImages(part.map((id) => path.join(dir, sub, `${id}.png`)));
      if (!o.transform) return x;
      const y = o.transform(x);
      x.dispose();
      return y;
    };
    const judge = part.map((id) => {
      const file = path.join(judgeDir, `${id}.npy`);
      const t = readNpy(file);
      if (t.data.length !== 1) throw new Error(`${file}: expected one judgement, found ${t.data.length} values`);
      return Number(t.data[0]);
    });
    yield { ref: await load("ref"), p0: await load("p0"), p1: await load("p1"), judge };
  }
}

/** Triplets reduced to what calibration needs. Rows are triplets; phi rows have `channels` entries. */
export interface TwoAfcFeatures {
  n: number;
  /** Total head channels (sum over the five taps). */
  channels: number;
  /** phi of (ref, p0) and (ref, p1), [n, channels] row-major. */
  phi0: Float32Array;
  phi1: Float32Array;
  /** The part of d the heads do not weight (LatentLPIPS' L1 term; zeros for LPIPS), [n]. */
  offset0: Float32Array;
  offset1: Float32Array;
  /** Fraction of judges who found p1 closer to ref, [n]. */
  judge: Float32Array;
}

/**
 * phi [N, channels] and offset [N] of a pair batch, so that metric.distance(x0, x1) = phi . w + offset for the
 * heads w concatenated in tap order (unaugmented; tests check the identity against both metrics). The taps and the
 * offset come from the metric's own functions, so they normalise and scale exactly as its distance does.
 */
export function channelDistances(metric: Lpips | LatentLpips, x0: tf.Tensor4D, x1: tf.Tensor4D): { phi: tf.Tensor2D; offset: tf.Tensor1D } {
  return tf.tidy(() => {
    let taps: [tf.Tensor4D[], tf.Tensor4D[]];
    let offset: tf.Tensor1D;
    if (metric instanceof Lpips) {
      taps = [metric.normalisedTaps(x0), metric.normalisedTaps(x1)];
      offset = tf.zeros([x0.shape[0]]);
    } else {
      const [a, b] = [metric.scaled(x0), metric.scaled(x1)];
      offset = metric.l1 ? metric.l1Term(a, b) : tf.zeros([x0.shape[0]]);
      taps = [metric.normalisedTaps(a), metric.normalisedTaps(b)];
    }
    const phi = tf.concat(taps[0].map((t, l) => tf.mean(tf.squaredDifference(t, taps[1][l]), [1, 2])), 1) as tf.Tensor2D;
    return { phi, offset };
  });
}

/** Reduce triplet batches to TwoAfcFeatures; each batch's tensors are disposed once used. */
export async function twoAfcFeatures(metric: Lpips | LatentLpips, batches: Iterable<TwoAfcBatch> | AsyncIterable<TwoAfcBatch>): Promise<TwoAfcFeatures> {
  const parts: { phi0: Float32Array; phi1: Float32Array; off0: Float32Array; off1: Float32Array; judge: number[] }[] = [];
  let channels = 0;
  for await (const b of batches) {
    const n = b.ref.shape[0];
    if (b.p0.shape[0] !== n || b.p1.shape[0] !== n || b.judge.length !== n) {
      throw new Error(`twoAfcFeatures: a batch has ref ${b.ref.shape[0]}, p0 ${b.p0.shape[0]}, p1 ${b.p1.shape[0]}, judge ${b.judge.length} rows; expected equal`);
    }
    const j = Array.from(b.judge);
    if (j.some((v) => !(v >= 0 && v <= 1))) throw new Error("twoAfcFeatures: judge values must lie in [0, 1] (fraction preferring p1)");
    const r0 = channelDistances(metric, b.ref, b.p0);
    const r1 = channelDistances(metric, b.ref, b.p1);
    channels = r0.phi.shape[1];
    parts.push({ phi0: (await r0.phi.data()) as Float32Array, phi1: (await r1.phi.data()) as Float32Array, off0: (await r0.offset.data()) as Float32Array, off1: (await r1.offset.data()) as Float32Array, judge: j });
    tf.dispose([b.ref, b.p0, b.p1, r0.phi, r0.offset, r1.phi, r1.offset]);
  }
  const cat = (xs: ArrayLike<number>[]) => {
    const out = new Float32Array(xs.reduce((s, x) => s + x.length, 0));
    xs.reduce((o, x) => (out.set(x, o), o + x.length), 0);
    return out;
  };
  const judge = cat(parts.map((p) => p.judge));
  return {
    n: judge.length, channels, judge,
    phi0: cat(parts.map((p) => p.phi0)), phi1: cat(parts.map((p) => p.phi1)),
    offset0: cat(parts.map((p) => p.off0)), offset1: cat(parts.map((p) => p.off1)),
  };
}

/** d0, d1 of every triplet under the given heads. */
export function headDistances(heads: LpipsHeads, f: TwoAfcFeatures): { d0: Float32Array; d1: Float32Array } {
  const w = headVector(heads);
  const d = (phi: Float32Array, off: Float32Array) => {
    const out = new Float32Array(f.n);
    for (let i = 0; i < f.n; i++) {
      let s = off[i];
      for (let c = 0; c < f.channels; c++) s += phi[i * f.channels + c] * w[c];
      out[i] = s;
    }
    return out;
  };
  return { d0: d(f.phi0, f.offset0), d1: d(f.phi1, f.offset1) };
}

/** The heads' weights concatenated in tap order. */
export function headVector(heads: LpipsHeads): Float32Array {
  const parts = heads.lins.map((l) => l.weight.dataSync() as Float32Array);
  const out = new Float32Array(parts.reduce((s, p) => s + p.length, 0));
  parts.reduce((o, p) => (out.set(p, o), o + p.length), 0);
  return out;
}

/**
 * BAPPS' 2AFC score, the fraction of people the metric agrees with (lpips score_2afc_dataset):
 *   mean( [d0 < d1] (1 - judge) + [d1 < d0] judge + [d0 = d1] / 2 )
 */
export function twoAfcScore(d0: ArrayLike<number>, d1: ArrayLike<number>, judge: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < judge.length; i++) s += d0[i] < d1[i] ? 1 - judge[i] : d1[i] < d0[i] ? judge[i] : 0.5;
  return s / judge.length;
}

/** lpips' Dist2LogitLayer: (d0, d1) -> logit of "p1 is closer" (the sigmoid is folded into the loss). */
export class RankingNet extends Module {
  model: Linear[];
  constructor(hidden: number, rng: Rng) {
    super();
    this.model = [new Linear(5, hidden, rng), new Linear(hidden, hidden, rng), new Linear(hidden, 1, rng)];
  }
  logit(d0: tf.Tensor1D, d1: tf.Tensor1D, eps = 0.1): tf.Tensor1D {
    return tf.tidy(() => {
      // G's inputs: d0, d1, d0 - d1, d0 / (d1 + eps), d1 / (d0 + eps)
      const x = tf.stack([d0, d1, tf.sub(d0, d1), tf.div(d0, tf.add(d1, eps)), tf.div(d1, tf.add(d0, eps))], 1) as tf.Tensor2D;
      const h = tf.leakyRelu(this.model[1].forward(tf.leakyRelu(this.model[0].forward(x), 0.2)), 0.2);
      return tf.reshape(this.model[2].forward(h), [-1]) as tf.Tensor1D;
    });
  }
}

export interface CalibrationConfig {
  /** Epochs at the full rate, then epochs with the rate decaying linearly (lpips train.py: 5 and 5). */
  epochs: number;
  decayEpochs: number;
  batch: number;
  lr: number;
  beta1: number;
  /** Dropout on phi (lpips: 0.5 on the difference maps). */
  dropout: number;
  /** Hidden channels of G. */
  hidden: number;
  seed: number;
}

/** lpips train.py's settings (Adam lr 1e-4, beta1 0.5, batch 50, 5 + 5 epochs, dropout 0.5). */
export const LPIPS_CALIBRATION: CalibrationConfig = { epochs: 5, decayEpochs: 5, batch: 50, lr: 1e-4, beta1: 0.5, dropout: 0.5, hidden: 32, seed: 0 };

export interface CalibrationResult {
  /** Mean BCE per epoch. */
  epochLoss: number[];
  steps: number;
  ranking: RankingNet;
}

/**
 * Fit `heads` in place on 2AFC features, starting from their current values (all ones = the uncalibrated
 * baseline; lpips starts from PyTorch's random init), with a fresh ranking network G.
 */
export function calibrateHeads(heads: LpipsHeads, f: TwoAfcFeatures, cfg: CalibrationConfig = LPIPS_CALIBRATION): CalibrationResult {
  const widths = heads.lins.map((l) => l.channels);
  if (widths.reduce((a, b) => a + b, 0) !== f.channels) throw new Error(`calibrateHeads: heads have ${widths.join("+")} channels, the features ${f.channels}`);
  const rng = new Rng(cfg.seed);
  const ranking = new RankingNet(cfg.hidden, rng);
  const headVars = heads.lins.map((l) => l.weight);
  const params = [...headVars, ...ranking.parameters()];
  const opt = new Adam(params, { lr: cfg.lr, beta1: cfg.beta1 });
  const perEpoch = Math.ceil(f.n / cfg.batch);
  const epochLoss: number[] = [];
  const order = new Map<number, Int32Array>();
  const rows = (src: Float32Array, idx: Int32Array, width: number) => {
    const out = new Float32Array(idx.length * width);
    idx.forEach((i, k) => out.set(src.subarray(i * width, (i + 1) * width), k * width));
    return out;
  };
  let step = 0;
  for (let e = 0; e < cfg.epochs + cfg.decayEpochs; e++) {
    // lpips: after each epoch past `epochs`, lr -= lr0 / decayEpochs
    const lr = cfg.lr * (1 - Math.max(0, e - cfg.epochs) / cfg.decayEpochs);
    let sum = 0;
    for (let s = 0; s < perEpoch; s++, step++) {
      const idx = batchIndices(cfg.seed, f.n, Math.min(cfg.batch, f.n), step, order);
      const b = idx.length;
      const [phi0, phi1] = [rows(f.phi0, idx, f.channels), rows(f.phi1, idx, f.channels)].map((a) => tf.tensor2d(a, [b, f.channels]));
      const [off0, off1, judge] = [rows(f.offset0, idx, 1), rows(f.offset1, idx, 1), rows(f.judge, idx, 1)].map((a) => tf.tensor1d(a));
      const drop = (phi: tf.Tensor2D) => (cfg.dropout > 0 ? tf.dropout(phi, cfg.dropout, undefined, rng.seed()) : phi);
      const { loss, grads } = lossAndGrads(() => {
        const w = tf.concat(headVars.map((v, l) => tf.reshape(v, [widths[l], 1])), 0);
        // d = phi . w + offset
        const d0 = tf.add(tf.reshape(tf.matMul(drop(phi0), w), [-1]), off0) as tf.Tensor1D;
        const d1 = tf.add(tf.reshape(tf.matMul(drop(phi1), w), [-1]), off1) as tf.Tensor1D;
        // BCE(sigmoid(G), judge)
        return tf.losses.sigmoidCrossEntropy(judge, ranking.logit(d0, d1)) as tf.Scalar;
      }, params);
      opt.apply(grads, lr);
      tf.dispose([phi0, phi1, off0, off1, judge, ...grads]);
      // lpips trainer.clamp_weights: the heads stay non-negative, so d stays a (semi)metric-like sum of squares
      tf.tidy(() => headVars.forEach((v) => v.assign(tf.relu(v))));
      sum += loss;
    }
    epochLoss.push(sum / perEpoch);
  }
  opt.dispose();
  return { epochLoss, steps: step, ranking };
}
