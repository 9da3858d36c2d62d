import * as tf from "@tensorflow/tfjs";
import { Rng } from "../../core/random";
import { Progress } from "../../core/progress";
import { TensorSource } from "../../io/tensor_source";
import { WeightOptions } from "../../io/weight_map";
import { Embedding, LayerNorm, Linear } from "../layers";
import { Module } from "../module";
import { ClipEncoder, ClipEncoderConfig, ConfigReader, normal, towerConfigJson, withoutPositionIds } from "./encoder";

// CLIP's text transformer as transformers' CLIPTextModel / CLIPTextModelWithProjection define it: token and
// position embeddings, the shared pre-LayerNorm encoder (encoder.ts) with a causal mask, a final LayerNorm, the
// hidden state at the end-of-text token as the pooled output, and optionally a bias-free projection. Field names
// are the state-dict keys (`text_model.encoder.layers.0.self_attn.q_proj.weight`, `text_projection.weight`).
// Stable Diffusion 1.x conditions its UNet on last_hidden_state; CLIP score uses the projected pooled output.

export interface ClipTextConfig extends ClipEncoderConfig {
  vocabSize: number;
  maxPositionEmbeddings: number;
  /** Width of text_projection; only built when withProjection. */
  projectionDim: number;
  /** CLIPTextModelWithProjection (true) or CLIPTextModel (false). */
  withProjection: boolean;
  eosTokenId: number;
  bosTokenId: number;
  padTokenId: number;
}

/** SD1.5's text_encoder/config.json (the text tower of openai/clip-vit-large-patch14), as published in
 * runwayml/stable-diffusion-v1-5 (quoted in huggingface/diffusers issue #10754). */
export const SD15_TEXT_ENCODER_CONFIG_JSON = {
  _name_or_path: "openai/clip-vit-large-patch14",
  architectures: ["CLIPTextModel"],
  attention_dropout: 0.0,
  bos_token_id: 0,
  dropout: 0.0,
  eos_token_id: 2,
  hidden_act: "quick_gelu",
  hidden_size: 768,
  initializer_factor: 1.0,
  initializer_range: 0.02,
  intermediate_size: 3072,
  layer_norm_eps: 1e-5,
  max_position_embeddings: 77,
  model_type: "clip_text_model",
  num_attention_heads: 12,
  num_hidden_layers: 12,
  pad_token_id: 1,
  projection_dim: 768,
  torch_dtype: "float32",
  transformers_version: "4.22.0.dev0",
  vocab_size: 49408,
} as const;

/**
 * Read a transformers config.json object: a CLIPTextConfig (model_type "clip_text_model") or a whole CLIPConfig
 * (model_type "clip", whose text_config is used and whose projection_dim sizes the projection). Missing keys take
 * CLIPTextConfig's defaults. Every CLIPTextConfig key that shapes the forward pass is read and checked; the rest
 * (dropout and init settings, and the generic PretrainedConfig fields such as generation settings that transformers
 * writes into nested configs) do not touch CLIPTextModel there either, and are ignored as transformers ignores them.
 */
export function parseClipTextConfig(json: Record<string, unknown>, source = "CLIP text config", o: { withProjection?: boolean } = {}): ClipTextConfig {
  const { raw, projectionDim, isClip } = towerConfigJson(json, "text", source);
  const r = new ConfigReader(raw, source);
  const archs = Array.isArray(json.architectures) ? (json.architectures as unknown[]) : [];
  return {
    ...r.encoder({ hiddenSize: 512, intermediateSize: 2048, numHiddenLayers: 12, numAttentionHeads: 8 }),
    vocabSize: r.int("vocab_size", 49408, 1),
    maxPositionEmbeddings: r.int("max_position_embeddings", 77, 1),
    projectionDim: r.projectionDim(projectionDim),
    withProjection: o.withProjection ?? (archs.includes("CLIPTextModelWithProjection") || isClip),
    eosTokenId: r.int("eos_token_id", 49407),
    bosTokenId: r.int("bos_token_id", 49406),
    padTokenId: r.int("pad_token_id", 1),
  };
}

class ClipTextEmbeddings extends Module {
  token_embedding: Embedding;
  position_embedding: Embedding;
  constructor(c: ClipTextConfig, rng: Rng) {
    super();
    this.token_embedding = new Embedding(c.vocabSize, c.hiddenSize, normal([c.vocabSize, c.hiddenSize], 0.02, rng));
    this.position_embedding = new Embedding(c.maxPositionEmbeddings, c.hiddenSize, normal([c.maxPositionEmbeddings, c.hiddenSize], 0.02, rng));
  }
}

