import * as fs from "fs";
import * as path from "path";
import { Progress } from "../../core/progress";
import { Rng } from "../../core/random";
import { readJsonFile, writeJsonFile } from "../../io/json_file";
import { LazyTensor, writeSafetensorsLazy } from "../../io/safetensors";
import { openTensorFile, TensorSource } from "../../io/tensor_source";
import { Module, withoutInit } from "../module";
import { AutoencoderKL, AutoencoderKLConfig, parseAutoencoderKLConfig, SD15_VAE_CONFIG_JSON, VAE_SPEC } from "./autoencoder_kl";
import { ConfigSpec, configJson } from "./config_json";
import { LdmOptions, splitLdmCheckpoint } from "./ldm_keys";
import { parseUNet2DConditionConfig, SD15_UNET_CONFIG_JSON, UNet2DConditionConfig, UNet2DConditionModel, UNET_SPEC } from "./unet2d_condition";

// Stable Diffusion weights from disk: a diffusers model folder (model_index.json, unet/, vae/, text_encoder/,
// tokenizer/, scheduler/), or an original single-file checkpoint (ldm layout, .safetensors or .ckpt). Weights
// stream tensor by tensor into the networks (fp16 and bf16 files are converted on the fly), so loading SD1.5's UNet
// holds one float32 copy of it: the network's own.

/** diffusers models name their weights diffusion_pytorch_model.*; transformers models model.safetensors / pytorch_model.bin. */
export type WeightNaming = "diffusers" | "transformers";

/** Candidate weight files of a component folder, in the order diffusers prefers them (safetensors first). */
function weightFileNames(naming: WeightNaming, variant?: string): string[] {
  const [st, bin] = naming === "diffusers" ? ["diffusion_pytorch_model", "diffusion_pytorch_model"] : ["model", "pytorch_model"];
  const v = variant ? `.${variant}` : "";
  return [`${st}${v}.safetensors`, `${st}.safetensors.index${v}.json`, `${bin}${v}.bin`, `${bin}.bin.index${v}.json`];
}

export interface ComponentOptions {
  /** Weight file variant, e.g. "fp16" for diffusion_pytorch_model.fp16.safetensors. Without it the plain files are
   * used, or the fp16 ones when a folder has only those. */
  variant?: string;
}

/** The weights of one component folder (unet/, vae/, text_encoder/) as a lazy source. */
export function openComponentWeights(dir: string, naming: WeightNaming, o: ComponentOptions = {}): TensorSource {
  const tries = o.variant ? [weightFileNames(naming, o.variant)] : [weightFileNames(naming), weightFileNames(naming, "fp16")];
  for (const names of tries) {
    const found = names.find((n) => fs.existsSync(path.join(dir, n)));
    if (found) return openTensorFile(path.join(dir, found));
  }
  throw new Error(`${dir}: no weights file (looked for ${tries.flat().join(", ")})`);
}

/** Only networks big enough to take a while get a bar (SD1.5's UNet streams in ~40 s on the cpu engine). */
const BAR_MIN_PARAMETERS = 50e6;

function bar(label: string, net: Module, steps: number): Progress | undefined {
  return net.numParameters() >= BAR_MIN_PARAMETERS ? new Progress(label, steps) : undefined;
}

function withSource<T>(src: TensorSource, use: (src: TensorSource) => T): T {
  try {
    return use(src);
  } finally {
    src.close?.();
  }
}

/** Build a UNet2DConditionModel from its config and stream `weights` into it (no random init first). */
export function unetFromWeights(config: UNet2DConditionConfig, weights: TensorSource): UNet2DConditionModel {
  const net = withoutInit(() => new UNet2DConditionModel(config, new Rng(0), weights.source));
  try {
    net.loadWeights(weights, { progress: bar("load UNet tensors", net, net.namedVariables().length) });
  } catch (e) {
    net.dispose();
    throw e;
  }
  return net;
}

