import * as fs from "fs";
import * as path from "path";
import { Rng } from "../../core/random";
import { toFloat32 } from "../../io/dtype";
import { HostTensor, shapeStr } from "../../io/host_tensor";
import { readTorchCheckpoint } from "../../io/pth";
import { readSafetensors } from "../../io/safetensors";
import { transpose2d } from "../../io/weight_map";
import { ClipConfig, ClipModel, clipParameterShapes, parseClipConfig } from "./clip_model";

// The official CLIP checkpoints, read without PyTorch, into transformers' CLIPModel layout:
//  - transformers folders (openai/clip-vit-base-patch32, openai/clip-vit-large-patch14, laion/CLIP-ViT-g-14-*):
//    config.json + model.safetensors or pytorch_model.bin, keys as they are;
//  - OpenAI's releases (ViT-B-32.pt, ViT-L-14.pt): TorchScript archives, float16, read by lib/io/pth.ts, whose
//    module tree flattens to OpenAI's state-dict keys (plain torch.save state dicts of the same model also load);
//  - open_clip's releases (open_clip_pytorch_model.bin / open_clip_model.safetensors, e.g. ViT-g-14
//    laion2b_s34b_b88k): OpenAI's key layout with the architecture given by open_clip's model config.
// OpenAI's layout converts to transformers' as transformers' convert_clip_original_pytorch_to_hf.py maps it:
// attn.in_proj_weight/bias split into q/k/v, ln_1/ln_2 -> layer_norm1/2, mlp.c_fc/c_proj -> fc1/fc2, conv1 ->
// patch_embedding, ln_pre -> pre_layrnorm, ln_post -> post_layernorm, proj and text_projection transposed.

/** An architecture as open_clip's model_configs/*.json state it (only ViT image towers). */
export interface OpenClipArch {
  embedDim: number;
  vision: { imageSize: number; patchSize: number; width: number; layers: number; heads: number; mlpWidth: number };
  text: { contextLength: number; vocabSize: number; width: number; heads: number; layers: number; mlpWidth: number };
  /** OpenAI's models use QuickGELU (x sigmoid(1.702 x)); open_clip's own trainings nn.GELU. */
  quickGelu: boolean;
}

/**
 * open_clip's configs (src/open_clip/model_configs, checked at v2.20.0 and v3.3.0): heads = width / head_width
 * (head_width 64 unless given), MLP width int(width * mlp_ratio) (mlp_ratio 4 unless given), GELU unless the
 * name ends in -quickgelu. ViT-g-14: head_width 88, mlp_ratio 4.3637 -> 16 heads, MLP 6144.
 * Parameters (open_clip docs/model_profile.csv): ViT-B-32 151.28M, ViT-L-14 427.62M, ViT-g-14 1366.68M.
 */
export const OPEN_CLIP_ARCHS: Record<"ViT-B-32" | "ViT-L-14" | "ViT-g-14", OpenClipArch> = {
  "ViT-B-32": {
    embedDim: 512,
    vision: { imageSize: 224, patchSize: 32, width: 768, layers: 12, heads: 12, mlpWidth: 3072 },
    text: { contextLength: 77, vocabSize: 49408, width: 512, heads: 8, layers: 12, mlpWidth: 2048 },
    quickGelu: false,
  },
  "ViT-L-14": {
    embedDim: 768,
    vision: { imageSize: 224, patchSize: 14, width: 1024, layers: 24, heads: 16, mlpWidth: 4096 },
    text: { contextLength: 77, vocabSize: 49408, width: 768, heads: 12, layers: 12, mlpWidth: 3072 },
    quickGelu: false,
  },
  "ViT-g-14": {
    embedDim: 1024,
    vision: { imageSize: 224, patchSize: 14, width: 1408, layers: 40, heads: 16, mlpWidth: 6144 },
    text: { contextLength: 77, vocabSize: 49408, width: 1024, heads: 16, layers: 24, mlpWidth: 4096 },
    quickGelu: false,
  },
};

