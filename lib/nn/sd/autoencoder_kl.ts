import * as tf from "@tensorflow/tfjs";
import { Rng } from "../../core/random";
import { Conv2d, GroupNorm } from "../layers";
import { FrozenDecoder, LatentCodec } from "../latent_codec";
import { Module } from "../module";
import { silu } from "../unet";
import { ACT_FNS, ActFn } from "./activations";
import { Attention } from "./attention";
import { bool, ConfigSpec, field, list, nullable, num, oneOf, oneOrList, parseConfig, positiveInt } from "./config_json";
import { ResnetBlock2D, ResnetOptions, Upsample2D } from "./resnet";
import { UNetDownBlock } from "./unet_blocks";

// diffusers' AutoencoderKL (models/autoencoders/autoencoder_kl.py, vae.py): Stable Diffusion's VAE, built from
// its config.json; parameter names are diffusers' state-dict keys (the legacy attention names query/key/value/
// proj_attn are renamed on load, see load.ts). Images NHWC in [-1, 1]. Every norm in the VAE has eps 1e-6.
// Ignored config keys: sample_size and force_upcast (tiling and fp16 settings, kept for export), latents_mean and
// latents_std (used by some pipelines, not by the model; kept).

export interface AutoencoderKLConfig {
  in_channels: number;
  out_channels: number;
  down_block_types: "DownEncoderBlock2D"[];
  up_block_types: "UpDecoderBlock2D"[];
  block_out_channels: number[];
  layers_per_block: number;
  act_fn: ActFn;
  latent_channels: number;
  norm_num_groups: number;
  sample_size: number | number[];
  /** z = scaling_factor (raw - shift_factor) is what the diffusion model sees (SD1.x: 0.18215, no shift). */
  scaling_factor: number;
  shift_factor: number | null;
  latents_mean: number[] | null;
  latents_std: number[] | null;
  force_upcast: boolean;
  use_quant_conv: boolean;
  use_post_quant_conv: boolean;
  mid_block_add_attention: boolean;
}

export const VAE_SPEC: ConfigSpec<AutoencoderKLConfig> = {
  className: "AutoencoderKL",
  fields: {
    in_channels: field(positiveInt, 3),
    out_channels: field(positiveInt, 3),
    down_block_types: field(list(oneOf(["DownEncoderBlock2D"] as const)), ["DownEncoderBlock2D"]),
    up_block_types: field(list(oneOf(["UpDecoderBlock2D"] as const)), ["UpDecoderBlock2D"]),
    block_out_channels: field(list(positiveInt), [64]),
    layers_per_block: field(positiveInt, 1),
    act_fn: field(oneOf(ACT_FNS), "silu"),
    latent_channels: field(positiveInt, 4),
    norm_num_groups: field(positiveInt, 32),
    sample_size: field(oneOrList(positiveInt), 32),
    scaling_factor: field(num, 0.18215),
    shift_factor: field(nullable(num), null),
    latents_mean: field(nullable(list(num)), null),
    latents_std: field(nullable(list(num)), null),
    force_upcast: field(bool, true),
    use_quant_conv: field(bool, true),
    use_post_quant_conv: field(bool, true),
    mid_block_add_attention: field(bool, true),
  },
  fixed: {},
};

/** Stable Diffusion 1.5's vae/config.json (83,653,863 parameters). */
export const SD15_VAE_CONFIG_JSON = {
  _class_name: "AutoencoderKL",
  _diffusers_version: "0.6.0",
  act_fn: "silu",
  block_out_channels: [128, 256, 512, 512],
  down_block_types: ["DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"],
  in_channels: 3,
  latent_channels: 4,
  layers_per_block: 2,
  norm_num_groups: 32,
  out_channels: 3,
  sample_size: 512,
  up_block_types: ["UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"],
};

export function parseAutoencoderKLConfig(raw: unknown, source: string): AutoencoderKLConfig {
  const c = parseConfig(raw, source, VAE_SPEC);
  const n = c.block_out_channels.length;
  if (c.down_block_types.length !== n || c.up_block_types.length !== n) {
    throw new Error(`${source}: ${n} block_out_channels but ${c.down_block_types.length} down_block_types and ${c.up_block_types.length} up_block_types`);
  }
  for (const ch of c.block_out_channels) {
    if (ch % c.norm_num_groups !== 0) throw new Error(`${source}: block_out_channels ${ch} is not divisible by norm_num_groups ${c.norm_num_groups}`);
  }
  return c;
}

