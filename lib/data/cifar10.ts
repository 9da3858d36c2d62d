import * as fs from "fs";
import * as tf from "@tensorflow/tfjs";
import { DataOptions, ensureDataAll } from "./fetch";

// CIFAR-10 in its official binary layout: each batch file is 10,000 records of 3,073 bytes, a label byte followed
// by the 32x32 red, green and blue planes (row-major). Here the planes are interleaved into NHWC once at load time.

export const CIFAR10_SIZE = 32;
const PIXELS = CIFAR10_SIZE * CIFAR10_SIZE;
export const CIFAR10_RECORD_BYTES = 1 + 3 * PIXELS;
export const CIFAR10_BATCH_RECORDS = 10000;

export const CIFAR10_FILES = {
  train: [1, 2, 3, 4, 5].map((i) => `cifar10/data_batch_${i}.bin`),
  test: ["cifar10/test_batch.bin"],
  meta: "cifar10/batches.meta.txt",
} as const;

export type Cifar10Split = "train" | "test";

export interface Cifar10 {
  /** uint8 NHWC, n x 32 x 32 x 3. */
  images: Uint8Array;
  labels: Uint8Array;
  n: number;
  /** classes[label] is the class name. */
  classes: string[];
}

/** Decode official batch files (already read into memory) into one NHWC array; a file of the wrong size is an error naming it. */
export function decodeCifar10Batches(batches: { file: string; bytes: Uint8Array }[]): Omit<Cifar10, "classes"> {
  const expected = CIFAR10_BATCH_RECORDS * CIFAR10_RECORD_BYTES;
  for (const b of batches) {
    if (b.bytes.length !== expected) {
      throw new Error(`${b.file}: CIFAR-10 batch has ${b.bytes.length} bytes, expected ${expected} (${CIFAR10_BATCH_RECORDS} records of ${CIFAR10_RECORD_BYTES} bytes)`);
    }
  }
  const n = batches.length * CIFAR10_BATCH_RECORDS;
  const images = new Uint8Array(n * 3 * PIXELS);
  const labels = new Uint8Array(n);
  let i = 0;
  for (const b of batches) {
    for (let r = 0; r < CIFAR10_BATCH_RECORDS; r++, i++) {
      const rec = r * CIFAR10_RECORD_BYTES;
      const label = b.bytes[rec];
      if (label > 9) throw new Error(`${b.file}: record ${r} has label ${label}, expected 0-9`);
      labels[i] = label;
      const out = i * 3 * PIXELS;
      for (let p = 0; p < PIXELS; p++) {
        images[out + 3 * p] = b.bytes[rec + 1 + p];
        images[out + 3 * p + 1] = b.bytes[rec + 1 + PIXELS + p];
        images[out + 3 * p + 2] = b.bytes[rec + 1 + 2 * PIXELS + p];
      }
    }
  }
  return { images, labels, n };
}

/** Class names, line i = label i (blank lines, such as a trailing one, are ignored). */
export function readCifar10Classes(file: string): string[] {
  const classes = fs.readFileSync(file, "utf8").split(/\r?\n/).map((l) => l.trim()).filter((l) => l.length > 0);
  if (classes.length !== 10) throw new Error(`${file}: expected 10 CIFAR-10 class names, found ${classes.length}`);
  return classes;
}

/** The 50,000 training or 10,000 test images, fetched (or copied from the mirror) on first use. */
export async function loadCifar10(split: Cifar10Split, o: DataOptions = {}): Promise<Cifar10> {
  const files = [...CIFAR10_FILES[split]];
  const paths = await ensureDataAll([...files, CIFAR10_FILES.meta], o);
  const batches = files.map((file, k) => ({ file: paths[k], bytes: fs.readFileSync(paths[k]) }));
  return { ...decodeCifar10Batches(batches), classes: readCifar10Classes(paths[files.length]) };
}

/** Images at `indices` as float32 NHWC in [-1, 1] (x / 127.5 - 1, the range the diffusion models work in). */
export function cifar10Floats(data: Cifar10, indices: ArrayLike<number>): Float32Array {
  const per = 3 * PIXELS;
  const out = new Float32Array(indices.length * per);
  for (let k = 0; k < indices.length; k++) {
    const i = indices[k];
    if (!Number.isInteger(i) || i < 0 || i >= data.n) throw new Error(`CIFAR-10 index ${i} is outside 0..${data.n - 1}`);
    const src = i * per;
    for (let j = 0; j < per; j++) out[k * per + j] = data.images[src + j] / 127.5 - 1;
  }
  return out;
}

/** A batch as tensors: images [B, 32, 32, 3] float32 in [-1, 1] and int32 labels [B]. */
export function cifar10Batch(data: Cifar10, indices: ArrayLike<number>): { x: tf.Tensor4D; y: tf.Tensor1D } {
  const b = indices.length;
  const labels = new Int32Array(b);
  for (let k = 0; k < b; k++) labels[k] = data.labels[indices[k]];
  return {
    x: tf.tensor4d(cifar10Floats(data, indices), [b, CIFAR10_SIZE, CIFAR10_SIZE, 3], "float32"),
    y: tf.tensor1d(labels, "int32"),
  };
}
