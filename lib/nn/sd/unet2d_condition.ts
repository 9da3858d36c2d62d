import * as tf from "@tensorflow/tfjs";
import { Rng } from "../../core/random";
import { Conv2d, GroupNorm } from "../layers";
import { Module } from "../module";
import { activation, ACT_FNS, ActFn } from "./activations";
import { bool, ConfigSpec, field, int, list, nullable, num, oneOf, oneOrList, parseConfig, perBlock, positiveInt } from "./config_json";
import { TimestepEmbedding, timestepFeatures } from "./embeddings";
import { ResnetOptions } from "./resnet";
import { BlockAttention, UNetDownBlock, UNetMidBlock, UNetUpBlock } from "./unet_blocks";

// diffusers' UNet2DConditionModel (models/unets/unet_2d_condition.py), the denoiser of Stable Diffusion 1.x/2.x,
// built from its config.json; parameter names are diffusers' state-dict keys. Tensors are NHWC.
//
// Config keys read (absent = diffusers' default): see UNET_SPEC. Accepted only at their defaults (other values
// change the maths in ways not implemented): see UNET_SPEC.fixed. Ignored, since they do not change these blocks'
// maths: resnet_skip_time_act, resnet_out_scale_factor, cross_attention_norm (only Simple*/ResnetDownsample blocks
// read them), mid_block_only_cross_attention (only UNetMidBlock2DSimpleCrossAttn), addition_time_embed_dim,
// projection_class_embeddings_input_dim, addition_embed_type_num_heads (only with class/addition embeddings),
// and sample_size, dropout, upcast_attention, which are kept for export but do not change an fp32 forward at
// inference. Quirk kept from diffusers: `attention_head_dim` is the number of heads (num_attention_heads must
// stay null), and each head has out_channels // heads channels.

export const DOWN_BLOCK_TYPES = ["CrossAttnDownBlock2D", "DownBlock2D"] as const;
export const UP_BLOCK_TYPES = ["CrossAttnUpBlock2D", "UpBlock2D"] as const;
export const MID_BLOCK_TYPES = ["UNetMidBlock2DCrossAttn", "UNetMidBlock2D"] as const;

export interface UNet2DConditionConfig {
  sample_size: number | number[] | null;
  in_channels: number;
  out_channels: number;
  center_input_sample: boolean;
  flip_sin_to_cos: boolean;
  freq_shift: number;
  down_block_types: Array<(typeof DOWN_BLOCK_TYPES)[number]>;
  mid_block_type: (typeof MID_BLOCK_TYPES)[number] | null;
  up_block_types: Array<(typeof UP_BLOCK_TYPES)[number]>;
  only_cross_attention: boolean | boolean[];
  block_out_channels: number[];
  layers_per_block: number | number[];
  downsample_padding: number;
  mid_block_scale_factor: number;
  dropout: number;
  act_fn: ActFn;
  norm_num_groups: number;
  norm_eps: number;
  cross_attention_dim: number | number[];
  transformer_layers_per_block: number | Array<number | number[]>;
  reverse_transformer_layers_per_block: Array<number | number[]> | null;
  attention_head_dim: number | number[];
  use_linear_projection: boolean;
  upcast_attention: boolean;
  resnet_time_scale_shift: "default" | "scale_shift";
  time_embedding_dim: number | null;
  time_embedding_act_fn: ActFn | null;
  timestep_post_act: ActFn | null;
  time_cond_proj_dim: number | null;
  conv_in_kernel: number;
  conv_out_kernel: number;
}

const act = oneOf(ACT_FNS);
const layerCounts = oneOrList(oneOrList(positiveInt));

