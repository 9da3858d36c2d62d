import * as tf from "@tensorflow/tfjs";
import { Rng } from "../../core/random";
import { LayerNorm, Linear } from "../layers";
import { Module } from "../module";

// The transformer both CLIP towers share, as transformers' CLIPEncoder defines it: pre-LayerNorm residual blocks
// of multi-head self-attention and a two-layer MLP. The text tower passes a causal mask; the vision tower none.
// Field names are transformers' keys below `text_model.encoder` / `vision_model.encoder`.

export type ClipActivation = "quick_gelu" | "gelu" | "gelu_new" | "gelu_pytorch_tanh" | "relu" | "silu";
const ACTIVATIONS: readonly ClipActivation[] = ["quick_gelu", "gelu", "gelu_new", "gelu_pytorch_tanh", "relu", "silu"];

/** The fields of CLIPTextConfig / CLIPVisionConfig that shape the encoder. */
export interface ClipEncoderConfig {
  hiddenSize: number;
  intermediateSize: number;
  numHiddenLayers: number;
  numAttentionHeads: number;
  hiddenAct: ClipActivation;
  layerNormEps: number;
}

export type ClipTower = "text" | "vision";

/**
 * One tower's keys from a transformers config.json: the object itself when its model_type is the tower's
 * ("clip_text_model" / "clip_vision_model", or absent), or the text_config / vision_config of a whole CLIPConfig
 * (model_type "clip"; the legacy text_config_dict / vision_config_dict override it, as transformers does). A
 * CLIPConfig's projection_dim sizes the projections; `isClip` says which form it was.
 */
export function towerConfigJson(json: Record<string, unknown>, tower: ClipTower, source: string): { raw: Record<string, unknown>; projectionDim: unknown; isClip: boolean } {
  const own = tower === "text" ? "clip_text_model" : "clip_vision_model";
  if (json.model_type === "clip") {
    const sub = json[`${tower}_config`] ?? {};
    const legacy = json[`${tower}_config_dict`] ?? {};
    if (typeof sub !== "object" || sub === null || typeof legacy !== "object" || legacy === null) throw new Error(`${source}: a CLIPConfig's ${tower}_config must be an object`);
    const raw = { ...(sub as Record<string, unknown>), ...(legacy as Record<string, unknown>) };
    return { raw, projectionDim: json.projection_dim ?? raw.projection_dim, isClip: true };
  }
  if (json.model_type !== undefined && json.model_type !== own) {
    throw new Error(`${source}: model_type ${JSON.stringify(json.model_type)} is not a CLIP ${tower} model ("${own}" or "clip")`);
  }
  return { raw: json, projectionDim: json.projection_dim, isClip: false };
}

/** Typed reads of config.json keys with transformers' defaults; a bad value is an error naming the file and key. */
export class ConfigReader {
  constructor(readonly raw: Record<string, unknown>, readonly source: string) {}
  int(key: string, d: number, min: 0 | 1 = 0): number {
    const v = this.raw[key] ?? d;
    if (!Number.isInteger(v) || (v as number) < min) throw new Error(`${this.source}: ${key} must be a ${min > 0 ? "positive" : "non-negative"} integer, got ${JSON.stringify(this.raw[key])}`);
    return v as number;
  }
  positive(key: string, d: number): number {
    const v = this.raw[key] ?? d;
    if (typeof v !== "number" || !(v > 0)) throw new Error(`${this.source}: ${key} must be a positive number, got ${JSON.stringify(this.raw[key])}`);
    return v;
  }
  /** The encoder fields; `d` holds the tower's defaults (CLIPTextConfig's or CLIPVisionConfig's). */
  encoder(d: Omit<ClipEncoderConfig, "hiddenAct" | "layerNormEps">): ClipEncoderConfig {
    const act = this.raw.hidden_act ?? "quick_gelu";
    if (!ACTIVATIONS.includes(act as ClipActivation)) throw new Error(`${this.source}: hidden_act ${JSON.stringify(act)} is not one of ${ACTIVATIONS.join(", ")}`);
    const cfg: ClipEncoderConfig = {
      hiddenSize: this.int("hidden_size", d.hiddenSize, 1),
      intermediateSize: this.int("intermediate_size", d.intermediateSize, 1),
      numHiddenLayers: this.int("num_hidden_layers", d.numHiddenLayers),
      numAttentionHeads: this.int("num_attention_heads", d.numAttentionHeads, 1),
      hiddenAct: act as ClipActivation,
      layerNormEps: this.positive("layer_norm_eps", 1e-5),
    };
    if (cfg.hiddenSize % cfg.numAttentionHeads !== 0) throw new Error(`${this.source}: hidden_size ${cfg.hiddenSize} is not divisible by num_attention_heads ${cfg.numAttentionHeads}`);
    return cfg;
  }
  projectionDim(v: unknown): number {
    const p = v ?? 512;
    if (!Number.isInteger(p) || (p as number) <= 0) throw new Error(`${this.source}: projection_dim must be a positive integer, got ${JSON.stringify(v)}`);
    return p as number;
  }
}

