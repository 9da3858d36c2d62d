import * as tf from "@tensorflow/tfjs";
import { checkOptions, OptionSpec } from "../core/options";
import { Rng } from "../core/random";

// The E-LatentLPIPS ensemble: d(T(x0), T(x1)) with T a random differentiable augmentation, one draw per sample,
// the same draw for both inputs (PAPER.md "Ensembling", "Augmentations"). T is StyleGAN2-ADA's pipeline pruned to
// the ops below, every op applied (p = 1), with the colour ops of mingukkang/elatentlpips (additive brightness,
// contrast about the C,H,W mean, saturation about the channel mean) so that any channel count works.
// Draws happen on the host (lib/core/random.ts), so a draw can be inspected, replayed or built by hand.
//
// Geometry follows ADA: all geometric ops compose into one inverse matrix G_inv per sample (output pixel -> input
// pixel, centred pixel coordinates, x right, y down), and one resampling executes it: reflect padding, 2x upsampling
// with the sym6 wavelet low-pass, bilinear sampling (zeros outside), 2x downsampling with the same filter.
// tfjs has no grid-sample op and its MirrorPad gradient drops the reflected border, so the plan is built on the host:
// padding and the 2x filters are dense 1-D matrices (matMuls along one axis, reflection folded in), and bilinear
// sampling is a gather of 4 weighted corners per output pixel. Both carry hand-written gradients (transposed matrix,
// scatter-add) that run on every engine, so T is differentiable in the image; the matrix gets no gradient.

export const AUGMENT_OPS = [
  "xflip",
  "rotate90",
  "xint",
  "scale",
  "rotate",
  "aniso",
  "xfrac",
  "brightness",
  "contrast",
  "saturation",
  "cutout",
] as const;
export type AugmentOp = (typeof AUGMENT_OPS)[number];

const B: readonly AugmentOp[] = ["xflip", "rotate90", "xint"];
const G: readonly AugmentOp[] = ["scale", "rotate", "aniso", "xfrac"];
const C: readonly AugmentOp[] = ["brightness", "contrast", "saturation"];
const O: readonly AugmentOp[] = ["cutout"];
/** The presets of elatentlpips (`ada_augpipe`); its default, and ours, is bg. */
export const AUGMENT_PRESETS: Readonly<Record<string, readonly AugmentOp[]>> = {
  b: B,
  g: G,
  c: C,
  o: O,
  co: [...C, ...O],
  bg: [...B, ...G],
  bgc: [...B, ...G, ...C],
  bgco: [...B, ...G, ...C, ...O],
};

export interface AugmentConfig {
  /** A preset name, or a list of op names (presets may appear in the list too). */
  ops: string | readonly string[];
  /** xint: translation U(-xintMax, xintMax) x size, rounded to whole pixels. */
  xintMax: number;
  /** scale: 2^N(0, scaleStd^2). */
  scaleStd: number;
  /** rotate: each of the two angles U(-pi, pi) x rotateMax. */
  rotateMax: number;
  /** aniso: 2^N(0, anisoStd^2) on x, its inverse on y. */
  anisoStd: number;
  /** xfrac: translation N(0, xfracStd^2) x size. */
  xfracStd: number;
  /** cutout: side of the zeroed rectangle relative to the image side. */
  cutoutSize: number;
  /** "wavelet": ADA's pad, 2x sym6 upsample, bilinear sample, 2x downsample (what elatentlpips runs).
   * "bilinear": pad and one bilinear sample at the input resolution (cheaper, blurrier, aliases more). */
  resample: "wavelet" | "bilinear";
}

export const DEFAULT_AUGMENT: AugmentConfig = {
  ops: "bg",
  xintMax: 0.125,
  scaleStd: 0.2,
  rotateMax: 1,
  anisoStd: 0.2,
  xfracStd: 0.125,
  cutoutSize: 0.5,
  resample: "wavelet",
};

