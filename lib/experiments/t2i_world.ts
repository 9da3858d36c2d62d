import * as crypto from "crypto";
import * as tf from "@tensorflow/tfjs";
import { fromRoot } from "../core/paths";
import { CacheCodec, CachedSplit, ensureLatents, EnsureResult, LatentCacheSpec, loadLatents } from "../data/latent_cache";
import { sceneCaptions } from "../data/scene_captions";
import { makeScene, renderScene, renderScenes, Scene, Split, SPLITS } from "../data/scenes";
import { u8ToUnit } from "../data/images";
import { psnr8bit } from "../nn/latent_codec";
import { byScale, Scale } from "./scale";

// The text-to-image world of issue #15: captioned scenes (lib/data/scenes.ts, scene_captions.ts) rendered at
// 64 px and encoded once with TAEF2 into 8x8x32 latents, cached under runs/world/ (git-ignored; rebuilt by
// `npm run world -- encode`). Splits: train (the teacher's data), val (same distribution, held out), test (every
// scene holds a combination never seen in train or val: compositional generalisation), scorer (the attribute
// scorer's training data, from the whole distribution). val, test and scorer also keep their TAEF2 round trips.
//
// Why 64 px (numbers from `npm run world -- sizes`, see environment.md): the round trip keeps the objects
// recognisable at 64 px (29 dB; 32 dB at 128 px), while 128 px costs 4.6x the encoding and about 3.7x per teacher
// evaluation (16x16 instead of 8x8 latents), which the teacher's hour of training and its 100-evaluation pairs
// in ~20 minutes cannot afford on two cores.

export interface WorldConfig {
  name: string;
  seed: number;
  imageSize: number;
  /** Scenes per split; multiples of `chunk`. */
  counts: Record<Split, number>;
  chunk: number;
  /** Splits whose cache chunks keep the TAEF2 round trip as 8-bit images. */
  roundTrip: Split[];
}

const ROUND_TRIP: Split[] = ["val", "test", "scorer"];

export const WORLDS: Record<Scale, WorldConfig> = {
  smoke: { name: "smoke", seed: 0, imageSize: 64, counts: { train: 32, val: 16, test: 16, scorer: 32 }, chunk: 16, roundTrip: ROUND_TRIP },
  // 11,500 training scenes: the teacher's 2,700 steps of 64 see each about 15 times; encoding the other 8,500 would cost
  // 17 more chunks, which took 4-7 minutes each under load when the first 23 were encoded, for a teacher that would
  // see each of 20,000 scenes fewer than 10 times
  cpu: { name: "cpu", seed: 0, imageSize: 64, counts: { train: 11_500, val: 1_000, test: 2_000, scorer: 6_000 }, chunk: 500, roundTrip: ROUND_TRIP },
  // the paper scale distils SD1.5 on COCO; where it needs the world (tests of the same code), it is the cpu one
  paper: { name: "cpu", seed: 0, imageSize: 64, counts: { train: 11_500, val: 1_000, test: 2_000, scorer: 6_000 }, chunk: 500, roundTrip: ROUND_TRIP },
};

/** sha256 over the specs and pixels of the first scenes of each split: changes whenever the generator does. */
export async function sceneFingerprint(seed: number, imageSize: number): Promise<string> {
  const h = crypto.createHash("sha256");
  for (const split of SPLITS) {
    for (let i = 0; i < 2; i++) {
      const s = makeScene(seed, split, i);
      h.update(JSON.stringify(s));
      h.update(await renderScene(s, imageSize));
    }
  }
  return h.digest("hex");
}

export class T2iWorld {
  private constructor(readonly config: WorldConfig, readonly cache: LatentCacheSpec) {}

  /**
   * The world of a config. Its cache directory (default under runs/world/) is keyed by the generator's fingerprint,
   * the seed, the image size, the codec's name and the chunk size.
   */
  static async open(config: WorldConfig, o: { codecName?: string; dir?: string } = {}): Promise<T2iWorld> {
    for (const s of SPLITS) {
      if (!(config.counts[s] > 0 && config.counts[s] % config.chunk === 0)) throw new Error(`world ${config.name}: ${s} count ${config.counts[s]} must be a positive multiple of the chunk ${config.chunk}`);
    }
    const key = { generator: (await sceneFingerprint(config.seed, config.imageSize)).slice(0, 16), seed: config.seed, imageSize: config.imageSize, codec: o.codecName ?? "taef2", chunk: config.chunk };
    const tag = crypto.createHash("sha256").update(JSON.stringify(key)).digest("hex").slice(0, 8);
    const dir = o.dir ?? fromRoot("runs", "world", `${config.name}-${config.imageSize}px-seed${config.seed}-${tag}`);
    const cache: LatentCacheSpec = {
      dir, key, chunk: config.chunk, imageSize: config.imageSize,
      images: (split, start, count) => renderScenes(Array.from({ length: count }, (_, j) => makeScene(config.seed, split as Split, start + j)), config.imageSize),
    };
    return new T2iWorld(config, cache);
  }

