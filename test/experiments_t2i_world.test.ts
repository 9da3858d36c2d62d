import { before, test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as tf from "@tensorflow/tfjs";
import { initEngine } from "../lib/backend/engine";
import { u8ToUnit } from "../lib/data/images";
import { parseCaption } from "../lib/data/scene_captions";
import { taef2Codec } from "../lib/nn/latent_codec";
import { psnr8bit } from "../lib/nn/latent_codec";
import { sceneFingerprint, T2iWorld, WorldConfig, WORLDS } from "../lib/experiments/t2i_world";

// The world end to end at a tiny size with the real TAEF2: 8x8x32 latents per 64 px scene, round trips kept where
// the config says, captions that parse to each scene's spec, and a cache key that follows the generator.

before(async () => {
  await initEngine({ quiet: true });
});

const tiny: WorldConfig = { name: "tiny", seed: 0, imageSize: 64, counts: { train: 4, val: 4, test: 4, scorer: 4 }, chunk: 4, roundTrip: ["val"] };

test("a tiny world encodes to 8x8x32 TAEF2 latents and keeps recognisable round trips", async (t) => {
  if (!process.env.D2G_DATA_MIRROR) {
    t.skip("D2G_DATA_MIRROR not set");
    return;
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "d2g-world-"));
  const world = await T2iWorld.open(tiny, { dir });
  const codec = await taef2Codec();
  const built = await world.build(codec, { splits: ["val", "train"] });
  assert.ok(built.val.complete && built.train.complete);
  const val = world.load("val", { roundTrip: true });
  assert.deepEqual(val.latentShape, [4, 8, 8, 32]);
  assert.throws(() => world.load("train", { roundTrip: true }), /has no round-trip images/);
  assert.throws(() => world.load("test"), /test-00000\.safetensors: missing/);
  const real = tf.tensor4d(u8ToUnit(await world.cache.images("val", 0, 4)), [4, 64, 64, 3]);
  const rt = tf.tensor4d(u8ToUnit(val.roundtrip!), [4, 64, 64, 3]);
  const p = await psnr8bit(real, rt);
  assert.ok(Math.min(...p) > 24, `round-trip PSNR ${p.map((v) => v.toFixed(1))}`);
  for (let i = 0; i < 4; i++) for (const c of world.captions("val", i)) assert.deepEqual(parseCaption(c), world.scene("val", i).spec);
  assert.throws(() => world.scene("val", 4), /val has 4 scenes, asked for index 4/);
  tf.dispose([real, rt]);
  codec.dispose();
});

test("world configs are checked and the cache key follows the generator's seed", async () => {
  await assert.rejects(T2iWorld.open({ ...tiny, counts: { ...tiny.counts, test: 6 } }), /test count 6 must be a positive multiple of the chunk 4/);
  for (const w of Object.values(WORLDS)) for (const n of Object.values(w.counts)) assert.equal(n % w.chunk, 0);
  assert.equal(await sceneFingerprint(0, 64), await sceneFingerprint(0, 64));
  assert.notEqual(await sceneFingerprint(1, 64), await sceneFingerprint(0, 64));
  const [a, b] = [await T2iWorld.open(tiny), await T2iWorld.open({ ...tiny, seed: 1 })];
  assert.notEqual(a.cache.dir, b.cache.dir);
});