/** What each option may be (ops: resolveOps checks it). */
const AUGMENT_OPTIONS: Record<keyof AugmentConfig, OptionSpec | null> = {
  ops: null,
  xintMax: { type: "number", min: 0 },
  scaleStd: { type: "number", min: 0 },
  rotateMax: { type: "number", min: 0 },
  anisoStd: { type: "number", min: 0 },
  xfracStd: { type: "number", min: 0 },
  cutoutSize: { type: "number", min: 0, max: 1 },
  resample: { type: "enum", values: ["wavelet", "bilinear"] },
};

/** Preset or op names -> the set of ops, in pipeline order; anything else is an error naming what is valid. */
export function resolveOps(ops: string | readonly string[]): AugmentOp[] {
  const names = typeof ops === "string" ? [ops] : ops;
  const on = new Set<AugmentOp>();
  for (const n of names) {
    const preset = AUGMENT_PRESETS[n];
    if (preset) preset.forEach((o) => on.add(o));
    else if ((AUGMENT_OPS as readonly string[]).includes(n)) on.add(n as AugmentOp);
    else {
      throw new Error(
        `lib/perceptual/augment.ts: unknown augmentation "${n}"; valid ops: ${AUGMENT_OPS.join(", ")}; ` +
          `presets: ${Object.keys(AUGMENT_PRESETS).join(", ")}`,
      );
    }
  }
  return AUGMENT_OPS.filter((o) => on.has(o));
}

/** Whether two lists of ops or presets name the same augmentation. */
export function sameOps(a: string | readonly string[], b: string | readonly string[]): boolean {
  return resolveOps(a).join() === resolveOps(b).join();
}

/** A pair of per-sample values (x, y). */
export interface XY {
  x: number[];
  y: number[];
}

/** The per-sample parameters of one draw; an op that is off has no entry. */
export interface AugmentDraw {
  /** 1 = mirror x. */
  xflip?: number[];
  /** Quarter turns k in {0,1,2,3}. */
  rotate90?: number[];
  /** Fractions of width/height, rounded to pixels when applied. */
  xint?: XY;
  scale?: number[];
  /** Radians, before the anisotropic scaling. */
  rotatePre?: number[];
  aniso?: number[];
  /** Radians, after the anisotropic scaling. */
  rotatePost?: number[];
  /** Fractions of width/height. */
  xfrac?: XY;
  brightness?: number[];
  contrast?: number[];
  saturation?: number[];
  /** Rectangle centre in [0,1) of width/height. */
  cutout?: XY;
}

/** Draws every enabled op for `batch` samples, in ADA's order. */
export function sampleDraw(ops: readonly AugmentOp[], cfg: AugmentConfig, batch: number, rng: Rng): AugmentDraw {
  const on = new Set(ops);
  const each = (f: () => number) => Array.from({ length: batch }, f);
  const pair = (f: () => number): XY => {
    const x: number[] = [];
    const y: number[] = [];
    for (let i = 0; i < batch; i++) {
      x.push(f());
      y.push(f());
    }
    return { x, y };
  };
  const d: AugmentDraw = {};
  if (on.has("xflip")) d.xflip = each(() => rng.int(2));
  if (on.has("rotate90")) d.rotate90 = each(() => rng.int(4));
  if (on.has("xint")) d.xint = pair(() => rng.range(-cfg.xintMax, cfg.xintMax));
  // s = 2^N(0, std^2)
  if (on.has("scale")) d.scale = each(() => Math.pow(2, rng.normal() * cfg.scaleStd));
  // With p = 1, ADA's per-rotation probability 1 - sqrt(1 - p) is 1: both rotations always happen.
  if (on.has("rotate")) d.rotatePre = each(() => rng.range(-Math.PI, Math.PI) * cfg.rotateMax);
  if (on.has("aniso")) d.aniso = each(() => Math.pow(2, rng.normal() * cfg.anisoStd));
  if (on.has("rotate")) d.rotatePost = each(() => rng.range(-Math.PI, Math.PI) * cfg.rotateMax);
  if (on.has("xfrac")) d.xfrac = pair(() => rng.normal() * cfg.xfracStd);
  if (on.has("brightness")) d.brightness = each(() => rng.uniform() - 0.5);
  if (on.has("contrast")) d.contrast = each(() => rng.uniform() + 0.5);
  if (on.has("saturation")) d.saturation = each(() => 2 * rng.uniform());
  if (on.has("cutout")) d.cutout = pair(() => rng.uniform());
  return d;
}

