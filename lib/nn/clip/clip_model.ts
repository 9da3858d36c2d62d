import * as tf from "@tensorflow/tfjs";
import { Rng } from "../../core/random";
import { Progress } from "../../core/progress";
import { TensorSource } from "../../io/tensor_source";
import { WeightOptions } from "../../io/weight_map";
import { Module, param } from "../module";
import { withoutPositionIds } from "./encoder";
import { ClipTextConfig, ClipTextModel, parseClipTextConfig } from "./text_encoder";
import { ClipVisionConfig, ClipVisionModel, parseClipVisionConfig } from "./vision_encoder";

// transformers' CLIPModel: the text and image towers with their projections into one embedding space, and the
// learned temperature logit_scale (logits = exp(logit_scale) * cos(image, text)). The parameter tree is
// transformers' (`text_model.*`, `vision_model.*`, `text_projection.weight`, `visual_projection.weight`,
// `logit_scale`), so a CLIPModel checkpoint loads as it is; the towers are the ClipTextModel and ClipVisionModel
// classes, whose fields are spliced into this one's.

export interface ClipConfig {
  /** With its projection (withProjection true, projectionDim the model's). */
  text: ClipTextConfig;
  /** With its projection (withProjection true, projectionDim the model's). */
  vision: ClipVisionConfig;
  projectionDim: number;
  /** Initial logit_scale: ln(1 / 0.07) = 2.6592, CLIP's initial temperature 0.07. */
  logitScaleInit: number;
}

/** ln(100): CLIP training clamps logit_scale here, so the logits' scale never exceeds 100. */
export const MAX_LOGIT_SCALE = Math.log(100);

/** A whole transformers CLIPConfig (config.json with model_type "clip"); missing keys take transformers' defaults. */
export function parseClipConfig(json: Record<string, unknown>, source = "CLIP config"): ClipConfig {
  if (json.model_type !== "clip") throw new Error(`${source}: model_type ${JSON.stringify(json.model_type)} is not "clip" (a CLIPModel config.json)`);
  const text = parseClipTextConfig(json, source, { withProjection: true });
  const vision = parseClipVisionConfig(json, source, { withProjection: true });
  const init = json.logit_scale_init_value ?? 2.6592;
  if (typeof init !== "number" || !Number.isFinite(init)) throw new Error(`${source}: logit_scale_init_value must be a number, got ${JSON.stringify(init)}`);
  return { text, vision, projectionDim: text.projectionDim, logitScaleInit: init };
}

export interface ClipEmbeddings {
  /** [N, projection_dim], unit length. */
  image: tf.Tensor2D;
  /** [M, projection_dim], unit length. */
  text: tf.Tensor2D;
}

export class ClipModel extends Module {
  readonly text: ClipTextModel;
  readonly vision: ClipVisionModel;
  logit_scale: tf.Variable;
  constructor(readonly config: ClipConfig, rng: Rng) {
    super();
    const p = config.projectionDim;
    if (config.text.projectionDim !== p || config.vision.projectionDim !== p || !config.text.withProjection || !config.vision.withProjection) {
      throw new Error(`CLIPModel: both towers need a projection to ${p} (text ${config.text.projectionDim}, vision ${config.vision.projectionDim})`);
    }
    this.text = new ClipTextModel(config.text, rng);
    this.vision = new ClipVisionModel(config.vision, rng);
    this.logit_scale = param(tf.scalar(config.logitScaleInit));
  }

  /** The towers' parameters under transformers' CLIPModel names (no `text.` / `vision.` prefix). */
  override children(): Array<[string, Module | tf.Variable]> {
    return [...this.text.children(), ...this.vision.children(), ["logit_scale", this.logit_scale]];
  }

  override loadWeights(src: TensorSource, opts: WeightOptions & { progress?: Progress } = {}): void {
    super.loadWeights(src, withoutPositionIds(opts));
  }

  /** get_image_features: the projected pooled class token, [N, projection_dim] (not normalised). */
  imageFeatures(pixels: tf.Tensor4D): tf.Tensor2D {
    return tf.tidy(() => {
      const o = this.vision.forward(pixels);
      return o.imageEmbeds!;
    });
  }

  /** get_text_features: the projected pooled end-of-text state, [M, projection_dim] (not normalised). */
  textFeatures(ids: number[][]): tf.Tensor2D {
    return tf.tidy(() => {
      const o = this.text.forward(ids);
      return o.textEmbeds!;
    });
  }

  /** Both embeddings, normalised to unit length (what the logits and CLIP score compare). */
  embed(pixels: tf.Tensor4D, ids: number[][]): ClipEmbeddings {
    return tf.tidy(() => ({ image: unitRows(this.imageFeatures(pixels)), text: unitRows(this.textFeatures(ids)) })) as ClipEmbeddings;
  }

