import * as fs from "fs";
import * as path from "path";
import * as tf from "@tensorflow/tfjs";
import { fromRoot } from "../core/paths";
import { Progress } from "../core/progress";
import { readNpz } from "../io/npy";
import { FeatureNet, metricLabel } from "./feature_net";
import { frechetDistance } from "./fid";
import { FeatureMatrix, KidOptions, kernelInceptionDistance } from "./kid";
import { GaussianStats, RunningStats, loadStats, saveStats } from "./stats";

// One call from two image sources to FID (and KID): features batch by batch, running statistics, and reference
// statistics cached on disk so a fixed data set is featurised once per extractor.

/** A fixed image collection (a data set split): the id keys the cache, so it must change when the images do. */
export interface ImageDataset {
  readonly id: string;
  readonly size: number;
  /** NHWC images in [-1, 1], `batchSize` at a time (the last batch may be smaller); evaluate disposes them. */
  batches(batchSize: number): AsyncIterable<tf.Tensor4D>;
}

/** Images made on the fly (a generator's samples). Not cached unless given an id. */
export interface ImageStream {
  stream: AsyncIterable<tf.Tensor4D>;
  /** Expected number of images, for the progress bar. */
  count?: number;
  id?: string;
}

/** Precomputed statistics: an .npz with mu and sigma (pytorch-fid / clean-fid layout), and `features` for KID. */
export interface StatsFile {
  statsFile: string;
}

export type ImageSource = ImageDataset | ImageStream | StatsFile;

export interface EvaluateOptions {
  net: FeatureNet;
  /** Also compute KID (needs the features themselves, so they are kept in memory and in the cache). */
  kid?: boolean | KidOptions;
  batchSize?: number;
  /** Use at most this many images of each source. */
  maxImages?: number;
  /** Where reference statistics are cached; null turns caching off. Default runs/metrics_cache. */
  cacheDir?: string | null;
}

export interface MetricValue {
  /** "FID", "KID", or with the extractor's label, e.g. "FID-C10": print this, never a bare metric name. */
  name: string;
  value: number;
  /** KID: spread over subsets. */
  std?: number;
}

export interface EvaluateResult {
  fid: MetricValue;
  kid?: MetricValue;
  /** Images behind each side's statistics. */
  counts: [number, number];
  extractor: string;
}

interface SideFeatures {
  stats: GaussianStats;
  features?: FeatureMatrix;
}

const isStatsFile = (s: ImageSource): s is StatsFile => "statsFile" in s;
const isStream = (s: ImageSource): s is ImageStream => "stream" in s;

function safeName(s: string): string {
  return s.replace(/[^A-Za-z0-9._-]+/g, "_");
}

function cachePath(dir: string, id: string, net: FeatureNet, max: number | undefined): string {
  return path.join(dir, `${safeName(id)}--${safeName(net.name)}${max !== undefined ? `--max${max}` : ""}.npz`);
}

function readFeatures(file: string, dim: number): FeatureMatrix | undefined {
  const f = readNpz(file).features;
  if (!f) return undefined;
  if (f.dtype !== "float32" || f.shape.length !== 2 || f.shape[1] !== dim) {
    throw new Error(`${file}: 'features' should be float32 [n, ${dim}], got ${f.dtype} [${f.shape}]`);
  }
  return { data: f.data as Float32Array, rows: f.shape[0], dim };
}

