import * as tf from "@tensorflow/tfjs";
import { checkOptions, OptionSpec } from "../core/options";
import { Rng } from "../core/random";

// The E-LPIPS input ensemble (Kettunen, Härkönen, Lehtinen 2019, mkettune/elpips `sample_ensemble` /
// `apply_ensemble`), the pixel-space reference for E-LatentLPIPS (PAPER.md "E-LPIPS"). Per evaluation one random
// transform, applied to both images alike, in this order:
//   box-downscale by s in 1..numScales with P(s) ~ 1/s^2 (one s and one sub-pixel phase for the whole batch),
//   per-sample integer offset 0..offsetMax px (reflect padding, so the image grows by offsetMax),
//   per-sample flip (x, y, both or none), transpose (one coin for the batch),
//   per-sample channel permutation, per-sample per-channel scale 0.2 + 0.8 U.
// As in the reference, flips, permutations and colour scales are stratified over the batch (each flip value
// appears once per 4 samples, each permutation once per C! samples, each channel's scales have one draw in each
// 1/N quantile), which lowers the variance of a batch average. The reference's dropout (keep 0.99) acts inside
// the network, before every conv, with one mask shared by both images: dropoutMask below makes such a mask.
// Images are NHWC in [0, 1] (the metric maps to [-1, 1] after this transform). Everything is slices, reversals,
// means and matMuls, whose gradients every engine has.

export interface ElpipsConfig {
  /** Scale levels 1..numScales; the reference uses 8 and suggests min(H, W) / 64 for small images. */
  numScales: number;
  offsetMax: number;
  flip: boolean;
  swap: boolean;
  permute: boolean;
  /** "color": an independent factor per channel; "brightness": one factor for all channels. */
  colour: "color" | "brightness" | "off";
  dropoutKeep: number;
}

export const DEFAULT_ELPIPS: ElpipsConfig = {
  numScales: 8,
  offsetMax: 7,
  flip: true,
  swap: true,
  permute: true,
  colour: "color",
  dropoutKeep: 0.99,
};

const ELPIPS_OPTIONS: Record<keyof ElpipsConfig, OptionSpec> = {
  numScales: { type: "int", min: 1 },
  offsetMax: { type: "int", min: 0 },
  flip: { type: "bool" },
  swap: { type: "bool" },
  permute: { type: "bool" },
  colour: { type: "enum", values: ["color", "brightness", "off"] },
  dropoutKeep: { type: "number", above: 0, max: 1 },
};

export interface ElpipsDraw {
  /** Box size, shared by the batch. */
  scale: number;
  /** Reflect padding before the box grid, (y, x) in [0, scale). */
  scalePhase: [number, number];
  /** Per sample, in [0, offsetMax]: the image moves by offsetMax - offset. */
  offsetY: number[];
  offsetX: number[];
  /** Per sample: 0 mirror x, 1 mirror y, 2 both, 3 none (the reference's coding). */
  flip: number[];
  /** Transpose H and W, shared by the batch. */
  swap: boolean;
  /** Per sample, output channel c reads input channel permutation[b][c]. */
  permutation: number[][];
  /** Per sample and channel. */
  colour: number[][];
}

/** All permutations of 0..n-1 in lexicographic order (itertools.permutations). */
function allPermutations(n: number): number[][] {
  if (n === 0) return [[]];
  const out: number[][] = [];
  for (let first = 0; first < n; first++) {
    for (const rest of allPermutations(n - 1)) out.push([first, ...rest.map((v) => (v >= first ? v + 1 : v))]);
  }
  return out;
}

/** `batch` items from `pool`, the pool repeated as often as needed and shuffled: each item once per pool.length. */
function stratified<T>(pool: T[], batch: number, rng: Rng): T[] {
  const tiled = Array.from({ length: Math.ceil(batch / pool.length) * pool.length }, (_, i) => pool[i % pool.length]);
  return Array.from(rng.permutation(tiled.length).subarray(0, batch), (i) => tiled[i]);
}

/** One uniform draw in each 1/batch quantile, shuffled. */
function stratifiedUniform(batch: number, rng: Rng): number[] {
  const u = Array.from({ length: batch }, (_, i) => (rng.uniform() + i) / batch);
  return Array.from(rng.permutation(batch), (i) => u[i]);
}

/** Above this channel count C! is too many to enumerate, and permutations are drawn independently. */
const MAX_ENUMERATED_CHANNELS = 6;

