import * as tf from "@tensorflow/tfjs";
import { Progress } from "../core/progress";
import { clipPreprocess } from "../data/clip_image";
import { ClipTokenizer } from "../data/clip_tokenizer";
import { ClipModel } from "../nn/clip/clip_model";

// CLIP score as the paper's authors compute it (the first author's GigaGAN evaluation.py, compute_clip_score,
// which PAPER.md's protocol follows): each generated image in [-1, 1] goes to 8 bits as tensor2pil does (clamped,
// truncated), through CLIP's preprocessing and the image tower; each caption is tokenized with OpenAI's
// tokenize(truncate=True) and "A photo depicts " spliced in after <|startoftext|> (Hessel et al. 2021's prompt);
// the score is the mean cosine similarity of the two embeddings over all pairs. The paper's tables report that
// mean (e.g. 0.310). torchmetrics' CLIPScore, the other common convention, reports max(100 * mean, 0): the
// clamp at 0 is applied to the mean over the samples, not to each pair (its compute() and functional clip_score
// both clamp after averaging). Both are returned.

/** Hessel et al.'s CLIPScore prompt, as GigaGAN's evaluation prepends it. */
export const PHOTO_DEPICTS = "A photo depicts ";

export type ClipScoreTemplate = "a-photo-depicts" | "none";

/**
 * Token rows as the authors' evaluation builds them: OpenAI's tokenize(caption, truncate=True) (zero padding, at
 * most 75 content tokens), the 3 tokens of "A photo depicts " inserted after <|startoftext|>, cut to 77, and the
 * last column set to <|endoftext|> where it is not padding (so a long caption keeps an end token).
 */
export function photoDepictsRows(tokenizer: ClipTokenizer, captions: string[], template: ClipScoreTemplate = "a-photo-depicts"): number[][] {
  const rows = tokenizer.tokenize(captions, { padding: "zero", truncate: true });
  if (template === "none") return rows;
  if (template !== "a-photo-depicts") throw new Error(`CLIP score: unknown template ${JSON.stringify(template)} (expected "a-photo-depicts" or "none")`);
  const prompt = tokenizer.encode(PHOTO_DEPICTS).slice(0, 3);
  return rows.map((row) => {
    const out = [row[0], ...prompt, ...row.slice(1)].slice(0, row.length);
    if (out[out.length - 1] > 0) out[out.length - 1] = tokenizer.eos;
    return out;
  });
}

/** Per-pair cosine similarity of image i and caption row i, through CLIP's preprocessing; images NHWC in [-1, 1]. */
export function clipCosines(model: ClipModel, images: tf.Tensor4D, rows: number[][]): Float32Array {
  if (images.shape[0] !== rows.length) throw new Error(`CLIP score: ${images.shape[0]} images but ${rows.length} captions`);
  const cos = tf.tidy(() => {
    const pixels = clipPreprocess(images, model.config.vision.imageSize);
    const e = model.embed(pixels, rows);
    // cos(image_i, text_i) of unit embeddings
    return tf.sum(tf.mul(e.image, e.text), 1);
  });
  const out = cos.dataSync() as Float32Array;
  cos.dispose();
  return out;
}

export interface ClipScoreResult {
  n: number;
  /** The authors' CLIP score: mean cosine similarity (the paper's tables, e.g. 0.310). */
  meanCosine: number;
  /** torchmetrics' CLIPScore: max(100 * meanCosine, 0). */
  torchmetrics: number;
  /** Every pair's cosine, in order. */
  cosines: Float32Array;
}

export function summariseClipScores(cosines: Float32Array): ClipScoreResult {
  if (cosines.length === 0) throw new Error("CLIP score: no samples");
  let sum = 0;
  for (const c of cosines) sum += c;
  const meanCosine = sum / cosines.length;
  return { n: cosines.length, meanCosine, torchmetrics: Math.max(100 * meanCosine, 0), cosines };
}

/** NHWC images in [-1, 1] (generated, or reference images after the protocol's crop and resize) and their captions, or their token rows. */
export type ClipScoreBatch = { images: tf.Tensor4D; captions: string[] } | { images: tf.Tensor4D; rows: number[][] };

export interface ClipScoreOptions {
  /** Needed for batches of captions (not for token rows). */
  tokenizer?: ClipTokenizer;
  template?: ClipScoreTemplate;
  label?: string;
  /** Pairs expected in all, for the progress bar's ETA. */
  total?: number;
}

/**
 * CLIP score over a stream of batches (each batch's images are disposed once scored), with a progress bar.
 * The per-pair cosines come back too, so a caller can store them and resume a long run where it stopped.
 */
export async function clipScore(model: ClipModel, batches: Iterable<ClipScoreBatch> | AsyncIterable<ClipScoreBatch>, o: ClipScoreOptions = {}): Promise<ClipScoreResult> {
  const progress = new Progress(o.label ?? "CLIP score", o.total ?? 0);
  const parts: Float32Array[] = [];
  let n = 0;
  for await (const b of batches) {
    let rows: number[][];
    if ("rows" in b) rows = b.rows;
    else if (o.tokenizer) rows = photoDepictsRows(o.tokenizer, b.captions, o.template);
    else throw new Error("CLIP score: batches of captions need options.tokenizer");
    const cos = clipCosines(model, b.images, rows);
    b.images.dispose();
    parts.push(cos);
    n += cos.length;
    progress.tick(cos.length);
  }
  const all = new Float32Array(n);
  let at = 0;
  for (const p of parts) {
    all.set(p, at);
    at += p.length;
  }
  const r = summariseClipScores(all);
  progress.finish({ clipScore: r.meanCosine });
  return r;
}
