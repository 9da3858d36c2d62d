import * as crypto from "crypto";
import * as fs from "fs";
import * as path from "path";
import * as tf from "@tensorflow/tfjs";
import { interruptible, Interrupted, stopRequested } from "../core/interrupt";
import { Progress } from "../core/progress";
import { Rng } from "../core/random";
import { writeAtomic } from "../io/file_bytes";
import { concatHost } from "../io/host_tensor";
import { readSafetensors, writeSafetensors } from "../io/safetensors";
import { ClipTextModel } from "../nn/clip/text_encoder";
import { batchIndices } from "../train/data_order";

// ODE pairs: triples (z, c, x) where x is the frozen teacher's ODE solution from noise z under condition c.
// Diffusion2GAN and consistency distillation both train from them. Sample i is a pure function of
// (seed, i): its noise and condition are drawn from its own seed, so shards can be made by different processes
// (`shard i/n`), in any order, killed and resumed, and the union is always the same dataset.
//
// Conditions are stored as rows of cDim numbers: a one-hot class, or a caption's CLIP token ids (clipTokenCondition).
// On disk: shard-00000.safetensors ... (tensors z, x, c, index; metadata: the generation record) and, once
// merged, manifest.json with the record, every shard's sample range and sha256, and the teacher cost.

export interface PairRecord {
  teacher: string;
  sampler: string;
  steps: number;
  guidance: number;
  seed: number;
  count: number;
  shardSize: number;
  zShape: number[];
  cDim: number;
}

export interface ShardEntry {
  file: string;
  start: number;
  count: number;
  sha256: string;
  /** Teacher network evaluations spent on this shard (per-sample NFE x count). */
  teacherEvals: number;
}

export interface PairManifest extends PairRecord {
  shards: ShardEntry[];
  teacherEvals: number;
}

/**
 * The teacher as the store sees it: a batch of noise and conditions to clean samples, with its per-sample cost;
 * synchronous (tfjs) or not (a frozen teacher on onnxruntime).
 */
export type PairTeacher = (z: tf.Tensor4D, c: tf.Tensor2D) => PairOutput | Promise<PairOutput>;

export interface PairOutput {
  x: tf.Tensor4D;
  nfe: number;
}

/** Condition of sample i (e.g. a one-hot class, or a prompt index): drawn from the sample's own RNG. */
export type ConditionFn = (rng: Rng, i: number) => number[];

const shardName = (k: number) => `shard-${String(k).padStart(5, "0")}.safetensors`;

function sha256(file: string): string {
  return crypto.createHash("sha256").update(fs.readFileSync(file)).digest("hex");
}

/** Noise and condition of sample i: N(0, I) of zShape from seed (seed, i), condition from the same stream. */
export function sampleInputs(rec: PairRecord, i: number, condition: ConditionFn): { z: Float32Array; c: number[] } {
  const rng = new Rng((Math.imul(rec.seed + 1, 0x9e3779b1) ^ i) >>> 0);
  const n = rec.zShape.reduce((a, b) => a * b, 1);
  const z = new Float32Array(n);
  for (let j = 0; j < n; j++) z[j] = rng.normal();
  const c = condition(rng, i);
  if (c.length !== rec.cDim) throw new Error(`ode pairs: condition of sample ${i} has ${c.length} values, the record says cDim ${rec.cDim}`);
  return { z, c };
}

export interface GenerateOptions {
  /** Make only shards k with k % of === index (split across processes or machines). */
  shard?: { index: number; of: number };
  batch: number;
  /** Called after each finished shard (tests use it to simulate a kill). */
  afterShard?: (k: number) => void;
}

/**
 * Generate (or finish generating) the shards of `dir`; finished shards are verified and skipped. A stop request
 * (lib/core/interrupt.ts) is honoured between batches: finished shards are kept, the unfinished one starts over.
 */
export function generatePairs(dir: string, rec: PairRecord, teacher: PairTeacher, condition: ConditionFn, opts: GenerateOptions): Promise<void> {
  return interruptible(() => generateShards(dir, rec, teacher, condition, opts));
}

