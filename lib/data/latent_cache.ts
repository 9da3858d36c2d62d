import * as fs from "fs";
import * as path from "path";
import * as tf from "@tensorflow/tfjs";
import { Progress } from "../core/progress";
import { readSafetensors, SafetensorsFile, writeSafetensors } from "../io/safetensors";
import { concatHost, HostTensor } from "../io/host_tensor";
import { unitToU8, u8ToUnit } from "./images";

// A dataset encoded once into an autoencoder's latent space and kept on disk in chunks, so training never pays
// for the encoder. Item i of a split is a pure function of (key, split, i); chunk k holds items [k c, (k + 1) c),
// so chunks can be made in any order, a killed run resumes at the first missing chunk, and a larger count only
// adds chunks. A chunk may also hold the *round trip* decode(encode(x)) as 8-bit images: what a generated, decoded
// latent looks like, for training and testing readers of generated images.
//
// File: <dir>/<split>-<k, 5 digits>.safetensors with tensors latents (float32 [n, h, w, c]), index (int32 [n]) and
// optionally roundtrip (uint8 [n, H, W, 3]); metadata: key (JSON), split, chunk.

/** The codec as the cache needs it (LatentCodec of lib/nn/latent_codec.ts fits). */
export interface CacheCodec {
  readonly name: string;
  /** Images [N, H, W, 3] in [-1, 1] -> latents. */
  encode(images: tf.Tensor4D): tf.Tensor4D;
  decode(latents: tf.Tensor4D): tf.Tensor4D;
}

export interface LatentCacheSpec {
  dir: string;
  /** Everything the cached values depend on besides the index (generator, seed, size, codec, chunk size). */
  key: Record<string, unknown>;
  /** Items per chunk. */
  chunk: number;
  imageSize: number;
  /** Items [start, start + count) of a split as uint8 RGB, NHWC, imageSize x imageSize. */
  images(split: string, start: number, count: number): Promise<Uint8Array>;
}

export interface EnsureOptions {
  codec: CacheCodec;
  /** Also store decode(encode(x)). */
  roundTrip: boolean;
  /** Images per codec call (default 32). */
  batch?: number;
  /** Stop after the first chunk that ends past this many seconds (at least one chunk is made); run again to continue. */
  budgetS?: number;
  /** Called after each chunk written (tests use it to simulate a kill). */
  afterChunk?(k: number): void;
}

export interface EnsureResult {
  /** Every chunk of the count is present. */
  complete: boolean;
  chunksWritten: number;
  seconds: number;
}

export const chunkFile = (spec: LatentCacheSpec, split: string, k: number) => path.join(spec.dir, `${split}-${String(k).padStart(5, "0")}.safetensors`);

function chunksOf(spec: LatentCacheSpec, split: string, count: number): number {
  if (!Number.isInteger(count) || count <= 0 || count % spec.chunk !== 0) {
    throw new Error(`latent cache ${spec.dir}: ${split} count ${count} must be a positive multiple of the chunk size ${spec.chunk}`);
  }
  return count / spec.chunk;
}

/** What a chunk on disk holds; throws, naming the file, if it was made under another key. */
function chunkState(spec: LatentCacheSpec, split: string, k: number): "missing" | "latents" | "roundtrip" {
  const file = chunkFile(spec, split, k);
  if (!fs.existsSync(file)) return "missing";
  const f = new SafetensorsFile(file);
  if (f.metadata.key !== JSON.stringify(spec.key) || f.metadata.split !== split || f.metadata.chunk !== String(k)) {
    throw new Error(`${file}: made under another cache key or for another chunk (metadata ${JSON.stringify(f.metadata)}); delete it or use a new directory`);
  }
  return f.names().includes("roundtrip") ? "roundtrip" : "latents";
}

async function hostData(t: tf.Tensor): Promise<Float32Array> {
  const d = (await t.data()) as Float32Array;
  t.dispose();
  return d;
}