export const UNET_SPEC: ConfigSpec<UNet2DConditionConfig> = {
  className: "UNet2DConditionModel",
  fields: {
    sample_size: field(nullable(oneOrList(positiveInt)), null),
    in_channels: field(positiveInt, 4),
    out_channels: field(positiveInt, 4),
    center_input_sample: field(bool, false),
    flip_sin_to_cos: field(bool, true),
    freq_shift: field(num, 0),
    down_block_types: field(list(oneOf(DOWN_BLOCK_TYPES)), ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"]),
    mid_block_type: field(nullable(oneOf(MID_BLOCK_TYPES)), "UNetMidBlock2DCrossAttn"),
    up_block_types: field(list(oneOf(UP_BLOCK_TYPES)), ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"]),
    only_cross_attention: field(oneOrList(bool), false),
    block_out_channels: field(list(positiveInt), [320, 640, 1280, 1280]),
    layers_per_block: field(oneOrList(positiveInt), 2),
    downsample_padding: field(int, 1),
    mid_block_scale_factor: field(num, 1),
    dropout: field(num, 0),
    act_fn: field(act, "silu"),
    norm_num_groups: field(positiveInt, 32),
    norm_eps: field(num, 1e-5),
    cross_attention_dim: field(oneOrList(positiveInt), 1280),
    transformer_layers_per_block: field(layerCounts, 1),
    reverse_transformer_layers_per_block: field(nullable(list(oneOrList(positiveInt))), null),
    attention_head_dim: field(oneOrList(positiveInt), 8),
    use_linear_projection: field(bool, false),
    upcast_attention: field(bool, false),
    resnet_time_scale_shift: field(oneOf(["default", "scale_shift"] as const), "default"),
    time_embedding_dim: field(nullable(positiveInt), null),
    time_embedding_act_fn: field(nullable(act), null),
    timestep_post_act: field(nullable(act), null),
    time_cond_proj_dim: field(nullable(positiveInt), null),
    conv_in_kernel: field(positiveInt, 3),
    conv_out_kernel: field(positiveInt, 3),
  },
  fixed: {
    num_attention_heads: null,
    dual_cross_attention: false,
    encoder_hid_dim: null,
    encoder_hid_dim_type: null,
    class_embed_type: null,
    addition_embed_type: null,
    num_class_embeds: null,
    class_embeddings_concat: false,
    time_embedding_type: "positional",
    attention_type: "default",
  },
};

/** Stable Diffusion 1.5's unet/config.json (859,520,964 parameters). */
export const SD15_UNET_CONFIG_JSON = {
  _class_name: "UNet2DConditionModel",
  _diffusers_version: "0.6.0",
  act_fn: "silu",
  attention_head_dim: 8,
  block_out_channels: [320, 640, 1280, 1280],
  center_input_sample: false,
  cross_attention_dim: 768,
  down_block_types: ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
  downsample_padding: 1,
  flip_sin_to_cos: true,
  freq_shift: 0,
  in_channels: 4,
  layers_per_block: 2,
  mid_block_scale_factor: 1,
  norm_eps: 1e-5,
  norm_num_groups: 32,
  out_channels: 4,
  sample_size: 64,
  up_block_types: ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
};

/** Per-block settings resolved from a config, with diffusers' consistency checks. */
interface Plan {
  layers: number[];
  heads: number[];
  crossDims: number[];
  onlyCross: boolean[];
  /** Transformer layers of each resnet of each down block, and of each up block (in up-block order). */
  downTransformerLayers: number[][];
  upTransformerLayers: number[][];
  midTransformerLayers: number[];
}

function plan(c: UNet2DConditionConfig, source: string): Plan {
  const n = c.down_block_types.length;
  if (c.up_block_types.length !== n) throw new Error(`${source}: ${n} down_block_types but ${c.up_block_types.length} up_block_types`);
  if (c.block_out_channels.length !== n) throw new Error(`${source}: ${c.block_out_channels.length} block_out_channels for ${n} down blocks`);
  for (const ch of c.block_out_channels) {
    if (ch % c.norm_num_groups !== 0) throw new Error(`${source}: block_out_channels ${ch} is not divisible by norm_num_groups ${c.norm_num_groups}`);
  }
  const tlpb = c.transformer_layers_per_block;
  if (Array.isArray(tlpb) && tlpb.some(Array.isArray) && c.reverse_transformer_layers_per_block === null) {
    throw new Error(`${source}: per-layer transformer_layers_per_block needs reverse_transformer_layers_per_block`);
  }
  const layers = perBlock(c.layers_per_block, n, "layers_per_block", source);
  const perLayer = (v: number | number[], count: number, what: string): number[] => {
    if (!Array.isArray(v)) return Array.from({ length: count }, () => v);
    if (v.length < count) throw new Error(`${source}: ${what} lists ${v.length} layer counts for ${count} layers`);
    return v.slice(0, count);
  };
  const down = perBlock(tlpb, n, "transformer_layers_per_block", source);
  const up = c.reverse_transformer_layers_per_block ?? [...down].reverse();
  if (up.length !== n) throw new Error(`${source}: reverse_transformer_layers_per_block has ${up.length} entries for ${n} blocks`);
  const revLayers = [...layers].reverse();
  return {
    layers,
    heads: perBlock(c.attention_head_dim, n, "attention_head_dim", source),
    crossDims: perBlock(c.cross_attention_dim, n, "cross_attention_dim", source),
    onlyCross: perBlock(c.only_cross_attention, n, "only_cross_attention", source),
    downTransformerLayers: down.map((v, i) => perLayer(v, layers[i], `transformer_layers_per_block[${i}]`)),
    upTransformerLayers: up.map((v, i) => perLayer(v, revLayers[i] + 1, `reverse_transformer_layers_per_block[${i}]`)),
    midTransformerLayers: perLayer(down[n - 1], 1, "transformer_layers_per_block (middle block)"),
  };
}

export function parseUNet2DConditionConfig(raw: unknown, source: string): UNet2DConditionConfig {
  const c = parseConfig(raw, source, UNET_SPEC);
  plan(c, source);
  return c;
}

export class UNet2DConditionModel extends Module {
  conv_in: Conv2d;
  time_embedding: TimestepEmbedding;
  down_blocks: UNetDownBlock[];
  mid_block?: UNetMidBlock;
  up_blocks: UNetUpBlock[];
  conv_norm_out: GroupNorm;
  conv_out: Conv2d;
  private readonly act: (x: tf.Tensor) => tf.Tensor;
  private readonly embedAct?: (x: tf.Tensor) => tf.Tensor;
  /** Every cross-attention block's context width (all equal in a usable config: the blocks share one context). */
  private readonly crossDims: number[];

  constructor(readonly config: UNet2DConditionConfig, rng: Rng, source = "UNet2DConditionModel config") {
    super();
    const c = config;
    const p = plan(c, source);
    const ch = c.block_out_channels;
    const n = ch.length;
    this.act = activation(c.act_fn);
    this.conv_in = new Conv2d(c.in_channels, ch[0], c.conv_in_kernel, rng, { padding: (c.conv_in_kernel - 1) >> 1 });
    const tembC = c.time_embedding_dim ?? 4 * ch[0];
    this.time_embedding = new TimestepEmbedding(ch[0], tembC, c.act_fn, c.timestep_post_act, c.time_cond_proj_dim, rng);
    if (c.time_embedding_act_fn) this.embedAct = activation(c.time_embedding_act_fn);

    const resnet = (scale = 1): ResnetOptions => ({ tembChannels: tembC, groups: c.norm_num_groups, eps: c.norm_eps, act: c.act_fn, timeEmbeddingNorm: c.resnet_time_scale_shift, outputScaleFactor: scale });
    const attention = (cross: boolean, i: number, transformerLayers: number[], onlyCross: boolean): BlockAttention | null => (cross
      ? { heads: p.heads[i], layers: transformerLayers, crossAttentionDim: p.crossDims[i], onlyCrossAttention: onlyCross, groups: c.norm_num_groups, useLinearProjection: c.use_linear_projection }
      : null);

    this.down_blocks = c.down_block_types.map((type, i) => new UNetDownBlock(
      ch[Math.max(i - 1, 0)], ch[i], p.layers[i], resnet(),
      attention(type === "CrossAttnDownBlock2D", i, p.downTransformerLayers[i], p.onlyCross[i]),
      i < n - 1 ? c.downsample_padding : null, rng));

    if (c.mid_block_type !== null) {
      const cross = c.mid_block_type === "UNetMidBlock2DCrossAttn";
      this.mid_block = new UNetMidBlock(ch[n - 1], cross ? 1 : 0, resnet(c.mid_block_scale_factor), attention(cross, n - 1, p.midTransformerLayers, false), rng);
    }

    const rev = [...ch].reverse();
    // the up blocks mirror the down blocks: heads, context widths and only_cross_attention in reverse block order
    const revIndex = (i: number) => n - 1 - i;
    this.up_blocks = c.up_block_types.map((type, i) => new UNetUpBlock(
      rev[Math.max(i - 1, 0)], rev[Math.min(i + 1, n - 1)], rev[i], p.layers[revIndex(i)] + 1, resnet(),
      attention(type === "CrossAttnUpBlock2D", revIndex(i), p.upTransformerLayers[i], p.onlyCross[revIndex(i)]),
      i < n - 1, rng));

    this.conv_norm_out = new GroupNorm(c.norm_num_groups, ch[0], c.norm_eps);
    this.conv_out = new Conv2d(ch[0], c.out_channels, c.conv_out_kernel, rng, { padding: (c.conv_out_kernel - 1) >> 1 });
    this.crossDims = [
      ...c.down_block_types.flatMap((t, i) => (t === "CrossAttnDownBlock2D" ? [p.crossDims[i]] : [])),
      ...(c.mid_block_type === "UNetMidBlock2DCrossAttn" ? [p.crossDims[n - 1]] : []),
    ];
  }

  /** The embedding [N, temb] every resnet receives: time_embedding(features of t) (and its activation, if any). */
  timeEmbedding(timesteps: tf.Tensor1D | number, n: number, timestepCond?: tf.Tensor2D): tf.Tensor2D {
    const c = this.config;
    return tf.tidy(() => {
      const t = typeof timesteps === "number" ? tf.fill([n], timesteps) : timesteps.shape[0] === 1 ? tf.tile(timesteps, [n]) : timesteps;
      if (t.shape[0] !== n) throw new Error(`UNet2DConditionModel: ${t.shape[0]} timesteps for a batch of ${n}`);
      const emb = this.time_embedding.forward(timestepFeatures(t as tf.Tensor1D, c.block_out_channels[0], c.flip_sin_to_cos, c.freq_shift), timestepCond);
      return (this.embedAct ? this.embedAct(emb) : emb) as tf.Tensor2D;
    });
  }

  /**
   * The predicted noise (or v, per the scheduler) for `sample` [N, H, W, in_channels] at `timesteps` (one per
   * image, or one for all), conditioned on `encoderHiddenStates` [N, L, cross_attention_dim] (CLIP's last hidden
   * states). `timestepCond` [N, time_cond_proj_dim] only for configs with time_cond_proj_dim (LCM-style UNets).
   */
  forward(sample: tf.Tensor4D, timesteps: tf.Tensor1D | number, encoderHiddenStates: tf.Tensor3D, timestepCond?: tf.Tensor2D): tf.Tensor4D {
    const c = this.config;
    const [n, , , cin] = sample.shape;
    if (cin !== c.in_channels) throw new Error(`UNet2DConditionModel.forward: sample [${sample.shape}] should have ${c.in_channels} channels (NHWC)`);
    const [cn, , cd] = encoderHiddenStates.shape;
    if (cn !== n || this.crossDims.some((d) => d !== cd)) {
      throw new Error(`UNet2DConditionModel.forward: encoderHiddenStates [${encoderHiddenStates.shape}] should be [${n}, L, ${this.crossDims[0] ?? "cross_attention_dim"}]`);
    }
    return tf.tidy(() => {
      // center_input_sample: x = 2 x - 1
      const x = c.center_input_sample ? (tf.sub(tf.mul(sample, 2), 1) as tf.Tensor4D) : sample;
      const emb = this.timeEmbedding(timesteps, n, timestepCond);
      const ctx = encoderHiddenStates;

      let h = this.conv_in.forward(x);
      const skips: tf.Tensor4D[] = [h];
      for (const block of this.down_blocks) {
        const out = block.forward(h, emb, ctx);
        h = out.h;
        skips.push(...out.skips);
      }
      if (this.mid_block) h = this.mid_block.forward(h, emb, ctx);
      for (const block of this.up_blocks) {
        const mine = skips.splice(skips.length - block.resnets.length, block.resnets.length);
        // upsample to the size of the next skip: 2x, or the odd size the encoder halved (diffusers' upsample_size)
        const next = skips[skips.length - 1];
        h = block.forward(h, mine, emb, ctx, next ? [next.shape[1], next.shape[2]] : undefined);
      }
      return this.conv_out.forward(this.act(this.conv_norm_out.forward(h)) as tf.Tensor4D);
    });
  }
}
