import * as fs from "fs";
import * as path from "path";
import * as tf from "@tensorflow/tfjs";
import { fromRoot } from "../core/paths";
import { Rng } from "../core/random";
import { clipNormalize } from "../data/clip_image";
import { ClipTokenizer } from "../data/clip_tokenizer";
import { DataOptions } from "../data/fetch";
import { toFloat16 } from "../io/dtype";
import { readSafetensors, writeSafetensors } from "../io/safetensors";
import { u8ToUnit } from "../data/images";
import { canonicalCaption } from "../data/scene_captions";
import { Split } from "../data/scenes";
import { retrievalRecall } from "../metrics/clip_zero_shot";
import { ClipModel, unitRows } from "../nn/clip/clip_model";
import { CaptionedImages, ClipSchedule, CLIP_TRAIN_DEFAULTS, tinyClipConfig, TinyClipSpec, trainClip, worldClipPair } from "../train/train_clip";
import { byScale, currentScale, Scale } from "./scale";
import { T2iWorld } from "./t2i_world";

// The text-to-image world's two CLIPs (issue #15): "text", whose text tower conditions the world's teacher as
// CLIP ViT-L/14's conditions SD1.5, and "eval", another seed and image tower, held out for CLIP score as the paper
// holds out ViT-g-14. Both learn contrastively from the training scenes' rendered images and their captions (one of
// each scene's phrasings per step); no flips, because captions name left and right. Judged zero-shot on the test
// split, whose attribute combinations never occur in training: in groups of `group` test scenes, which of the
// group's canonical captions each image is closest to (image-to-text top-1; chance 1 / group).

export interface WorldClipsConfig extends ClipSchedule {
  /** steps: this CLIP's own (default: the schedule's). */
  clips: Array<{ name: string; spec: TinyClipSpec; seed: number; steps?: number }>;
  /** Training scenes used: the first this many of the train split (rendered once, held in memory as uint8). */
  trainScenes: number;
  /** Test scenes scored: the first this many of the test split, a multiple of `group`. */
  testScenes: number;
  group: number;
}

const PAIR = worldClipPair(64);
/** Small enough for the smoke scale: 8 x 8 patches of 8 px, two layers 32 wide. */
const MICRO: TinyClipSpec = {
  imageSize: 64, patchSize: 8, visionWidth: 32, visionLayers: 2, visionHeads: 2, visionMlpRatio: 4,
  textWidth: 32, textLayers: 1, textHeads: 2, contextLength: 77, embedDim: 32, act: "quick_gelu",
};

export const WORLD_CLIPS_CONFIGS: Record<Scale, WorldClipsConfig> = {
  smoke: { clips: [{ name: "text", spec: MICRO, seed: 1 }, { name: "eval", spec: { ...MICRO, act: "gelu" }, seed: 2 }], batch: 16, steps: 4, lr: 3e-3, warmup: 2, evalEvery: 4, ckptEvery: 2, trainScenes: 32, testScenes: 16, group: 8 },
  // 0.69 s (text) and 0.90 s (eval) per step of 64 with 77-token captions on two cores (wasm engine, evaluations
  // included): the text CLIP 2,000 steps (23 min), the eval CLIP 600 (9 min; its test retrieval was 97.5% at step
  // 400 of an earlier 2,000-step run, stopped for time)
  cpu: {
    clips: [{ name: "text", spec: PAIR.text, seed: 11 }, { name: "eval", spec: PAIR.eval, seed: 22, steps: 600 }],
    batch: 64, steps: 2000, lr: 1e-3, warmup: 100, evalEvery: 250, ckptEvery: 100, trainScenes: 11_500, testScenes: 2000, group: 10,
  },
  paper: {
    clips: [{ name: "text", spec: PAIR.text, seed: 11 }, { name: "eval", spec: PAIR.eval, seed: 22 }],
    batch: 256, steps: 10_000, lr: 1e-3, warmup: 500, evalEvery: 1000, ckptEvery: 500, trainScenes: 11_500, testScenes: 2000, group: 10,
  },
};

