import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import sharp from "sharp";
import * as tf from "@tensorflow/tfjs";
import { imageGridPng, saveImageGrid } from "../lib/viz/image_grid";

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "d2g-grid-"));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

async function pixel(png: Buffer, x: number, y: number): Promise<number[]> {
  const { data, info } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
  const i = (y * info.width + x) * info.channels;
  return Array.from(data.subarray(i, i + 3));
}

test("a float [-1, 1] tensor batch becomes one captioned grid of the documented size", async () => {
  // Image k is a flat colour: red for k = 0, so the grid's first cell can be checked pixel for pixel.
  const images = tf.tidy(() => tf.concat([tf.tile(tf.tensor4d([1, -1, -1], [1, 1, 1, 3]), [1, 32, 32, 1]), tf.zeros([5, 32, 32, 3])]) as tf.Tensor4D);
  const saved = await saveImageGrid("grid", images, { cols: 3, zoom: 2, captions: ["a", "b", "c", "d", "e", "f"], dir });
  images.dispose();
  // width = pad + cols (32 zoom + pad); height = pad + rows (32 zoom + caption (12 + 6) + pad)
  assert.equal(saved.width, 4 + 3 * (64 + 4));
  assert.equal(saved.height, 4 + 2 * (64 + 18 + 4));
  const meta = await sharp(fs.readFileSync(saved.path)).metadata();
  assert.deepEqual([meta.format, meta.width, meta.height], ["png", saved.width, saved.height]);
  assert.deepEqual(await pixel(saved.png, 4, 4), [255, 0, 0]);
  assert.deepEqual(await pixel(saved.png, 4 + 63, 4 + 63), [255, 0, 0]);
  assert.deepEqual(await pixel(saved.png, 4 + 68, 4), [128, 128, 128]);
  assert.deepEqual(await pixel(saved.png, 1, 1), [255, 255, 255]);
  // The caption row under the first cell has dark text pixels.
  const { data, info } = await sharp(saved.png).extract({ left: 4, top: 4 + 64, width: 64, height: 18 }).raw().toBuffer({ resolveWithObject: true });
  assert.ok(Array.from(data as Buffer).some((v, i) => i % info.channels === 0 && v < 128), "caption text is drawn");
});

test("uint8 host images, one channel, no captions", async () => {
  const data = new Uint8Array(4 * 8 * 8).map((_, i) => i % 256);
  const grid = await imageGridPng({ dtype: "uint8", shape: [4, 8, 8, 1], data }, { zoom: 1, pad: 2 });
  // 4 images -> 2 columns by default
  assert.equal(grid.width, 2 + 2 * (8 + 2));
  assert.equal(grid.height, 2 + 2 * (8 + 2));
  assert.deepEqual(await pixel(grid.png, 2 + 3, 2), [3, 3, 3]);
});

test("bad input is an error that says what was expected", async () => {
  const host = { dtype: "float32" as const, shape: [2, 4, 4, 2], data: new Float32Array(64) };
  await assert.rejects(imageGridPng(host), /1 or 3 channels, got shape \[2,4,4,2\]/);
  const ok = { dtype: "float32" as const, shape: [2, 4, 4, 3], data: new Float32Array(96) };
  await assert.rejects(imageGridPng(ok, { captions: ["one"] }), /1 captions for 2 images/);
});

test("a title and column labels go above the grid, which grows by their height and keeps its cells intact", async () => {
  const images = { dtype: "float32" as const, shape: [4, 8, 8, 3], data: new Float32Array(4 * 8 * 8 * 3).fill(-1) };
  const plain = await imageGridPng(images, { cols: 2, zoom: 4 });
  const titled = await imageGridPng(images, { cols: 2, zoom: 4, title: "Samples", columnLabels: ["cat", "dog"] });
  assert.equal(titled.width, plain.width);
  // one title line (fontSize 12 + 3, + 4 spacing, + 4 below) and one label row (12 + 6)
  assert.equal(titled.height, plain.height + (15 + 4 + 4) + 18);
  // the first (black) cell starts right below the header and the pad
  assert.deepEqual(await pixel(titled.png, 4, 41 + 4), [0, 0, 0]);
  assert.deepEqual(await pixel(titled.png, 4, 41 + 3), [255, 255, 255]);
  await assert.rejects(imageGridPng(images, { cols: 2, columnLabels: ["cat"] }), /1 column labels for 2 columns/);
});
