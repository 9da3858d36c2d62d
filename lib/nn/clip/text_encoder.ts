import * as tf from "@tensorflow/tfjs";
import { Rng } from "../../core/random";
import { Progress } from "../../core/progress";
import { TensorSource } from "../../io/tensor_source";
import { WeightOptions } from "../../io/weight_map";
import { Embedding, LayerNorm, Linear } from "../layers";
import { Module } from "../module";

// CLIP's text transformer as transformers' CLIPTextModel / CLIPTextModelWithProjection define it: token and
// position embeddings, pre-LayerNorm blocks with causal self-attention, a final LayerNorm, the hidden state at the
// end-of-text token as the pooled output, and optionally a bias-free projection. Field names are the state-dict
// keys (`text_model.encoder.layers.0.self_attn.q_proj.weight`, `text_projection.weight`). Stable Diffusion 1.x
// conditions its UNet on last_hidden_state; CLIP score uses the projected pooled output.

export type ClipActivation = "quick_gelu" | "gelu" | "gelu_new" | "gelu_pytorch_tanh" | "relu" | "silu";
const ACTIVATIONS: readonly ClipActivation[] = ["quick_gelu", "gelu", "gelu_new", "gelu_pytorch_tanh", "relu", "silu"];

export interface ClipTextConfig {
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numHiddenLayers: number;
  numAttentionHeads: number;
  maxPositionEmbeddings: number;
  hiddenAct: ClipActivation;
  layerNormEps: number;
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
  let raw = json;
  let projection = json.projection_dim;
  if (json.model_type === "clip") {
    if (typeof json.text_config !== "object" || json.text_config === null) throw new Error(`${source}: a CLIPConfig needs a text_config object`);
    raw = json.text_config as Record<string, unknown>;
    projection = json.projection_dim ?? raw.projection_dim;
  } else if (json.model_type !== undefined && json.model_type !== "clip_text_model") {
    throw new Error(`${source}: model_type ${JSON.stringify(json.model_type)} is not a CLIP text model ("clip_text_model" or "clip")`);
  }
  const int = (k: string, d: number): number => {
    const v = raw[k] ?? d;
    if (!Number.isInteger(v) || (v as number) < 0) throw new Error(`${source}: ${k} must be a non-negative integer, got ${JSON.stringify(raw[k])}`);
    return v as number;
  };
  const act = raw.hidden_act ?? "quick_gelu";
  if (!ACTIVATIONS.includes(act as ClipActivation)) throw new Error(`${source}: hidden_act ${JSON.stringify(act)} is not one of ${ACTIVATIONS.join(", ")}`);
  const eps = raw.layer_norm_eps ?? 1e-5;
  if (typeof eps !== "number" || !(eps > 0)) throw new Error(`${source}: layer_norm_eps must be a positive number, got ${JSON.stringify(eps)}`);
  const archs = Array.isArray(json.architectures) ? (json.architectures as unknown[]) : [];
  const cfg: ClipTextConfig = {
    vocabSize: int("vocab_size", 49408),
    hiddenSize: int("hidden_size", 512),
    intermediateSize: int("intermediate_size", 2048),
    numHiddenLayers: int("num_hidden_layers", 12),
    numAttentionHeads: int("num_attention_heads", 8),
    maxPositionEmbeddings: int("max_position_embeddings", 77),
    hiddenAct: act as ClipActivation,
    layerNormEps: eps,
    projectionDim: projection === undefined ? 512 : (projection as number),
    withProjection: o.withProjection ?? (archs.includes("CLIPTextModelWithProjection") || json.model_type === "clip"),
    eosTokenId: int("eos_token_id", 49407),
    bosTokenId: int("bos_token_id", 49406),
    padTokenId: int("pad_token_id", 1),
  };
  if (!Number.isInteger(cfg.projectionDim) || cfg.projectionDim <= 0) throw new Error(`${source}: projection_dim must be a positive integer, got ${JSON.stringify(projection)}`);
  if (cfg.hiddenSize % cfg.numAttentionHeads !== 0) throw new Error(`${source}: hidden_size ${cfg.hiddenSize} is not divisible by num_attention_heads ${cfg.numAttentionHeads}`);
  return cfg;
}

function activate(x: tf.Tensor, act: ClipActivation): tf.Tensor {
  switch (act) {
    case "quick_gelu":
      // x sigmoid(1.702 x)
      return tf.mul(x, tf.sigmoid(tf.mul(x, 1.702)));
    case "gelu":
      // x Phi(x) = x (1 + erf(x / sqrt 2)) / 2
      return tf.mul(tf.mul(x, 0.5), tf.add(tf.erf(tf.mul(x, Math.SQRT1_2)), 1));
    case "gelu_new":
    case "gelu_pytorch_tanh":
      // x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) / 2
      return tf.mul(tf.mul(x, 0.5), tf.add(tf.tanh(tf.mul(tf.add(x, tf.mul(tf.pow(x, 3), 0.044715)), Math.sqrt(2 / Math.PI))), 1));
    case "relu":
      return tf.relu(x);
    case "silu":
      return tf.mul(x, tf.sigmoid(x));
  }
}

