import { TensorSource, ViewEntry, viewSource } from "../../io/tensor_source";
import { AutoencoderKLConfig } from "./autoencoder_kl";
import { UNet2DConditionConfig } from "./unet2d_condition";

// The original Stable Diffusion single-file checkpoints (v1-5-pruned-emaonly.safetensors / .ckpt) use the ldm
// (CompVis latent-diffusion) layout: "model.diffusion_model.*" for the UNet, "first_stage_model.*" for the VAE,
// "cond_stage_model.transformer.*" for CLIP's text model, plus buffers of the noise schedule. These views give each
// network's tensors under diffusers' names, as diffusers' single_file_utils does (convert_ldm_unet_checkpoint,
// convert_ldm_vae_checkpoint, convert_ldm_clip_checkpoint).

export const LDM_UNET_PREFIX = "model.diffusion_model.";
export const LDM_VAE_PREFIXES = ["first_stage_model.", "vae."];
export const LDM_CLIP_PREFIXES = ["cond_stage_model.transformer.", "conditioner.embedders.0.transformer."];

const RESNET: Record<string, string> = {
  "in_layers.0": "norm1", "in_layers.2": "conv1", "emb_layers.1": "time_emb_proj",
  "out_layers.0": "norm2", "out_layers.3": "conv2", "skip_connection": "conv_shortcut",
};

/** An ldm resnet's parameter path under diffusers' names ("in_layers.2.weight" -> "conv1.weight"). */
function resnetKey(rest: string): string | undefined {
  const m = /^(in_layers\.[02]|emb_layers\.1|out_layers\.[03]|skip_connection)\.(.+)$/.exec(rest);
  return m ? `${RESNET[m[1]]}.${m[2]}` : undefined;
}

/**
 * The diffusers name of an ldm UNet key (without "model.diffusion_model."), or undefined if it has none. The ldm
 * UNet numbers its stages flat: input_blocks.0 is conv_in, then each down block holds layers_per_block
 * (resnet, attention) slots and one downsampler slot; output_blocks hold layers_per_block + 1 slots per up block,
 * the last one ending with the upsampler (at .1 without attention, .2 with it); middle_block is resnet, attention,
 * resnet.
 */
export function ldmUNetKey(key: string, config: UNet2DConditionConfig): string | undefined {
  if (typeof config.layers_per_block !== "number") throw new Error("ldm UNet keys need one layers_per_block for every block");
  const per = config.layers_per_block + 1;
  const fixed: Record<string, string> = {
    "time_embed.0.": "time_embedding.linear_1.", "time_embed.2.": "time_embedding.linear_2.",
    "input_blocks.0.0.": "conv_in.", "out.0.": "conv_norm_out.", "out.2.": "conv_out.",
  };
  for (const [ldm, hf] of Object.entries(fixed)) if (key.startsWith(ldm)) return hf + key.slice(ldm.length);
  let m = /^input_blocks\.(\d+)\.([01])\.(.+)$/.exec(key);
  if (m) {
    const k = Number(m[1]);
    const [i, j] = [Math.floor((k - 1) / per), (k - 1) % per];
    if (j === per - 1) return m[2] === "0" && m[3].startsWith("op.") ? `down_blocks.${i}.downsamplers.0.conv.${m[3].slice(3)}` : undefined;
    if (m[2] === "1") return `down_blocks.${i}.attentions.${j}.${m[3]}`;
    const r = resnetKey(m[3]);
    return r && `down_blocks.${i}.resnets.${j}.${r}`;
  }
  m = /^middle_block\.([012])\.(.+)$/.exec(key);
  if (m) {
    if (m[1] === "1") return `mid_block.attentions.0.${m[2]}`;
    const r = resnetKey(m[2]);
    return r && `mid_block.resnets.${Number(m[1]) / 2}.${r}`;
  }
  m = /^output_blocks\.(\d+)\.([012])\.(.+)$/.exec(key);
  if (m) {
    const k = Number(m[1]);
    const [i, j] = [Math.floor(k / per), k % per];
    const withAttention = config.up_block_types[i] === "CrossAttnUpBlock2D";
    if (m[3].startsWith("conv.") && j === per - 1 && m[2] === (withAttention ? "2" : "1")) return `up_blocks.${i}.upsamplers.0.${m[3]}`;
    if (m[2] === "1") return `up_blocks.${i}.attentions.${j}.${m[3]}`;
    if (m[2] === "0") {
      const r = resnetKey(m[3]);
      return r && `up_blocks.${i}.resnets.${j}.${r}`;
    }
  }
  return undefined;
}

const VAE_ATTENTION: Record<string, string> = { norm: "group_norm", q: "to_q", k: "to_k", v: "to_v", proj_out: "to_out.0" };

/**
 * The diffusers name of an ldm VAE key (without "first_stage_model."), or undefined. The decoder's up blocks are
 * numbered from the narrowest level in ldm (decoder.up.0 is diffusers' last up block).
 */
