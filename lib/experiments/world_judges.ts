import * as tf from "@tensorflow/tfjs";
import { yieldIfDue } from "../core/interrupt";
import { Progress } from "../core/progress";
import { clipPreprocess } from "../data/clip_image";
import { ClipTokenizer } from "../data/clip_tokenizer";
import { u8ToUnit, unitToU8 } from "../data/images";
import { SceneSpec } from "../data/scenes";
import { AttributeAccuracy, AttributeScore, AttributeScorer, loadAttributeScorer, scoreReading, summariseScores } from "../metrics/attribute_scorer";
import { clipCosines, photoDepictsRows, summariseClipScores } from "../metrics/clip_score";
import { FeatureNet } from "../metrics/feature_net";
import { frechetDistance } from "../metrics/fid";
import { GaussianStats, RunningStats } from "../metrics/stats";
import { ClipModel } from "../nn/clip/clip_model";
import { Row } from "../viz/table";
import { Scale } from "./scale";
import { T2iWorld } from "./t2i_world";
import { loadWorldClip } from "./world_clips";

// The text-to-image world's judges: how any generator of the world (the teacher at a guidance scale, a distilled
// student, the real scenes after a TAEF2 round trip) is scored on the test split's captions, whose attribute
// combinations training never saw. Three numbers per generator: attribute accuracy (the attribute scorer reads
// every object back and compares it with the scene's ground truth), the authors' CLIP score with the held-out
// "eval" CLIP, and FID-wCLIP (the Frechet distance of the eval CLIP's image embeddings to the rendered test
// scenes': never to be read as Inception FID). Prompt i is always the first caption of test scene i.

export interface JudgesConfig {
  /** Test scenes whose captions prompt the generator (one image each). */
  prompts: number;
  /** Rendered test scenes behind the FID-wCLIP reference statistics. */
  reference: number;
}

/** A generator's scores on the prompts. */
export interface Judgement {
  samples: number;
  attributes: AttributeAccuracy;
  /** The authors' CLIP score (mean cosine) with the eval CLIP. */
  clipScore: number;
  /** Frechet distance of the eval CLIP's image embeddings to the real test scenes': FID-wCLIP, not Inception FID. */
  fidWClip: number;
}

export interface JudgedRun extends Judgement {
  /** UNet evaluations per image, as the maker reported them. */
  nfe: number;
  seconds: number;
  /** The first `figure` images as uint8 NHWC, for figures. */
  figure: number[];
}

/** Images in [-1, 1] [m, S, S, 3] for prompts [b, b + m), and what each cost. */
export type ImageMaker = (b: number, m: number) => Promise<{ images: tf.Tensor4D; nfe: number }>;

/** The eval CLIP's image embeddings (not normalised) of images in [-1, 1]. */
function wClipFeatures(clip: ClipModel, images: tf.Tensor4D): tf.Tensor2D {
  return tf.tidy(() => clip.imageFeatures(clipPreprocess(images, clip.config.vision.imageSize)));
}

/** The eval CLIP's image embeddings as FID's feature extractor: its metric prints as FID-wCLIP, never as FID. */
export function wClipFeatureNet(clip: ClipModel, weightsTag: string): FeatureNet {
  return { name: `world-eval-clip-${weightsTag}`, label: "wCLIP", dim: clip.config.projectionDim, features: async (images) => wClipFeatures(clip, images) };
}

export class WorldJudges {
  /** Prompt i: the first caption of test scene i. */
  readonly prompts: string[];
  private constructor(
    readonly world: T2iWorld,
    readonly config: JudgesConfig,
    private readonly specs: SceneSpec[],
    readonly tokenizer: ClipTokenizer,
    readonly evalClip: ClipModel,
    private readonly scorer: AttributeScorer,
    /** FID-wCLIP's reference: the eval CLIP's image embeddings of the first `config.reference` rendered test scenes. */
    readonly reference: GaussianStats,
  ) {
    this.prompts = specs.map((_, i) => world.captions("test", i)[0]);
  }