class ClipTextTransformer extends Module {
  embeddings: ClipTextEmbeddings;
  encoder: ClipEncoder;
  final_layer_norm: LayerNorm;
  constructor(c: ClipTextConfig, rng: Rng) {
    super();
    this.embeddings = new ClipTextEmbeddings(c, rng);
    this.encoder = new ClipEncoder(c, rng);
    this.final_layer_norm = new LayerNorm(c.hiddenSize, c.layerNormEps);
  }
}

export interface ClipTextOutput {
  /** [N, L, hidden]: what Stable Diffusion's UNet cross-attends to. */
  lastHiddenState: tf.Tensor3D;
  /** [N, hidden]: last_hidden_state at each row's end-of-text position. */
  pooled: tf.Tensor2D;
  /** [N, projection_dim]: text_projection(pooled), when the model has the projection. */
  textEmbeds?: tf.Tensor2D;
}

/**
 * Where each row is pooled, as current transformers decide it: when every row's largest id is 49407 (OpenAI's
 * <|endoftext|>, the largest id of its vocabulary) the first position of the largest id, otherwise the first
 * position of eos_token_id (position 0 when absent). Versions 4.31 to 4.55 chose by the config instead (argmax
 * when eos_token_id is 2, the wrong id that openai's and SD1.5's configs carry); before 4.31 always argmax. All agree
 * on CLIP-tokenized rows (every row holds 49407, the largest id, and eos_token_id is 2 or 49407).
 */
export function eosPositions(ids: number[][], eosTokenId: number): number[] {
  const firstOf = (row: number[], v: number) => Math.max(0, row.indexOf(v));
  const legacy = ids.every((row) => Math.max(...row) === 49407);
  return ids.map((row) => (legacy ? firstOf(row, Math.max(...row)) : firstOf(row, eosTokenId)));
}

/** transformers' CLIPTextModel, or CLIPTextModelWithProjection when config.withProjection. */
export class ClipTextModel extends Module {
  text_model: ClipTextTransformer;
  text_projection?: Linear;
  constructor(readonly config: ClipTextConfig, rng: Rng) {
    super();
    this.text_model = new ClipTextTransformer(config, rng);
    if (config.withProjection) this.text_projection = new Linear(config.hiddenSize, config.projectionDim, rng, false, config.hiddenSize ** -0.5);
  }

  override loadWeights(src: TensorSource, opts: WeightOptions & { progress?: Progress } = {}): void {
    super.loadWeights(src, withoutPositionIds(opts));
  }

  /** ids: N rows of equal length L <= max_position_embeddings (the tokenizer's 77-token rows). */
  forward(ids: number[][]): ClipTextOutput {
    const c = this.config;
    const n = ids.length;
    const l = n > 0 ? ids[0].length : 0;
    if (n === 0 || l === 0) throw new Error("CLIP text encoder: no token ids");
    if (l > c.maxPositionEmbeddings) throw new Error(`CLIP text encoder: ${l} tokens per row, more than max_position_embeddings ${c.maxPositionEmbeddings}`);
    ids.forEach((row, i) => {
      if (row.length !== l) throw new Error(`CLIP text encoder: row ${i} has ${row.length} ids, row 0 has ${l}`);
      const bad = row.find((t) => !Number.isInteger(t) || t < 0 || t >= c.vocabSize);
      if (bad !== undefined) throw new Error(`CLIP text encoder: row ${i} holds id ${bad}, outside the vocabulary [0, ${c.vocabSize})`);
    });
    const pos = eosPositions(ids, c.eosTokenId);
    const t = this.text_model;
    return tf.tidy(() => {
      const tokens = tf.tensor2d(ids, [n, l], "int32");
      // token + position embeddings
      const x = tf.add(t.embeddings.token_embedding.forward(tokens), t.embeddings.position_embedding.forward(tf.range(0, l, 1, "int32"))) as tf.Tensor3D;
      // causal mask: position i attends to j <= i (the float32 minimum elsewhere, as the reference)
      const mask = tf.tensor2d(Array.from({ length: l * l }, (_, k) => (k % l > Math.floor(k / l) ? -3.4028234663852886e38 : 0)), [l, l]);
      const last = t.final_layer_norm.forward(t.encoder.forward(x, mask));
      const pooled = tf.gather(tf.reshape(last, [n * l, -1]), tf.tensor1d(pos.map((p, i) => i * l + p), "int32")) as tf.Tensor2D;
      const out: ClipTextOutput = { lastHiddenState: last, pooled };
      if (this.text_projection) out.textEmbeds = this.text_projection.forward(pooled);
      return out as unknown as tf.TensorContainer;
    }) as unknown as ClipTextOutput;
  }
}

/** Build from a transformers config.json object (see parseClipTextConfig); weights are the reference's random init. */
export function clipTextModelFromConfig(json: Record<string, unknown>, rng: Rng, source?: string, o?: { withProjection?: boolean }): ClipTextModel {
  return new ClipTextModel(parseClipTextConfig(json, source, o), rng);
}
