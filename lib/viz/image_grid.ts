import * as fs from "fs";
import sharp, { OverlayOptions } from "sharp";
import * as tf from "@tensorflow/tfjs";
import { HostTensor } from "../io/host_tensor";
import { outputPath } from "./files";
import { showPng } from "./notebook";
import { wrapWords } from "./text";

// A batch of images as one PNG: cells left to right, top to bottom, each upscaled by pixel repetition (so 32x32
// samples stay sharp), an optional caption under each, an optional title and column labels above. Text is an SVG
// overlay that sharp rasterises.

/** NHWC, C = 1 or 3: float in [-1, 1] (the models' range) or integers 0..255 (uint8 host data, int32 tensors). */
export type GridImages = tf.Tensor4D | HostTensor;

export interface GridOptions {
  /** Columns (default: ceil(sqrt(n))). */
  cols?: number;
  /** One caption per image, drawn under it. */
  captions?: string[];
  /** Integer upscale of each image (default: the smallest that makes a cell at least 64 px tall). */
  zoom?: number;
  /** Gap around and between cells, px (default 4). */
  pad?: number;
  /** Caption font size, px (default 12); a caption row is fontSize + 6 px tall. */
  fontSize?: number;
  /** A title line above the grid (what, at which scale, by which network), wrapped to the grid's width. */
  title?: string;
  /** One label per column, above it (e.g. the class of every sample in that column). */
  columnLabels?: string[];
}

interface Pixels {
  n: number;
  h: number;
  w: number;
  c: number;
  data: Uint8Array;
}

function toUint8(values: ArrayLike<number>, isFloat: boolean): Uint8Array {
  const out = new Uint8Array(values.length);
  // x in [-1, 1] -> round((x + 1) * 127.5), the inverse of u8 / 127.5 - 1
  for (let i = 0; i < values.length; i++) out[i] = Math.max(0, Math.min(255, Math.round(isFloat ? (values[i] + 1) * 127.5 : values[i])));
  return out;
}

async function pixels(images: GridImages): Promise<Pixels> {
  const shape = images.shape;
  if (shape.length !== 4 || (shape[3] !== 1 && shape[3] !== 3)) {
    throw new Error(`image grid: expected NHWC images with 1 or 3 channels, got shape [${shape.join(",")}]`);
  }
  const [n, h, w, c] = shape;
  if (images instanceof tf.Tensor) {
    return { n, h, w, c, data: toUint8(await images.data(), images.dtype === "float32") };
  }
  const isFloat = images.dtype === "float32" || images.dtype === "float64";
  if (!isFloat && images.dtype !== "uint8") throw new Error(`image grid: host images must be float32/float64 or uint8, got ${images.dtype}`);
  return { n, h, w, c, data: images.data instanceof Uint8Array ? images.data : toUint8(images.data as ArrayLike<number>, isFloat) };
}

function escapeXml(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

/** Render the grid; returns the PNG and its size. */
export async function imageGridPng(images: GridImages, o: GridOptions = {}): Promise<{ png: Buffer; width: number; height: number }> {
  const px = await pixels(images);
  const { n, h, w, c } = px;
  if (n === 0) throw new Error("image grid: no images");
  if (o.captions && o.captions.length !== n) throw new Error(`image grid: ${o.captions.length} captions for ${n} images`);
  const cols = Math.min(n, o.cols ?? Math.ceil(Math.sqrt(n)));
  if (o.columnLabels && o.columnLabels.length !== cols) throw new Error(`image grid: ${o.columnLabels.length} column labels for ${cols} columns`);
  const rows = Math.ceil(n / cols);
  const zoom = o.zoom ?? Math.max(1, Math.ceil(64 / h));
  const pad = o.pad ?? 4;
  const fontSize = o.fontSize ?? 12;
  const capH = o.captions ? fontSize + 6 : 0;
  const cw = w * zoom;
  const ch = h * zoom;
  const width = pad + cols * (cw + pad);
  // the title wraps at ~0.6 em per character of its (larger) font
  const titleSize = fontSize + 3;
  const titleLines = o.title ? wrapWords(o.title, Math.max(10, Math.floor((width - 2 * pad) / (0.6 * titleSize)))) : [];
  const titleH = titleLines.length * (titleSize + 4) + (titleLines.length ? 4 : 0);
  const labelsH = o.columnLabels ? fontSize + 6 : 0;
  const header = titleH + labelsH;
  const height = header + pad + rows * (ch + capH + pad);

  const layers: OverlayOptions[] = [];
  const texts: string[] = [];
  const clip = (text: string) => {
    // Clip long captions to the cell width (~0.6 em per character in a sans font).
    const maxChars = Math.max(1, Math.floor(cw / (0.6 * fontSize)));
    return text.length > maxChars ? text.slice(0, maxChars - 1) + "…" : text;
  };
  titleLines.forEach((line, k) => {
    texts.push(`<text x="${width / 2}" y="${pad + (k + 1) * (titleSize + 4) - 4}" text-anchor="middle" font-size="${titleSize}" font-weight="bold">${escapeXml(line)}</text>`);
  });
  o.columnLabels?.forEach((label, col) => {
    texts.push(`<text x="${pad + col * (cw + pad) + cw / 2}" y="${titleH + fontSize + 2}" text-anchor="middle">${escapeXml(clip(label))}</text>`);
  });
  const per = h * w * c;
  for (let i = 0; i < n; i++) {
    const left = pad + (i % cols) * (cw + pad);
    const top = header + pad + Math.floor(i / cols) * (ch + capH + pad);
    const raw = Buffer.from(px.data.buffer, px.data.byteOffset + i * per, per);
    let cell = sharp(raw, { raw: { width: w, height: h, channels: c as 1 | 3 } }).resize(cw, ch, { kernel: "nearest" });
    if (c === 1) cell = cell.toColourspace("srgb");
    layers.push({ input: await cell.png().toBuffer(), left, top });
    if (o.captions) texts.push(`<text x="${left + cw / 2}" y="${top + ch + fontSize + 1}" text-anchor="middle">${escapeXml(clip(o.captions[i]))}</text>`);
  }
  if (texts.length > 0) {
    const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}"><g font-family="DejaVu Sans, Liberation Sans, sans-serif" font-size="${fontSize}" fill="#222">${texts.join("")}</g></svg>`;
    layers.push({ input: Buffer.from(svg), left: 0, top: 0 });
  }
  const png = await sharp({ create: { width, height, channels: 3, background: { r: 255, g: 255, b: 255 } } })
    .composite(layers)
    .png()
    .toBuffer();
  return { png, width, height };
}

/** Write `<dir>/<name>.png` (dir defaults to figures/). */
export async function saveImageGrid(name: string, images: GridImages, o: GridOptions & { dir?: string } = {}) {
  const grid = await imageGridPng(images, o);
  const path = outputPath(name, "png", o.dir);
  fs.writeFileSync(path, grid.png);
  return { path, ...grid };
}

/** Save the grid and show it inline in a notebook (elsewhere, print where it went). */
export async function showImageGrid(name: string, images: GridImages, o: GridOptions & { dir?: string } = {}): Promise<void> {
  const saved = await saveImageGrid(name, images, o);
  if (!showPng(saved.png)) console.log(`image grid: ${saved.path} (${saved.width}x${saved.height})`);
}
