import * as fs from "fs";
import * as tf from "@tensorflow/tfjs";
import { fromRoot } from "../core/paths";
import { Rng } from "../core/random";
import { parseCaption } from "../data/scene_captions";
import {
  Axis, Colour, COLOURS, regionOf, SceneSpec, Shape, SHAPES, Size, SIZES, Texture, TEXTURES, Tone, TONES,
} from "../data/scenes";
import { readSafetensors } from "../io/safetensors";
import { torchvisionInit } from "../nn/init";
import { BatchNorm2d, Conv2d, Linear, ReLU } from "../nn/layers";
import { Module, Sequential } from "../nn/module";

// The attribute scorer of the text-to-image world: it reads every object of a scene image (shape, colour, size,
// where it is) and the background (texture, tone), so the text alignment of a generated image is scored exactly
// against the SceneSpec its caption states, per attribute and all-correct.
//
// A small fully convolutional detector in the CenterNet manner: three stride-2 stages bring a 64 px image to an
// 8x8 grid (cells of 8 px); each cell predicts whether an object's centre lies in it, where in the cell, and that
// object's shape, colour and size; a pooled head predicts the background. Objects in the world are at least
// 0.24 of the side apart (14 px), so no cell holds two centres. Trained on TAEF2 round trips of the scorer split
// (lib/experiments/attribute_scorer_training.ts), weights in data/weights/.

export interface AttributeScorerConfig {
  imageSize: number;
  /** Channels of the three stages (full, 1/2 and 1/4 resolution inputs); the last one also runs at the 1/8 grid. */
  widths: [number, number, number];
}

export const ATTRIBUTE_SCORER: AttributeScorerConfig = { imageSize: 64, widths: [32, 64, 80] };
export const ATTRIBUTE_SCORER_WEIGHTS = fromRoot("data", "weights", "attribute_scorer64.safetensors");

/** Grid cell size in pixels: three stride-2 convolutions. */
export const SCORER_STRIDE = 8;

/** Channels of the grid head: objectness, centre offset (x, y) in the cell, then shape, colour and size logits. */
export const GRID_CHANNELS = { obj: 0, offset: 1, shape: 3, colour: 3 + SHAPES.length, size: 3 + SHAPES.length + COLOURS.length, total: 3 + SHAPES.length + COLOURS.length + SIZES.length };

/**
 * Keys `low.{i}.*` (conv, ReLU pairs down to 1/4 resolution), `high.{i}.*` (down to the 1/8 grid and two more),
 * `grid.*` (1x1 conv), `backgroundNorm.*` and `background.*` (texture then tone logits from the pooled low and
 * high features).
 */
export class AttributeScorer extends Module {
  low: Sequential;
  high: Sequential;
  grid: Conv2d;
  /**
   * Standardises the pooled features (batch statistics in training, running ones when reading): between images
   * they vary little next to their mean (the dark tones differ by ~0.1 in [-1, 1]), and a linear head on them
   * alone stayed at chance for 250 steps while every object attribute was learning.
   */
  backgroundNorm: BatchNorm2d;
  background: Linear;

  constructor(readonly config: AttributeScorerConfig, rng: Rng) {
    super();
    const [a, b, c] = config.widths;
    const stack = (specs: Array<[number, number, number]>) =>
      new Sequential(specs.flatMap(([i, o, stride]) => [new Conv2d(i, o, 3, rng, { stride, padding: 1 }), new ReLU()]));
    this.low = stack([[3, a, 1], [a, a, 2], [a, b, 1], [b, b, 2]]);
    // two more convolutions at the grid: a 65 px receptive field, wider than the largest object
    this.high = stack([[b, c, 1], [c, c, 2], [c, c, 1], [c, c, 1]]);
    this.grid = new Conv2d(c, GRID_CHANNELS.total, 1, rng, { padding: 0 });
    // the background's texture (periods of 9-14 px) is plainest in the 1/4-resolution features
    this.backgroundNorm = new BatchNorm2d(b + c);
    this.background = new Linear(b + c, TEXTURES.length + TONES.length, rng);
    torchvisionInit([this], rng);
    // objectness starts at the prior of about 2 centres in 64 cells, sigmoid(-3.4) = 0.032, so early training is
    // not spent pushing 62 empty cells down (RetinaNet's prior initialisation)
    tf.tidy(() => this.grid.bias!.assign(tf.concat([tf.fill([1], -3.4), tf.zeros([GRID_CHANNELS.total - 1])])));
  }

  /** Batch statistics in the background norm (training) or its running ones (reading, the default). */
  setTraining(on: boolean): void {
    this.backgroundNorm.training = on;
  }

  get gridSize(): number {
    return this.config.imageSize / SCORER_STRIDE;
  }

