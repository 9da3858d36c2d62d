import * as crypto from "crypto";
import * as fs from "fs";
import * as path from "path";
import * as tf from "@tensorflow/tfjs";
import { yieldIfDue } from "../core/interrupt";
import { Progress } from "../core/progress";
import { ClipTokenizer } from "../data/clip_tokenizer";
import { listImages, readRgb, u8ToUnit, unitToU8 } from "../data/images";
import { pilResizeU8 } from "../data/pil_resize";
import { concatHost } from "../io/host_tensor";
import { readJsonFile, writeJsonFile } from "../io/json_file";
import { readNpz, writeNpz } from "../io/npy";
import { ClipModel } from "../nn/clip/clip_model";
import { clipCosines, ClipScoreTemplate, photoDepictsRows, summariseClipScores } from "./clip_score";
import { FeatureNet, metricLabel } from "./feature_net";
import { frechetDistance } from "./fid";
import { GaussianStats, loadStats, RunningStats, saveStats } from "./stats";

// The text-to-image evaluation of the paper's Tables 1 and 2, as the first author's GigaGAN evaluation computes it
// (evaluation/evaluation.py, which PAPER.md's protocol names): one sample per caption, each with the seed of its
// caption's index; every image, generated or real, decoded to 8 bits, centre-cropped to its short side
// (CenterCropLongEdge, torchvision's center_crop) and resized to 256 x 256 with PIL's Lanczos (compute_fid's
// resize_and_center_crop, the custom_image_tranform it hands clean-fid); then clean-fid's own resize to 299 (PIL
// bicubic on float channels) and InceptionV3's pool3 (lib/metrics/inception.ts with resize "clean"). FID against
// reference statistics of the real images under the same transform (clean-fid's compute_fid reads every image of
// the reference folder), or against precomputed statistics in clean-fid's .npz layout (mu, sigma). CLIP score on the
// same 256 px images (EvalDataset with crop_long_edge and Lanczos resize): the authors' "A photo depicts" cosine
// (lib/metrics/clip_score.ts). Generator-agnostic: anything that maps (captions, seeds) to images goes through it.
// Streaming and resumable: features and cosines are written shard by shard (each file replaced atomically), and a
// rerun reads the finished shards back and continues with the next.

/** GigaGAN's eval_res: every image is centre-cropped and resized to this before FID and CLIP score. */
export const GIGAGAN_EVAL_SIZE = 256;

/** Python's round(): halves go to the even neighbour. */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * torchvision's center_crop of an 8-bit HWC image to its short side (BigGAN's CenterCropLongEdge): the crop starts
 * at int(round((H - s) / 2)) rows and int(round((W - s) / 2)) columns.
 */
export function centreCropLongEdge(src: Uint8Array, h: number, w: number, c = 3): { data: Uint8Array; size: number } {
  if (src.length !== h * w * c) throw new Error(`centreCropLongEdge: expected ${h}x${w}x${c} values, got ${src.length}`);
  const s = Math.min(h, w);
  const top = roundHalfEven((h - s) / 2);
  const left = roundHalfEven((w - s) / 2);
  if (s === h && s === w) return { data: src, size: s };
  const out = new Uint8Array(s * s * c);
  for (let y = 0; y < s; y++) out.set(src.subarray(((top + y) * w + left) * c, ((top + y) * w + left + s) * c), y * s * c);
  return { data: out, size: s };
}

/** GigaGAN's transform of one 8-bit RGB image: centre crop to the short side, then PIL's Lanczos to size x size. */
export function gigaganTransform(src: Uint8Array, h: number, w: number, size = GIGAGAN_EVAL_SIZE): Uint8Array {
  const { data, size: s } = centreCropLongEdge(src, h, w, 3);
  return s === size ? data : pilResizeU8(data, s, s, 3, size, size, "lanczos");
}

/**
 * Generated images in [-1, 1] as the protocol sees them: saved to 8 bits (diffusers' numpy_to_pil rounds), then
 * GigaGAN's transform; size null leaves them as they are (the text-to-image world's judges read its 64 px images
 * directly). Returns [-1, 1] NHWC; the caller disposes both.
 */