  /** logits_per_image [N, M] = exp(logit_scale) * image . text^T of unit embeddings (logits_per_text is its transpose). */
  logits(e: ClipEmbeddings): tf.Tensor2D {
    return tf.tidy(() => tf.mul(tf.exp(this.logit_scale), tf.matMul(e.image, e.text, false, true)) as tf.Tensor2D);
  }
}

/** x / ||x|| per row. */
export function unitRows(x: tf.Tensor2D): tf.Tensor2D {
  return tf.tidy(() => tf.div(x, tf.norm(x, "euclidean", 1, true)) as tf.Tensor2D);
}

/**
 * CLIP's symmetric contrastive (InfoNCE) loss on a square logits matrix whose diagonal holds the matching pairs:
 * the mean of the cross-entropy over each row (image -> its text) and over each column (text -> its image),
 * as transformers' clip_loss and open_clip's ClipLoss compute it.
 */
export function clipContrastiveLoss(logitsPerImage: tf.Tensor2D): tf.Scalar {
  const [n, m] = logitsPerImage.shape;
  if (n !== m) throw new Error(`clipContrastiveLoss: logits are [${n}, ${m}]; the matching pairs must make a square`);
  return tf.tidy(() => {
    const labels = tf.oneHot(tf.range(0, n, 1, "int32"), n);
    // (CE(logits, i) + CE(logits^T, i)) / 2
    const perImage = tf.losses.softmaxCrossEntropy(labels, logitsPerImage);
    const perText = tf.losses.softmaxCrossEntropy(labels, tf.transpose(logitsPerImage));
    return tf.div(tf.add(perImage, perText), 2) as tf.Scalar;
  });
}

/**
 * Every parameter's name and shape as a checkpoint stores it (torch layout: Linear [out, in], Conv2d OIHW), for a
 * config, without building the model: the official models' sizes, and a check of a file before gigabytes are
 * allocated. Equals ClipModel.expectedWeights() in torch layout (checked on tiny configs).
 */
export function clipParameterShapes(c: ClipConfig): Array<[string, number[]]> {
  const out: Array<[string, number[]]> = [];
  const ln = (name: string, d: number) => out.push([`${name}.weight`, [d]], [`${name}.bias`, [d]]);
  const linear = (name: string, i: number, o: number) => out.push([`${name}.weight`, [o, i]], [`${name}.bias`, [o]]);
  const encoder = (prefix: string, e: ClipConfig["text"] | ClipConfig["vision"]) => {
    const d = e.hiddenSize;
    for (let l = 0; l < e.numHiddenLayers; l++) {
      const p = `${prefix}.encoder.layers.${l}`;
      for (const q of ["k_proj", "v_proj", "q_proj", "out_proj"]) linear(`${p}.self_attn.${q}`, d, d);
      ln(`${p}.layer_norm1`, d);
      linear(`${p}.mlp.fc1`, d, e.intermediateSize);
      linear(`${p}.mlp.fc2`, e.intermediateSize, d);
      ln(`${p}.layer_norm2`, d);
    }
  };
  const t = c.text;
  out.push(["text_model.embeddings.token_embedding.weight", [t.vocabSize, t.hiddenSize]], ["text_model.embeddings.position_embedding.weight", [t.maxPositionEmbeddings, t.hiddenSize]]);
  encoder("text_model", t);
  ln("text_model.final_layer_norm", t.hiddenSize);
  out.push(["text_projection.weight", [c.projectionDim, t.hiddenSize]]);
  const v = c.vision;
  const tokens = (v.imageSize / v.patchSize) ** 2 + 1;
  out.push(
    ["vision_model.embeddings.class_embedding", [v.hiddenSize]],
    ["vision_model.embeddings.patch_embedding.weight", [v.hiddenSize, v.numChannels, v.patchSize, v.patchSize]],
    ["vision_model.embeddings.position_embedding.weight", [tokens, v.hiddenSize]],
  );
  ln("vision_model.pre_layrnorm", v.hiddenSize);
  encoder("vision_model", v);
  ln("vision_model.post_layernorm", v.hiddenSize);
  out.push(["visual_projection.weight", [c.projectionDim, v.hiddenSize]], ["logit_scale", []]);
  return out;
}

/** Build from a transformers CLIPConfig object (see parseClipConfig); weights are the reference's random init. */
export function clipModelFromConfig(json: Record<string, unknown>, rng: Rng, source?: string): ClipModel {
  return new ClipModel(parseClipConfig(json, source), rng);
}