// ---- 3x3 homogeneous matrices, row-major ----

export type Mat3 = number[];
const mul3 = (a: Mat3, b: Mat3): Mat3 => {
  const r = new Array<number>(9).fill(0);
  for (let i = 0; i < 3; i++) for (let j = 0; j < 3; j++) for (let k = 0; k < 3; k++) r[3 * i + j] += a[3 * i + k] * b[3 * k + j];
  return r;
};
const translate = (tx: number, ty: number): Mat3 => [1, 0, tx, 0, 1, ty, 0, 0, 1];
const scale = (sx: number, sy: number): Mat3 => [sx, 0, 0, 0, sy, 0, 0, 0, 1];
const rotate = (c: number, s: number): Mat3 => [c, -s, 0, s, c, 0, 0, 0, 1];
const rotateBy = (theta: number): Mat3 => rotate(Math.cos(theta), Math.sin(theta));
/** Quarter turns with exact entries, so a 90-degree rotation lands exactly on the pixel grid. */
const QUARTER_COS = [1, 0, -1, 0];
const QUARTER_SIN = [0, 1, 0, -1];
const apply3 = (m: Mat3, x: number, y: number): [number, number] => [m[0] * x + m[1] * y + m[2], m[3] * x + m[4] * y + m[5]];

/** G_inv of sample b: centred output pixel coordinates -> centred input pixel coordinates. Each op multiplies the
 * inverse of its forward transform on the right, in ADA's order; the translations need the image size. */
export function geometricMatrix(d: AugmentDraw, b: number, height: number, width: number): Mat3 {
  let g: Mat3 = [1, 0, 0, 0, 1, 0, 0, 0, 1];
  if (d.xflip) g = mul3(g, scale(1 - 2 * d.xflip[b], 1));
  if (d.rotate90) g = mul3(g, rotate(QUARTER_COS[d.rotate90[b] & 3], QUARTER_SIN[d.rotate90[b] & 3]));
  if (d.xint) g = mul3(g, translate(-Math.round(d.xint.x[b] * width), -Math.round(d.xint.y[b] * height)));
  if (d.scale) g = mul3(g, scale(1 / d.scale[b], 1 / d.scale[b]));
  if (d.rotatePre) g = mul3(g, rotateBy(d.rotatePre[b]));
  if (d.aniso) g = mul3(g, scale(1 / d.aniso[b], d.aniso[b]));
  if (d.rotatePost) g = mul3(g, rotateBy(d.rotatePost[b]));
  if (d.xfrac) g = mul3(g, translate(-d.xfrac.x[b] * width, -d.xfrac.y[b] * height));
  return g;
}

// ---- resampling ----

/** sym6 wavelet low-pass, ADA's Hz_geom, normalised to unit sum as upfirdn2d.setup_filter does. */
const SYM6 = [
  0.015404109327027373, 0.0034907120842174702, -0.11799011114819057, -0.048311742585633, 0.4910559419267466,
  0.787641141030194, 0.3379294217276218, -0.07263752278646252, -0.021060292512300564, 0.04472490177066578,
  0.0017677118642428036, -0.007800708325034148,
];
const SYM6_SUM = SYM6.reduce((a, b) => a + b, 0);
const FILTER = SYM6.map((v) => v / SYM6_SUM);
const TAPS = FILTER.length;
/** ADA's Hz_pad: the 2x grid is sampled over this many extra input pixels on each side, cropped by the downsample. */
const FILTER_PAD = TAPS / 4;

/** Mirror index without repeating the edge (torch/tf 'reflect'); valid for an overhang below n. */
const reflect = (i: number, n: number) => (i < 0 ? -i : i > n - 1 ? 2 * (n - 1) - i : i);

/** ADA's padding: enough to cover where the output corners land (batch-wide), plus `extra` pixels of filter support,
 * at most size-1 (the limit of reflection). Returns [x0, y0, x1, y1]. */