export function protocolImages(images: tf.Tensor4D, size: number | null): tf.Tensor4D {
  if (size === null) return tf.tidy(() => tf.clipByValue(images, -1, 1) as tf.Tensor4D);
  const [n, h, w, c] = images.shape;
  if (c !== 3) throw new Error(`t2i evaluation: expected RGB images [N, H, W, 3], got [${images.shape}]`);
  const u8 = unitToU8(images.dataSync());
  const out = new Float32Array(n * size * size * 3);
  for (let i = 0; i < n; i++) out.set(u8ToUnit(gigaganTransform(u8.subarray(i * h * w * 3, (i + 1) * h * w * 3), h, w, size)), i * size * size * 3);
  return tf.tensor4d(out, [n, size, size, 3]);
}

// ---- shards ----------------------------------------------------------------------------------------------------

interface ShardOutput {
  /** [m, dim] row-major. */
  features: Float32Array;
  /** [m] CLIP cosines, when the run scores CLIP. */
  cosines?: Float32Array;
}

interface ShardedResult {
  stats: GaussianStats;
  cosines: Float32Array;
  /** Seconds of work summed over the shards (over every resumed run). */
  seconds: number;
  /** Shards read back from an earlier run. */
  resumed: number;
}

const shardFile = (dir: string, k: number) => path.join(dir, `shard-${String(k).padStart(5, "0")}.npz`);

/**
 * Items [0, total) in shards of `shardSize`, `batch` at a time through `work`; each finished shard is written to
 * `dir` (features, cosines, its seconds) and read back by a rerun. `settings` keys the folder: a folder made with
 * other settings is an error, never silently mixed in.
 */
async function sharded(dir: string, settings: Record<string, unknown>, total: number, o: { shardSize: number; batch: number; dim: number; label: string }, work: (b: number, m: number) => Promise<ShardOutput>): Promise<ShardedResult> {
  if (!(Number.isInteger(o.shardSize) && o.shardSize > 0 && Number.isInteger(o.batch) && o.batch > 0)) throw new Error(`${o.label}: shardSize ${o.shardSize} and batch ${o.batch} must be positive integers`);
  fs.mkdirSync(dir, { recursive: true });
  const settingsFile = path.join(dir, "settings.json");
  const want = { ...settings, total, shardSize: o.shardSize, dim: o.dim };
  if (fs.existsSync(settingsFile)) {
    const have = JSON.stringify(readJsonFile(settingsFile));
    if (have !== JSON.stringify(want)) throw new Error(`${dir}: made with other settings (${have}); this run's are ${JSON.stringify(want)}. Delete the folder or give another`);
  } else writeJsonFile(settingsFile, want);
  const stats = new RunningStats(o.dim);
  const cos: Float32Array[] = [];
  let seconds = 0;
  let resumed = 0;
  const shards = Array.from({ length: Math.ceil(total / o.shardSize) }, (_, k) => ({ k, s0: k * o.shardSize, n: Math.min(o.shardSize, total - k * o.shardSize) }));
  // the bar counts only the work left, so its rate and ETA are this run's
  const progress = new Progress(o.label, shards.filter((x) => !fs.existsSync(shardFile(dir, x.k))).reduce((a, x) => a + x.n, 0));
  for (const { k, s0, n } of shards) {
    const file = shardFile(dir, k);
    let shard: { features: Float32Array; cosines?: Float32Array; seconds: number };
    if (fs.existsSync(file)) {
      const z = readNpz(file);
      const f = z.features;
      if (!f || f.dtype !== "float32" || f.shape[0] !== n || f.shape[1] !== o.dim || !z.seconds) throw new Error(`${file}: expected float32 'features' [${n}, ${o.dim}] and 'seconds', got ${f ? `${f.dtype} [${f.shape}]` : "no features"}; delete the file to compute it again`);
      shard = { features: f.data as Float32Array, cosines: z.cosines?.data as Float32Array | undefined, seconds: Number(z.seconds.data[0]) };
      resumed++;
    } else {
      const t0 = Date.now();
      const feats: Float32Array[] = [];
      const cs: Float32Array[] = [];
      for (let b = s0; b < s0 + n; b += o.batch) {
        const m = Math.min(o.batch, s0 + n - b);
        const out = await work(b, m);
        if (out.features.length !== m * o.dim) throw new Error(`${o.label}: items ${b}..${b + m - 1} gave ${out.features.length} feature values, expected ${m} x ${o.dim}`);
        feats.push(out.features);
        if (out.cosines) cs.push(out.cosines);
        progress.tick(m);
        await yieldIfDue();
      }
      shard = { features: concatHost(feats), cosines: cs.length ? concatHost(cs) : undefined, seconds: (Date.now() - t0) / 1000 };
      writeNpz(file, {
        features: { dtype: "float32", shape: [n, o.dim], data: shard.features },
        ...(shard.cosines ? { cosines: { dtype: "float32", shape: [n], data: shard.cosines } } : {}),
        seconds: { dtype: "float64", shape: [], data: new Float64Array([shard.seconds]) },
      });
    }
    stats.add(shard.features, n);
    if (shard.cosines) cos.push(shard.cosines);
    seconds += shard.seconds;
  }
  if (progress.total > 0) progress.finish();
  return { stats: stats.stats(), cosines: concatHost(cos), seconds, resumed };
}