/** transformers' CLIPConfig equivalent of an OpenAI / open_clip architecture. */
export function clipConfigFromArch(a: OpenClipArch): ClipConfig {
  for (const [tower, t] of [["image", a.vision], ["text", a.text]] as const) {
    if (!Number.isInteger(t.heads) || t.heads < 1 || t.width % t.heads !== 0) {
      throw new Error(`CLIP architecture: ${t.heads} ${tower} heads do not split width ${t.width} (OpenAI's rule is width / 64; give the head count)`);
    }
  }
  const act = a.quickGelu ? "quick_gelu" : "gelu";
  const common = { hiddenAct: act, layerNormEps: 1e-5, projectionDim: a.embedDim, withProjection: true } as const;
  return {
    text: {
      ...common,
      hiddenSize: a.text.width,
      intermediateSize: a.text.mlpWidth,
      numHiddenLayers: a.text.layers,
      numAttentionHeads: a.text.heads,
      vocabSize: a.text.vocabSize,
      maxPositionEmbeddings: a.text.contextLength,
      // OpenAI's tokenizer puts <|endoftext|> last in the vocabulary and pools at each row's largest id
      eosTokenId: a.text.vocabSize - 1,
      bosTokenId: a.text.vocabSize - 2,
      padTokenId: 0,
    },
    vision: {
      ...common,
      hiddenSize: a.vision.width,
      intermediateSize: a.vision.mlpWidth,
      numHiddenLayers: a.vision.layers,
      numAttentionHeads: a.vision.heads,
      imageSize: a.vision.imageSize,
      patchSize: a.vision.patchSize,
      numChannels: 3,
    },
    projectionDim: a.embedDim,
    logitScaleInit: Math.log(1 / 0.07),
  };
}

function need(sd: Record<string, HostTensor>, key: string, rank: number, source: string): number[] {
  const t = sd[key];
  if (!t) throw new Error(`${source}: missing weight '${key}' (not an OpenAI-layout CLIP state dict?)`);
  if (t.shape.length !== rank) throw new Error(`${source}: weight '${key}' has shape ${shapeStr(t.shape)}, expected ${rank} dimensions`);
  return t.shape;
}

function countBlocks(sd: Record<string, HostTensor>, prefix: string): number {
  const re = new RegExp(`^${prefix.replace(/\./g, "\\.")}resblocks\\.(\\d+)\\.attn\\.in_proj_weight$`);
  return Object.keys(sd).filter((k) => re.test(k)).length;
}

/**
 * An OpenAI-layout state dict's architecture from its shapes, as OpenAI's build_model reads it. Head counts are
 * not in the shapes: OpenAI's rule is width / 64 for both towers (right for every OpenAI release); pass them for
 * other models (open_clip's ViT-g-14 has 16 image heads of 88).
 */
export function inferOpenAiArch(sd: Record<string, HostTensor>, source: string, o: { quickGelu: boolean; visionHeads?: number; textHeads?: number }): OpenClipArch {
  if (!sd["visual.proj"]) {
    const resnet = Object.keys(sd).some((k) => k.startsWith("visual.layer1."));
    throw new Error(`${source}: no 'visual.proj': ${resnet ? "a ResNet image tower (RN50 and kin), which is not supported; only ViT towers are" : "not an OpenAI-layout CLIP state dict"}`);
  }
  const [vw, , , patch] = need(sd, "visual.conv1.weight", 4, source);
  const tokens = need(sd, "visual.positional_embedding", 2, source)[0];
  const grid = Math.round(Math.sqrt(tokens - 1));
  if (grid * grid + 1 !== tokens) throw new Error(`${source}: visual.positional_embedding has ${tokens} rows, not a square grid plus the class token`);
  const tw = need(sd, "ln_final.weight", 1, source)[0];
  const vl = countBlocks(sd, "visual.transformer.");
  const tl = countBlocks(sd, "transformer.");
  const mlp = (prefix: string, layers: number, width: number) => (layers > 0 ? need(sd, `${prefix}resblocks.0.mlp.c_fc.weight`, 2, source)[0] : 4 * width);
  return {
    embedDim: need(sd, "text_projection", 2, source)[1],
    vision: { imageSize: patch * grid, patchSize: patch, width: vw, layers: vl, heads: o.visionHeads ?? vw / 64, mlpWidth: mlp("visual.transformer.", vl, vw) },
    text: {
      contextLength: need(sd, "positional_embedding", 2, source)[0],
      vocabSize: need(sd, "token_embedding.weight", 2, source)[0],
      width: tw,
      heads: o.textHeads ?? tw / 64,
      layers: tl,
      mlpWidth: mlp("transformer.", tl, tw),
    },
    quickGelu: o.quickGelu,
  };
}

