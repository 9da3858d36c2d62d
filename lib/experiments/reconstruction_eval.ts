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

/** One problem of a batch: reconstruct this photograph from the start latent and augmentation stream of this seed. */
export interface TargetRow {
  /** A data file (data/sources.json name). */
  image: string;
  seed: number;
}

/**
 * The photographs, their latents and those decoded: the optimisation's targets in both spaces, one row per
 * (photograph, seed). Rows are independent problems optimised together as one batch (every loss is a sum of
 * per-row terms), which a CPU runs several times faster per row than one at a time.
 */
export interface Target {
  rows: TargetRow[];
  /** [N, S, S, 3] in [-1, 1]. */
  original: tf.Tensor4D;
  /** encode(original) [N, S/8, S/8, C]. */
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

/** Every photograph (centre-cropped, `size` px) once per seed, photograph-major: rows (image 0, seed 0), (image 0, seed 1), ... */
export async function loadTarget(images: readonly string[], seeds: readonly number[], size: number, codec: LatentCodec): Promise<Target> {
  if (images.length === 0 || seeds.length === 0) throw new Error(`reconstruction target: needs at least one image and one seed, got ${images.length} and ${seeds.length}`);
  const files: string[] = [];
  for (const image of images) files.push(await ensureData(image));
  const photos = await loadImages(files, { size });
  const rows = images.flatMap((image) => seeds.map((seed) => ({ image, seed })));
  const original = tf.tidy(() => tf.gather(photos, rows.map((_, k) => Math.floor(k / seeds.length))) as tf.Tensor4D);
  photos.dispose();
  const latent = codec.encode(original);
  return { rows, original, latent, decoded: await decodeClipped(codec, latent) };
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

/** Host-side N(0, std^2) latents, row k from seeds[k], so a row's start is the same on every engine and in any batch. */
export function noiseLatent(shape: number[], std: number, seeds: readonly number[]): tf.Tensor4D {
  if (shape[0] !== seeds.length) throw new Error(`noiseLatent: ${shape[0]} rows but ${seeds.length} seeds`);
  const per = shape.slice(1).reduce((a, b) => a * b, 1);
  const data = new Float32Array(per * seeds.length);
  seeds.forEach((seed, k) => {
    const rng = new Rng(seed);
    for (let i = k * per; i < (k + 1) * per; i++) data[i] = std * rng.normal();
  });
  return tf.tensor4d(data, shape as [number, number, number, number]);
}

/** Per row: PSNR of decode(z) against the decoded target and plain LatentLPIPS to the target latent; the caller owns `decoded`. */
export async function evaluateLatent(scene: Scene, z: tf.Tensor4D): Promise<{ psnr: number[]; latentLpips: number[]; decoded: tf.Tensor4D }> {
  const decoded = await decodeClipped(scene.codec, z);
  const psnr = await psnr8bit(decoded, scene.target.decoded);
  // The yardstick is LatentLPIPS proper, whatever L1 setting the loss used: the L1 term is only added when on.
  const d = tf.tidy(() => {
    const m = scene.nets.latent;
    const full = m.distance(z, scene.target.latent);
    return m.l1 ? tf.sub(full, m.l1Term(m.scaled(z), m.scaled(scene.target.latent))) : full;
  });
  const latentLpips = Array.from(await d.data());
  d.dispose();
  return { psnr, latentLpips, decoded };
}

/** Per row: pixel LPIPS of a decoded latent (clipped, as evaluateLatent() returns it) against the decoded target. */
export async function pixelLpips(scene: Scene, decoded: tf.Tensor4D): Promise<number[]> {
  const d = scene.nets.lpips.distance(decoded, scene.target.decoded);
  const v = Array.from(await d.data());
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
 * The distances of target + sigma * N(0, 1) to the target, for each sigma (means over the target's rows). A result of
 * the optimisation is then read against this scale: a latent with a LatentLPIPS of a small-sigma copy but a PSNR
 * far below that copy's is one the metric cannot tell from the target, i.e. the metric, not the optimiser, stopped
 * there.
 */
export async function noiseProbes(scene: Scene, sigmas: number[], seed: number): Promise<NoiseProbe[]> {
  const out: NoiseProbe[] = [];
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  for (const [k, sigma] of sigmas.entries()) {
    const eps = noiseLatent(scene.target.latent.shape, 1, scene.target.rows.map((_, r) => seed + 100 + k + 1000 * r));
    const z = tf.tidy(() => tf.add(scene.target.latent, tf.mul(eps, sigma)) as tf.Tensor4D);
    const e = await evaluateLatent(scene, z);
    out.push({ sigma, psnr: mean(e.psnr), latentLpips: mean(e.latentLpips), lpips: mean(await pixelLpips(scene, e.decoded)) });
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