// ---- reference statistics ----------------------------------------------------------------------------------------

/** The real images behind FID: a folder of images (a user's COCO val2014), or precomputed statistics (.npz with mu and sigma). */
export type ReferenceSource = { folder: string; max?: number } | { statsFile: string };

export interface ReferenceOptions {
  /** GigaGAN's transform size (256); null: the images as they are. */
  size: number | null;
  /** Where a folder's features are sharded (resumable) and its statistics written as stats.npz (clean-fid's layout). */
  workDir: string;
  shardSize?: number;
  batch?: number;
}

/**
 * Reference statistics under `net`: a folder's images (sorted by name, as clean-fid reads a folder), each decoded,
 * transformed as the samples are and featurised; or a statistics file, checked against the extractor's width.
 */
export async function referenceStats(source: ReferenceSource, net: FeatureNet, o: ReferenceOptions): Promise<GaussianStats> {
  if ("statsFile" in source) {
    const s = loadStats(source.statsFile);
    if (s.mu.length !== net.dim) throw new Error(`${source.statsFile}: statistics of ${s.mu.length}-d features, but ${net.name} gives ${net.dim}-d (FID statistics must come from the same extractor)`);
    return s;
  }
  if (!fs.existsSync(source.folder)) throw new Error(`${source.folder}: no such image folder (the reference images, e.g. COCO val2014)`);
  const files = listImages(source.folder).slice(0, source.max ?? Infinity);
  const id = crypto.createHash("sha256").update(files.map((f) => path.basename(f)).join("\n")).digest("hex").slice(0, 12);
  const r = await sharded(o.workDir, { what: "reference", folder: path.resolve(source.folder), files: id, net: net.name, size: o.size }, files.length, { shardSize: o.shardSize ?? 500, batch: o.batch ?? 25, dim: net.dim, label: `reference ${metricLabel("FID", net)} features` }, async (b, m) => {
    const imgs = await Promise.all(files.slice(b, b + m).map((f) => readRgb(f)));
    const size = o.size ?? imgs[0].width;
    const data = new Float32Array(m * size * size * 3);
    imgs.forEach((im, i) => {
      const px = o.size === null ? im.data : gigaganTransform(im.data, im.height, im.width, o.size);
      if (px.length !== size * size * 3) throw new Error(`${files[b + i]}: ${im.width}x${im.height}; without the protocol's transform every reference image must be ${size}x${size}`);
      data.set(u8ToUnit(px), i * size * size * 3);
    });
    const x = tf.tensor4d(data, [m, size, size, 3]);
    const f = await net.features(x);
    const features = (await f.data()) as Float32Array;
    tf.dispose([x, f]);
    return { features };
  });
  saveStats(path.join(o.workDir, "stats.npz"), r.stats);
  return r.stats;
}