/** Keys OpenAI's archives carry that are no weights (build_model deletes them), and attention-mask buffers. */
const NOT_WEIGHTS = /^(input_resolution|context_length|vocab_size)$|(^|\.)attn_mask$/;

/** Transpose a [rows, cols] projection stored as x @ P into a torch Linear weight [cols, rows], as float32. */
function transposed(t: HostTensor, what: string): HostTensor {
  const [r, c] = t.shape;
  return { dtype: "float32", shape: [c, r], data: transpose2d(toFloat32(t, what), [r, c]) };
}

/** Rename (and split / transpose) an OpenAI-layout state dict into transformers' CLIPModel keys. */
export function openAiToTransformers(sd: Record<string, HostTensor>, source: string): Record<string, HostTensor> {
  const out: Record<string, HostTensor> = {};
  const blocks = (from: string, to: string, key: string): boolean => {
    const m = key.match(new RegExp(`^${from.replace(/\./g, "\\.")}resblocks\\.(\\d+)\\.(.+)$`));
    if (!m) return false;
    const [, i, rest] = m;
    const dst = `${to}.encoder.layers.${i}.`;
    const t = sd[key];
    const inProj = rest.match(/^attn\.in_proj_(weight|bias)$/);
    if (inProj) {
      // rows [q; k; v], each width wide
      const d = t.shape[0] / 3;
      const per = t.data.length / 3;
      ["q_proj", "k_proj", "v_proj"].forEach((name, j) => {
        out[`${dst}self_attn.${name}.${inProj[1]}`] = { dtype: t.dtype, shape: [d, ...t.shape.slice(1)], data: t.data.subarray(j * per, (j + 1) * per) };
      });
      return true;
    }
    const renames: Array<[string, string]> = [["attn.out_proj.", "self_attn.out_proj."], ["ln_1.", "layer_norm1."], ["ln_2.", "layer_norm2."], ["mlp.c_fc.", "mlp.fc1."], ["mlp.c_proj.", "mlp.fc2."]];
    const hit = renames.find(([a]) => rest.startsWith(a));
    if (!hit) throw new Error(`${source}: unexpected key '${key}' in a residual block`);
    out[dst + hit[1] + rest.slice(hit[0].length)] = t;
    return true;
  };
  const direct: Record<string, string> = {
    "token_embedding.weight": "text_model.embeddings.token_embedding.weight",
    positional_embedding: "text_model.embeddings.position_embedding.weight",
    "ln_final.weight": "text_model.final_layer_norm.weight",
    "ln_final.bias": "text_model.final_layer_norm.bias",
    "visual.conv1.weight": "vision_model.embeddings.patch_embedding.weight",
    "visual.class_embedding": "vision_model.embeddings.class_embedding",
    "visual.positional_embedding": "vision_model.embeddings.position_embedding.weight",
    "visual.ln_pre.weight": "vision_model.pre_layrnorm.weight",
    "visual.ln_pre.bias": "vision_model.pre_layrnorm.bias",
    "visual.ln_post.weight": "vision_model.post_layernorm.weight",
    "visual.ln_post.bias": "vision_model.post_layernorm.bias",
    logit_scale: "logit_scale",
  };
  for (const [key, t] of Object.entries(sd)) {
    if (NOT_WEIGHTS.test(key)) continue;
    if (direct[key]) out[direct[key]] = t;
    else if (key === "text_projection") out["text_projection.weight"] = transposed(t, `${source}: ${key}`);
    else if (key === "visual.proj") out["visual_projection.weight"] = transposed(t, `${source}: ${key}`);
    else if (!blocks("visual.transformer.", "vision_model", key) && !blocks("transformer.", "text_model", key)) {
      throw new Error(`${source}: unexpected key '${key}' for an OpenAI-layout CLIP ViT (open_clip extras such as layer scale or attentional pooling are not supported)`);
    }
  }
  return out;
}

/**
 * A CLIPModel of `config` holding a transformers-layout state dict. Every weight's presence and shape is checked
 * before the model is built, so a wrong architecture fails at once instead of after allocating it.
 */