/** Featurise one source: running mean/covariance, plus the raw features when KID needs them. */
async function extract(source: ImageDataset | ImageStream, net: FeatureNet, keep: boolean, batchSize: number, max: number | undefined): Promise<SideFeatures> {
  const label = isStream(source) ? source.id ?? "samples" : source.id;
  const expected = Math.min(isStream(source) ? source.count ?? max ?? 0 : source.size, max ?? Infinity);
  const progress = new Progress(`${metricLabel("FID", net)} features ${label}`, Math.ceil(expected / batchSize));
  const stats = new RunningStats(net.dim);
  const kept: Float32Array[] = [];
  const batches = isStream(source) ? source.stream : source.batches(batchSize);
  for await (const batch of batches) {
    const room = (max ?? Infinity) - stats.count;
    const take = Math.min(batch.shape[0], room);
    if (take > 0) {
      const input = take < batch.shape[0] ? tf.slice(batch, 0, take) : batch;
      const f = await net.features(input);
      const data = (await f.data()) as Float32Array;
      tf.dispose(input === batch ? [f] : [f, input]);
      stats.add(data, take);
      if (keep) kept.push(data);
    }
    batch.dispose();
    progress.tick(1, { images: stats.count });
    if (stats.count >= (max ?? Infinity)) break;
  }
  progress.finish();
  const out: SideFeatures = { stats: stats.stats() };
  if (keep) {
    const data = new Float32Array(stats.count * net.dim);
    let at = 0;
    for (const k of kept) {
      data.set(k, at);
      at += k.length;
    }
    out.features = { data, rows: stats.count, dim: net.dim };
  }
  return out;
}

async function side(source: ImageSource, opts: EvaluateOptions, keep: boolean): Promise<SideFeatures> {
  const { net } = opts;
  if (isStatsFile(source)) {
    const stats = loadStats(source.statsFile);
    if (stats.mu.length !== net.dim) throw new Error(`${source.statsFile}: statistics are ${stats.mu.length}-d, extractor ${net.name} gives ${net.dim}-d`);
    const features = keep ? readFeatures(source.statsFile, net.dim) : undefined;
    if (keep && !features) throw new Error(`${source.statsFile}: KID needs the features, but the file holds only mu and sigma`);
    return { stats, features };
  }
  const id = source.id;
  const cacheDir = opts.cacheDir === undefined ? fromRoot("runs", "metrics_cache") : opts.cacheDir;
  const file = id !== undefined && cacheDir !== null ? cachePath(cacheDir, id, net, opts.maxImages) : undefined;
  if (file && fs.existsSync(file)) {
    const features = keep ? readFeatures(file, net.dim) : undefined;
    if (!keep || features) return { stats: loadStats(file), features };
  }
  const got = await extract(source, net, keep, opts.batchSize ?? 32, opts.maxImages);
  if (file) {
    fs.mkdirSync(path.dirname(file), { recursive: true });
    const f = got.features;
    // writeNpz replaces the file atomically: a crash mid-write never leaves a truncated cache entry.
    saveStats(file, got.stats, f ? { features: { dtype: "float32", shape: [f.rows, f.dim], data: f.data } } : {});
  }
  return got;
}

/** FID (and optionally KID) between two image sources under one feature extractor. */
export async function evaluate(a: ImageSource, b: ImageSource, opts: EvaluateOptions): Promise<EvaluateResult> {
  const keep = opts.kid !== undefined && opts.kid !== false;
  const sa = await side(a, opts, keep);
  const sb = await side(b, opts, keep);
  const result: EvaluateResult = {
    fid: { name: metricLabel("FID", opts.net), value: frechetDistance(sa.stats, sb.stats).fid },
    counts: [sa.stats.count, sb.stats.count],
    extractor: opts.net.name,
  };
  if (keep) {
    const kidOpts = typeof opts.kid === "object" ? opts.kid : {};
    const k = await kernelInceptionDistance(sa.features!, sb.features!, kidOpts);
    result.kid = { name: metricLabel("KID", opts.net), value: k.mean, std: k.std };
  }
  return result;
}

/** "FID-C10 12.345 | KID-C10 0.0123 ± 0.0010" */
export function formatResult(r: EvaluateResult): string {
  const parts = [`${r.fid.name} ${r.fid.value.toFixed(3)}`];
  if (r.kid) parts.push(`${r.kid.name} ${r.kid.value.toFixed(5)} ± ${(r.kid.std ?? 0).toFixed(5)}`);
  return parts.join(" | ");
}