  /** Images [N, S, S, 3] in [-1, 1] -> grid logits [N, S/8, S/8, GRID_CHANNELS.total] and background logits [N, 8]. */
  forward(images: tf.Tensor4D): { grid: tf.Tensor4D; background: tf.Tensor2D } {
    const s = this.config.imageSize;
    if (images.shape[1] !== s || images.shape[2] !== s || images.shape[3] !== 3) {
      throw new Error(`AttributeScorer: expected RGB images [N, ${s}, ${s}, 3] in [-1, 1], got [${images.shape}]`);
    }
    return tf.tidy(() => {
      const low = this.low.forward(images);
      const high = this.high.forward(low);
      const pooled = tf.concat([tf.mean(low, [1, 2], true), tf.mean(high, [1, 2], true)], 3) as tf.Tensor4D;
      const n = images.shape[0];
      return { grid: this.grid.forward(high), background: this.background.forward(tf.reshape(this.backgroundNorm.forward(pooled), [n, -1]) as tf.Tensor2D) };
    });
  }

  /** What the scorer sees in each image. */
  async read(images: tf.Tensor4D, o: ReadOptions = {}): Promise<SceneReading[]> {
    const out = this.forward(images);
    const [grid, bg] = await Promise.all([out.grid.data(), out.background.data()]);
    tf.dispose([out.grid, out.background]);
    return Array.from({ length: images.shape[0] }, (_, i) => decodeReading(grid as Float32Array, bg as Float32Array, i, this.gridSize, o));
  }
}

export interface DetectedObject {
  shape: Shape;
  colour: Colour;
  size: Size;
  /** Centre as fractions of the side. */
  x: number;
  y: number;
  /** Objectness probability. */
  score: number;
}

export interface SceneReading {
  objects: DetectedObject[];
  texture: Texture;
  tone: Tone;
}

export interface ReadOptions {
  /** Objectness probability above which a cell holds an object (default 0.5). */
  threshold?: number;
  /** A detection within this distance (fraction of the side) of a stronger one is the same object (default 0.1). */
  nmsDistance?: number;
}

const sigmoid = (v: number) => 1 / (1 + Math.exp(-v));

function argmax(v: Float32Array | number[], from: number, n: number): number {
  let best = 0;
  for (let k = 1; k < n; k++) if (v[from + k] > v[from + best]) best = k;
  return best;
}

/** Image i's reading from the flat grid ([N, G, G, C]) and background ([N, 8]) logits. */
export function decodeReading(grid: Float32Array, bg: Float32Array, i: number, g: number, o: ReadOptions = {}): SceneReading {
  const C = GRID_CHANNELS;
  const threshold = o.threshold ?? 0.5;
  const candidates: DetectedObject[] = [];
  for (let cy = 0; cy < g; cy++) {
    for (let cx = 0; cx < g; cx++) {
      const at = ((i * g + cy) * g + cx) * C.total;
      const score = sigmoid(grid[at + C.obj]);
      if (score <= threshold) continue;
      candidates.push({
        shape: SHAPES[argmax(grid, at + C.shape, SHAPES.length)],
        colour: COLOURS[argmax(grid, at + C.colour, COLOURS.length)],
        size: SIZES[argmax(grid, at + C.size, SIZES.length)],
        // centre = (cell + sigmoid(offset)) / G
        x: (cx + sigmoid(grid[at + C.offset])) / g,
        y: (cy + sigmoid(grid[at + C.offset + 1])) / g,
        score,
      });
    }
  }
  candidates.sort((a, b) => b.score - a.score);
  const nms = o.nmsDistance ?? 0.1;
  const objects: DetectedObject[] = [];
  for (const c of candidates) if (!objects.some((k) => Math.hypot(k.x - c.x, k.y - c.y) < nms)) objects.push(c);
  const b = i * (TEXTURES.length + TONES.length);
  return { objects, texture: TEXTURES[argmax(bg, b, TEXTURES.length)], tone: TONES[argmax(bg, b + TEXTURES.length, TONES.length)] };
}

// ---- scoring against a caption -------------------------------------------------------------------------------

export interface AttributeScore {
  /** Objects the spec asks for; shape, colour and size count how many of them the reading got right. */
  objects: number;
  shape: number;
  colour: number;
  size: number;
  /** The reading finds exactly as many objects as asked for. */
  count: boolean;
  /** Two groups: group 1's centroid lies on the right side of group 0's along the axis, and mostly along it; else null. */
  relation: boolean | null;
  /** A lone object: its centre lies in the region asked for; else null. */
  region: boolean | null;
  texture: boolean;
  tone: boolean;
  /** count, every object's shape, colour and size, the relation and the region. */
  objectsCorrect: boolean;
  /** objectsCorrect and the background. */
  allCorrect: boolean;
}

interface Wanted {
  group: number;
  shape: Shape;
  colour: Colour;
  size: Size;
}

const agreement = (w: Wanted, d: DetectedObject) => Number(w.shape === d.shape) + Number(w.colour === d.colour) + Number(w.size === d.size);

/**
 * The assignment of wanted objects to distinct detections (or to none) with the most agreeing attributes, a
 * matched pair preferred to an unmatched one on a tie. Exhaustive: at most 3 wanted objects.
 */