function margins(mats: Mat3[], height: number, width: number, extra: number): number[] {
  const cx = (width - 1) / 2;
  const cy = (height - 1) / 2;
  const m = [-Infinity, -Infinity, -Infinity, -Infinity];
  for (const g of mats) {
    for (const [px, py] of [[-cx, -cy], [cx, -cy], [cx, cy], [-cx, cy]]) {
      const [x, y] = apply3(g, px, py);
      m[0] = Math.max(m[0], -x);
      m[1] = Math.max(m[1], -y);
      m[2] = Math.max(m[2], x);
      m[3] = Math.max(m[3], y);
    }
  }
  const lim = [width - 1, height - 1, width - 1, height - 1];
  const off = [extra - cx, extra - cy, extra - cx, extra - cy];
  return m.map((v, i) => Math.ceil(Math.min(Math.max(v + off[i], 0), lim[i])));
}

/** Reflect padding (m0 before, m1 after) then upfirdn2d's 2x upsample along one axis, as a dense
 * [2(n+m0+m1), n] matrix: zero insertion, zero pad (6, 5), true convolution with the filter, gain 2. */
function upsampleMatrix(n: number, m0: number, m1: number): Float32Array {
  const padded = n + m0 + m1;
  const out = 2 * padded;
  const a = new Float32Array(out * n);
  for (let r = 0; r < out; r++) {
    for (let k = 0; k < TAPS; k++) {
      const j = r + k - TAPS / 2; // position on the zero-inserted padded axis
      if ((j & 1) !== 0 || j < 0 || j >= out) continue;
      a[r * n + reflect(j / 2 - m0, n)] += 2 * FILTER[TAPS - 1 - k];
    }
  }
  return a;
}

/** upfirdn2d's 2x downsample with padding -2*FILTER_PAD and the filter unflipped, out[i] = sum_k f[k] in[2i+1+k],
 * as a dense [n, 2(n+2*FILTER_PAD)] matrix. */
function downsampleMatrix(n: number): Float32Array {
  const len = 2 * (n + 2 * FILTER_PAD);
  const a = new Float32Array(n * len);
  for (let i = 0; i < n; i++) for (let k = 0; k < TAPS; k++) a[i * len + 2 * i + 1 + k] = FILTER[k];
  return a;
}

/** A constant [rows, cols] matrix (host, row-major) applied to the leading axis of x [cols, ...rest] as one plain 2-D
 * matMul, which the engines run far faster than a batched one (hence the axis-leading layouts in executePlan). The
 * gradient multiplies by the transpose built on the host: tfjs' own matMul gradient asks for a transposed left
 * operand, which wasm runs about 50x slower. */
function alongFirst(a: Float32Array, rows: number, x: tf.Tensor): tf.Tensor {
  const [cols, ...rest] = x.shape;
  const f = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const v = args[0] as tf.Tensor2D;
    const gradFunc = (dy: tf.Tensor) => {
      const t = new Float32Array(a.length);
      for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) t[c * rows + r] = a[r * cols + c];
      return tf.matMul(tf.tensor2d(t, [cols, rows]), dy as tf.Tensor2D);
    };
    return { value: tf.matMul(tf.tensor2d(a, [rows, cols]), v), gradFunc };
  });
  return tf.reshape(f(tf.reshape(x, [cols, -1])), [rows, ...rest]);
}

/** Host-side plan of one resampling. Bilinear sampling through the matrix is the one non-separable step:
 * output pixel n = sum over 4 corners t of w[n, t] * source pixel idx[n, t] (all channels alike). */
interface ResamplePlan {
  mode: AugmentConfig["resample"];
  margins: number[];
  outH: number;
  outW: number;
  idx: Int32Array;
  w: Float32Array;
}

