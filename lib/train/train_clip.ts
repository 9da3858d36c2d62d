import * as tf from "@tensorflow/tfjs";
import { Rng } from "../core/random";
import { clipNormalize } from "../data/clip_image";
import { ClipActivation } from "../nn/clip/encoder";
import { clipContrastiveLoss, ClipConfig, ClipModel, MAX_LOGIT_SCALE } from "../nn/clip/clip_model";
import { Adam, lossAndGrads } from "./adam";
import { batchIndices } from "./data_order";
import { runTraining, TrainResult } from "./loop";
import { warmupCosine } from "./schedule";

// Training a CLIP from scratch as Radford et al. (2021) and open_clip do: each batch of (image, caption) pairs
// gives an N x N similarity matrix whose diagonal holds the true pairs; the loss is its symmetric cross-entropy
// (clipContrastiveLoss). AdamW with decay on tensors of rank >= 2 only (open_clip v2.20's rule exempts rank < 2,
// "ln", "bias" and logit_scale: gains, biases, the class token, the temperature), linear warm-up then cosine
// learning rate, the temperature logit_scale learned and clamped to [0, ln 100] after every step. Seeded;
// resumable through runTraining; the data order is a pure function of (seed, step).

/** What the trainer needs from a captioned image set (CIFAR-10 with class captions here; the scene world later). */
export interface CaptionedImages {
  size: number;
  /**
   * The pairs at `indices`: images NHWC in [-1, 1] at the model's image size, and one caption token row each
   * (all rows one length, at most the text tower's max_position_embeddings). `step` seeds per-step choices
   * (which caption of several, augmentation) so that a resumed run sees the same batches.
   */
  batch(indices: Int32Array, step: number): { images: tf.Tensor4D; ids: number[][] };
}

export interface ClipTrainConfig {
  model: ClipConfig;
  batch: number;
  steps: number;
  /** Peak AdamW learning rate, reached after `warmup` steps, then cosine to 0. */
  lr: number;
  warmup: number;
  weightDecay: number;
  beta1: number;
  beta2: number;
  eps: number;
  /** Seeds the weights (and, through seed + 1, the data order). */
  seed: number;
  ckptEvery: number;
  evalEvery: number;
}

/** The schedule part of a CLIP training config, which experiments set per scale. */
export type ClipSchedule = Pick<ClipTrainConfig, "batch" | "steps" | "lr" | "warmup" | "evalEvery" | "ckptEvery">;

/** CLIP's optimiser settings for ViTs (Radford et al. 2021; open_clip's get_default_params and --wd): AdamW betas 0.9 / 0.98, eps 1e-6, decay 0.2. */
export const CLIP_TRAIN_DEFAULTS = { beta1: 0.9, beta2: 0.98, eps: 1e-6, weightDecay: 0.2 } as const;

/** A small CLIP, described by the numbers that differ between the two the text-to-image world needs. */
export interface TinyClipSpec {
  imageSize: number;
  patchSize: number;
  visionWidth: number;
  visionLayers: number;
  visionHeads: number;
  /** MLP width over the tower width (CLIP 4; ViT-g-14 4.3637); the MLP is int(width * ratio) wide, as open_clip. */
  visionMlpRatio: number;
  textWidth: number;
  textLayers: number;
  textHeads: number;
  /** Positions of the text tower (the caption rows' length). */
  contextLength: number;
  embedDim: number;
  act: ClipActivation;
}

/** transformers' CLIPConfig of a tiny CLIP on the real CLIP vocabulary (49,408 tokens, <|endoftext|> 49407). */
export function tinyClipConfig(s: TinyClipSpec): ClipConfig {
  const common = { hiddenAct: s.act, layerNormEps: 1e-5, projectionDim: s.embedDim, withProjection: true };
  return {
    text: {
      ...common,
      hiddenSize: s.textWidth,
      intermediateSize: 4 * s.textWidth,
      numHiddenLayers: s.textLayers,
      numAttentionHeads: s.textHeads,
      vocabSize: 49408,
      maxPositionEmbeddings: s.contextLength,
      eosTokenId: 49407,
      bosTokenId: 49406,
      padTokenId: 49407,
    },
    vision: {
      ...common,
      hiddenSize: s.visionWidth,
      intermediateSize: Math.trunc(s.visionWidth * s.visionMlpRatio),
      numHiddenLayers: s.visionLayers,
      numAttentionHeads: s.visionHeads,
      imageSize: s.imageSize,
      patchSize: s.patchSize,
      numChannels: 3,
    },
    projectionDim: s.embedDim,
    logitScaleInit: Math.log(1 / 0.07),
  };
}

