import * as tf from "@tensorflow/tfjs";
import { Rng } from "../../core/random";
import { Progress } from "../../core/progress";
import { TensorSource } from "../../io/tensor_source";
import { WeightOptions } from "../../io/weight_map";
import { Conv2d, Embedding, LayerNorm, Linear } from "../layers";
import { Module, param } from "../module";
import { ClipEncoder, ClipEncoderConfig, ConfigReader, normal, towerConfigJson, withoutPositionIds } from "./encoder";

// CLIP's image tower as transformers' CLIPVisionModel / CLIPVisionModelWithProjection define it (a ViT): a
// bias-free patch-embedding conv (kernel = stride = patch size), a learned class token prepended to the patch
// tokens, learned position embeddings, pre_layrnorm (transformers' spelling, kept because it is the checkpoint
// key), the encoder both towers share (encoder.ts, no mask), post_layernorm on the class token as the pooled
// output, and optionally the bias-free visual_projection. Field names are the state-dict keys
// (`vision_model.embeddings.patch_embedding.weight`, `visual_projection.weight`). Input: pixels already through
// CLIP's preprocessing (lib/data/clip_image.ts), NHWC.

export interface ClipVisionConfig extends ClipEncoderConfig {
  imageSize: number;
  patchSize: number;
  numChannels: number;
  /** Width of visual_projection; only built when withProjection. */
  projectionDim: number;
  /** CLIPVisionModelWithProjection (true) or CLIPVisionModel (false). */
  withProjection: boolean;
}

/**
 * Read a transformers config.json object: a CLIPVisionConfig (model_type "clip_vision_model") or a whole
 * CLIPConfig (model_type "clip": its vision_config, sized by its projection_dim, with the projection). Missing keys
 * take CLIPVisionConfig's defaults (openai/clip-vit-base-patch32's tower). Keys that do not shape the forward pass
 * (dropout, init ranges, generic PretrainedConfig fields) are ignored, as CLIPVisionModel ignores them.
 */
export function parseClipVisionConfig(json: Record<string, unknown>, source = "CLIP vision config", o: { withProjection?: boolean } = {}): ClipVisionConfig {
  const { raw, projectionDim, isClip } = towerConfigJson(json, "vision", source);
  const r = new ConfigReader(raw, source);
  const archs = Array.isArray(json.architectures) ? (json.architectures as unknown[]) : [];
  const cfg: ClipVisionConfig = {
    ...r.encoder({ hiddenSize: 768, intermediateSize: 3072, numHiddenLayers: 12, numAttentionHeads: 12 }),
    imageSize: r.int("image_size", 224, 1),
    patchSize: r.int("patch_size", 32, 1),
    numChannels: r.int("num_channels", 3, 1),
    projectionDim: r.projectionDim(projectionDim),
    withProjection: o.withProjection ?? (archs.includes("CLIPVisionModelWithProjection") || isClip),
  };
  if (cfg.imageSize % cfg.patchSize !== 0) throw new Error(`${source}: image_size ${cfg.imageSize} is not a multiple of patch_size ${cfg.patchSize}`);
  return cfg;
}

/** Tokens the tower sees: one per patch plus the class token. */
export function visionTokens(c: Pick<ClipVisionConfig, "imageSize" | "patchSize">): number {
  return (c.imageSize / c.patchSize) ** 2 + 1;
}

class ClipVisionEmbeddings extends Module {
  class_embedding: tf.Variable;
  patch_embedding: Conv2d;
  position_embedding: Embedding;
  constructor(c: ClipVisionConfig, rng: Rng) {
    super();
    const d = c.hiddenSize;
    this.class_embedding = param(normal([d], d ** -0.5, rng));
    this.patch_embedding = new Conv2d(c.numChannels, d, c.patchSize, rng, { stride: c.patchSize, padding: 0, bias: false });
    tf.tidy(() => this.patch_embedding.weight.assign(normal(this.patch_embedding.weight.shape, 0.02, rng)));
    this.position_embedding = new Embedding(visionTokens(c), d, normal([visionTokens(c), d], 0.02, rng));
  }
}