function bestMatch(wanted: Wanted[], found: DetectedObject[]): Array<number | null> {
  let best: Array<number | null> = wanted.map(() => null);
  let bestScore = -1;
  const cur: Array<number | null> = [];
  const used = new Set<number>();
  const search = (k: number, score: number) => {
    if (k === wanted.length) {
      if (score > bestScore) [bestScore, best] = [score, [...cur]];
      return;
    }
    for (let j = 0; j < found.length; j++) {
      if (used.has(j)) continue;
      used.add(j);
      cur.push(j);
      search(k + 1, score + agreement(wanted[k], found[j]) + 1e-3);
      cur.pop();
      used.delete(j);
    }
    cur.push(null);
    search(k + 1, score);
    cur.pop();
  };
  search(0, 0);
  return best;
}

/** Does the displacement from centroid a to centroid b point along +axis more than across it? */
function relationReads(a: [number, number], b: [number, number], axis: Axis): boolean {
  const [on, off] = axis === "horizontal" ? [b[0] - a[0], b[1] - a[1]] : [b[1] - a[1], b[0] - a[0]];
  return on > 0 && Math.abs(off) < on;
}

/** Score a reading against the spec of a scene or a caption. */
export function scoreReading(reading: SceneReading, spec: SceneSpec): AttributeScore {
  const wanted: Wanted[] = spec.groups.flatMap((g, group) => Array.from({ length: g.count }, () => ({ group, shape: g.shape, colour: g.colour, size: g.size })));
  const found = reading.objects;
  const match = bestMatch(wanted, found);
  const right = (a: "shape" | "colour" | "size") => wanted.filter((w, k) => match[k] !== null && found[match[k]!][a] === w[a]).length;
  const centroid = (group: number): [number, number] | null => {
    const pts = wanted.flatMap((w, k) => (w.group === group && match[k] !== null ? [found[match[k]!]] : []));
    return pts.length ? [pts.reduce((s, p) => s + p.x, 0) / pts.length, pts.reduce((s, p) => s + p.y, 0) / pts.length] : null;
  };
  let relation: boolean | null = null;
  if (spec.relation) {
    const [a, b] = [centroid(0), centroid(1)];
    relation = a !== null && b !== null && relationReads(a, b, spec.relation);
  }
  let region: boolean | null = null;
  if (spec.region) region = match[0] !== null && regionOf(found[match[0]!].x, found[match[0]!].y) === spec.region;
  const s = { shape: right("shape"), colour: right("colour"), size: right("size") };
  const count = found.length === wanted.length;
  const objectsCorrect = count && s.shape === wanted.length && s.colour === wanted.length && s.size === wanted.length && relation !== false && region !== false;
  const texture = reading.texture === spec.texture;
  const tone = reading.tone === spec.tone;
  return { objects: wanted.length, ...s, count, relation, region, texture, tone, objectsCorrect, allCorrect: objectsCorrect && texture && tone };
}

/** Score a reading against a caption of the world's grammar. */
export function scoreCaption(reading: SceneReading, caption: string): AttributeScore {
  return scoreReading(reading, parseCaption(caption));
}

export interface AttributeAccuracy {
  images: number;
  /** Per object asked for. */
  shape: number;
  colour: number;
  size: number;
  /** Per image (relation: images with two groups; region: images of one object). */
  count: number;
  relation: number;
  region: number;
  texture: number;
  tone: number;
  objectsCorrect: number;
  allCorrect: number;
}

/** Accuracy per attribute over many scores; an attribute no image asks about is NaN. */
export function summariseScores(scores: AttributeScore[]): AttributeAccuracy {
  const objects = scores.reduce((n, s) => n + s.objects, 0);
  const rate = (f: (s: AttributeScore) => boolean | null) => {
    const asked = scores.map(f).filter((v) => v !== null);
    return asked.length ? asked.filter((v) => v).length / asked.length : NaN;
  };
  return {
    images: scores.length,
    shape: scores.reduce((n, s) => n + s.shape, 0) / objects,
    colour: scores.reduce((n, s) => n + s.colour, 0) / objects,
    size: scores.reduce((n, s) => n + s.size, 0) / objects,
    count: rate((s) => s.count),
    relation: rate((s) => s.relation),
    region: rate((s) => s.region),
    texture: rate((s) => s.texture),
    tone: rate((s) => s.tone),
    objectsCorrect: rate((s) => s.objectsCorrect),
    allCorrect: rate((s) => s.allCorrect),
  };
}

export interface LoadedAttributeScorer {
  scorer: AttributeScorer;
  /** The safetensors metadata: config, training, accuracy per attribute on the test and val splits. */
  metadata: Record<string, string>;
}

/** Load the committed scorer (or another file written by the scorer's training). */
export function loadAttributeScorer(file = ATTRIBUTE_SCORER_WEIGHTS): LoadedAttributeScorer {
  if (!fs.existsSync(file)) throw new Error(`${file}: attribute scorer weights not found (train them with: npm run train:scorer)`);
  const { tensors, metadata } = readSafetensors(file);
  if (!metadata.config) throw new Error(`${file}: no 'config' in the safetensors metadata; expected a file written by the attribute scorer's training`);
  const scorer = new AttributeScorer(JSON.parse(metadata.config) as AttributeScorerConfig, new Rng(0));
  scorer.loadStateDict(tensors, { source: file });
  return { scorer, metadata };
}