/**
 * Where a world CLIP's weights live: committed under data/weights/ at cpu scale (and paper, whose world is the cpu
 * one), in float16 (7 MB each; the token table of 49,408 x 64 is most of it); under runs/ at smoke scale.
 */
export function worldClipFile(name: string, scale: Scale = currentScale()): string {
  return scale === "smoke" ? fromRoot("runs", "world_clips", "smoke", `${name}.safetensors`) : fromRoot("data", "weights", `world_clip_${name}64.safetensors`);
}

/** Write a trained CLIP as float16 with its spec and results in the metadata. */
export async function saveWorldClip(file: string, model: ClipModel, meta: { spec: TinyClipSpec; result: Omit<WorldClipResult, "history"> }): Promise<void> {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  writeSafetensors(file, toFloat16(await model.stateDict()), { spec: JSON.stringify(meta.spec), result: JSON.stringify(meta.result) });
}

/** A world CLIP from its weights file (worldClipFile); the caller disposes it. */
export function loadWorldClip(name: string, scale: Scale = currentScale()): { model: ClipModel; spec: TinyClipSpec; result: Omit<WorldClipResult, "history"> } {
  const file = worldClipFile(name, scale);
  if (!fs.existsSync(file)) throw new Error(`${file}: world CLIP '${name}' not found; train the world's CLIPs with: D2G_SCALE=${scale} npm run world -- clips`);
  const { tensors, metadata } = readSafetensors(file);
  if (!metadata.spec) throw new Error(`${file}: no 'spec' in the safetensors metadata; expected a file written by the world CLIPs' training`);
  const spec = JSON.parse(metadata.spec) as TinyClipSpec;
  const model = new ClipModel(tinyClipConfig(spec), new Rng(0));
  model.loadStateDict(tensors, { source: file });
  return { model, spec, result: JSON.parse(metadata.result ?? "{}") };
}

/** The world's scenes as CaptionedImages: rendered images and, per step and scene, one of its captions. */
export class WorldCaptions implements CaptionedImages {
  private readonly rows = new Map<string, number[]>();
  private constructor(readonly world: T2iWorld, readonly split: Split, readonly size: number, readonly pixels: Uint8Array, readonly tokenizer: ClipTokenizer, readonly seed: number) {}

  static async load(world: T2iWorld, split: Split, count: number, tokenizer: ClipTokenizer, seed: number): Promise<WorldCaptions> {
    if (count > world.config.counts[split]) throw new Error(`world ${world.config.name}: ${split} has ${world.config.counts[split]} scenes, asked for ${count}`);
    return new WorldCaptions(world, split, count, await world.cache.images(split, 0, count), tokenizer, seed);
  }

  /** The same scenes (pixels rendered once) with another seed for the per-step caption draws. */
  withSeed(seed: number): WorldCaptions {
    return new WorldCaptions(this.world, this.split, this.size, this.pixels, this.tokenizer, seed);
  }

  row(text: string): number[] {
    let r = this.rows.get(text);
    if (!r) {
      r = this.tokenizer.tokenize(text)[0];
      this.rows.set(text, r);
    }
    return r;
  }

  /** Images [n, S, S, 3] in [-1, 1] of the scenes at `indices`. */
  images(indices: ArrayLike<number>): tf.Tensor4D {
    const s = this.world.config.imageSize;
    const px = s * s * 3;
    const out = new Uint8Array(indices.length * px);
    for (let k = 0; k < indices.length; k++) out.set(this.pixels.subarray(indices[k] * px, (indices[k] + 1) * px), k * px);
    return tf.tensor4d(u8ToUnit(out), [indices.length, s, s, 3]);
  }

  batch(indices: Int32Array, step: number): { images: tf.Tensor4D; ids: number[][] } {
    const rng = new Rng((this.seed * 7919 + step) >>> 0);
    const ids = Array.from(indices, (i) => {
      const captions = this.world.captions(this.split, i);
      return this.row(captions[rng.int(captions.length)]);
    });
    return { images: this.images(indices), ids };
  }
}

