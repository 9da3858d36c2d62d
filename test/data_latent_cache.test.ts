import { before, test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as tf from "@tensorflow/tfjs";
import { initEngine } from "../lib/backend/engine";
import { CacheCodec, chunkFile, ensureLatents, LatentCacheSpec, loadLatents } from "../lib/data/latent_cache";

// The latent cache with a stand-in codec (8x8 average pooling and nearest upsampling): chunks are made in any
// order and resume after a kill to the same bytes, round trips are added to chunks that lack them, and files made
// under another key, truncated or missing are named.

before(async () => {
  await initEngine({ quiet: true });
});

const codec: CacheCodec = {
  name: "pool8",
  encode: (x) => tf.tidy(() => tf.avgPool(x, 8, 8, "valid")),
  decode: (z) => tf.tidy(() => tf.image.resizeNearestNeighbor(z, [z.shape[1] * 8, z.shape[2] * 8])),
};

/** Item i is a 16x16 image whose pixels depend on (split, i) only. */
function spec(dir: string, key: Record<string, unknown> = { v: 1 }): LatentCacheSpec & { calls: number } {
  const s = {
    dir, key, chunk: 4, imageSize: 16, calls: 0,
    async images(split: string, start: number, count: number) {
      s.calls += count;
      const out = new Uint8Array(count * 16 * 16 * 3);
      for (let k = 0; k < count; k++) for (let j = 0; j < 768; j++) out[k * 768 + j] = (31 * (start + k) + 7 * j + split.length) % 256;
      return out;
    },
  };
  return s;
}

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), "d2g-cache-"));

test("a killed build resumes at the first missing chunk and ends with the same bytes as an uninterrupted one", async () => {
  const [a, b] = [tmp(), tmp()];
  const whole = await ensureLatents(spec(a), "train", 12, { codec, roundTrip: false, batch: 3 });
  assert.deepEqual([whole.complete, whole.chunksWritten], [true, 3]);
  const s = spec(b);
  await assert.rejects(ensureLatents(s, "train", 12, { codec, roundTrip: false, batch: 3, afterChunk: (k) => { if (k === 1) throw new Error("killed"); } }), /killed/);
  assert.equal(s.calls, 8);
  const resumed = await ensureLatents(s, "train", 12, { codec, roundTrip: false, batch: 3 });
  assert.deepEqual([resumed.complete, resumed.chunksWritten, s.calls], [true, 1, 12]);
  for (let k = 0; k < 3; k++) assert.deepEqual(fs.readFileSync(chunkFile(s, "train", k)), fs.readFileSync(chunkFile(spec(a), "train", k)));
  const got = loadLatents(s, "train", 12);
  assert.deepEqual(got.latentShape, [12, 2, 2, 3]);
  // latent of item 5: the 8x8 block mean of its pixels, (x / 127.5 - 1) averaged
  const px = await s.images("train", 5, 1);
  let sum = 0;
  for (let y = 0; y < 8; y++) for (let x = 0; x < 8; x++) sum += px[(y * 16 + x) * 3] / 127.5 - 1;
  assert.ok(Math.abs(got.latents[5 * 12] - sum / 64) < 1e-5);
  // a larger count only adds chunks; a budget stops between chunks
  const more = await ensureLatents(s, "train", 20, { codec, roundTrip: false, budgetS: 0 });
  assert.deepEqual([more.complete, more.chunksWritten], [false, 1]);
});

test("round trips are added to chunks that hold latents only, by decoding the cached latents", async () => {
  const s = spec(tmp());
  await ensureLatents(s, "val", 8, { codec, roundTrip: false });
  assert.throws(() => loadLatents(s, "val", 8, { roundTrip: true }), /has no round-trip images; build the cache first/);
  const calls = s.calls;
  const r = await ensureLatents(s, "val", 8, { codec, roundTrip: true });
  assert.deepEqual([r.chunksWritten, s.calls], [2, calls]);
  const got = loadLatents(s, "val", 8, { roundTrip: true });
  assert.equal(got.roundtrip!.length, 8 * 16 * 16 * 3);
  // nearest upsampling of the block means: pixel (0, 0) and (7, 7) of an image share their latent
  assert.equal(got.roundtrip![0], got.roundtrip![(7 * 16 + 7) * 3]);
});

test("chunks of another key, truncated or missing chunks and bad counts are errors that name the file", async () => {
  const dir = tmp();
  await ensureLatents(spec(dir), "test", 4, { codec, roundTrip: false });
  await assert.rejects(ensureLatents(spec(dir, { v: 2 }), "test", 4, { codec, roundTrip: false }), /test-00000\.safetensors: made under another cache key/);
  assert.throws(() => loadLatents(spec(dir), "test", 8), /test-00001\.safetensors: missing; build the cache first/);
  assert.throws(() => loadLatents(spec(dir), "test", 6), /count 6 must be a positive multiple of the chunk size 4/);
  const f = chunkFile(spec(dir), "test", 0);
  fs.truncateSync(f, fs.statSync(f).size - 10);
  assert.throws(() => loadLatents(spec(dir), "test", 4), /test-00000\.safetensors: .*truncated/);
});
