import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import sharp from "sharp";
import * as tf from "@tensorflow/tfjs";
import { ensureDataAll } from "../lib/data/fetch";
import { loadImages, readRgb, savePng, u8ToUnit } from "../lib/data/images";
import { Rng } from "../lib/core/random";

const mirror = process.env.D2G_DATA_MIRROR;
const noMirror = mirror ? false : "D2G_DATA_MIRROR not set";
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "d2g-images-"));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));
before(async () => {
  await tf.setBackend("cpu");
});

let landscape = "";
let portrait = "";
async function kodak(): Promise<void> {
  if (!landscape) [landscape, portrait] = await ensureDataAll(["images/kodak/kodim01.png", "images/kodak/kodim04.png"], { dataDir: path.join(tmp, "data"), mirror: mirror!, log: () => undefined });
}

function pixel(img: { width: number; data: Uint8Array }, y: number, x: number): number[] {
  const i = (y * img.width + x) * 3;
  return Array.from(img.data.subarray(i, i + 3));
}

test("a Kodak PNG decodes to 768x512 RGB with the pixels another decoder reads", { skip: noMirror }, async () => {
  await kodak();
  const img = await readRgb(landscape);
  assert.equal(img.width, 768);
  assert.equal(img.height, 512);
  assert.equal(img.data.length, 768 * 512 * 3);
  // reference values read with PIL
  assert.deepEqual(pixel(img, 0, 0), [99, 99, 99]);
  assert.deepEqual(pixel(img, 100, 200), [127, 72, 58]);
  assert.deepEqual(pixel(img, 511, 767), [0, 0, 0]);
  const mean = img.data.reduce((a, b) => a + b, 0) / img.data.length;
  assert.ok(Math.abs(mean - 105.6314) < 1e-3, `mean ${mean}`);
});

test("centre crop is the middle square; resizing gives the right shape and range for both kernels", { skip: noMirror }, async () => {
  await kodak();
  const full = await readRgb(landscape);
  const crop = await readRgb(landscape, { size: 512 });
  assert.deepEqual([crop.width, crop.height], [512, 512]);
  for (const [y, x] of [[0, 0], [300, 17], [511, 511]]) assert.deepEqual(pixel(crop, y, x), pixel(full, y, x + 128));
  const tall = await readRgb(portrait, { size: 512 });
  const tallFull = await readRgb(portrait);
  assert.deepEqual(pixel(tall, 10, 20), pixel(tallFull, 10 + 128, 20));

  const cubic = await loadImages([landscape, portrait], { size: 64, kernel: "cubic" });
  const lanczos = await loadImages([landscape, portrait], { size: 64, kernel: "lanczos3" });
  assert.deepEqual(cubic.shape, [2, 64, 64, 3]);
  assert.equal(cubic.dtype, "float32");
  assert.ok(tf.min(cubic).dataSync()[0] >= -1 && tf.max(cubic).dataSync()[0] <= 1);
  const diff = tf.mean(tf.abs(tf.sub(cubic, lanczos))).dataSync()[0];
  assert.ok(diff > 0 && diff < 0.02, `cubic vs lanczos3 mean abs difference ${diff}`);
  const stretched = await loadImages(landscape, { size: { width: 96, height: 32 }, crop: "none" });
  assert.deepEqual(stretched.shape, [1, 32, 96, 3]);
  await assert.rejects(loadImages([landscape, portrait]), /kodim04\.png: image is 512x768 but .*kodim01\.png is 768x512; pass a size/);
  tf.dispose([cubic, lanczos, stretched]);
});

test("PNG round trip of a uint8-exact image is exact; out-of-range values are clamped", async () => {
  const rng = new Rng(7);
  const h = 24;
  const w = 40;
  const u8 = new Uint8Array(h * w * 3).map(() => rng.int(256));
  u8[0] = 0;
  u8[1] = 255;
  const x = tf.tensor3d(u8ToUnit(u8), [h, w, 3]);
  const file = path.join(tmp, "out", "round.png");
  await savePng(x, file);
  const back = await readRgb(file);
  assert.deepEqual([back.width, back.height], [w, h]);
  assert.deepEqual(back.data, u8);
  const folder = await loadImages(path.dirname(file));
  assert.deepEqual(Array.from(folder.dataSync()), Array.from(x.dataSync()));
  assert.deepEqual(fs.readdirSync(path.dirname(file)), ["round.png"]);

  const wild = tf.tensor4d([-3, 0, 1.5, 2, -1, 1], [1, 1, 2, 3]);
  await savePng(wild, path.join(tmp, "wild.png"));
  assert.deepEqual(Array.from((await readRgb(path.join(tmp, "wild.png"))).data), [0, 128, 255, 255, 0, 255]);
  tf.dispose([x, folder, wild]);
});

test("alpha and grey images decode to 3-channel RGB", async () => {
  const rgba = path.join(tmp, "rgba.png");
  await sharp(Buffer.from([10, 20, 30, 0, 40, 50, 60, 255]), { raw: { width: 2, height: 1, channels: 4 } }).png().toFile(rgba);
  assert.deepEqual(Array.from((await readRgb(rgba)).data), [10, 20, 30, 40, 50, 60]);
  const grey = path.join(tmp, "grey.png");
  await sharp(Buffer.from([5, 200]), { raw: { width: 2, height: 1, channels: 1 } }).png().toFile(grey);
  assert.deepEqual(Array.from((await readRgb(grey)).data), [5, 5, 5, 200, 200, 200]);
  await assert.rejects(readRgb(path.join(tmp, "nope.png")), /nope\.png: cannot decode image/);
});