export function activate(x: tf.Tensor, act: ClipActivation): tf.Tensor {
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
export function normal(shape: number[], std: number, rng: Rng): tf.Tensor {
  return tf.randomNormal(shape, 0, std, "float32", rng.seed());
}

/**
 * Older transformers checkpoints (before 4.31, e.g. SD1.5's text encoder and openai/clip-vit-*) also store the
 * non-persistent `embeddings.position_ids` buffers: dropped on load.
 */
export function withoutPositionIds<O extends { rename?: (key: string) => string | undefined }>(opts: O): O {
  const rename = opts.rename;
  return {
    ...opts,
    rename: (k) => {
      const name = rename ? rename(k) : k;
      return name === undefined || name.endsWith("_model.embeddings.position_ids") ? undefined : name;
    },
  };
}

class ClipAttention extends Module {
  k_proj: Linear;
  v_proj: Linear;
  q_proj: Linear;
  out_proj: Linear;
  constructor(readonly c: ClipEncoderConfig, rng: Rng) {
    super();
    const d = c.hiddenSize;
    const inStd = d ** -0.5 * (2 * c.numHiddenLayers) ** -0.5;
    this.k_proj = new Linear(d, d, rng, true, inStd);
    this.v_proj = new Linear(d, d, rng, true, inStd);
    this.q_proj = new Linear(d, d, rng, true, inStd);
    this.out_proj = new Linear(d, d, rng, true, d ** -0.5);
  }

  /** x [N, L, D]; mask [L, L] added to the scores, or none. */
  forward(x: tf.Tensor3D, mask?: tf.Tensor2D): tf.Tensor3D {
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
      const scores = tf.matMul(q, k, false, true);
      const p = tf.softmax(mask ? tf.add(scores, mask) : scores);
      const o = tf.reshape(tf.transpose(tf.reshape(tf.matMul(p, v), [n, h, l, hd]), [0, 2, 1, 3]), [n, l, d]);
      return this.out_proj.forward(o) as tf.Tensor3D;
    });
  }
}

class ClipMlp extends Module {
  fc1: Linear;
  fc2: Linear;
  constructor(readonly c: ClipEncoderConfig, rng: Rng) {
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
  constructor(c: ClipEncoderConfig, rng: Rng) {
    super();
    this.self_attn = new ClipAttention(c, rng);
    this.layer_norm1 = new LayerNorm(c.hiddenSize, c.layerNormEps);
    this.mlp = new ClipMlp(c, rng);
    this.layer_norm2 = new LayerNorm(c.hiddenSize, c.layerNormEps);
  }
  forward(x: tf.Tensor3D, mask?: tf.Tensor2D): tf.Tensor3D {
    return tf.tidy(() => {
      // pre-LN residual blocks: x + attn(ln1(x)), then h + mlp(ln2(h))
      const h = tf.add(x, this.self_attn.forward(this.layer_norm1.forward(x), mask)) as tf.Tensor3D;
      return tf.add(h, this.mlp.forward(this.layer_norm2.forward(h))) as tf.Tensor3D;
    });
  }
}

export class ClipEncoder extends Module {
  layers: ClipEncoderLayer[];
  constructor(c: ClipEncoderConfig, rng: Rng) {
    super();
    this.layers = Array.from({ length: c.numHiddenLayers }, () => new ClipEncoderLayer(c, rng));
  }
  forward(x: tf.Tensor3D, mask?: tf.Tensor2D): tf.Tensor3D {
    return tf.tidy(() => this.layers.reduce((h, layer) => layer.forward(h, mask), x));
  }
}