// ---- the samples -------------------------------------------------------------------------------------------------

/** Images in [-1, 1] NHWC, one per caption, each from the noise of its seed; the evaluation disposes them. */
export type CaptionGenerator = (captions: string[], seeds: number[]) => Promise<tf.Tensor4D>;

/** Seed of caption i: the same for every generator judged on the captions (and equal to the world teacher's promptNoise). */
export const captionSeed = (base: number, i: number) => base * 100_003 + i;

export interface T2iEvalSettings {
  /** Base of every caption's seed (captionSeed). */
  seed: number;
  batch: number;
  shardSize: number;
  /** GigaGAN's transform size (256); null: the generator's images as they are. */
  size: number | null;
}

export interface T2iJudges {
  /** FID's feature extractor (InceptionV3 pool3 with clean resize at paper scale). */
  fid: FeatureNet;
  reference: GaussianStats;
  /** Names the reference (a folder's hash or a stats file): keys the sample shards with the extractor. */
  referenceTag: string;
  clip?: { model: ClipModel; tokenizer: ClipTokenizer; template: ClipScoreTemplate; /** Names the CLIP checkpoint. */ tag: string };
}

export interface T2iEvalResult {
  samples: number;
  /** "FID", "FID-clean", "FID-wCLIP", ...: the extractor's label, never a bare name for another extractor. */
  fidName: string;
  fid: number;
  /** The authors' CLIP score (mean cosine), when judged. */
  clipScore?: number;
  /** Seconds of generation and scoring, over every resumed run. */
  seconds: number;
  /** Shards read back from an earlier run. */
  resumedShards: number;
}

/**
 * One generator on a caption list: a sample per caption from seed captionSeed(seed, i), the protocol's images,
 * their FID features and CLIP cosines written shard by shard under `dir`; a rerun continues after the last
 * finished shard. FID against judges.reference.
 */
export async function evaluateT2i(dir: string, captions: string[], generate: CaptionGenerator, judges: T2iJudges, s: T2iEvalSettings, label = "t2i evaluation"): Promise<T2iEvalResult> {
  if (captions.length < 2) throw new Error(`${label}: FID needs at least 2 captions, got ${captions.length}`);
  const settings = {
    what: "samples", captions: crypto.createHash("sha256").update(captions.join("\n")).digest("hex").slice(0, 12), seed: s.seed, size: s.size,
    fid: judges.fid.name, reference: judges.referenceTag, clip: judges.clip ? `${judges.clip.tag}/${judges.clip.template}` : null,
  };
  const r = await sharded(dir, settings, captions.length, { shardSize: s.shardSize, batch: s.batch, dim: judges.fid.dim, label }, async (b, m) => {
    const raw = await generate(captions.slice(b, b + m), Array.from({ length: m }, (_, k) => captionSeed(s.seed, b + k)));
    if (raw.shape[0] !== m || raw.shape[3] !== 3) {
      raw.dispose();
      throw new Error(`${label}: the generator gave images [${raw.shape}] for ${m} captions, expected [${m}, H, W, 3]`);
    }
    const images = protocolImages(raw, s.size);
    raw.dispose();
    try {
      const f = await judges.fid.features(images);
      const features = (await f.data()) as Float32Array;
      f.dispose();
      const c = judges.clip;
      const cosines = c ? clipCosines(c.model, images, photoDepictsRows(c.tokenizer, captions.slice(b, b + m), c.template)) : undefined;
      return { features, cosines };
    } finally {
      images.dispose();
    }
  });
  return {
    samples: captions.length, fidName: metricLabel("FID", judges.fid), fid: frechetDistance(r.stats, judges.reference).fid,
    clipScore: judges.clip ? summariseClipScores(r.cosines).meanCosine : undefined, seconds: r.seconds, resumedShards: r.resumed,
  };
}