/** diffusers' legacy VAE attention names (query, key, value, proj_attn), as its _convert_deprecated_attention_blocks renames them. */
export function vaeLegacyRename(key: string): string {
  const m = /^(.*mid_block\.attentions\.0)\.(query|key|value|proj_attn)\.(weight|bias)$/.exec(key);
  if (!m) return key;
  const name = { query: "to_q", key: "to_k", value: "to_v", proj_attn: "to_out.0" }[m[2] as "query" | "key" | "value" | "proj_attn"];
  return `${m[1]}.${name}.${m[3]}`;
}

/** Build an AutoencoderKL from its config and stream `weights` into it; legacy attention names load too. */
export function vaeFromWeights(config: AutoencoderKLConfig, weights: TensorSource): AutoencoderKL {
  const vae = withoutInit(() => new AutoencoderKL(config, new Rng(0)));
  try {
    vae.loadWeights(weights, { rename: vaeLegacyRename, progress: bar("load VAE tensors", vae, vae.namedVariables().length) });
  } catch (e) {
    vae.dispose();
    throw e;
  }
  return vae;
}

/** A diffusers UNet2DConditionModel folder (config.json and weights), e.g. <sd>/unet. */
export function loadUNet2DConditionModel(dir: string, o: ComponentOptions = {}): UNet2DConditionModel {
  const configFile = path.join(dir, "config.json");
  const config = parseUNet2DConditionConfig(readJsonFile(configFile), configFile);
  return withSource(openComponentWeights(dir, "diffusers", o), (src) => unetFromWeights(config, src));
}

/** A diffusers AutoencoderKL folder, e.g. <sd>/vae. */
export function loadAutoencoderKL(dir: string, o: ComponentOptions = {}): AutoencoderKL {
  const configFile = path.join(dir, "config.json");
  const config = parseAutoencoderKLConfig(readJsonFile(configFile), configFile);
  return withSource(openComponentWeights(dir, "diffusers", o), (src) => vaeFromWeights(config, src));
}

/** A text encoder's raw transformers config.json and its weights (a lazy source: close() it when loaded). */
export interface TextEncoderWeights {
  config: unknown;
  weights: TensorSource;
}

/** A transformers CLIPTextModel folder, e.g. <sd>/text_encoder: its config.json and weights, for the CLIP text encoder to load. */
export function textEncoderWeights(dir: string, o: ComponentOptions = {}): TextEncoderWeights {
  return { config: readJsonFile(path.join(dir, "config.json")), weights: openComponentWeights(dir, "transformers", o) };
}

/** Where the parts of a diffusers Stable Diffusion folder are. */
export interface StableDiffusionFolder {
  root: string;
  /** model_index.json as written (pipeline and component classes), or null if the folder has none. */
  modelIndex: unknown;
  unet: string;
  vae: string;
  textEncoder: string;
  /** tokenizer/vocab.json and tokenizer/merges.txt (CLIP BPE), and tokenizer_config.json (pad token, row length) or null. */
  tokenizer: { vocab: string; merges: string; config: string | null };
  /** scheduler/scheduler_config.json as written. */
  schedulerConfig: unknown;
}

/** Locate and check the parts of a diffusers Stable Diffusion folder (nothing large is read). */
export function stableDiffusionFolder(root: string): StableDiffusionFolder {
  const need = (rel: string): string => {
    const p = path.join(root, rel);
    if (!fs.existsSync(p)) throw new Error(`${root}: not a diffusers Stable Diffusion folder: ${rel} is missing`);
    return p;
  };
  const index = path.join(root, "model_index.json");
  const tokConfig = path.join(root, "tokenizer", "tokenizer_config.json");
  return {
    root,
    modelIndex: fs.existsSync(index) ? readJsonFile(index) : null,
    unet: path.dirname(need("unet/config.json")),
    vae: path.dirname(need("vae/config.json")),
    textEncoder: path.dirname(need("text_encoder/config.json")),
    tokenizer: { vocab: need("tokenizer/vocab.json"), merges: need("tokenizer/merges.txt"), config: fs.existsSync(tokConfig) ? tokConfig : null },
    schedulerConfig: readJsonFile(need("scheduler/scheduler_config.json")),
  };
}