/** Image-to-text top-1 within consecutive groups of `group` scenes and their canonical captions, averaged. */
export function groupRetrieval(model: ClipModel, data: WorldCaptions, count: number, group: number): number {
  if (count % group !== 0 || count > data.size) throw new Error(`world CLIPs: ${count} test scenes must be a multiple of the group ${group} and at most ${data.size}`);
  let hits = 0;
  for (let start = 0; start < count; start += group) {
    const idx = Array.from({ length: group }, (_, k) => start + k);
    const [image, text] = tf.tidy(() => {
      const pixels = clipNormalize(data.images(idx));
      return [unitRows(model.imageFeatures(pixels)), unitRows(model.textFeatures(idx.map((i) => data.row(canonicalCaption(data.world.scene(data.split, i).spec)))))];
    });
    hits += retrievalRecall(image, text, 1).imageToText * group;
    tf.dispose([image, text]);
  }
  return hits / count;
}

export interface WorldClipResult {
  name: string;
  parameters: number;
  /** Test-split image-to-text top-1 within groups (chance 1 / group). */
  retrieval: number;
  chance: number;
  history: Array<Record<string, number>>;
  secondsPerStep: number;
  /** Wall time of the whole training, resumed parts included, and its steps. */
  seconds: number;
  steps: number;
}

export interface WorldClipsRunOptions extends DataOptions {
  /** Checkpoints go to <ckptRoot>/<clip name>; default runs/world_clips/<scale>; null: not resumable. */
  ckptRoot?: string | null;
  /** Where each trained CLIP's weights go; default worldClipFile(name) at the current scale; null: not written. */
  weightsFile?: ((name: string) => string) | null;
  /** Keep the trained models (the caller disposes them); default: disposed. */
  keep?: (name: string, model: ClipModel) => void;
}

export async function run(cfg: WorldClipsConfig = byScale(WORLD_CLIPS_CONFIGS), world?: T2iWorld, o: WorldClipsRunOptions = {}): Promise<WorldClipResult[]> {
  const w = world ?? (await T2iWorld.forScale());
  const tokenizer = await ClipTokenizer.load(o);
  const root = o.ckptRoot === undefined ? fromRoot("runs", "world_clips", currentScale()) : o.ckptRoot;
  const test = await WorldCaptions.load(w, "test", cfg.testScenes, tokenizer, 0);
  // rendered once for every CLIP: 20,000 scenes at cpu scale
  const scenes = await WorldCaptions.load(w, "train", cfg.trainScenes, tokenizer, 0);
  const out: WorldClipResult[] = [];
  for (const c of cfg.clips) {
    if (c.spec.imageSize !== w.config.imageSize) throw new Error(`world CLIP ${c.name}: image size ${c.spec.imageSize}, the world's is ${w.config.imageSize}`);
    const train = scenes.withSeed(c.seed);
    const { model, result } = await trainClip(
      { ...CLIP_TRAIN_DEFAULTS, model: tinyClipConfig(c.spec), batch: cfg.batch, steps: c.steps ?? cfg.steps, lr: cfg.lr, warmup: cfg.warmup, seed: c.seed, ckptEvery: cfg.ckptEvery, evalEvery: cfg.evalEvery },
      train,
      {
        label: `world CLIP ${c.name}`,
        ckptDir: root === null ? undefined : `${root}/${c.name}`,
        evaluate: async (m) => ({ retrieval: groupRetrieval(m, test, cfg.testScenes, cfg.group) }),
      },
    );
    const r: WorldClipResult = { name: c.name, parameters: model.numParameters(), retrieval: groupRetrieval(model, test, cfg.testScenes, cfg.group), chance: 1 / cfg.group, history: result.history, secondsPerStep: result.secondsPerStep, seconds: result.seconds, steps: c.steps ?? cfg.steps };
    out.push(r);
    if (o.weightsFile !== null) {
      const { history: _, ...summary } = r;
      await saveWorldClip(o.weightsFile?.(c.name) ?? worldClipFile(c.name), model, { spec: c.spec, result: summary });
    }
    if (o.keep) o.keep(c.name, model);
    else model.dispose();
  }
  return out;
}
