import * as path from "path";
import * as tf from "@tensorflow/tfjs";
import { interruptible, Interrupted, stopRequested } from "../core/interrupt";
import { runDir, settingsKey } from "../core/paths";
import { HostTensor } from "../io/host_tensor";
import { psnr8bit, taef2Codec } from "../nn/latent_codec";
import { cachedResult } from "../train/checkpoint";
import { LossRun, LossSpec, OptimiseContext, optimiseLatent, OptimiseSettings } from "./latent_optimisation";
import { disposeTarget, loadPerceptualNets, loadTarget, NetPaths, NoiseProbe, noiseProbes, PerceptualNets, TargetRow } from "./reconstruction_eval";
import { byScale, currentScale, Scale } from "./scale";

// Notebook 01, the paper's first claim (PAPER.md "Ensembling", its Fig. 2): optimise a latent from noise to match
// one photograph's latent. Under plain LatentLPIPS the decoded result keeps wavy, patchy artifacts; under
// E-LatentLPIPS (a fresh random augmentation of both latents every step) it reconstructs the target almost
// perfectly, while costing a fraction of decoding to pixels and using LPIPS. The latent space is TAEF2's (FLUX.2's
// 32-channel latents, pretrained); the perceptual trunks are the project's stand-ins (lib/perceptual/standins.ts).
// The optimisation loop is lib/experiments/latent_optimisation.ts, the scores reconstruction_eval.ts, the tables,
// figures and the comparison with the paper reconstruction_report.ts. Every loss's run is a unit of work with its
// own checkpoint folder under runs/<scale>/reconstruction/, so a stopped notebook resumes the unfinished loss and a
// rerun of a finished one only re-renders.

/** What every loss of a reconstruction experiment shares: the problems (photograph x seed), their size, the settings. */
export interface TargetConfig extends OptimiseSettings {
  /** Data files (data/sources.json names), e.g. images/skimage/astronaut.png; centre-cropped to squares. */
  images: string[];
  /** Each photograph is reconstructed once per seed: the seed draws its start latent and its augmentations. */
  seeds: number[];
  /** Image side in pixels (latents are size / 8). */
  size: number;
  /** Add LatentLPIPS' mean |z0 - z1| term to the latent losses (released default on; overfitting_exp.py: off). */
  l1: boolean;
  /** Official (or other) weights instead of the stand-ins. */
  weights?: NetPaths;
}

export interface ReconstructionConfig extends TargetConfig {
  losses: LossSpec[];
  /** Noise levels of the yardstick: the distances of target + sigma * N(0, 1) latents to the target. */
  probeSigmas: number[];
  /** The spread of the comparison: the same settings on several photographs (runSpread). */
  spread: SpreadConfig;
}

/** Notebook 01's comparison repeated on several (photograph, seed) problems, all rows of one batch per loss. */
export interface SpreadConfig {
  images: string[];
  seeds: number[];
  losses: LossSpec[];
}

/** The released default preset, and the one PAPER.md's note names for distillation ("geometric + cutout"). */
export const RELEASED_PRESET = "bg";
export const PAPER_NOTE_PRESET: readonly string[] = ["bg", "o"];

export const DEFAULT_LOSSES: LossSpec[] = [
  { kind: "latent-mse", label: "latent MSE" },
  { kind: "lpips", label: "LPIPS (decode)" },
  { kind: "latent-lpips", label: "LatentLPIPS" },
  { kind: "e-latent-lpips", label: "E-LatentLPIPS (bg)", augment: RELEASED_PRESET },
  { kind: "e-latent-lpips", label: "E-LatentLPIPS (bgo)", augment: PAPER_NOTE_PRESET },
];

/** The photograph of notebook 01 (scikit-image's astronaut, as in the authors' overfitting experiment's README). */
export const ASTRONAUT = "images/skimage/astronaut.png";

/** The astronaut and five Kodak photographs of different content: facades, a landscape with water, parrots, a face,
 * an aeroplane on sky. Notebook 05 and notebook 01's spread take the first four at cpu scale. */
export const PHOTOGRAPHS = [ASTRONAUT, ...["08", "13", "23", "04", "20"].map((k) => `images/kodak/kodim${k}.png`)];

/** The three routes of the paper's Fig. 2: plain LatentLPIPS, E-LatentLPIPS (released preset), LPIPS through the decoder. */
export const SPREAD_LOSSES: LossSpec[] = DEFAULT_LOSSES.filter((l) => l.kind === "latent-lpips" || l.kind === "lpips" || l.augment === RELEASED_PRESET);

