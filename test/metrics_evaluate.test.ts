import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as tf from "@tensorflow/tfjs";
import "@tensorflow/tfjs-backend-wasm";
import { Rng } from "../lib/core/random";
import { setProgressSink } from "../lib/core/progress";
import { evaluate, formatResult, ImageDataset } from "../lib/metrics/evaluate";
import { FeatureNet } from "../lib/metrics/feature_net";
import { frechetDistance } from "../lib/metrics/fid";
import { RunningStats, saveStats } from "../lib/metrics/stats";

const SIZE = 8;
const DIM = 6;

/** A stand-in extractor: a fixed random projection of the pixels. */
function toyNet(): FeatureNet & { dispose(): void } {
  const rng = new Rng(0);
  const w = tf.tensor2d(Float32Array.from({ length: SIZE * SIZE * 3 * DIM }, () => rng.normal() / SIZE), [SIZE * SIZE * 3, DIM]);
  return {
    name: "toy-projection",
    label: "toy",
    dim: DIM,
    features: async (x) => tf.tidy(() => tf.matMul(tf.reshape(x, [x.shape[0], -1]), w) as tf.Tensor2D),
    dispose: () => w.dispose(),
  };
}

/** Seeded random images; counts how often it is read so cache hits are visible. */
class ToyDataset implements ImageDataset {
  reads = 0;
  constructor(readonly id: string, readonly size: number, private readonly seed: number, private readonly shift = 0) {}
  async *batches(batchSize: number): AsyncIterable<tf.Tensor4D> {
    this.reads++;
    const rng = new Rng(this.seed);
    for (let i = 0; i < this.size; i += batchSize) {
      const n = Math.min(batchSize, this.size - i);
      const px = Float32Array.from({ length: n * SIZE * SIZE * 3 }, () => Math.tanh(rng.normal() + this.shift));
      yield tf.tensor4d(px, [n, SIZE, SIZE, 3]);
    }
  }
}

async function withTmp<T>(use: (dir: string) => Promise<T>): Promise<T> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "d2g-eval-"));
  const sink = setProgressSink(() => {});
  try {
    return await use(dir);
  } finally {
    setProgressSink(sink);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

test("evaluate: a data set against itself scores 0, names carry the extractor, nothing leaks", async () => {
  await tf.setBackend("wasm");
  await withTmp(async (dir) => {
    const net = toyNet();
    const before = tf.memory().numTensors;
    const ds = new ToyDataset("toy-a", 70, 1);
    const r = await evaluate(ds, ds, { net, batchSize: 16, cacheDir: dir });
    assert.ok(Math.abs(r.fid.value) < 1e-6, `FID(x, x) = ${r.fid.value}`);
    assert.equal(r.fid.name, "FID-toy");
    assert.deepEqual(r.counts, [70, 70]);
    assert.equal(ds.reads, 1, "the second side came from the cache");
    assert.equal(tf.memory().numTensors, before);
    net.dispose();
  });
});

test("evaluate: reference statistics are cached per source and extractor, and equal a direct computation", async () => {
  await tf.setBackend("wasm");
  await withTmp(async (dir) => {
    const net = toyNet();
    const ref = new ToyDataset("toy-ref", 90, 2);
    const gen = new ToyDataset("unused", 50, 3, 0.4);
    const stream = () => ({ stream: gen.batches(20), count: 50 });
    const first = await evaluate(ref, stream(), { net, batchSize: 32, cacheDir: dir, kid: { subsets: 3, subsetSize: 30 } });
    const files = fs.readdirSync(dir);
    assert.deepEqual(files, ["toy-ref--toy-projection.npz"], "only the named source is cached; no temp files left");
    const second = await evaluate(ref, stream(), { net, batchSize: 32, cacheDir: dir, kid: { subsets: 3, subsetSize: 30 } });
    assert.equal(ref.reads, 1);
    assert.equal(second.fid.value, first.fid.value);
    assert.equal(second.kid!.value, first.kid!.value);
    assert.equal(first.kid!.name, "KID-toy");
    assert.ok(first.fid.value > 0.1 && first.kid!.value > 0);
    assert.match(formatResult(first), /^FID-toy \d+\.\d{3} \| KID-toy /);
    // Same numbers from features computed by hand.
    const side = async (ds: ToyDataset) => {
      const s = new RunningStats(DIM);
      for await (const b of ds.batches(7)) {
        const f = await net.features(b);
        s.add(f.dataSync(), b.shape[0]);
        tf.dispose([b, f]);
      }
      return s.stats();
    };
    const direct = frechetDistance(await side(ref), await side(gen)).fid;
    assert.ok(Math.abs(direct - first.fid.value) < 1e-9 * direct, `${direct} vs ${first.fid.value}`);
    net.dispose();
  });
});

test("evaluate: an .npz of statistics stands in for a source; maxImages caps a source", async () => {
  await tf.setBackend("wasm");
  await withTmp(async (dir) => {
    const net = toyNet();
    const a = new ToyDataset("toy-a", 60, 4);
    const b = new ToyDataset("toy-b", 60, 5, 0.2);
    const direct = await evaluate(a, b, { net, cacheDir: null });
    const s = new RunningStats(DIM);
    for await (const x of a.batches(60)) {
      const f = await net.features(x);
      s.add(f.dataSync(), 60);
      tf.dispose([x, f]);
    }
    const file = path.join(dir, "a_stats.npz");
    saveStats(file, s.stats());
    const viaFile = await evaluate({ statsFile: file }, b, { net, cacheDir: null });
    assert.ok(Math.abs(viaFile.fid.value - direct.fid.value) < 1e-9 * direct.fid.value);
    await assert.rejects(evaluate({ statsFile: file }, b, { net, cacheDir: null, kid: true }), /KID needs the features/);
    const capped = await evaluate(a, b, { net, cacheDir: dir, maxImages: 25, batchSize: 10 });
    assert.deepEqual(capped.counts, [25, 25]);
    assert.ok(fs.readdirSync(dir).includes("toy-a--toy-projection--max25.npz"));
    net.dispose();
  });
});