function clipFromStateDict(sd: Record<string, HostTensor>, config: ClipConfig, source: string): ClipModel {
  for (const [name, shape] of clipParameterShapes(config)) {
    const t = sd[name];
    if (!t) throw new Error(`${source}: missing weight '${name}' (expected shape ${shapeStr(shape)})`);
    if (shapeStr(t.shape) !== shapeStr(shape)) throw new Error(`${source}: weight '${name}' has shape ${shapeStr(t.shape)}, expected ${shapeStr(shape)}`);
  }
  const model = new ClipModel(config, new Rng(0));
  model.loadStateDict(sd, { source });
  return model;
}

function fromOpenAiLayout(sd: Record<string, HostTensor>, arch: OpenClipArch, source: string): ClipModel {
  return clipFromStateDict(openAiToTransformers(sd, source), clipConfigFromArch(arch), source);
}

/**
 * OpenAI's released CLIP (ViT-B-32.pt, ViT-L-14.pt, ...: TorchScript archives; a plain state dict of the same
 * model also loads). QuickGELU; heads width / 64 unless given.
 */
export function loadOpenAiClip(file: string, heads: { vision?: number; text?: number } = {}): ClipModel {
  const sd = readTorchCheckpoint(file);
  return fromOpenAiLayout(sd, inferOpenAiArch(sd, file, { quickGelu: true, visionHeads: heads.vision, textHeads: heads.text }), file);
}

/**
 * An open_clip checkpoint (open_clip_pytorch_model.bin, or .safetensors) of a named architecture (e.g. ViT-g-14
 * for laion2b_s34b_b88k) or an explicit one. Shapes are checked against the architecture on load.
 */
export function loadOpenClip(file: string, arch: keyof typeof OPEN_CLIP_ARCHS | OpenClipArch): ClipModel {
  const a = typeof arch === "string" ? OPEN_CLIP_ARCHS[arch] : arch;
  if (!a) throw new Error(`${file}: unknown open_clip architecture ${JSON.stringify(arch)} (known: ${Object.keys(OPEN_CLIP_ARCHS).join(", ")})`);
  return fromOpenAiLayout(readWeights(file), a, file);
}

/** The weight files a transformers folder may hold, in the order from_pretrained prefers them (single, then sharded). */
const TRANSFORMERS_WEIGHTS = ["model.safetensors", "pytorch_model.bin"];

function readWeights(file: string): Record<string, HostTensor> {
  return file.endsWith(".safetensors") ? readSafetensors(file).tensors : readTorchCheckpoint(file);
}

/** A sharded checkpoint: `<name>.index.json` maps every key to its shard file in the same folder. */
function readSharded(index: string): Record<string, HostTensor> {
  let map: unknown;
  try {
    map = JSON.parse(fs.readFileSync(index, "utf8")).weight_map;
  } catch (e) {
    throw new Error(`${index}: not valid JSON (${(e as Error).message})`);
  }
  if (typeof map !== "object" || map === null) throw new Error(`${index}: no weight_map object`);
  const out: Record<string, HostTensor> = {};
  for (const shard of new Set(Object.values(map as Record<string, string>))) {
    const file = path.join(path.dirname(index), shard);
    if (!fs.existsSync(file)) throw new Error(`${index}: shard ${shard} is missing`);
    Object.assign(out, readWeights(file));
  }
  return out;
}

/**
 * A transformers CLIPModel folder: config.json and model.safetensors or pytorch_model.bin, or a sharded
 * checkpoint (model.safetensors.index.json / pytorch_model.bin.index.json and its shards).
 */
export function loadTransformersClip(dir: string): ClipModel {
  const configFile = path.join(dir, "config.json");
  if (!fs.existsSync(configFile)) throw new Error(`${dir}: no config.json (expected a transformers CLIPModel folder)`);
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(fs.readFileSync(configFile, "utf8"));
  } catch (e) {
    throw new Error(`${configFile}: not valid JSON (${(e as Error).message})`);
  }
  const config = parseClipConfig(json, configFile);
  for (const name of TRANSFORMERS_WEIGHTS) {
    const file = path.join(dir, name);
    if (fs.existsSync(file)) return clipFromStateDict(readWeights(file), config, file);
    if (fs.existsSync(`${file}.index.json`)) return clipFromStateDict(readSharded(`${file}.index.json`), config, `${file}.index.json`);
  }
  throw new Error(`${dir}: no weights (expected one of ${TRANSFORMERS_WEIGHTS.join(", ")}, or its .index.json with shards)`);
}