export function ldmVaeKey(key: string, config: AutoencoderKLConfig): string | undefined {
  const n = config.up_block_types.length;
  const out = (k: string) => k.replace(".nin_shortcut.", ".conv_shortcut.");
  if (/^(encoder|decoder)\.(conv_in|conv_out)\.|^(quant_conv|post_quant_conv)\./.test(key)) return key;
  let m = /^(encoder|decoder)\.norm_out\.(.+)$/.exec(key);
  if (m) return `${m[1]}.conv_norm_out.${m[2]}`;
  m = /^(encoder|decoder)\.mid\.block_([12])\.(.+)$/.exec(key);
  if (m) return out(`${m[1]}.mid_block.resnets.${Number(m[2]) - 1}.${m[3]}`);
  m = /^(encoder|decoder)\.mid\.attn_1\.(norm|q|k|v|proj_out)\.(.+)$/.exec(key);
  if (m) return `${m[1]}.mid_block.attentions.0.${VAE_ATTENTION[m[2]]}.${m[3]}`;
  m = /^encoder\.down\.(\d+)\.block\.(\d+)\.(.+)$/.exec(key);
  if (m) return out(`encoder.down_blocks.${m[1]}.resnets.${m[2]}.${m[3]}`);
  m = /^encoder\.down\.(\d+)\.downsample\.(.+)$/.exec(key);
  if (m) return `encoder.down_blocks.${m[1]}.downsamplers.0.${m[2]}`;
  m = /^decoder\.up\.(\d+)\.block\.(\d+)\.(.+)$/.exec(key);
  if (m) return out(`decoder.up_blocks.${n - 1 - Number(m[1])}.resnets.${m[2]}.${m[3]}`);
  m = /^decoder\.up\.(\d+)\.upsample\.(.+)$/.exec(key);
  if (m) return `decoder.up_blocks.${n - 1 - Number(m[1])}.upsamplers.0.${m[2]}`;
  return undefined;
}

/** The prefix of `prefixes` that some key of `src` starts with (the first such), or undefined. */
function findPrefix(src: TensorSource, prefixes: string[]): string | undefined {
  const names = src.names();
  return prefixes.find((p) => names.some((n) => n.startsWith(p)));
}

export interface LdmSplit {
  unet: TensorSource;
  vae: TensorSource;
  /** CLIP's tensors as transformers names them ("text_model.encoder.layers.0...."); empty if absent. */
  textEncoder: TensorSource;
  /** Keys of the file that none of the three views uses (e.g. the noise schedule's buffers). */
  unused: string[];
}

export interface LdmOptions {
  /**
   * Take the UNet from the EMA copy ("model_ema.<key without dots>") when the file has one, as diffusers'
   * extract_ema does; default false (like diffusers).
   */
  ema?: boolean;
}

/** Split an ldm single-file checkpoint into diffusers-named views of its UNet, VAE and text encoder. */
export function splitLdmCheckpoint(src: TensorSource, unet: UNet2DConditionConfig, vae: AutoencoderKLConfig, o: LdmOptions = {}): LdmSplit {
  const used = new Set<string>();
  const view = (prefix: string | undefined, rename: (key: string) => string | undefined, what: string, reshape?: (name: string, shape: number[]) => number[] | undefined) => {
    const entries = new Map<string, ViewEntry>();
    if (prefix !== undefined) {
      for (const k of src.names()) {
        if (!k.startsWith(prefix)) continue;
        const name = rename(k.slice(prefix.length));
        if (name === undefined) continue;
        const from = o.ema && prefix === LDM_UNET_PREFIX ? emaKey(k) : k;
        if (!src.has(from)) throw new Error(`${src.source}: EMA weights asked for, but '${from}' (for '${k}') is missing`);
        entries.set(name, { from, shape: reshape?.(name, src.info(from).shape) });
        used.add(k);
        used.add(from);
      }
    }
    return viewSource(src, entries, `${src.source} [${what}]`);
  };
  // ldm's VAE attention projections are 1x1 convs ([C, C, 1, 1]); diffusers' are Linear ([C, C])
  const attnLinear = (name: string, shape: number[]) =>
    /mid_block\.attentions\.0\.(to_q|to_k|to_v|to_out\.0)\.weight$/.test(name) && shape.length > 2 ? shape.slice(0, 2) : undefined;
  const clipPrefix = findPrefix(src, LDM_CLIP_PREFIXES);
  const split = {
    unet: view(findPrefix(src, [LDM_UNET_PREFIX]), (k) => ldmUNetKey(k, unet), "unet"),
    vae: view(findPrefix(src, LDM_VAE_PREFIXES), (k) => ldmVaeKey(k, vae), "vae", attnLinear),
    textEncoder: view(clipPrefix, (k) => k, "text_encoder"),
  };
  return { ...split, unused: src.names().filter((k) => !used.has(k)) };
}

/** ldm's EMA copy names "model.diffusion_model.a.b" as "model_ema.diffusion_modelab". */
function emaKey(key: string): string {
  return "model_ema." + key.split(".").slice(1).join("");
}