class ClipVisionTransformer extends Module {
  embeddings: ClipVisionEmbeddings;
  pre_layrnorm: LayerNorm;
  encoder: ClipEncoder;
  post_layernorm: LayerNorm;
  constructor(c: ClipVisionConfig, rng: Rng) {
    super();
    this.embeddings = new ClipVisionEmbeddings(c, rng);
    this.pre_layrnorm = new LayerNorm(c.hiddenSize, c.layerNormEps);
    this.encoder = new ClipEncoder(c, rng);
    this.post_layernorm = new LayerNorm(c.hiddenSize, c.layerNormEps);
  }
}

export interface ClipVisionOutput {
  /** [N, tokens, hidden]: class token first, then the patches row by row. */
  lastHiddenState: tf.Tensor3D;
  /** [N, hidden]: post_layernorm of the class token. */
  pooled: tf.Tensor2D;
  /** [N, projection_dim]: visual_projection(pooled), when the model has the projection. */
  imageEmbeds?: tf.Tensor2D;
}

/** transformers' CLIPVisionModel, or CLIPVisionModelWithProjection when config.withProjection. */
export class ClipVisionModel extends Module {
  vision_model: ClipVisionTransformer;
  visual_projection?: Linear;
  constructor(readonly config: ClipVisionConfig, rng: Rng) {
    super();
    this.vision_model = new ClipVisionTransformer(config, rng);
    if (config.withProjection) this.visual_projection = new Linear(config.hiddenSize, config.projectionDim, rng, false, config.hiddenSize ** -0.5);
  }

  override loadWeights(src: TensorSource, opts: WeightOptions & { progress?: Progress } = {}): void {
    super.loadWeights(src, withoutPositionIds(opts));
  }

  /** pixels: [N, image_size, image_size, channels], CLIP-normalised (clipPreprocess). */
  forward(pixels: tf.Tensor4D): ClipVisionOutput {
    const c = this.config;
    const [n, h, w, ch] = pixels.shape;
    if (h !== c.imageSize || w !== c.imageSize || ch !== c.numChannels) {
      throw new Error(`CLIP vision encoder: input [${pixels.shape}] is not [N, ${c.imageSize}, ${c.imageSize}, ${c.numChannels}] (run the images through clipPreprocess)`);
    }
    const m = this.vision_model;
    const d = c.hiddenSize;
    return tf.tidy(() => {
      // patches: conv with kernel = stride = patch, then the grid row by row as tokens
      const patches = tf.reshape(m.embeddings.patch_embedding.forward(pixels), [n, -1, d]);
      const cls = tf.tile(tf.reshape(m.embeddings.class_embedding, [1, 1, d]), [n, 1, 1]);
      // [class; patches] + position embeddings
      const x = tf.add(tf.concat([cls, patches], 1), m.embeddings.position_embedding.weight) as tf.Tensor3D;
      const last = m.encoder.forward(m.pre_layrnorm.forward(x));
      const pooled = m.post_layernorm.forward(tf.reshape(tf.slice(last, [0, 0, 0], [n, 1, d]), [n, d])) as tf.Tensor2D;
      const out: ClipVisionOutput = { lastHiddenState: last, pooled };
      if (this.visual_projection) out.imageEmbeds = this.visual_projection.forward(pooled);
      return out as unknown as tf.TensorContainer;
    }) as unknown as ClipVisionOutput;
  }
}

/** Build from a transformers config.json object (see parseClipVisionConfig); weights are the reference's random init. */
export function clipVisionModelFromConfig(json: Record<string, unknown>, rng: Rng, source?: string, o?: { withProjection?: boolean }): ClipVisionModel {
  return new ClipVisionModel(parseClipVisionConfig(json, source, o), rng);
}