  /** The judges of a scale's world: the eval CLIP, the attribute scorer, and the reference statistics of the test scenes. */
  static async load(scale: Scale, config: JudgesConfig, world?: T2iWorld): Promise<WorldJudges> {
    const w = world ?? (await T2iWorld.forScale(scale));
    for (const [what, n] of [["prompts", config.prompts], ["reference", config.reference]] as const) {
      if (!(Number.isInteger(n) && n >= 1 && n <= w.config.counts.test)) throw new Error(`world judges: ${what} ${n} is not 1..${w.config.counts.test} (the test split of world '${w.config.name}')`);
    }
    const specs = Array.from({ length: config.prompts }, (_, i) => w.scene("test", i).spec);
    const evalClip = loadWorldClip("eval", scale).model;
    const { scorer } = loadAttributeScorer();
    try {
      const ref = new RunningStats(evalClip.config.projectionDim);
      for (let b = 0; b < config.reference; b += 100) {
        const m = Math.min(100, config.reference - b);
        const real = await renderedTest(w, b, m);
        const f = wClipFeatures(evalClip, real);
        ref.add((await f.data()) as Float32Array, m);
        tf.dispose([real, f]);
        await yieldIfDue();
      }
      return new WorldJudges(w, config, specs, await ClipTokenizer.load(), evalClip, scorer, ref.stats());
    } catch (e) {
      evalClip.dispose();
      scorer.dispose();
      throw e;
    }
  }

  /** The rendered test scenes [b, b + m) in [-1, 1]. */
  rendered(b: number, m: number): Promise<tf.Tensor4D> {
    return renderedTest(this.world, b, m);
  }

  /**
   * Judge the images `make` draws for every prompt, `batch` prompts at a time; the maker's images are disposed
   * here. The first `figure` images come back as uint8 for figures.
   */
  async judge(label: string, make: ImageMaker, o: { batch: number; figure?: number }): Promise<JudgedRun> {
    const t0 = Date.now();
    const n = this.config.prompts;
    const s = this.world.config.imageSize;
    const figN = Math.min(o.figure ?? 0, n);
    const scores: AttributeScore[] = [];
    const cos: number[] = [];
    const feats = new RunningStats(this.evalClip.config.projectionDim);
    const progress = new Progress(label, n);
    let nfe = 0;
    let figure: number[] = [];
    for (let b = 0; b < n; b += o.batch) {
      const m = Math.min(o.batch, n - b);
      const out = await make(b, m);
      nfe = out.nfe;
      if (out.images.shape[0] !== m || out.images.shape[1] !== s || out.images.shape[2] !== s || out.images.shape[3] !== 3) {
        out.images.dispose();
        throw new Error(`${label}: the generator gave images [${out.images.shape}] for ${m} prompts, expected [${m}, ${s}, ${s}, 3]`);
      }
      const images = tf.tidy(() => tf.clipByValue(out.images, -1, 1) as tf.Tensor4D);
      out.images.dispose();
      (await this.scorer.read(images)).forEach((rd, k) => scores.push(scoreReading(rd, this.specs[b + k])));
      cos.push(...clipCosines(this.evalClip, images, photoDepictsRows(this.tokenizer, this.prompts.slice(b, b + m), "none")));
      const f = wClipFeatures(this.evalClip, images);
      feats.add((await f.data()) as Float32Array, m);
      if (b < figN) figure = figure.concat(Array.from(unitToU8((await images.data()).subarray(0, Math.min(m, figN - b) * s * s * 3))));
      tf.dispose([images, f]);
      progress.tick(m);
      await yieldIfDue();
    }
    progress.finish();
    return {
      samples: scores.length, nfe, attributes: summariseScores(scores), clipScore: summariseClipScores(Float32Array.from(cos)).meanCosine,
      fidWClip: frechetDistance(feats.stats(), this.reference).fid, seconds: (Date.now() - t0) / 1000, figure,
    };
  }

  dispose(): void {
    this.evalClip.dispose();
    this.scorer.dispose();
  }
}

async function renderedTest(world: T2iWorld, b: number, m: number): Promise<tf.Tensor4D> {
  const s = world.config.imageSize;
  return tf.tensor4d(u8ToUnit(await world.cache.images("test", b, m)), [m, s, s, 3]);
}

/** A rate as a percentage with one decimal; NaN where there is none. */
export const pct = (v: number | null) => (v === null || !Number.isFinite(v) ? NaN : Math.round(1000 * v) / 10);

/** A judgement as table columns: accuracies in %, CLIP score and FID-wCLIP rounded. */
export function judgementColumns(j: Judgement): Row {
  const a = j.attributes;
  return {
    "shape %": pct(a.shape),
    "colour %": pct(a.colour),
    "size %": pct(a.size),
    "count %": pct(a.count),
    "relation %": pct(a.relation),
    "region %": pct(a.region),
    "background %": pct((a.texture + a.tone) / 2),
    "all objects right %": pct(a.objectsCorrect),
    "all right %": pct(a.allCorrect),
    "CLIP score (eval CLIP)": Math.round(1000 * j.clipScore) / 1000,
    "FID-wCLIP": Math.round(100 * j.fidWClip) / 100,
  };
}