function planResample(mats: Mat3[], height: number, width: number, mode: AugmentConfig["resample"]): ResamplePlan {
  const wavelet = mode === "wavelet";
  const [mx0, my0, mx1, my1] = margins(mats, height, width, wavelet ? 2 * FILTER_PAD : 0);
  // The grid being sampled: the padded image, or (wavelet) its 2x upsample, which is materialised (padding included)
  // before sampling; the plain padded image is not: its reflection is folded into the corner indices.
  const padH = height + my0 + my1;
  const padW = width + mx0 + mx1;
  const srcH = wavelet ? 2 * padH : padH;
  const srcW = wavelet ? 2 * padW : padW;
  const batch = mats.length;
  // Source pixel (b, r, c) -> row of the flattened source: the wavelet source is laid out [srcH, srcW, batch].
  const srcIndex = wavelet
    ? (b: number, r: number, c: number) => (r * srcW + c) * batch + b
    : (b: number, r: number, c: number) => (b * height + reflect(r - my0, height)) * width + reflect(c - mx0, width);
  // The wavelet path samples a 2x grid over the input plus FILTER_PAD pixels per side, then downsamples.
  const outH = wavelet ? 2 * (height + 2 * FILTER_PAD) : height;
  const outW = wavelet ? 2 * (width + 2 * FILTER_PAD) : width;
  // Output pixel (b, i, j) -> row of the sampled result: [outH, outW, batch] for the wavelet path, NHWC otherwise.
  const outIndex = wavelet
    ? (b: number, i: number, j: number) => (i * outW + j) * batch + b
    : (b: number, i: number, j: number) => (b * outH + i) * outW + j;
  const idx = new Int32Array(batch * outH * outW * 4);
  const w = new Float32Array(batch * outH * outW * 4);
  mats.forEach((g0, b) => {
    // The padded image's centre moved by half the margin difference.
    let g = mul3(translate((mx0 - mx1) / 2, (my0 - my1) / 2), g0);
    // On the 2x grid: ADA scales by 2 and moves the pivot by half a 2x-pixel, matching the filters' phase.
    if (wavelet) g = mul3(translate(-0.5, -0.5), mul3(scale(2, 2), mul3(g, mul3(scale(0.5, 0.5), translate(0.5, 0.5)))));
    const corner = (o: number, cx: number, cy: number, wt: number) => {
      // Zeros outside the source grid (grid_sample's padding_mode="zeros"): index 0 with weight 0 there.
      if (wt === 0 || cx < 0 || cx >= srcW || cy < 0 || cy >= srcH) return;
      idx[o] = srcIndex(b, cy, cx);
      w[o] = wt;
    };
    for (let i = 0; i < outH; i++) {
      for (let j = 0; j < outW; j++) {
        // torch affine_grid + grid_sample (align_corners=False) reduce to: centred output pixel -> G -> centred
        // source pixel, i.e. source index = G (j - (outW-1)/2, i - (outH-1)/2) + ((srcW-1)/2, (srcH-1)/2).
        const px = j - (outW - 1) / 2;
        const py = i - (outH - 1) / 2;
        const sx = g[0] * px + g[1] * py + g[2] + (srcW - 1) / 2;
        const sy = g[3] * px + g[4] * py + g[5] + (srcH - 1) / 2;
        const x0 = Math.floor(sx);
        const y0 = Math.floor(sy);
        const fx = sx - x0;
        const fy = sy - y0;
        const o = outIndex(b, i, j) * 4;
        corner(o, x0, y0, (1 - fx) * (1 - fy));
        corner(o + 1, x0 + 1, y0, fx * (1 - fy));
        corner(o + 2, x0, y0 + 1, (1 - fx) * fy);
        corner(o + 3, x0 + 1, y0 + 1, fx * fy);
      }
    }
  });
  return { mode, margins: [mx0, my0, mx1, my1], outH, outW, idx, w };
}

/** out[n] = sum_t w[n, t] src[idx[n, t]] over the rows of src [S, C], with its adjoint (a scatter-add) as the
 * gradient: tfjs' own gather gradient goes through UnsortedSegmentSum, which the cpu engine runs in
 * O(segments x rows) time and wasm lacks. */