  static forScale(scale?: Scale): Promise<T2iWorld> {
    return T2iWorld.open(byScale(WORLDS, scale));
  }

  scene(split: Split, index: number): Scene {
    if (index >= this.config.counts[split]) throw new Error(`world ${this.config.name}: ${split} has ${this.config.counts[split]} scenes, asked for index ${index}`);
    return makeScene(this.config.seed, split, index);
  }

  captions(split: Split, index: number): string[] {
    return sceneCaptions(this.scene(split, index));
  }

  /** Encode what the cache lacks, split by split (round trips where the config keeps them). */
  async build(codec: CacheCodec, o: { splits?: Split[]; budgetS?: number; batch?: number } = {}): Promise<Record<string, EnsureResult>> {
    const out: Record<string, EnsureResult> = {};
    const t0 = Date.now();
    // the scorer's data first: the attribute scorer can train while the teacher's data is still encoding
    for (const split of o.splits ?? (["scorer", "val", "test", "train"] as Split[])) {
      const left = o.budgetS === undefined ? undefined : o.budgetS - (Date.now() - t0) / 1000;
      if (left !== undefined && left <= 0) break;
      out[split] = await ensureLatents(this.cache, split, this.config.counts[split], { codec, roundTrip: this.config.roundTrip.includes(split), budgetS: left, batch: o.batch });
    }
    return out;
  }

  /** The cached latents (and round trips, if kept) of a whole split. */
  load(split: Split, o: { roundTrip?: boolean; count?: number } = {}): CachedSplit {
    return loadLatents(this.cache, split, o.count ?? this.config.counts[split], { roundTrip: o.roundTrip });
  }
}

export interface CodecSizeRow {
  size: number;
  latentShape: number[];
  psnrMean: number;
  psnrMin: number;
  /** Wall and CPU time per image (ms). */
  encodeMs: number;
  decodeMs: number;
  encodeCpuMs: number;
  decodeCpuMs: number;
}

/**
 * The codec's round trip of the same `n` scenes at each size: PSNR and time per image (for the 64-or-128 choice).
 * The sizes alternate batch by batch, so machine load falls on all of them alike.
 */
export async function codecSizeReport(codec: CacheCodec, seed: number, n: number, sizes: number[], batch = 16): Promise<{ rows: CodecSizeRow[]; images: Record<number, { real: tf.Tensor4D; roundTrip: tf.Tensor4D }> }> {
  const scenes = Array.from({ length: n }, (_, i) => makeScene(seed, "val", i));
  const real: tf.Tensor4D[] = [];
  for (const size of sizes) {
    real.push(tf.tensor4d(u8ToUnit(await renderScenes(scenes, size)), [n, size, size, 3]));
    // warm-up: the first call of each kernel shape compiles
    tf.dispose(tf.tidy(() => codec.decode(codec.encode(real[real.length - 1].slice(0, Math.min(batch, n))))));
  }
  const parts: tf.Tensor4D[][] = sizes.map(() => []);
  const time = sizes.map(() => ({ enc: 0, dec: 0, encCpu: 0, decCpu: 0, latentShape: [] as number[] }));
  const timed = async <T extends tf.Tensor>(f: () => T): Promise<{ out: T; ms: number; cpuMs: number }> => {
    const [t, c] = [Date.now(), process.cpuUsage()];
    const out = f();
    await out.data();
    const cpu = process.cpuUsage(c);
    return { out, ms: Date.now() - t, cpuMs: (cpu.user + cpu.system) / 1000 };
  };
  for (let b = 0; b < n; b += batch) {
    for (let k = 0; k < sizes.length; k++) {
      const x = real[k].slice(b, Math.min(batch, n - b));
      const z = await timed(() => codec.encode(x));
      const y = await timed(() => codec.decode(z.out));
      Object.assign(time[k], { enc: time[k].enc + z.ms, encCpu: time[k].encCpu + z.cpuMs, dec: time[k].dec + y.ms, decCpu: time[k].decCpu + y.cpuMs, latentShape: z.out.shape.slice(1) });
      parts[k].push(y.out);
      tf.dispose([x, z.out]);
    }
  }
  const rows: CodecSizeRow[] = [];
  const images: Record<number, { real: tf.Tensor4D; roundTrip: tf.Tensor4D }> = {};
  for (let k = 0; k < sizes.length; k++) {
    const roundTrip = tf.tidy(() => tf.clipByValue(tf.concat(parts[k]), -1, 1) as tf.Tensor4D);
    tf.dispose(parts[k]);
    const p = await psnr8bit(real[k], roundTrip);
    const t = time[k];
    rows.push({
      size: sizes[k], latentShape: t.latentShape, psnrMean: p.reduce((a, v) => a + v, 0) / n, psnrMin: Math.min(...p),
      encodeMs: t.enc / n, decodeMs: t.dec / n, encodeCpuMs: t.encCpu / n, decodeCpuMs: t.decCpu / n,
    });
    images[sizes[k]] = { real: real[k], roundTrip };
  }
  return { rows, images };
}