async function generateShards(dir: string, rec: PairRecord, teacher: PairTeacher, condition: ConditionFn, opts: GenerateOptions): Promise<void> {
  fs.mkdirSync(dir, { recursive: true });
  const nShards = Math.ceil(rec.count / rec.shardSize);
  const { index, of } = opts.shard ?? { index: 0, of: 1 };
  if (!(of >= 1 && index >= 0 && index < of)) throw new Error(`ode pairs: shard ${index}/${of} is not valid; expected 0 <= i < n`);
  const mine = Array.from({ length: nShards }, (_, k) => k).filter((k) => k % of === index);
  const todo = mine.filter((k) => !shardIsComplete(path.join(dir, shardName(k)), rec, k));
  const progress = new Progress(`ODE pairs ${index}/${of}`, todo.reduce((n, k) => n + Math.min(rec.shardSize, rec.count - k * rec.shardSize), 0));
  for (const k of todo) {
    const start = k * rec.shardSize;
    const count = Math.min(rec.shardSize, rec.count - start);
    const zs: Float32Array[] = [];
    const xs: Float32Array[] = [];
    const cs: number[] = [];
    let nfe = 0;
    for (let b = 0; b < count; b += opts.batch) {
      const m = Math.min(opts.batch, count - b);
      const inputs = Array.from({ length: m }, (_, j) => sampleInputs(rec, start + b + j, condition));
      const z = tf.tensor4d(concatHost(inputs.map((s) => s.z)), [m, ...rec.zShape] as [number, number, number, number]);
      const c = tf.tensor2d(inputs.flatMap((s) => s.c), [m, rec.cDim]);
      const out = await teacher(z, c);
      nfe = out.nfe;
      zs.push(z.dataSync() as Float32Array);
      xs.push(out.x.dataSync() as Float32Array);
      cs.push(...inputs.flatMap((s) => s.c));
      tf.dispose([z, c, out.x]);
      progress.tick(m);
      if (await stopRequested()) {
        const kept = mine.length - todo.length + todo.indexOf(k);
        throw new Interrupted(`ODE pairs stopped with ${kept} of this process's ${mine.length} shards made, kept in ${dir}; run it again to make the rest`);
      }
    }
    const index = Int32Array.from({ length: count }, (_, j) => start + j);
    writeSafetensors(
      path.join(dir, shardName(k)),
      {
        z: { dtype: "float32", shape: [count, ...rec.zShape], data: concatHost(zs) },
        x: { dtype: "float32", shape: [count, ...rec.zShape], data: concatHost(xs) },
        c: { dtype: "float32", shape: [count, rec.cDim], data: Float32Array.from(cs) },
        index: { dtype: "int32", shape: [count], data: index },
      },
      { record: JSON.stringify(rec), shard: String(k), teacherEvals: String(nfe * count) },
    );
    opts.afterShard?.(k);
  }
  progress.finish();
}

function shardIsComplete(file: string, rec: PairRecord, k: number): boolean {
  if (!fs.existsSync(file)) return false;
  const { metadata } = readSafetensors(file);
  if (metadata.record !== JSON.stringify(rec) || metadata.shard !== String(k)) {
    throw new Error(`${file}: made with another generation record; use a new directory or delete it`);
  }
  return true;
}

/** Check that every shard is present and write manifest.json with their sha256 and the total teacher cost. */
export function mergePairs(dir: string, rec: PairRecord): PairManifest {
  const nShards = Math.ceil(rec.count / rec.shardSize);
  const shards: ShardEntry[] = [];
  for (let k = 0; k < nShards; k++) {
    const file = path.join(dir, shardName(k));
    if (!fs.existsSync(file)) throw new Error(`${dir}: shard ${k} of ${nShards} (${shardName(k)}) is missing; run generation for it first`);
    const { metadata, tensors } = readSafetensors(file);
    if (metadata.record !== JSON.stringify(rec)) throw new Error(`${file}: made with another generation record`);
    shards.push({ file: shardName(k), start: k * rec.shardSize, count: tensors.index.shape[0], sha256: sha256(file), teacherEvals: Number(metadata.teacherEvals) });
  }
  const manifest: PairManifest = { ...rec, shards, teacherEvals: shards.reduce((n, s) => n + s.teacherEvals, 0) };
  writeAtomic(path.join(dir, "manifest.json"), (fd) => fs.writeSync(fd, JSON.stringify(manifest, null, 2)));
  return manifest;
}

export interface PairBatch<C extends tf.Tensor = tf.Tensor2D> {
  z: tf.Tensor4D;
  /** The condition the networks take, made from the stored rows by the store's ConditionEncoder. */
  c: C;
  x: tf.Tensor4D;
  index: Int32Array;
}

/** The networks' condition from the stored condition rows of a batch (n rows of cDim values, row after row). */
export type ConditionEncoder<C extends tf.Tensor> = (rows: Float32Array, n: number) => C;