const BASE = { images: [ASTRONAUT], seeds: [0], lr: 1e-2, lrDecay: "none" as const, initStd: 1, l1: false, augment: {}, losses: DEFAULT_LOSSES, probeSigmas: [0.05, 0.1, 0.2, 0.4, 0.8] };
// One seed per photograph: a pixel-LPIPS step does not batch (each further row costs about one more step: 2.0 s for
// 4 rows at 128 px, 5.5 s for 12, with another run beside it), and notebook 05 measured the seed-to-seed spread of
// the paired differences at 0.1-0.5 dB against 1.6-4.1 dB between photographs: the photographs are the replicates.
const spread = (images: string[]): SpreadConfig => ({ images, seeds: [0], losses: SPREAD_LOSSES });

export const RECONSTRUCTION_CONFIGS: Record<Scale, ReconstructionConfig> = {
  smoke: { ...BASE, size: 64, steps: 6, evalEvery: 3, ckptEvery: 3, spread: spread(PHOTOGRAPHS.slice(0, 2)) },
  // E-LatentLPIPS needs steps: at 128 px, 300 steps left it at 10.4 dB (LatentLPIPS 9.9), 2,000 at 20.2 dB
  // (LatentLPIPS 12.3). Every loss gets the same 1,500 steps, pixel LPIPS too, so that its row answers "how close
  // does E-LatentLPIPS come to LPIPS through the decoder". That sets the size: a pixel-LPIPS step (TAEF2 decode +
  // VGG16, forward and backward) took 2.2 s at 256 px on two cores (1,500 of them: 55 minutes) and 0.56 s at 128 px
  // (about 12x an E-LatentLPIPS step at either size), so the cpu scale runs at 128 px, the size of notebook 05,
  // whose astronaut/seed-0 problem is this notebook's.
  // The spread runs notebook 05's four photographs (seed 0: its problems, so its committed rows pair with these).
  cpu: { ...BASE, size: 128, steps: 1500, lr: 3e-2, lrDecay: "cosine", evalEvery: 100, ckptEvery: 50, spread: spread(PHOTOGRAPHS.slice(0, 4)) },
  // overfitting_exp.py: 512 px, 15000 Adam steps at lr 1e-2
  paper: { ...BASE, size: 512, steps: 15000, evalEvery: 250, ckptEvery: 500, spread: spread(PHOTOGRAPHS) },
};

export function reconstructionConfig(scale: Scale = currentScale()): ReconstructionConfig {
  return byScale(RECONSTRUCTION_CONFIGS, scale);
}

/**
 * The checkpoint folder of one loss's run under `base`: named after the loss and keyed by everything that shapes
 * its result (settings, loss, the trunks' descriptions), so changing any of them starts a new run.
 */
export function unitDir(base: string, config: TargetConfig, spec: LossSpec, nets: PerceptualNets): string {
  const { images, seeds, size, lr, lrDecay, initStd, evalEvery, l1, augment, weights } = config;
  const key = settingsKey({
    images, seeds, size, steps: spec.steps ?? config.steps, lr, lrDecay, initStd, evalEvery, l1, augment, weights,
    loss: { kind: spec.kind, augment: spec.augment }, trunks: [nets.latentTrunk, nets.lpipsTrunk],
  });
  const name = spec.label.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-|-$/g, "");
  return path.join(base, `${name}-${key}`);
}

/** What every result on one photograph reports besides its runs: engine, trunks, target, codec ceiling. */
export interface TargetReport {
  /** D2G_SCALE of the run, for titles. */
  scale: Scale;
  backend: string;
  lpipsTrunk: string;
  latentTrunk: string;
  /** The problems, one per row of the tensors below and of every run's per-row scores. */
  rows: TargetRow[];
  /** The photographs at config.size, [rows, S, S, 3]. */
  original: HostTensor;
  /** The photographs' latents decoded (the reconstruction targets), [rows, S, S, 3]. */
  target: HostTensor;
  /** Per row: PSNR of the decoded target against the photograph, the ceiling any latent can reach through this codec. */
  codecPsnr: number[];
}

export interface ReconstructionResult extends TargetReport {
  config: ReconstructionConfig;
  codec: string;
  runs: LossRun[];
  /** The yardstick: noisy copies of the target latent (config.probeSigmas). */
  probes: NoiseProbe[];
}

async function host(t: tf.Tensor4D): Promise<HostTensor> {
  return { dtype: "float32", shape: t.shape, data: (await t.data()) as Float32Array };
}

/**
 * Opens what every optimisation of one photograph shares (codec, perceptual nets, target), runs `body` as
 * interruptible work, and frees what it opened, even when `body` throws. `nets` defaults to the stand-ins, which are
 * then freed too.
 */