/** UNetMidBlock2D as the VAE uses it: resnet, single-head attention (unless disabled), resnet. */
export class VaeMidBlock extends Module {
  attentions: Attention[];
  resnets: ResnetBlock2D[];
  constructor(channels: number, r: ResnetOptions, addAttention: boolean, rng: Rng) {
    super();
    this.resnets = [new ResnetBlock2D(channels, channels, r, rng), new ResnetBlock2D(channels, channels, r, rng)];
    // heads = channels // attention_head_dim with attention_head_dim = channels: one head over all channels
    this.attentions = addAttention ? [new Attention({ queryDim: channels, heads: 1, dimHead: channels, bias: true, groupNorm: { groups: r.groups, eps: r.eps } }, rng)] : [];
  }
  forward(x: tf.Tensor4D): tf.Tensor4D {
    return tf.tidy(() => {
      let h = this.resnets[0].forward(x, null);
      if (this.attentions.length) h = this.attentions[0].forwardSpatial(h);
      return this.resnets[1].forward(h, null);
    });
  }
}

/** UpDecoderBlock2D: resnets, then nearest 2x and a conv unless it is the last block. */
export class VaeUpBlock extends Module {
  resnets: ResnetBlock2D[];
  upsamplers: Upsample2D[];
  constructor(inC: number, outC: number, n: number, r: ResnetOptions, upsample: boolean, rng: Rng) {
    super();
    this.resnets = Array.from({ length: n }, (_, j) => new ResnetBlock2D(j === 0 ? inC : outC, outC, r, rng));
    this.upsamplers = upsample ? [new Upsample2D(outC, rng)] : [];
  }
  forward(x: tf.Tensor4D): tf.Tensor4D {
    return tf.tidy(() => {
      let h = x;
      for (const r of this.resnets) h = r.forward(h, null);
      for (const u of this.upsamplers) h = u.forward(h);
      return h;
    });
  }
}

function resnetOptions(c: AutoencoderKLConfig): ResnetOptions {
  return { tembChannels: null, groups: c.norm_num_groups, eps: 1e-6, act: c.act_fn, timeEmbeddingNorm: "default", outputScaleFactor: 1 };
}

/** Images -> 2 x latent_channels moments (mean, logvar); downsampling convs pad only bottom and right. */
export class Encoder extends Module {
  conv_in: Conv2d;
  down_blocks: UNetDownBlock[];
  mid_block: VaeMidBlock;
  conv_norm_out: GroupNorm;
  conv_out: Conv2d;
  constructor(c: AutoencoderKLConfig, rng: Rng) {
    super();
    const ch = c.block_out_channels;
    const r = resnetOptions(c);
    this.conv_in = new Conv2d(c.in_channels, ch[0], 3, rng);
    this.down_blocks = ch.map((out, i) => new UNetDownBlock(ch[Math.max(i - 1, 0)], out, c.layers_per_block, r, null, i < ch.length - 1 ? 0 : null, rng));
    this.mid_block = new VaeMidBlock(ch[ch.length - 1], r, c.mid_block_add_attention, rng);
    this.conv_norm_out = new GroupNorm(c.norm_num_groups, ch[ch.length - 1], 1e-6);
    this.conv_out = new Conv2d(ch[ch.length - 1], 2 * c.latent_channels, 3, rng);
  }
  forward(x: tf.Tensor4D): tf.Tensor4D {
    return tf.tidy(() => {
      let h = this.conv_in.forward(x);
      for (const b of this.down_blocks) h = b.forward(h, null).h;
      h = this.mid_block.forward(h);
      // conv_act is SiLU whatever act_fn says (diffusers' Encoder and Decoder hard-code nn.SiLU there)
      return this.conv_out.forward(silu(this.conv_norm_out.forward(h)) as tf.Tensor4D);
    });
  }
}

/** Latents -> images: mid block first, then the up blocks from the widest level down. */
export class Decoder extends Module {
  conv_in: Conv2d;
  up_blocks: VaeUpBlock[];
  mid_block: VaeMidBlock;
  conv_norm_out: GroupNorm;
  conv_out: Conv2d;
  constructor(c: AutoencoderKLConfig, rng: Rng) {
    super();
    const rev = [...c.block_out_channels].reverse();
    const r = resnetOptions(c);
    this.conv_in = new Conv2d(c.latent_channels, rev[0], 3, rng);
    this.mid_block = new VaeMidBlock(rev[0], r, c.mid_block_add_attention, rng);
    this.up_blocks = rev.map((out, i) => new VaeUpBlock(rev[Math.max(i - 1, 0)], out, c.layers_per_block + 1, r, i < rev.length - 1, rng));
    this.conv_norm_out = new GroupNorm(c.norm_num_groups, rev[rev.length - 1], 1e-6);
    this.conv_out = new Conv2d(rev[rev.length - 1], c.out_channels, 3, rng);
  }
  forward(z: tf.Tensor4D): tf.Tensor4D {
    return tf.tidy(() => {
      let h = this.mid_block.forward(this.conv_in.forward(z));
      for (const b of this.up_blocks) h = b.forward(h);
      return this.conv_out.forward(silu(this.conv_norm_out.forward(h)) as tf.Tensor4D);
    });
  }
}

