import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as tf from "@tensorflow/tfjs";
import { Cifar10, cifar10Batch, CIFAR10_RECORD_BYTES, decodeCifar10Batches, loadCifar10 } from "../lib/data/cifar10";

const mirror = process.env.D2G_DATA_MIRROR;
const noMirror = mirror ? false : "D2G_DATA_MIRROR not set";
const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "d2g-cifar-"));
after(() => fs.rmSync(dataDir, { recursive: true, force: true }));
const o = { dataDir, mirror: mirror ?? null, log: () => undefined };

function classCounts(d: Cifar10): number[] {
  const c = new Array(10).fill(0);
  for (const l of d.labels) c[l]++;
  return c;
}

/** Image `img` of `d` against record `rec` of a raw batch file: label, and pixels at a few (y, x). */
function assertMatchesRaw(d: Cifar10, img: number, raw: Buffer, rec: number): void {
  const base = rec * CIFAR10_RECORD_BYTES;
  assert.equal(d.labels[img], raw[base]);
  for (const [y, x] of [[0, 0], [0, 1], [5, 7], [31, 31]]) {
    const p = y * 32 + x;
    const got = Array.from(d.images.subarray((img * 1024 + p) * 3, (img * 1024 + p) * 3 + 3));
    assert.deepEqual(got, [raw[base + 1 + p], raw[base + 1 + 1024 + p], raw[base + 1 + 2048 + p]], `image ${img} pixel (${y}, ${x})`);
  }
}

test("CIFAR-10 train: 50,000 images, 5,000 per class, pixels as in the raw batches", { skip: noMirror }, async () => {
  const d = await loadCifar10("train", o);
  assert.equal(d.n, 50000);
  assert.equal(d.images.length, 50000 * 32 * 32 * 3);
  assert.deepEqual(classCounts(d), new Array(10).fill(5000));
  assert.deepEqual(d.classes, ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]);
  const b1 = fs.readFileSync(path.join(mirror!, "cifar10/data_batch_1.bin"));
  const b2 = fs.readFileSync(path.join(mirror!, "cifar10/data_batch_2.bin"));
  const b5 = fs.readFileSync(path.join(mirror!, "cifar10/data_batch_5.bin"));
  assert.equal(d.labels[0], 6); // the first training image is a frog
  assertMatchesRaw(d, 0, b1, 0);
  assertMatchesRaw(d, 9999, b1, 9999);
  assertMatchesRaw(d, 10000, b2, 0);
  assertMatchesRaw(d, 49999, b5, 9999);

  await tf.setBackend("cpu");
  const { x, y } = cifar10Batch(d, [0, 49999]);
  assert.deepEqual(x.shape, [2, 32, 32, 3]);
  const v = x.dataSync();
  assert.equal(v[0], Math.fround(b1[1] / 127.5 - 1));
  assert.equal(v[2], Math.fround(b1[1 + 2048] / 127.5 - 1));
  assert.ok(tf.min(x).dataSync()[0] >= -1 && tf.max(x).dataSync()[0] <= 1);
  assert.deepEqual(Array.from(y.dataSync()), [d.labels[0], d.labels[49999]]);
  tf.dispose([x, y]);
});

test("CIFAR-10 test: 10,000 images, 1,000 per class", { skip: noMirror }, async () => {
  const d = await loadCifar10("test", o);
  assert.equal(d.n, 10000);
  assert.deepEqual(classCounts(d), new Array(10).fill(1000));
  const raw = fs.readFileSync(path.join(mirror!, "cifar10/test_batch.bin"));
  assert.equal(d.labels[0], 3); // the first test image is a cat
  assertMatchesRaw(d, 0, raw, 0);
  assertMatchesRaw(d, 9999, raw, 9999);
});

test("a batch file of the wrong size is an error naming the file", () => {
  assert.throws(() => decodeCifar10Batches([{ file: "/x/data_batch_9.bin", bytes: new Uint8Array(3073 * 10) }]), /\/x\/data_batch_9\.bin: CIFAR-10 batch has 30730 bytes, expected 30730000/);
});