/** Make (or finish) the chunks of `count` items of a split. */
export async function ensureLatents(spec: LatentCacheSpec, split: string, count: number, o: EnsureOptions): Promise<EnsureResult> {
  const t0 = Date.now();
  const n = chunksOf(spec, split, count);
  const want = o.roundTrip ? "roundtrip" : "latents";
  const todo = Array.from({ length: n }, (_, k) => k).filter((k) => {
    const s = chunkState(spec, split, k);
    return s === "missing" || (want === "roundtrip" && s === "latents");
  });
  fs.mkdirSync(spec.dir, { recursive: true });
  const batch = o.batch ?? 32;
  const size = spec.imageSize;
  const progress = new Progress(`${o.codec.name} ${split} (${spec.chunk} per chunk)`, todo.length * spec.chunk);
  let written = 0;
  for (const k of todo) {
    const start = k * spec.chunk;
    const file = chunkFile(spec, split, k);
    // a chunk that has its latents only gets its round trip decoded from them
    const old = fs.existsSync(file) ? readSafetensors(file).tensors : undefined;
    const lat: Float32Array[] = [];
    const rt: Uint8Array[] = [];
    let latentShape: number[] = [];
    for (let b = 0; b < spec.chunk; b += batch) {
      const m = Math.min(batch, spec.chunk - b);
      let z: tf.Tensor4D;
      if (old) {
        const [, h, w, c] = old.latents.shape;
        z = tf.tensor4d((old.latents.data as Float32Array).subarray(b * h * w * c, (b + m) * h * w * c), [m, h, w, c]);
      } else {
        const px = await spec.images(split, start + b, m);
        if (px.length !== m * size * size * 3) throw new Error(`latent cache ${spec.dir}: images(${split}, ${start + b}, ${m}) returned ${px.length} bytes, expected ${m * size * size * 3}`);
        z = tf.tidy(() => o.codec.encode(tf.tensor4d(u8ToUnit(px), [m, size, size, 3])));
      }
      latentShape = z.shape.slice(1);
      if (o.roundTrip) rt.push(unitToU8(await hostData(o.codec.decode(z))));
      lat.push(await hostData(z));
      progress.tick(m);
    }
    const tensors: Record<string, HostTensor> = {
      latents: { dtype: "float32", shape: [spec.chunk, ...latentShape], data: concatHost(lat) },
      index: { dtype: "int32", shape: [spec.chunk], data: Int32Array.from({ length: spec.chunk }, (_, j) => start + j) },
    };
    if (o.roundTrip) tensors.roundtrip = { dtype: "uint8", shape: [spec.chunk, size, size, 3], data: concatHost(rt, (l) => new Uint8Array(l)) };
    writeSafetensors(file, tensors, { key: JSON.stringify(spec.key), split, chunk: String(k) });
    written++;
    o.afterChunk?.(k);
    if (o.budgetS !== undefined && (Date.now() - t0) / 1000 > o.budgetS) break;
  }
  progress.finish();
  const complete = Array.from({ length: n }, (_, k) => chunkState(spec, split, k)).every((s) => s === want || s === "roundtrip");
  return { complete, chunksWritten: written, seconds: (Date.now() - t0) / 1000 };
}

export interface CachedSplit {
  /** float32 NHWC latents of items 0..count-1. */
  latents: Float32Array;
  latentShape: [number, number, number, number];
  /** uint8 NHWC round-trip images, when asked for. */
  roundtrip?: Uint8Array;
}

/** Items 0..count-1 of a split from the cache; a missing chunk is an error that says how to make it. */
export function loadLatents(spec: LatentCacheSpec, split: string, count: number, o: { roundTrip?: boolean } = {}): CachedSplit {
  const n = chunksOf(spec, split, count);
  const lat: Float32Array[] = [];
  const rt: Uint8Array[] = [];
  let shape: number[] = [];
  for (let k = 0; k < n; k++) {
    const state = chunkState(spec, split, k);
    const file = chunkFile(spec, split, k);
    if (state === "missing" || (o.roundTrip && state !== "roundtrip")) {
      throw new Error(`${file}: ${state === "missing" ? "missing" : "has no round-trip images"}; build the cache first (npm run world -- encode)`);
    }
    const { tensors } = readSafetensors(file);
    const idx = tensors.index.data as Int32Array;
    if (idx.length !== spec.chunk || idx[0] !== k * spec.chunk) throw new Error(`${file}: holds items ${idx[0]}.. (${idx.length}), expected ${k * spec.chunk}.. (${spec.chunk})`);
    shape = tensors.latents.shape;
    lat.push(tensors.latents.data as Float32Array);
    if (o.roundTrip) rt.push(tensors.roundtrip.data as Uint8Array);
  }
  return {
    latents: concatHost(lat),
    latentShape: [count, shape[1], shape[2], shape[3]],
    roundtrip: o.roundTrip ? concatHost(rt, (l) => new Uint8Array(l)) : undefined,
  };
}