/** The init transformers' _init_weights gives (so a model trained from scratch starts where the reference does). */
function normal(shape: number[], std: number, rng: Rng): tf.Tensor {
  return tf.randomNormal(shape, 0, std, "float32", rng.seed());
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

class ClipAttention extends Module {
  k_proj: Linear;
  v_proj: Linear;
  q_proj: Linear;
  out_proj: Linear;
  constructor(readonly c: ClipTextConfig, rng: Rng) {
    super();
    const d = c.hiddenSize;
    const inStd = d ** -0.5 * (2 * c.numHiddenLayers) ** -0.5;
    this.k_proj = new Linear(d, d, rng, true, inStd);
    this.v_proj = new Linear(d, d, rng, true, inStd);
    this.q_proj = new Linear(d, d, rng, true, inStd);
    this.out_proj = new Linear(d, d, rng, true, d ** -0.5);
  }

  /** x [N, L, D], mask [L, L] added to the scores. */
  forward(x: tf.Tensor3D, mask: tf.Tensor2D): tf.Tensor3D {
    return tf.tidy(() => {
      const [n, l, d] = x.shape;
      const h = this.c.numAttentionHeads;
      const hd = d / h;
      // [N, L, D] -> [N*H, L, hd]
      const heads = (t: tf.Tensor) => tf.reshape(tf.transpose(tf.reshape(t, [n, l, h, hd]), [0, 2, 1, 3]), [n * h, l, hd]) as tf.Tensor3D;
      // q is scaled by hd^-1/2 before the product, as the reference does
      const q = heads(tf.mul(this.q_proj.forward(x), hd ** -0.5));
      const k = heads(this.k_proj.forward(x));
      const v = heads(this.v_proj.forward(x));
      // softmax(q k^T + mask) v
      const p = tf.softmax(tf.add(tf.matMul(q, k, false, true), mask));
      const o = tf.reshape(tf.transpose(tf.reshape(tf.matMul(p, v), [n, h, l, hd]), [0, 2, 1, 3]), [n, l, d]);
      return this.out_proj.forward(o) as tf.Tensor3D;
    });
  }
}

class ClipMlp extends Module {
  fc1: Linear;
  fc2: Linear;
  constructor(readonly c: ClipTextConfig, rng: Rng) {
    super();
    this.fc1 = new Linear(c.hiddenSize, c.intermediateSize, rng, true, (2 * c.hiddenSize) ** -0.5);
    this.fc2 = new Linear(c.intermediateSize, c.hiddenSize, rng, true, c.hiddenSize ** -0.5 * (2 * c.numHiddenLayers) ** -0.5);
  }
  forward(x: tf.Tensor3D): tf.Tensor3D {
    return tf.tidy(() => this.fc2.forward(activate(this.fc1.forward(x), this.c.hiddenAct)) as tf.Tensor3D);
  }
}

class ClipEncoderLayer extends Module {
  self_attn: ClipAttention;
  layer_norm1: LayerNorm;
  mlp: ClipMlp;
  layer_norm2: LayerNorm;
  constructor(c: ClipTextConfig, rng: Rng) {
    super();
    this.self_attn = new ClipAttention(c, rng);
    this.layer_norm1 = new LayerNorm(c.hiddenSize, c.layerNormEps);
    this.mlp = new ClipMlp(c, rng);
    this.layer_norm2 = new LayerNorm(c.hiddenSize, c.layerNormEps);
  }
  forward(x: tf.Tensor3D, mask: tf.Tensor2D): tf.Tensor3D {
    return tf.tidy(() => {
      // pre-LN residual blocks: x + attn(ln1(x)), then h + mlp(ln2(h))
      const h = tf.add(x, this.self_attn.forward(this.layer_norm1.forward(x), mask)) as tf.Tensor3D;
      return tf.add(h, this.mlp.forward(this.layer_norm2.forward(h))) as tf.Tensor3D;
    });
  }
}

class ClipEncoder extends Module {
  layers: ClipEncoderLayer[];
  constructor(c: ClipTextConfig, rng: Rng) {
    super();
    this.layers = Array.from({ length: c.numHiddenLayers }, () => new ClipEncoderLayer(c, rng));
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

  /** Older checkpoints (transformers before 4.31, e.g. SD1.5's own) also store the position_ids buffer: dropped. */
  override loadWeights(src: TensorSource, opts: WeightOptions & { progress?: Progress } = {}): void {
    const rename = opts.rename;
    super.loadWeights(src, {
      ...opts,
      rename: (k) => {
        const name = rename ? rename(k) : k;
        return name === "text_model.embeddings.position_ids" ? undefined : name;
      },
    });
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
      let x = tf.add(t.embeddings.token_embedding.forward(tokens), t.embeddings.position_embedding.forward(tf.range(0, l, 1, "int32"))) as tf.Tensor3D;
      // causal mask: position i attends to j <= i (the float32 minimum elsewhere, as the reference)
      const mask = tf.tensor2d(Array.from({ length: l * l }, (_, k) => (k % l > Math.floor(k / l) ? -3.4028234663852886e38 : 0)), [l, l]);
      for (const layer of t.encoder.layers) x = layer.forward(x, mask);
      const last = t.final_layer_norm.forward(x);
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