export function sampleElpips(options: Partial<ElpipsConfig>, batch: number, channels: number, rng: Rng): ElpipsTransform {
  checkOptions("sampleElpips options", options, ELPIPS_OPTIONS);
  const cfg = { ...DEFAULT_ELPIPS, ...options };
  const offsetY: number[] = [];
  const offsetX: number[] = [];
  for (let b = 0; b < batch; b++) {
    offsetY.push(rng.int(cfg.offsetMax + 1));
    offsetX.push(rng.int(cfg.offsetMax + 1));
  }
  // P(s) = s^-2 / sum_k k^-2
  const weights = Array.from({ length: cfg.numScales }, (_, i) => 1 / (i + 1) ** 2);
  let u = rng.uniform() * weights.reduce((a, b) => a + b, 0);
  let scale = 1;
  while (scale < cfg.numScales && u >= weights[scale - 1]) u -= weights[scale++ - 1];
  const scalePhase: [number, number] = [rng.int(scale), rng.int(scale)];
  const flip = cfg.flip ? stratified([0, 1, 2, 3], batch, rng) : new Array<number>(batch).fill(3);
  const swap = cfg.swap && rng.int(2) === 1;
  const identity = Array.from({ length: channels }, (_, c) => c);
  let permutation: number[][] = Array.from({ length: batch }, () => identity);
  if (cfg.permute) {
    permutation =
      channels <= MAX_ENUMERATED_CHANNELS
        ? stratified(allPermutations(channels), batch, rng)
        : Array.from({ length: batch }, () => Array.from(rng.permutation(channels)));
  }
  let colour: number[][] = Array.from({ length: batch }, () => new Array<number>(channels).fill(1));
  if (cfg.colour !== "off") {
    const perChannel = Array.from({ length: cfg.colour === "color" ? channels : 1 }, () => stratifiedUniform(batch, rng));
    // factor = 0.2 + 0.8 U
    colour = Array.from({ length: batch }, (_, b) =>
      Array.from({ length: channels }, (_, c) => 0.2 + 0.8 * perChannel[cfg.colour === "color" ? c : 0][b]),
    );
  }
  const draw = { scale, scalePhase, offsetY, offsetX, flip, swap, permutation, colour };
  return new ElpipsTransform(draw, cfg);
}

/** Reflect padding along one axis, from slices and reversals (tfjs' MirrorPad gradient drops the border). */
function reflectPad(x: tf.Tensor4D, axis: 1 | 2, before: number, after: number): tf.Tensor4D {
  const n = x.shape[axis];
  if (before >= n || after >= n) {
    throw new Error(`lib/perceptual/elpips_augment.ts: reflect padding of ${Math.max(before, after)} needs a side over that, got ${n}`);
  }
  const part = (start: number, len: number) => {
    const begin = [0, 0, 0, 0];
    const size = [...x.shape];
    begin[axis] = start;
    size[axis] = len;
    return tf.reverse(tf.slice(x, begin, size), axis);
  };
  const pieces: tf.Tensor4D[] = [];
  if (before > 0) pieces.push(part(1, before));
  pieces.push(x);
  if (after > 0) pieces.push(part(n - 1 - after, after));
  return pieces.length === 1 ? x : tf.concat(pieces, axis);
}

export class ElpipsTransform {
  constructor(
    readonly draw: ElpipsDraw,
    readonly config: ElpipsConfig = DEFAULT_ELPIPS,
  ) {
    checkOptions("ElpipsTransform config", config, ELPIPS_OPTIONS);
  }

  apply(x: tf.Tensor4D): tf.Tensor4D {
    const d = this.draw;
    const [batch, , , channels] = x.shape;
    if (batch !== d.flip.length || channels !== d.colour[0].length) {
      throw new Error(`ElpipsTransform.apply: drawn for batch ${d.flip.length}, ${d.colour[0].length} channels; got [${x.shape}]`);
    }
    return tf.tidy(() => {
      let y = x;
      if (d.scale > 1) {
        // Pad to a multiple of s, the box grid starting scalePhase pixels into the padding, then average s x s boxes.
        const s = d.scale;
        const [h, w] = [y.shape[1], y.shape[2]];
        const fullH = Math.floor((2 * (s - 1) + h) / s) * s;
        const fullW = Math.floor((2 * (s - 1) + w) / s) * s;
        y = reflectPad(y, 1, d.scalePhase[0], fullH - h - d.scalePhase[0]);
        y = reflectPad(y, 2, d.scalePhase[1], fullW - w - d.scalePhase[1]);
        y = tf.mean(tf.reshape(y, [batch, fullH / s, s, fullW / s, s, channels]), [2, 4]) as tf.Tensor4D;
      }
      const m = this.config.offsetMax;
      const samples = (tf.split(y, batch, 0) as tf.Tensor4D[]).map((v, b) => {
        // Offset: pad offsetMax - o before and o after.
        let t = reflectPad(v, 1, m - d.offsetY[b], d.offsetY[b]);
        t = reflectPad(t, 2, m - d.offsetX[b], d.offsetX[b]);
        const axes = [[2], [1], [1, 2], []][d.flip[b]];
        return axes.length ? tf.reverse(t, axes) : t;
      });
      y = batch === 1 ? samples[0] : tf.concat<tf.Tensor4D>(samples, 0);
      if (d.swap) y = tf.transpose(y, [0, 2, 1, 3]);
      // Permutation and colour scale as one per-sample channel matrix: out[c] = in[perm[c]] * colour[c].
      const mix = new Float32Array(batch * channels * channels);
      for (let b = 0; b < batch; b++) {
        for (let c = 0; c < channels; c++) mix[(b * channels + d.permutation[b][c]) * channels + c] = d.colour[b][c];
      }
      const [, h, w] = y.shape;
      const mixed = tf.matMul(tf.reshape(y, [batch, h * w, channels]), tf.tensor3d(mix, [batch, channels, channels]));
      return tf.reshape(mixed, [batch, h, w, channels]) as tf.Tensor4D;
    });
  }
}

/** E-LPIPS' network dropout: a {0, 1/keep} mask of the given shape from one seeded draw, to multiply the features of
 * both images before a conv. */
export function dropoutMask(shape: number[], keep: number, rng: Rng): tf.Tensor {
  return tf.tidy(() => tf.div(tf.cast(tf.less(tf.randomUniform(shape, 0, 1, "float32", rng.seed()), keep), "float32"), keep));
}
