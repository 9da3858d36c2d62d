import * as fs from "fs";
import * as path from "path";
import sharp from "sharp";
import * as tf from "@tensorflow/tfjs";

// Image files in and out through sharp (libvips). Pixels become float32 NHWC in [-1, 1]: u8 / 127.5 - 1, and
// back with round((x + 1) * 127.5) clamped to 0..255, so a uint8 image survives the round trip exactly.

/** sharp's "cubic" is the Catmull-Rom spline (PIL's BICUBIC, a = -0.5); "lanczos3" is Lanczos with a = 3. */
export type ResizeKernel = "cubic" | "lanczos3";

export interface RgbImage {
  width: number;
  height: number;
  /** uint8 HWC, 3 channels. */
  data: Uint8Array;
}

export interface ImageLoadOptions {
  /** Output size: a number for a square, or width and height. Omitted: keep the file's size. */
  size?: number | { width: number; height: number };
  /** "center" (default) crops the largest centred region of the output's aspect ratio before resizing; "none" stretches. */
  crop?: "center" | "none";
  kernel?: ResizeKernel;
}

const IMAGE_EXT = new Set([".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp"]);

/** Image files directly inside a folder, sorted by name. */
export function listImages(folder: string): string[] {
  const files = fs.readdirSync(folder).filter((f) => IMAGE_EXT.has(path.extname(f).toLowerCase())).sort();
  if (files.length === 0) throw new Error(`${folder}: no image files (${[...IMAGE_EXT].join(" ")})`);
  return files.map((f) => path.join(folder, f));
}

function targetSize(o: ImageLoadOptions, w: number, h: number): { width: number; height: number } {
  if (o.size === undefined) return { width: w, height: h };
  const s = typeof o.size === "number" ? { width: o.size, height: o.size } : o.size;
  if (!(Number.isInteger(s.width) && Number.isInteger(s.height) && s.width > 0 && s.height > 0)) {
    throw new Error(`image size must be positive integers, got ${JSON.stringify(o.size)}`);
  }
  return s;
}

/** Decode to 8-bit RGB (alpha dropped, grey expanded), optionally centre-cropped and resized. */
export async function readRgb(file: string, o: ImageLoadOptions = {}): Promise<RgbImage> {
  let img = sharp(file, { failOn: "error" });
  const meta = await img.metadata().catch((e: Error) => {
    throw new Error(`${file}: cannot decode image: ${e.message}`);
  });
  const w = meta.width!;
  const h = meta.height!;
  const out = targetSize(o, w, h);
  if (out.width !== w || out.height !== h) {
    if ((o.crop ?? "center") === "center") {
      // Largest centred box with the output's aspect ratio; torchvision's CenterCrop rounds the offset the same way.
      const scale = Math.min(w / out.width, h / out.height);
      const cw = Math.min(w, Math.round(out.width * scale));
      const ch = Math.min(h, Math.round(out.height * scale));
      img = img.extract({ left: Math.round((w - cw) / 2), top: Math.round((h - ch) / 2), width: cw, height: ch });
    }
    img = img.resize(out.width, out.height, { fit: "fill", kernel: o.kernel ?? "cubic" });
  }
  const { data, info } = await img.removeAlpha().toColourspace("srgb").raw({ depth: "uchar" }).toBuffer({ resolveWithObject: true });
  if (info.channels !== 3 || data.length !== info.width * info.height * 3) {
    throw new Error(`${file}: decoded to ${info.channels} channels / ${data.length} bytes, expected 8-bit RGB ${info.width}x${info.height}`);
  }
  return { width: info.width, height: info.height, data: new Uint8Array(data.buffer, data.byteOffset, data.length) };
}

/** uint8 -> [-1, 1]. */
export function u8ToUnit(data: Uint8Array): Float32Array {
  const out = new Float32Array(data.length);
  for (let i = 0; i < data.length; i++) out[i] = data[i] / 127.5 - 1;
  return out;
}

/** [-1, 1] -> uint8, clamped. */
export function unitToU8(data: ArrayLike<number>): Uint8Array {
  const out = new Uint8Array(data.length);
  for (let i = 0; i < data.length; i++) out[i] = Math.min(255, Math.max(0, Math.round((data[i] + 1) * 127.5)));
  return out;
}

/**
 * Files (or every image in a folder) as one float32 NHWC tensor in [-1, 1]. Without `size`, all images must
 * already share one size.
 */
export async function loadImages(files: string | string[], o: ImageLoadOptions = {}): Promise<tf.Tensor4D> {
  const list = typeof files === "string" ? (fs.statSync(files).isDirectory() ? listImages(files) : [files]) : files;
  if (list.length === 0) throw new Error("loadImages: no files given");
  const imgs: RgbImage[] = [];
  for (const f of list) {
    const img = await readRgb(f, o);
    if (imgs.length && (img.width !== imgs[0].width || img.height !== imgs[0].height)) {
      throw new Error(`${f}: image is ${img.width}x${img.height} but ${list[0]} is ${imgs[0].width}x${imgs[0].height}; pass a size to resize them`);
    }
    imgs.push(img);
  }
  const { width, height } = imgs[0];
  const per = width * height * 3;
  const all = new Float32Array(imgs.length * per);
  imgs.forEach((img, k) => all.set(u8ToUnit(img.data), k * per));
  return tf.tensor4d(all, [imgs.length, height, width, 3], "float32");
}

/** One image in [-1, 1] ([H, W, 3], or [1, H, W, 3]) as a uint8 RGB image. */
export function tensorToRgb(x: tf.Tensor): RgbImage {
  const shape = x.rank === 4 && x.shape[0] === 1 ? x.shape.slice(1) : x.shape;
  if (shape.length !== 3 || shape[2] !== 3) throw new Error(`expected an image tensor [H, W, 3] or [1, H, W, 3], got [${x.shape.join(", ")}]`);
  return { height: shape[0], width: shape[1], data: unitToU8(x.dataSync()) };
}

/** Write an image tensor in [-1, 1] (or an RgbImage) as an 8-bit RGB PNG, atomically. */
export async function savePng(x: tf.Tensor | RgbImage, file: string): Promise<void> {
  const img = x instanceof tf.Tensor ? tensorToRgb(x) : x;
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    await sharp(Buffer.from(img.data.buffer, img.data.byteOffset, img.data.length), { raw: { width: img.width, height: img.height, channels: 3 } })
      .png()
      .toFile(tmp);
    fs.renameSync(tmp, file);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw new Error(`${file}: cannot write PNG: ${(e as Error).message}`);
  }
}