/**
 * The two tiny CLIPs the text-to-image world needs, after the paper's pair (the teacher's text encoder comes from
 * OpenAI's ViT-L/14; CLIP score uses OpenCLIP's ViT-g/14, trained apart on other data):
 *  - "text": its text tower conditions the teacher, as SD1.5's does; QuickGELU like OpenAI's. Only its text tower
 *    is used afterwards, so its image tower is the cheap one: a coarse 4 x 4 patch grid (17 tokens).
 *  - "eval": held out for CLIP score and the world's image features; GELU, heads 32 wide and a fractional MLP ratio
 *    (ViT-g-14 has 4.3637), an 8 x 8 patch grid (65 tokens) that can see where objects are, another seed.
 * The image towers differ in patch size, head width, MLP and activation, so the judge does not share the text
 * CLIP's tokenisation or its blind spots; both stay ViTs built by the same code, so the official loaders, the
 * preprocessing and every test cover both. One step at 64 px, batch 64, 77-token captions takes 0.69 s (text) and
 * 0.90 s (eval) on two cores (wasm engine).
 */
export function worldClipPair(imageSize: number, contextLength = 77): { text: TinyClipSpec; eval: TinyClipSpec } {
  if (imageSize % 8 !== 0) throw new Error(`worldClipPair: image size ${imageSize} is not a multiple of 8`);
  return {
    text: {
      imageSize, patchSize: imageSize / 4, visionWidth: 64, visionLayers: 4, visionHeads: 4, visionMlpRatio: 4,
      textWidth: 64, textLayers: 4, textHeads: 4, contextLength, embedDim: 64, act: "quick_gelu",
    },
    eval: {
      imageSize, patchSize: imageSize / 8, visionWidth: 64, visionLayers: 4, visionHeads: 2, visionMlpRatio: 4.3637,
      textWidth: 64, textLayers: 4, textHeads: 2, contextLength, embedDim: 64, act: "gelu",
    },
  };
}

export interface ClipTrainOutput {
  model: ClipModel;
  result: TrainResult;
}

export interface ClipTrainOptions {
  label?: string;
  ckptDir?: string;
  /** Metrics of the model every evalEvery steps and at the end (e.g. zero-shot accuracy). */
  evaluate?: (model: ClipModel, step: number) => Promise<Record<string, number>>;
}

export async function trainClip(cfg: ClipTrainConfig, data: CaptionedImages, o: ClipTrainOptions = {}): Promise<ClipTrainOutput> {
  const model = new ClipModel(cfg.model, new Rng(cfg.seed));
  const named = model.namedVariables();
  const params = model.parameters();
  // decay weight matrices and embeddings only (rank >= 2), as open_clip
  const adam = new Adam(params, { lr: cfg.lr, beta1: cfg.beta1, beta2: cfg.beta2, eps: cfg.eps, weightDecay: cfg.weightDecay }, params.map((p) => p.rank >= 2));
  // every variable is trainable, so named[i] is params[i]
  const vars: Record<string, tf.Variable> = {};
  named.forEach(([n, v], i) => {
    vars[`model.${n}`] = v;
    vars[`adam.m.${n}`] = adam.m[i];
    vars[`adam.v.${n}`] = adam.v[i];
  });
  const order = new Map<number, Int32Array>();
  const dataSeed = cfg.seed + 1;
  const result = await runTraining({
    label: o.label ?? "CLIP",
    totalSteps: cfg.steps,
    ckptDir: o.ckptDir,
    ckptEvery: cfg.ckptEvery,
    vars,
    rngs: {},
    extraState: adam.checkpointState,
    step(i) {
      const { images, ids } = data.batch(batchIndices(dataSeed, data.size, cfg.batch, i, order), i);
      const { loss, grads } = lossAndGrads(() => tf.tidy(() => clipContrastiveLoss(model.logits(model.embed(clipNormalize(images), ids)))), params);
      const lr = warmupCosine(cfg, i);
      adam.apply(grads, lr);
      // logit_scale in [0, ln 100]: the logits' scale exp(logit_scale) stays within [1, 100]
      const scale = tf.tidy(() => {
        model.logit_scale.assign(tf.clipByValue(model.logit_scale, 0, MAX_LOGIT_SCALE));
        return Math.exp(model.logit_scale.dataSync()[0]);
      });
      tf.dispose([images, ...grads]);
      return { loss, lr, logitScale: scale };
    },
    evalEvery: o.evaluate ? cfg.evalEvery : undefined,
    evaluate: o.evaluate ? (step) => o.evaluate!(model, step) : undefined,
  });
  adam.dispose();
  return { model, result };
}
