import * as tf from "@tensorflow/tfjs";
import { Rng } from "../core/random";
import { ensureData } from "../data/fetch";
import { loadImages } from "../data/images";
import { LatentCodec, psnr8bit } from "../nn/latent_codec";
import { LatentLpips } from "../perceptual/latent_lpips";
import { Lpips } from "../perceptual/lpips";
import { LatentWeightPaths, loadStandinLatentLpips, loadStandinLpips, WeightPaths } from "../perceptual/standins";

// How a latent reconstruction (notebooks 01 and 05) is measured: the target photograph in pixel and latent space,
// the two perceptual distances with the trunks behind them, and the scores of a latent (PSNR of its decode,
// LatentLPIPS, pixel LPIPS), plus the yardstick that reads those scores against noisy copies of the target.

/** The two perceptual distances and which trunk each runs on (printed next to every number). */
export interface PerceptualNets {
  lpips: Lpips;
  lpipsTrunk: string;
  latent: LatentLpips;
  latentTrunk: string;
}

/** Weight files for the two metrics; each omitted one is the committed stand-in (lib/perceptual/standins.ts). */
export interface NetPaths {
  lpips?: WeightPaths;
  latent?: LatentWeightPaths;
}

/** LPIPS and a LatentLPIPS for TAEF2 latents, the latter with the L1 term as asked. */
export function loadPerceptualNets(l1: boolean, paths: NetPaths = {}): PerceptualNets {
  const pixel = loadStandinLpips(paths.lpips);
  const latent = loadStandinLatentLpips({ ...paths.latent, l1 });
  return {
    lpips: pixel.lpips,
    lpipsTrunk: `${pixel.trunk}; ${pixel.heads}`,
    latent: latent.latentLpips,
    latentTrunk: `${latent.trunk}; ${latent.heads}`,
  };
}

/** The photograph, its latent and that latent decoded: the optimisation's target in both spaces. */
export interface Target {
  /** [1, S, S, 3] in [-1, 1]. */
  original: tf.Tensor4D;
  /** encode(original) [1, S/8, S/8, C]. */
  latent: tf.Tensor4D;
  /** decode(latent): what a perfect latent reconstruction looks like. */
  decoded: tf.Tensor4D;
}

/**
 * decode(z) clipped to the image range [-1, 1], as every score and picture sees it: frozen work, so the inference
 * engine runs it (onnxruntime where installed), the same for the target, each evaluation and a read-back run.
 */
export async function decodeClipped(codec: LatentCodec, z: tf.Tensor4D): Promise<tf.Tensor4D> {
  const raw = await codec.decodeFrozen(z);
  const decoded = tf.clipByValue(raw, -1, 1) as tf.Tensor4D;
  raw.dispose();
  return decoded;
}

export async function loadTarget(image: string, size: number, codec: LatentCodec): Promise<Target> {
  const original = await loadImages(await ensureData(image), { size });
  const latent = codec.encode(original);
  return { original, latent, decoded: await decodeClipped(codec, latent) };
}

export function disposeTarget(t: Target): void {
  tf.dispose([t.original, t.latent, t.decoded]);
}

/** What scoring a latent needs: the codec that decodes it, the distances, the target. */
export interface Scene {
  codec: LatentCodec;
  nets: PerceptualNets;
  target: Target;
}

/** Host-side N(0, std^2) latent from the seed, so the start is the same on every engine. */
export function noiseLatent(shape: number[], std: number, seed: number): tf.Tensor4D {
  const rng = new Rng(seed);
  const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
  for (let i = 0; i < data.length; i++) data[i] = std * rng.normal();
  return tf.tensor4d(data, shape as [number, number, number, number]);
}

/** PSNR of decode(z) against the decoded target and plain LatentLPIPS to the target latent; the caller owns `decoded`. */
export async function evaluateLatent(scene: Scene, z: tf.Tensor4D): Promise<{ psnr: number; latentLpips: number; decoded: tf.Tensor4D }> {
  const decoded = await decodeClipped(scene.codec, z);
  const [psnr] = await psnr8bit(decoded, scene.target.decoded);
  // The yardstick is LatentLPIPS proper, whatever L1 setting the loss used: the L1 term is only added when on.
  const d = tf.tidy(() => tf.mean(scene.nets.latent.distance(z, scene.target.latent)));
  const l1 = scene.nets.latent.l1 ? tf.tidy(() => tf.mean(tf.abs(tf.sub(z, scene.target.latent)))) : undefined;
  const latentLpips = (await d.data())[0] - (l1 ? (await l1.data())[0] : 0);
  tf.dispose([d, l1 ?? []]);
  return { psnr, latentLpips, decoded };
}

/** Pixel LPIPS of a decoded latent (clipped, as evaluateLatent() returns it) against the decoded target. */
export async function pixelLpips(scene: Scene, decoded: tf.Tensor4D): Promise<number> {
  const d = tf.tidy(() => tf.mean(scene.nets.lpips.distance(decoded, scene.target.decoded)));
  const v = (await d.data())[0];
  d.dispose();
  return v;
}

/** One point of the yardstick: a noisy copy of the target latent as both distances and PSNR see it. */
export interface NoiseProbe {
  sigma: number;
  psnr: number;
  latentLpips: number;
  lpips: number;
}

/**
 * The distances of target + sigma * N(0, 1) to the target, for each sigma. A result of the optimisation is then read
 * against this scale: a latent with a LatentLPIPS of a small-sigma copy but a PSNR far below that copy's is one the
 * metric cannot tell from the target, i.e. the metric, not the optimiser, stopped there.
 */
export async function noiseProbes(scene: Scene, sigmas: number[], seed: number): Promise<NoiseProbe[]> {
  const out: NoiseProbe[] = [];
  for (const [k, sigma] of sigmas.entries()) {
    const eps = noiseLatent(scene.target.latent.shape, 1, seed + 100 + k);
    const z = tf.tidy(() => tf.add(scene.target.latent, tf.mul(eps, sigma)) as tf.Tensor4D);
    const e = await evaluateLatent(scene, z);
    out.push({ sigma, psnr: e.psnr, latentLpips: e.latentLpips, lpips: await pixelLpips(scene, e.decoded) });
    tf.dispose([eps, z, e.decoded]);
  }
  return out;
}

/**
 * The PSNR of a noisy copy of the target that LatentLPIPS rates as far from the target as `latentLpips`
 * (interpolated in log distance between probes); undefined outside the probed range.
 */
export function noisyCopyPsnr(probes: NoiseProbe[], latentLpips: number): number | undefined {
  const p = [...probes].sort((a, b) => a.latentLpips - b.latentLpips);
  for (let i = 1; i < p.length; i++) {
    const [a, b] = [p[i - 1], p[i]];
    if (latentLpips >= a.latentLpips && latentLpips <= b.latentLpips) {
      const t = Math.log(latentLpips / a.latentLpips) / Math.log(b.latentLpips / a.latentLpips);
      return a.psnr + t * (b.psnr - a.psnr);
    }
  }
  return undefined;
}
