import * as tf from "@tensorflow/tfjs";
import { ClipModel, unitRows } from "../nn/clip/clip_model";

// How a CLIP is judged without training a head on it (Radford et al. 2021): zero-shot classification, each class
// represented by the mean of its prompts' unit text embeddings (prompt ensembling), renormalised, and an image
// given the class of the most similar one; and retrieval, each image's own caption ranked among all captions
// (and each caption's own image among all images) by cosine similarity.

/** Unit class embeddings [classes, dim]: per class, the renormalised mean of its prompts' unit text embeddings. */
export function classEmbeddings(model: ClipModel, promptRows: number[][][]): tf.Tensor2D {
  if (promptRows.length === 0 || promptRows.some((r) => r.length === 0)) throw new Error("zero-shot: every class needs at least one prompt");
  return tf.tidy(() => unitRows(tf.stack(promptRows.map((rows) => tf.mean(unitRows(model.textFeatures(rows)), 0))) as tf.Tensor2D));
}

export interface ZeroShotResult {
  /** Fraction of images whose most similar class is their label. */
  top1: number;
  /** Per class: the fraction of its images classified right (NaN for a class with no images). */
  perClass: number[];
  /** Predicted class per image. */
  predictions: Int32Array;
}

/**
 * Zero-shot classification of `pixels` (the image tower's input, e.g. clipNormalize of images in [-1, 1]) against
 * class embeddings, in batches of `batch` images.
 */
export function zeroShotClassify(model: ClipModel, pixels: tf.Tensor4D, labels: ArrayLike<number>, classes: tf.Tensor2D, batch = 256): ZeroShotResult {
  const n = pixels.shape[0];
  if (labels.length !== n) throw new Error(`zero-shot: ${n} images but ${labels.length} labels`);
  const k = classes.shape[0];
  const predictions = new Int32Array(n);
  for (let s = 0; s < n; s += batch) {
    const b = Math.min(batch, n - s);
    const pred = tf.tidy(() => {
      const img = unitRows(model.imageFeatures(tf.slice(pixels, [s, 0, 0, 0], [b, -1, -1, -1]) as tf.Tensor4D));
      return tf.argMax(tf.matMul(img, classes, false, true), 1);
    });
    predictions.set(pred.dataSync() as Int32Array, s);
    pred.dispose();
  }
  const right = new Array<number>(k).fill(0);
  const count = new Array<number>(k).fill(0);
  let hits = 0;
  for (let i = 0; i < n; i++) {
    const y = labels[i];
    if (!Number.isInteger(y) || y < 0 || y >= k) throw new Error(`zero-shot: label ${y} of image ${i} is not a class index 0..${k - 1}`);
    count[y]++;
    if (predictions[i] === y) {
      right[y]++;
      hits++;
    }
  }
  return { top1: hits / n, perClass: right.map((r, c) => r / count[c]), predictions };
}

export interface RetrievalResult {
  /** Image -> text: fraction of images whose own caption is among the k most similar captions. */
  imageToText: number;
  /** Text -> image: fraction of captions whose own image is among the k most similar images. */
  textToImage: number;
  k: number;
}

/**
 * Recall@k of matching pairs: row i of `image` and `text` (unit embeddings, [N, dim]) belong together. Ties
 * count against the pair (a pair is found only if fewer than k others score strictly higher).
 */
export function retrievalRecall(image: tf.Tensor2D, text: tf.Tensor2D, k = 1): RetrievalResult {
  const n = image.shape[0];
  if (text.shape[0] !== n) throw new Error(`retrieval: ${n} images but ${text.shape[0]} captions`);
  const sim = tf.tidy(() => tf.matMul(image, text, false, true));
  const s = sim.dataSync();
  sim.dispose();
  let i2t = 0;
  let t2i = 0;
  for (let i = 0; i < n; i++) {
    const own = s[i * n + i];
    let aboveRow = 0;
    let aboveCol = 0;
    for (let j = 0; j < n; j++) {
      if (j === i) continue;
      if (s[i * n + j] >= own) aboveRow++;
      if (s[j * n + i] >= own) aboveCol++;
    }
    if (aboveRow < k) i2t++;
    if (aboveCol < k) t2i++;
  }
  return { imageToText: i2t / n, textToImage: t2i / n, k };
}