/** The latent distribution: a diagonal Gaussian, logvar clamped to [-30, 20] as diffusers' DiagonalGaussianDistribution does. */
export interface LatentDistribution {
  mean: tf.Tensor4D;
  logvar: tf.Tensor4D;
}

export class AutoencoderKL extends Module {
  encoder: Encoder;
  decoder: Decoder;
  quant_conv?: Conv2d;
  post_quant_conv?: Conv2d;

  constructor(readonly config: AutoencoderKLConfig, rng: Rng) {
    super();
    const l = config.latent_channels;
    this.encoder = new Encoder(config, rng);
    this.decoder = new Decoder(config, rng);
    if (config.use_quant_conv) this.quant_conv = new Conv2d(2 * l, 2 * l, 1, rng, { padding: 0 });
    if (config.use_post_quant_conv) this.post_quant_conv = new Conv2d(l, l, 1, rng, { padding: 0 });
  }

  /** Spatial downsampling factor: 2 per level but the last. */
  get factor(): number {
    return 2 ** (this.config.block_out_channels.length - 1);
  }

  /** Images [N, H, W, in_channels] in [-1, 1] -> the raw (unscaled) latent distribution. */
  encode(x: tf.Tensor4D): LatentDistribution {
    return tf.tidy(() => {
      let m = this.encoder.forward(x);
      if (this.quant_conv) m = this.quant_conv.forward(m);
      const [mean, logvar] = tf.split(m, 2, 3) as tf.Tensor4D[];
      return { mean, logvar: tf.clipByValue(logvar, -30, 20) };
    });
  }

  /** Raw latents -> images in about [-1, 1]. */
  decode(z: tf.Tensor4D): tf.Tensor4D {
    return tf.tidy(() => this.decoder.forward(this.post_quant_conv ? this.post_quant_conv.forward(z) : z));
  }
}

export interface AutoencoderKLCodecOptions {
  name?: string;
  /** z = scale (raw - shift); default the config's scaling_factor and shift_factor (SD1.5: 0.18215, 0). */
  scale?: number;
  shift?: number;
}

/**
 * An AutoencoderKL as a LatentCodec. encode() returns the scaled mean of the latent distribution (the mode; the
 * ODE-pair and regression code wants a deterministic encoder); encodeDistribution() gives mean and logvar.
 */
export class AutoencoderKLCodec implements LatentCodec {
  readonly name: string;
  readonly channels: number;
  readonly factor: number;
  readonly scale: number;
  readonly shift: number;
  private readonly frozenDecoder: FrozenDecoder;

  constructor(readonly vae: AutoencoderKL, o: AutoencoderKLCodecOptions = {}) {
    this.name = o.name ?? "autoencoder-kl";
    this.channels = vae.config.latent_channels;
    this.factor = vae.factor;
    this.scale = o.scale ?? vae.config.scaling_factor;
    this.shift = o.shift ?? vae.config.shift_factor ?? 0;
    // only the decoder's weights become initializers of the exported model
    const decoderVariables = [...vae.decoder.namedVariables("decoder"), ...(vae.post_quant_conv?.namedVariables("post_quant_conv") ?? [])];
    this.frozenDecoder = new FrozenDecoder(this.name, decoderVariables, (z) => this.decode(z));
  }

  /** The raw latent distribution of images [N, H, W, 3] in [-1, 1]. */
  encodeDistribution(images: tf.Tensor4D): LatentDistribution {
    const [, h, w, c] = images.shape;
    if (c !== this.vae.config.in_channels || h % this.factor !== 0 || w % this.factor !== 0) {
      throw new Error(`${this.name}.encode: expected images [N, H, W, ${this.vae.config.in_channels}] with H and W multiples of ${this.factor}, got [${images.shape.join(", ")}]`);
    }
    return this.vae.encode(images);
  }

  encode(images: tf.Tensor4D): tf.Tensor4D {
    const { mean, logvar } = this.encodeDistribution(images);
    logvar.dispose();
    // z = scale * (mean - shift)
    const z = tf.tidy(() => tf.mul(tf.sub(mean, this.shift), this.scale) as tf.Tensor4D);
    mean.dispose();
    return z;
  }

  decode(latents: tf.Tensor4D): tf.Tensor4D {
    if (latents.shape[3] !== this.channels) {
      throw new Error(`${this.name}.decode: expected latents [N, h, w, ${this.channels}], got [${latents.shape.join(", ")}]`);
    }
    // raw = z / scale + shift
    return tf.tidy(() => this.vae.decode(tf.add(tf.div(latents, this.scale), this.shift)));
  }

  decodeFrozen(latents: tf.Tensor4D): Promise<tf.Tensor4D> {
    return this.frozenDecoder.run(latents);
  }

  dispose(): void {
    this.frozenDecoder.dispose();
    this.vae.dispose();
  }
}