export interface SingleFileOptions extends LdmOptions {
  /** The networks' configs (default: Stable Diffusion 1.5's; a single file carries none). */
  unetConfig?: UNet2DConditionConfig;
  vaeConfig?: AutoencoderKLConfig;
}

export interface SingleFileModels {
  unet: UNet2DConditionModel;
  vae: AutoencoderKL;
  /**
   * CLIP's tensors under transformers' names, still in the file; close() when loaded (a .ckpt stays open until
   * then). The file carries no config: SD1.5's is the CLIP text encoder's SD15_TEXT_ENCODER_CONFIG_JSON.
   */
  textEncoder: TensorSource;
  /** Keys of the file that no network uses (the noise schedule's buffers, an EMA copy...), for the caller to report. */
  unused: string[];
}

/** An original single-file checkpoint (v1-5-pruned-emaonly.safetensors / .ckpt): UNet and VAE built and loaded. */
export function loadSingleFile(file: string, o: SingleFileOptions = {}): SingleFileModels {
  const unetConfig = o.unetConfig ?? parseUNet2DConditionConfig(SD15_UNET_CONFIG_JSON, "SD1.5 UNet config");
  const vaeConfig = o.vaeConfig ?? parseAutoencoderKLConfig(SD15_VAE_CONFIG_JSON, "SD1.5 VAE config");
  const src = openTensorFile(file);
  try {
    const split = splitLdmCheckpoint(src, unetConfig, vaeConfig, o);
    const unet = unetFromWeights(unetConfig, split.unet);
    try {
      const vae = vaeFromWeights(vaeConfig, split.vae);
      return { unet, vae, textEncoder: split.textEncoder, unused: split.unused };
    } catch (e) {
      unet.dispose();
      throw e;
    }
  } catch (e) {
    src.close?.();
    throw e;
  }
}

/** The diffusers release whose source the exported config and weights were checked against. */
export const EXPORT_DIFFUSERS_VERSION = "0.40.0.dev0";

/** A diffusers model folder: config.json and diffusion_pytorch_model.safetensors (float32, torch layouts, diffusers' keys). */
function saveDiffusersModel<T>(net: Module, config: T, spec: ConfigSpec<T>, dir: string, label: string): void {
  fs.mkdirSync(dir, { recursive: true });
  const tensors = net.lazyStateDict();
  const progress = bar(`save ${label} tensors`, net, tensors.length);
  const counted = tensors.map(([name, t]): [string, LazyTensor] => [name, { ...t, read: () => (progress?.tick(), t.read()) }]);
  writeSafetensorsLazy(path.join(dir, "diffusion_pytorch_model.safetensors"), counted, { format: "pt" });
  progress?.finish();
  writeJsonFile(path.join(dir, "config.json"), configJson(config, spec, EXPORT_DIFFUSERS_VERSION));
}

/**
 * Save a UNet2DConditionModel (e.g. a distilled student) as a diffusers model folder that diffusers'
 * UNet2DConditionModel.from_pretrained opens. Tensors are read from the engine one at a time.
 */
export function saveUNet2DConditionModel(net: UNet2DConditionModel, dir: string): void {
  saveDiffusersModel(net, net.config, UNET_SPEC, dir, "UNet");
}

/** Save an AutoencoderKL as a diffusers model folder (AutoencoderKL.from_pretrained opens it). */
export function saveAutoencoderKL(vae: AutoencoderKL, dir: string): void {
  saveDiffusersModel(vae, vae.config, VAE_SPEC, dir, "VAE");
}
