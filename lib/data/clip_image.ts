import * as tf from "@tensorflow/tfjs";
import { pilResizeU8 } from "./pil_resize";

// CLIP's image preprocessing, as OpenAI's clip.load and open_clip's create_model_and_transforms build it
// (torchvision on a PIL image): Resize(n) with bicubic interpolation (the shortest side becomes n, the other
// int(n * long / short)), CenterCrop(n), ToTensor (u8 / 255), Normalize with CLIP's mean and std. Resizing is
// PIL's 8-bit bicubic (pil_resize.ts), so the result matches the reference to the last bit before normalising.
// transformers' CLIPImageProcessor differs in one place: its centre crop offset is floor((H - n) / 2) where
// torchvision rounds (H - n) / 2 half to even, which moves the crop one pixel when H - n = 3 mod 4.

/** OpenAI's (and open_clip's OPENAI_DATASET_MEAN / _STD) per-channel statistics, RGB. */
export const CLIP_IMAGE_MEAN = [0.48145466, 0.4578275, 0.40821073] as const;
export const CLIP_IMAGE_STD = [0.26862954, 0.26130258, 0.27577711] as const;

/** Python 3's round(): halves go to the even neighbour. */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** torchvision's Resize(n) target for an H x W image: the shortest side n, the other truncated. */
export function clipResizeShape(h: number, w: number, n: number): { h: number; w: number } {
  // torchvision: new_long = int(n * long / short)
  if (w <= h) return { w: n, h: Math.trunc((n * h) / w) };
  return { h: n, w: Math.trunc((n * w) / h) };
}

/** Resize(n) and CenterCrop(n) of one 8-bit RGB image (HWC): the 8-bit n x n image CLIP normalises. */
export function clipResizeCrop(data: Uint8Array, h: number, w: number, n: number): Uint8Array {
  if (data.length !== h * w * 3) throw new Error(`CLIP preprocessing: expected ${h}x${w}x3 bytes, got ${data.length}`);
  // an axis already at its size is not resampled (PIL skips that pass)
  const { h: rh, w: rw } = clipResizeShape(h, w, n);
  const img = pilResizeU8(data, h, w, 3, rh, rw);
  // torchvision's CenterCrop: top = int(round((H - n) / 2)), left likewise
  const top = roundHalfEven((rh - n) / 2);
  const left = roundHalfEven((rw - n) / 2);
  const out = new Uint8Array(n * n * 3);
  for (let y = 0; y < n; y++) out.set(img.subarray(((top + y) * rw + left) * 3, ((top + y) * rw + left + n) * 3), y * n * 3);
  return out;
}

/** One 8-bit RGB image (HWC) through CLIP's preprocessing: float32 [n, n, 3], normalised. */
export function clipPreprocessU8(data: Uint8Array, h: number, w: number, n: number): Float32Array {
  const img = clipResizeCrop(data, h, w, n);
  const out = new Float32Array(img.length);
  for (let i = 0; i < img.length; i++) {
    const c = i % 3;
    // ToTensor, then Normalize: (u / 255 - mean) / std, in float32 as torch computes it
    const v = Math.fround(img[i] / 255);
    out[i] = Math.fround(Math.fround(v - Math.fround(CLIP_IMAGE_MEAN[c])) / Math.fround(CLIP_IMAGE_STD[c]));
  }
  return out;
}

/**
 * Images NHWC in [-1, 1] to uint8 as the authors' evaluation converts generated images to PIL (GigaGAN's
 * tensor2pil: ((x + 1) * 127.5) clamped to [0, 255] in float32, then truncated by .to(torch.uint8)).
 */
export function unitToU8Truncated(images: tf.Tensor4D): Uint8Array {
  return tf.tidy(() => Uint8Array.from(tf.floor(tf.clipByValue(tf.mul(tf.add(images, 1), 127.5), 0, 255)).dataSync()));
}

/** A batch NHWC in [-1, 1] through tensor2pil and CLIP's preprocessing: [N, n, n, 3] for the image tower. */
export function clipPreprocess(images: tf.Tensor4D, n: number): tf.Tensor4D {
  const [b, h, w, c] = images.shape;
  if (c !== 3) throw new Error(`clipPreprocess: expected RGB images [N, H, W, 3], got [${images.shape}]`);
  const u8 = unitToU8Truncated(images);
  const out = new Float32Array(b * n * n * 3);
  for (let i = 0; i < b; i++) out.set(clipPreprocessU8(u8.subarray(i * h * w * 3, (i + 1) * h * w * 3), h, w, n), i * n * n * 3);
  return tf.tensor4d(out, [b, n, n, 3]);
}

/**
 * CLIP's normalisation of images NHWC in [-1, 1] already at the tower's size, on the engine (no 8-bit rounding, no
 * resampling): ((x + 1) / 2 - mean) / std. For training; evaluation goes through clipPreprocess.
 */
export function clipNormalize(images: tf.Tensor4D): tf.Tensor4D {
  return tf.tidy(() => tf.div(tf.sub(tf.mul(tf.add(images, 1), 0.5), tf.tensor1d([...CLIP_IMAGE_MEAN])), tf.tensor1d([...CLIP_IMAGE_STD])) as tf.Tensor4D);
}