/**
 * Text conditions from stored token rows. A text-to-image teacher's pairs keep each caption as its 77 CLIP token
 * ids (cDim 77, ids are exact in float32) and the frozen text encoder makes the hidden states [n, 77, D] the UNets
 * cross-attend to, batch by batch. Storing the states instead would take 77 D floats a sample: for SD1.5 (D = 768)
 * 59,136, 1.8 times its z and x together (2 x 4x64x64), 710 GB for the paper's 3M CFG-3 pairs against 0.9 GB of
 * ids; recomputing them costs one text-encoder pass a sample (about 19 GFLOP for SD1.5's, some 2% of one UNet
 * evaluation at 64x64), which a training step, with its several UNet passes forward and back, hardly notices.
 */
export function clipTokenCondition(encoder: ClipTextModel): ConditionEncoder<tf.Tensor3D> {
  return (rows, n) => {
    const l = rows.length / n;
    const ids = Array.from({ length: n }, (_, i) => Array.from(rows.subarray(i * l, (i + 1) * l)));
    const out = encoder.forward(ids);
    tf.dispose([out.pooled, ...(out.textEmbeds ? [out.textEmbeds] : [])]);
    return out.lastHiddenState;
  };
}

/** All pairs of a merged store in memory, verified against the manifest on open. */
export class OdePairs<C extends tf.Tensor = tf.Tensor2D> {
  readonly z: Float32Array;
  readonly x: Float32Array;
  readonly c: Float32Array;
  readonly index: Int32Array;
  private readonly permCache = new Map<number, Int32Array>();
  private constructor(readonly manifest: PairManifest, z: Float32Array, x: Float32Array, c: Float32Array, index: Int32Array, private readonly encode: ConditionEncoder<C>) {
    this.z = z;
    this.x = x;
    this.c = c;
    this.index = index;
  }

  /** Open a merged store; `encode` turns stored condition rows into what the networks take (default: the rows, [n, cDim]). */
  static open(dir: string): OdePairs;
  static open<C extends tf.Tensor>(dir: string, encode: ConditionEncoder<C>): OdePairs<C>;
  static open<C extends tf.Tensor>(dir: string, encode?: ConditionEncoder<C>): OdePairs<C> {
    const mfile = path.join(dir, "manifest.json");
    if (!fs.existsSync(mfile)) throw new Error(`${dir}: no manifest.json; generate and merge the pairs first`);
    const m = JSON.parse(fs.readFileSync(mfile, "utf8")) as PairManifest;
    const parts = { z: [] as Float32Array[], x: [] as Float32Array[], c: [] as Float32Array[], index: [] as Int32Array[] };
    for (const s of m.shards) {
      const file = path.join(dir, s.file);
      if (!fs.existsSync(file)) throw new Error(`${file}: shard listed in the manifest is missing`);
      const got = sha256(file);
      if (got !== s.sha256) throw new Error(`${file}: sha256 ${got} does not match the manifest's ${s.sha256} (truncated or modified shard)`);
      const { tensors } = readSafetensors(file);
      parts.z.push(tensors.z.data as Float32Array);
      parts.x.push(tensors.x.data as Float32Array);
      parts.c.push(tensors.c.data as Float32Array);
      parts.index.push(tensors.index.data as Int32Array);
    }
    const rows = (r: Float32Array, n: number) => tf.tensor2d(r, [n, m.cDim]) as tf.Tensor as C;
    const index = concatHost(parts.index, (n) => new Int32Array(n));
    return new OdePairs<C>(m, concatHost(parts.z), concatHost(parts.x), concatHost(parts.c), index, encode ?? rows);
  }

  get size(): number {
    return this.index.length;
  }

  /** The pairs at the given positions as tensors. */
  take(pos: ArrayLike<number>): PairBatch<C> {
    const per = this.manifest.zShape.reduce((a, b) => a * b, 1);
    const cd = this.manifest.cDim;
    const n = pos.length;
    const z = new Float32Array(n * per);
    const x = new Float32Array(n * per);
    const c = new Float32Array(n * cd);
    const index = new Int32Array(n);
    for (let j = 0; j < n; j++) {
      const p = pos[j];
      z.set(this.z.subarray(p * per, (p + 1) * per), j * per);
      x.set(this.x.subarray(p * per, (p + 1) * per), j * per);
      c.set(this.c.subarray(p * cd, (p + 1) * cd), j * cd);
      index[j] = this.index[p];
    }
    const shape = [n, ...this.manifest.zShape] as [number, number, number, number];
    return { z: tf.tensor4d(z, shape), x: tf.tensor4d(x, shape), c: this.encode(c, n), index };
  }

  /** Step `step`'s shuffled mini-batch (a pure function of seed and step, so resumed runs see the same data). */
  batchAt(step: number, batch: number, seed: number): PairBatch<C> {
    return this.take(batchIndices(seed, this.size, batch, step, this.permCache));
  }
}