function sparseSample(src: tf.Tensor2D, idx: Int32Array, w: Float32Array): tf.Tensor2D {
  const n = w.length / 4;
  const [rows, channels] = src.shape;
  const f = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const s = args[0] as tf.Tensor2D;
    const g = tf.reshape(tf.gatherND(s, tf.tensor2d(idx, [4 * n, 1], "int32")), [n, 4, channels]);
    const value = tf.reshape(tf.matMul(tf.tensor3d(w, [n, 1, 4]), g as tf.Tensor3D), [n, channels]);
    const gradFunc = (dy: tf.Tensor) => {
      const updates = tf.matMul(tf.tensor3d(w, [n, 4, 1]), tf.reshape(dy, [n, 1, channels]) as tf.Tensor3D);
      return tf.scatterND(tf.tensor2d(idx, [4 * n, 1], "int32"), tf.reshape(updates, [4 * n, channels]), [rows, channels]);
    };
    return { value, gradFunc };
  });
  return f(src) as tf.Tensor2D;
}

function executePlan(x: tf.Tensor4D, p: ResamplePlan): tf.Tensor4D {
  return tf.tidy(() => {
    const [batch, height, width, channels] = x.shape;
    if (p.mode === "bilinear") {
      return tf.reshape(sparseSample(tf.reshape(x, [-1, channels]), p.idx, p.w), [batch, height, width, channels]);
    }
    const [mx0, my0, mx1, my1] = p.margins;
    // Each 1-D map acts on the leading axis: [W,B,H,C] -> up cols -> [H,Wu,B,C] -> up rows -> [Hu,Wu,B,C].
    const upCols = alongFirst(upsampleMatrix(width, mx0, mx1), 2 * (width + mx0 + mx1), tf.transpose(x, [2, 0, 1, 3]));
    const up = alongFirst(upsampleMatrix(height, my0, my1), 2 * (height + my0 + my1), tf.transpose(upCols, [2, 0, 1, 3]));
    const sampled = tf.reshape(sparseSample(tf.reshape(up, [-1, channels]), p.idx, p.w), [p.outH, p.outW, batch, channels]);
    // [Ho,Wo,B,C] -> down rows -> [H,Wo,B,C] -> [Wo,H,B,C] -> down cols -> [W,H,B,C] -> NHWC.
    const downRows = alongFirst(downsampleMatrix(height), height, sampled);
    const down = alongFirst(downsampleMatrix(width), width, tf.transpose(downRows, [1, 0, 2, 3]));
    return tf.transpose(down, [2, 1, 0, 3]) as tf.Tensor4D;
  });
}

// ---- the augmentation ----

/** One draw for a batch; apply() it to as many same-shaped batches as needed (both inputs of a distance). */
export class Augment {
  private readonly plans = new Map<string, ResamplePlan>();
  /** A draw made by sampleDraw or by hand; config supplies cutoutSize and the resampling mode. */
  constructor(
    readonly draw: AugmentDraw,
    readonly batch: number,
    readonly config: AugmentConfig = DEFAULT_AUGMENT,
  ) {
    checkOptions("Augment config", config, AUGMENT_OPTIONS);
  }

  /** The geometric inverse matrices for images of this size, or null when the draw has no geometric op (ADA then
   * skips resampling altogether, so colour-only presets leave the geometry bit-exact). */
  matrices(height: number, width: number): Mat3[] | null {
    const d = this.draw;
    if (!(d.xflip || d.rotate90 || d.xint || d.scale || d.rotatePre || d.aniso || d.rotatePost || d.xfrac)) return null;
    return Array.from({ length: this.batch }, (_, b) => geometricMatrix(this.draw, b, height, width));
  }

