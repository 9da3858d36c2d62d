import * as fs from "fs";
import * as path from "path";
import { fromRoot } from "../core/paths";
import { Rng } from "../core/random";
import { HostTensor } from "../io/host_tensor";
import { readTorchCheckpoint } from "../io/pth";
import { readSafetensors } from "../io/safetensors";
import { Slice } from "../nn/vgg";
import { LatentLpips, LatentScaling } from "./latent_lpips";
import { Lpips } from "./lpips";

// The perceptual distances with stand-in trunks. The official ones need ImageNet-trained VGG16s and BAPPS-calibrated
// heads; neither data set is reachable here, so lib/bin/train_standins.ts trains narrow trunks on CIFAR-10 (pixels
// for LPIPS, TAEF2 latents for LatentLPIPS) and commits them in data/weights/. Heads default to all ones (LPIPS'
// uncalibrated "baseline"); lib/perceptual/calibrate.ts fits them on 2AFC triplets where such data exists. Given
// official weight paths, the same loaders build the official metrics. Every loader returns a `trunk` (and `heads`)
// description: print it next to any number the metric produced.

/** Width multiplier of the committed stand-in trunks. */
export const STANDIN_WIDTH = 1 / 8;

export const STANDIN_FILES = {
  pixel: fromRoot("data", "weights", "vgg16_cifar_w0.125.safetensors"),
  latent: fromRoot("data", "weights", "latent_vgg16bn_taef2_w0.125.safetensors"),
};

/**
 * ImageNet's mean and std for inputs in [-1, 1]: ((x + 1) / 2 - mean) / std = (x - shift) / scale with shift =
 * 2 mean - 1, scale = 2 std. These are LPIPS' scaling-layer constants, so the pixel stand-in is trained on exactly
 * what LPIPS feeds its trunk.
 */
export const IMAGENET_SHIFT = [0.485, 0.456, 0.406].map((m) => 2 * m - 1);
export const IMAGENET_SCALE = [0.229, 0.224, 0.225].map((s) => 2 * s);

export interface WeightPaths {
  /** Trunk weights: a stand-in .safetensors, or an official torch file. Default: the committed stand-in. */
  trunk?: string;
  /** Calibrated heads (`lin{0..4}.model.1.weight`); default all ones. May be the same file as the trunk. */
  heads?: string;
}

/** What a metric runs on, e.g. "stand-in VGG16 w1/8 trained on CIFAR-10 pixels (32x32), test acc 71.2%". */
export interface MetricDescription {
  trunk: string;
  heads: string;
}

export interface LoadedLpips extends MetricDescription {
  lpips: Lpips;
}

export interface LoadedLatentLpips extends MetricDescription {
  latentLpips: LatentLpips;
}

function readWeights(file: string): { tensors: Record<string, HostTensor>; metadata: Record<string, string> } {
  if (!fs.existsSync(file)) throw new Error(`${file}: weights not found (stand-ins are made by: node node_modules/d2g/lib/bin/train_standins.js)`);
  return file.endsWith(".safetensors") ? readSafetensors(file) : { tensors: readTorchCheckpoint(file), metadata: {} };
}

/** Shape of conv `index` of a VGG16 state dict (in `slice`, for the released layout), by either key layout. */
function convShape(tensors: Record<string, HostTensor>, file: string, index: number, slice: number): { outC: number; inC: number } {
  const pattern = new RegExp(`^(module\\.)?(features|net\\.slice${slice})\\.${index}\\.weight$`);
  const key = Object.keys(tensors).find((k) => pattern.test(k));
  if (!key) throw new Error(`${file}: no conv 'features.${index}.weight' or 'net.slice${slice}.${index}.weight'; not a VGG16 trunk`);
  const [outC, inC] = tensors[key].shape;
  return { outC, inC };
}

function headsDescription(file?: string): string {
  return file ? `heads from ${path.basename(file)}` : "all-ones heads (uncalibrated)";
}

/** Pixel LPIPS on the stand-in VGG16 (or, given paths, torchvision's VGG16 and the official heads). */
export function loadStandinLpips(paths: WeightPaths = {}): LoadedLpips {
  const file = paths.trunk ?? STANDIN_FILES.pixel;
  const { tensors, metadata } = readWeights(file);
  const width = convShape(tensors, file, 0, 1).outC / 64;
  const metric = new Lpips(new Rng(0), { width });
  metric.loadTrunk(tensors, file);
  if (paths.heads) metric.loadHeads(readWeights(paths.heads).tensors, paths.heads);
  const trunk = metadata.description ?? `VGG16${width === 1 ? "" : ` w${width}`} from ${path.basename(file)}`;
  return { lpips: metric, trunk, heads: headsDescription(paths.heads) };
}

export interface LatentWeightPaths extends WeightPaths {
  /** Applied to both latents first (default: none, the inputs are already diffusion latents; TAEF2's is identity). */
  scaling?: LatentScaling;
  /** Add mean |x0 - x1| (default true, as released). */
  l1?: boolean;
}

/**
 * LatentLPIPS for TAEF2 latents on the stand-in latent VGG16-BN (or, given paths, a released trunk and heads).
 * Trunk keys may be `net.slice{k}.{i}.*` (released LatentLPIPS, ours) or torchvision's `features.{i}.*` (the
 * classification checkpoint, optionally `module.`-prefixed), whose index i says which slice it belongs to.
 */
export function loadStandinLatentLpips(paths: LatentWeightPaths = {}): LoadedLatentLpips {
  const file = paths.trunk ?? STANDIN_FILES.latent;
  const { tensors, metadata } = readWeights(file);
  const { outC: stem, inC } = convShape(tensors, file, 0, 1);
  // stage 2's first conv (index 7 of vgg16_bn) gives the width; stage 1 may be wider (VggOptions.stem)
  const width = convShape(tensors, file, 7, 2).outC / 128;
  const metric = new LatentLpips({ latentChannels: inC, width, stem, scaling: paths.scaling, l1: paths.l1 }, new Rng(0));
  const sliceOf = new Map<number, number>();
  for (const [name, s] of metric.net.children()) if (s instanceof Slice) for (const [i] of s.entries) sliceOf.set(i, Number(name.slice(5)));
  metric.net.loadStateDict(tensors, {
    source: file,
    rename: (raw) => {
      const k = raw.replace(/^module\./, "");
      const released = /^net\.(slice\d\..*)$/.exec(k);
      if (released) return released[1];
      const tv = /^features\.(\d+)\.(.*)$/.exec(k);
      return tv && sliceOf.has(Number(tv[1])) ? `slice${sliceOf.get(Number(tv[1]))}.${tv[1]}.${tv[2]}` : undefined;
    },
  });
  if (paths.heads) {
    metric.heads.loadStateDict(readWeights(paths.heads).tensors, { source: paths.heads, rename: (k) => (/^lin\d+\./.test(k) ? k : undefined) });
  }
  const shape = `${width === 1 ? "" : ` w${width}`}${stem === Math.round(64 * width) ? "" : `, stage 1 ${stem} wide`}`;
  const trunk = metadata.description ?? `latent VGG16-BN${shape} (${inC} channels) from ${path.basename(file)}`;
  return { latentLpips: metric, trunk, heads: headsDescription(paths.heads) };
}