export async function withTarget<T>(config: TargetConfig, nets: PerceptualNets | undefined, body: (ctx: OptimiseContext) => Promise<T>): Promise<T> {
  const codec = await taef2Codec();
  const n = nets ?? loadPerceptualNets(config.l1, config.weights);
  try {
    const target = await loadTarget(config.images, config.seeds, config.size, codec);
    try {
      return await interruptible(() => body({ codec, nets: n, target, ...config }));
    } finally {
      disposeTarget(target);
    }
  } finally {
    codec.dispose();
    if (nets === undefined) {
      n.lpips.dispose();
      n.latent.dispose();
    }
  }
}

export async function targetReport(ctx: OptimiseContext): Promise<TargetReport> {
  const codecPsnr = await psnr8bit(ctx.target.decoded, ctx.target.original);
  return {
    scale: currentScale(), backend: tf.getBackend(), lpipsTrunk: ctx.nets.lpipsTrunk, latentTrunk: ctx.nets.latentTrunk,
    rows: ctx.target.rows, original: await host(ctx.target.original), target: await host(ctx.target.decoded), codecPsnr,
  };
}

/**
 * Each of `specs` in turn from the same noise latent, one resumable unit per spec under `base`: finished units are
 * read back, the unfinished one resumes. A stop request between units ends here, naming what was kept.
 */
export async function optimiseEach(ctx: OptimiseContext, config: TargetConfig, specs: LossSpec[], base: string, what: string): Promise<LossRun[]> {
  const runs: LossRun[] = [];
  for (const [k, spec] of specs.entries()) {
    if (await stopRequested()) throw new Interrupted(`${what} stopped after ${k} of ${specs.length} runs; they are kept in ${base}; run it again to go on`);
    const label = `${what} ${k + 1}/${specs.length}: ${spec.label}`;
    runs.push(await optimiseLatent(ctx, spec, { label, dir: unitDir(base, config, spec, ctx.nets) }));
  }
  return runs;
}

/**
 * Every loss of the config in turn, from the same noise latent, then the noise yardstick. `nets` defaults to the
 * stand-ins; `base` is where the runs keep their checkpoints (default runs/<scale>/reconstruction/).
 */
export async function run(config: ReconstructionConfig = reconstructionConfig(), nets?: PerceptualNets, base = runDir(currentScale(), "reconstruction")): Promise<ReconstructionResult> {
  const { losses, spread, ...shared } = config;
  // one photograph from one seed: the tables and figures of notebook 01 show single runs (notebook 05 runs several)
  if (config.images.length * config.seeds.length !== 1) throw new Error(`reconstruction: notebook 01 reconstructs one image from one seed; the config has ${config.images.length} images and ${config.seeds.length} seeds (the batch of several is lib/experiments/augmentation_ablation.ts)`);
  return withTarget(shared, nets, async (ctx) => {
    const runs = await optimiseEach(ctx, shared, losses, base, "reconstruct");
    const { images, size, seeds, l1, weights, probeSigmas } = shared;
    const probeKey = settingsKey({ images, size, seeds, l1, weights, probeSigmas, trunks: [ctx.nets.latentTrunk, ctx.nets.lpipsTrunk] });
    const probes = await cachedResult(path.join(base, `noise-probes-${probeKey}.json`), () => noiseProbes(ctx, probeSigmas, seeds[0]));
    return { config, codec: ctx.codec.name, ...(await targetReport(ctx)), runs, probes };
  });
}

export interface SpreadResult extends TargetReport {
  config: ReconstructionConfig;
  /** One run per loss of config.spread, each over every (photograph, seed) row. */
  runs: LossRun[];
}

/**
 * The spread of notebook 01's comparison: config.spread's losses on its photographs and seeds at the notebook's size
 * and settings, every problem a row of one batch per loss, from the same start latents (the first row is the main
 * run's problem and ends where the main run ends). Units under `base`/spread, resumable like run()'s.
 */
export async function runSpread(config: ReconstructionConfig = reconstructionConfig(), nets?: PerceptualNets, base = runDir(currentScale(), "reconstruction")): Promise<SpreadResult> {
  const { losses, spread, probeSigmas, ...shared } = config;
  const target: TargetConfig = { ...shared, images: spread.images, seeds: spread.seeds };
  return withTarget(target, nets, async (ctx) => {
    const runs = await optimiseEach(ctx, target, spread.losses, path.join(base, "spread"), "spread");
    return { config, ...(await targetReport(ctx)), runs };
  });
}