  apply(x: tf.Tensor4D): tf.Tensor4D {
    if (x.rank !== 4 || x.shape[0] !== this.batch) {
      throw new Error(`Augment.apply: expected NHWC with batch ${this.batch}, got shape [${x.shape}]`);
    }
    const [batch, height, width, channels] = x.shape;
    const d = this.draw;
    const perSample = (v: number[]) => tf.tensor4d(v, [batch, 1, 1, 1]);
    return tf.tidy(() => {
      let y: tf.Tensor4D = x;
      const mats = this.matrices(height, width);
      if (mats) {
        const key = `${height}x${width}`;
        let plan = this.plans.get(key);
        if (!plan) {
          plan = planResample(mats, height, width, this.config.resample);
          this.plans.set(key, plan);
        }
        y = executePlan(y, plan);
      }
      if (d.brightness) y = tf.add(y, perSample(d.brightness));
      if (d.contrast) {
        // (x - mean_CHW) * c + mean_CHW, each input about its own mean
        const m = tf.mean(y, [1, 2, 3], true);
        y = tf.add(tf.mul(tf.sub(y, m), perSample(d.contrast)), m);
      }
      if (d.saturation && channels > 1) {
        // (x - mean_C) * s + mean_C: the latent analogue of pulling colours towards grey
        const m = tf.mean(y, 3, true);
        y = tf.add(tf.mul(tf.sub(y, m), perSample(d.saturation)), m);
      }
      if (d.cutout) y = tf.mul(y, cutoutMask(d.cutout, this.config.cutoutSize, batch, height, width));
      return y === x ? tf.clone(x) : y;
    });
  }
}

/** Zero where both |(j+0.5)/W - cx| and |(i+0.5)/H - cy| are under size/2, one elsewhere; [batch, H, W, 1]. */
function cutoutMask(centre: XY, size: number, batch: number, height: number, width: number): tf.Tensor4D {
  const m = new Float32Array(batch * height * width).fill(1);
  for (let b = 0; b < batch; b++) {
    for (let i = 0; i < height; i++) {
      if (Math.abs((i + 0.5) / height - centre.y[b]) >= size / 2) continue;
      for (let j = 0; j < width; j++) {
        if (Math.abs((j + 0.5) / width - centre.x[b]) < size / 2) m[(b * height + i) * width + j] = 0;
      }
    }
  }
  return tf.tensor4d(m, [batch, height, width, 1]);
}

/** Draws one augmentation for a batch. `options` overrides DEFAULT_AUGMENT field by field. */
export function sampleAugment(options: Partial<AugmentConfig>, batch: number, rng: Rng): Augment {
  const { config, ops } = augmentSettings(options);
  return new Augment(sampleDraw(ops, config, batch, rng), batch, config);
}

function augmentSettings(options: Partial<AugmentConfig>): { config: AugmentConfig; ops: AugmentOp[] } {
  checkOptions("sampleAugment options", options, AUGMENT_OPTIONS);
  const config = { ...DEFAULT_AUGMENT, ...options };
  return { config, ops: resolveOps(config.ops) };
}

/**
 * Draws one augmentation for a batch whose row k draws from its own stream rngs[k], so that a row's draws are those
 * it would get alone, whatever else shares the batch (independent problems optimised together as one batch).
 */
export function sampleAugmentRows(options: Partial<AugmentConfig>, rngs: readonly Rng[]): Augment {
  const { config, ops } = augmentSettings(options);
  return new Augment(concatDraws(rngs.map((rng) => sampleDraw(ops, config, 1, rng))), rngs.length, config);
}

/** The draws of several batches as the draw of one batch, rows in order. */
export function concatDraws(draws: readonly AugmentDraw[]): AugmentDraw {
  const out: Record<string, number[] | XY> = {};
  for (const d of draws) {
    for (const [k, v] of Object.entries(d) as Array<[string, number[] | XY]>) {
      if (Array.isArray(v)) out[k] = [...((out[k] as number[] | undefined) ?? []), ...v];
      else {
        const acc = (out[k] as XY | undefined) ?? { x: [], y: [] };
        out[k] = { x: [...acc.x, ...v.x], y: [...acc.y, ...v.y] };
      }
    }
  }
  return out as AugmentDraw;
}

/** T(x0), T(x1) with one shared draw. */
export function augmentPair(
  x0: tf.Tensor4D,
  x1: tf.Tensor4D,
  options: Partial<AugmentConfig>,
  rng: Rng,
): [tf.Tensor4D, tf.Tensor4D] {
  if (x0.shape.join() !== x1.shape.join()) throw new Error(`augmentPair: shapes differ, [${x0.shape}] vs [${x1.shape}]`);
  const aug = sampleAugment(options, x0.shape[0], rng);
  return [aug.apply(x0), aug.apply(x1)];
}
