import * as tf from "@tensorflow/tfjs";
import { Progress } from "../core/progress";
import { Rng } from "../core/random";
import { ensureData } from "../data/fetch";
import { loadImages } from "../data/images";
import { HostTensor } from "../io/host_tensor";
import { LatentCodec, psnr8bit, taef2Codec } from "../nn/latent_codec";
import { lossAndGrads, Adam } from "../train/adam";
import { warmupCosine } from "../train/schedule";
import { AugmentConfig, AugmentDraw, sampleAugment } from "../perceptual/augment";
import { LatentLpips, PairAugment } from "../perceptual/latent_lpips";
import { Lpips } from "../perceptual/lpips";
import { LatentWeightPaths, loadStandinLatentLpips, loadStandinLpips, WeightPaths } from "../perceptual/standins";
import { Figure, lineFigure } from "../viz/plot";
import { Row } from "../viz/table";
import { byScale, currentScale, Scale } from "./scale";

// Notebook 01, the paper's first claim (PAPER.md "Ensembling", its Fig. 2): optimise a latent from noise to match
// one photograph's latent. Under plain LatentLPIPS the decoded result keeps wavy, patchy artifacts; under
// E-LatentLPIPS (a fresh random augmentation of both latents every step) it reconstructs the target almost
// perfectly, while costing a fraction of decoding to pixels and using LPIPS. The latent space is TAEF2's (FLUX.2's
// 32-channel latents, pretrained); the perceptual trunks are the project's stand-ins (lib/perceptual/standins.ts).
// The protocol follows elatentlpips' overfitting_exp.py: Adam on a N(0, 1) latent, the pure perceptual term
// (no added L1), plain LatentLPIPS tracked as the common yardstick.

export const LOSS_KINDS = ["latent-mse", "lpips", "latent-lpips", "e-latent-lpips"] as const;
export type LossKind = (typeof LOSS_KINDS)[number];

export interface LossSpec {
  kind: LossKind;
  /** Name in tables and legends. */
  label: string;
  /** e-latent-lpips only: a preset name or a list of ops/presets (lib/perceptual/augment.ts). */
  augment?: string | readonly string[];
  /** Overrides the config's steps for this loss (a pixel-LPIPS step costs many latent steps on a CPU). */
  steps?: number;
}

export interface ReconstructionConfig {
  /** A data file (data/sources.json name), e.g. images/skimage/astronaut.png; centre-cropped to a square. */
  image: string;
  /** Image side in pixels (latents are size / 8). */
  size: number;
  steps: number;
  /** Adam learning rate (overfitting_exp.py: 1e-2, constant). */
  lr: number;
  /** "cosine" anneals lr to zero over the run: with a few hundred steps instead of 15 000, the stochastic
   * E-LatentLPIPS gradient needs the decay to settle. */
  lrDecay: "none" | "cosine";
  /** The latent starts as N(0, initStd^2) (TAEF2's latents have std about 0.85). */
  initStd: number;
  /** PSNR and LatentLPIPS of the current latent every this many steps (each costs one decode). */
  evalEvery: number;
  seed: number;
  /** Add LatentLPIPS' mean |z0 - z1| term to the latent losses (released default on; overfitting_exp.py: off). */
  l1: boolean;
  /** Augmentation settings other than the ops, which each loss names. */
  augment: Partial<AugmentConfig>;
  losses: LossSpec[];
  /** Noise levels of the yardstick: the distances of target + sigma * N(0, 1) latents to the target. */
  probeSigmas: number[];
  /** Official (or other) weights instead of the stand-ins. */
  weights?: NetPaths;
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

const BASE = { image: "images/skimage/astronaut.png", lr: 1e-2, lrDecay: "none" as const, initStd: 1, seed: 0, l1: false, augment: {}, losses: DEFAULT_LOSSES, probeSigmas: [0.05, 0.1, 0.2, 0.4, 0.8] };

export const RECONSTRUCTION_CONFIGS: Record<Scale, ReconstructionConfig> = {
  smoke: { ...BASE, size: 64, steps: 6, evalEvery: 3 },
  // E-LatentLPIPS needs steps: at 128 px, 300 steps left it at 10.4 dB (LatentLPIPS 9.9), 2,000 at 20.2 dB
  // (LatentLPIPS 12.3). A pixel-LPIPS step (TAEF2 decode + VGG16, forward and backward at 256 px) costs ~15 latent
  // steps on two cores: 80 of them keep the notebook near 20 minutes.
  cpu: {
    ...BASE,
    size: 256,
    steps: 1500,
    lr: 3e-2,
    lrDecay: "cosine",
    evalEvery: 100,
    losses: DEFAULT_LOSSES.map((l) => (l.kind === "lpips" ? { ...l, steps: 80 } : l)),
  },
  // overfitting_exp.py: 512 px, 15000 Adam steps at lr 1e-2
  paper: { ...BASE, size: 512, steps: 15000, evalEvery: 250 },
};

export function reconstructionConfig(scale: Scale = currentScale()): ReconstructionConfig {
  return byScale(RECONSTRUCTION_CONFIGS, scale);
}

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

export async function loadTarget(image: string, size: number, codec: LatentCodec): Promise<Target> {
  const original = await loadImages(await ensureData(image), { size });
  const latent = codec.encode(original);
  const decoded = tf.tidy(() => tf.clipByValue(codec.decode(latent), -1, 1) as tf.Tensor4D);
  return { original, latent, decoded };
}

export function disposeTarget(t: Target): void {
  tf.dispose([t.original, t.latent, t.decoded]);
}

/** What one optimisation needs besides its loss. */
export interface OptimiseContext {
  codec: LatentCodec;
  nets: PerceptualNets;
  target: Target;
  steps: number;
  lr: number;
  lrDecay: ReconstructionConfig["lrDecay"];
  initStd: number;
  evalEvery: number;
  seed: number;
  augment: Partial<AugmentConfig>;
}

/** The learning rate of step (1-based). */
export function learningRate(ctx: Pick<OptimiseContext, "lr" | "lrDecay" | "steps">, step: number): number {
  if (ctx.lrDecay === "none") return ctx.lr;
  // cosine decay over the run, no warm-up: lr_t = lr / 2 (1 + cos(pi (t - 1) / steps))
  return warmupCosine({ lr: ctx.lr, warmup: 0, steps: ctx.steps }, step - 1);
}

export interface LossRun {
  spec: LossSpec;
  /** Adam steps taken (the spec's own count, else the config's). */
  steps: number;
  /** The optimised loss after each step. */
  losses: number[];
  /** Steps at which the latent was evaluated (0 = the noise it starts from, the last = steps). */
  evalSteps: number[];
  /** PSNR (dB, 8-bit) of decode(z) against decode(target latent). */
  psnr: number[];
  /** Plain LatentLPIPS (no augmentation, no L1) of z against the target latent. */
  latentLpips: number[];
  /** Pixel LPIPS of the final decode against the decoded target. */
  finalLpips: number;
  /** Mean wall time of one optimisation step (loss, gradient, Adam), evaluations excluded. */
  msPerStep: number;
  /** The final latent decoded, [1, S, S, 3] in [-1, 1]. */
  decoded: HostTensor;
  /** e-latent-lpips: the augmentation drawn at each step. */
  draws: AugmentDraw[];
  /** Live tensors after each step (a leak shows as growth). */
  tensors: number[];
}

/** Host-side N(0, std^2) latent from the seed, so the start is the same on every engine. */
function noiseLatent(shape: number[], std: number, seed: number): tf.Tensor4D {
  const rng = new Rng(seed);
  const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
  for (let i = 0; i < data.length; i++) data[i] = std * rng.normal();
  return tf.tensor4d(data, shape as [number, number, number, number]);
}

/** The loss of latent z against the target; e-latent-lpips draws one augmentation per call into `draws`. */
function lossFunction(spec: LossSpec, ctx: OptimiseContext, z: tf.Variable, draws: AugmentDraw[]): () => tf.Scalar {
  const { codec, nets, target } = ctx;
  switch (spec.kind) {
    case "latent-mse":
      // mean (z - z_target)^2
      return () => tf.mean(tf.squaredDifference(z, target.latent));
    case "lpips":
      // LPIPS(decode(z), decode(z_target)): the pixel-space route E-LatentLPIPS avoids
      return () => tf.mean(nets.lpips.distance(codec.decode(z as tf.Tensor as tf.Tensor4D), target.decoded));
    case "latent-lpips":
      return () => tf.mean(nets.latent.distance(z as tf.Tensor as tf.Tensor4D, target.latent));
    case "e-latent-lpips": {
      if (spec.augment === undefined) throw new Error(`reconstruction: loss "${spec.label}" is e-latent-lpips but names no augmentation`);
      // One draw per step, from its own stream so that every E-LatentLPIPS run sees the same sequence of draws.
      const rng = new Rng(ctx.seed + 1);
      const options = { ...ctx.augment, ops: spec.augment };
      const augment: PairAugment = (a, b) => {
        const t = sampleAugment(options, a.shape[0], rng);
        draws.push(t.draw);
        return [t.apply(a), t.apply(b)];
      };
      // E_T d(T(z), T(z_target)), one sample of T per step
      return () => tf.mean(nets.latent.distance(z as tf.Tensor as tf.Tensor4D, target.latent, augment));
    }
  }
}

async function evaluate(ctx: OptimiseContext, z: tf.Tensor4D): Promise<{ psnr: number; latentLpips: number; decoded: tf.Tensor4D }> {
  const decoded = tf.tidy(() => tf.clipByValue(ctx.codec.decode(z), -1, 1) as tf.Tensor4D);
  const [psnr] = await psnr8bit(decoded, ctx.target.decoded);
  // The yardstick is LatentLPIPS proper, whatever L1 setting the loss used: the L1 term is only added when on.
  const d = tf.tidy(() => tf.mean(ctx.nets.latent.distance(z, ctx.target.latent)));
  const l1 = ctx.nets.latent.l1 ? tf.tidy(() => tf.mean(tf.abs(tf.sub(z, ctx.target.latent)))) : undefined;
  const latentLpips = (await d.data())[0] - (l1 ? (await l1.data())[0] : 0);
  tf.dispose([d, l1 ?? []]);
  return { psnr, latentLpips, decoded };
}

/** Pixel LPIPS of a decoded latent (clipped, as evaluate() returns it) against the decoded target. */
async function pixelLpips(ctx: OptimiseContext, decoded: tf.Tensor4D): Promise<number> {
  const d = tf.tidy(() => tf.mean(ctx.nets.lpips.distance(decoded, ctx.target.decoded)));
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
export async function noiseProbes(ctx: OptimiseContext, sigmas: number[]): Promise<NoiseProbe[]> {
  const out: NoiseProbe[] = [];
  for (const [k, sigma] of sigmas.entries()) {
    const eps = noiseLatent(ctx.target.latent.shape, 1, ctx.seed + 100 + k);
    const z = tf.tidy(() => tf.add(ctx.target.latent, tf.mul(eps, sigma)) as tf.Tensor4D);
    const e = await evaluate(ctx, z);
    out.push({ sigma, psnr: e.psnr, latentLpips: e.latentLpips, lpips: await pixelLpips(ctx, e.decoded) });
    tf.dispose([eps, z, e.decoded]);
  }
  return out;
}

/** Adam on a noise latent under one loss; evaluates at step 0, every evalEvery steps and at the end. */
export async function optimiseLatent(ctx: OptimiseContext, spec: LossSpec, progressLabel = `reconstruct ${spec.label}`): Promise<LossRun> {
  const init = noiseLatent(ctx.target.latent.shape, ctx.initStd, ctx.seed);
  const z = tf.variable(init, true);
  init.dispose();
  // Adam's constructor leaves its zerosLike tensors behind (the variables keep the data); the tidy collects them.
  let adam!: Adam;
  tf.tidy(() => {
    adam = new Adam([z], { lr: ctx.lr });
  });
  const steps = spec.steps ?? ctx.steps;
  const draws: AugmentDraw[] = [];
  const loss = lossFunction(spec, ctx, z, draws);
  const run: LossRun = { spec, steps, losses: [], evalSteps: [], psnr: [], latentLpips: [], finalLpips: NaN, msPerStep: 0, decoded: { dtype: "float32", shape: [], data: new Float32Array() }, draws, tensors: [] };
  const record = async (step: number): Promise<tf.Tensor4D> => {
    const e = await evaluate(ctx, z as tf.Tensor as tf.Tensor4D);
    run.evalSteps.push(step);
    run.psnr.push(e.psnr);
    run.latentLpips.push(e.latentLpips);
    return e.decoded;
  };
  (await record(0)).dispose();
  // At most one report a second: every report is a display message from the kernel, and a long run of frequent
  // ones has killed the tslab kernel (zeromq "Socket is busy writing" when a status message collides with one).
  const progress = new Progress(progressLabel, steps, 1000);
  let stepMs = 0;
  for (let step = 1; step <= steps; step++) {
    const t0 = performance.now();
    const { loss: value, grads } = lossAndGrads(loss, [z]);
    adam.apply(grads, learningRate({ ...ctx, steps }, step));
    tf.dispose(grads);
    stepMs += performance.now() - t0;
    run.losses.push(value);
    run.tensors.push(tf.memory().numTensors);
    if (!Number.isFinite(value)) throw new Error(`reconstruction: loss "${spec.label}" is ${value} at step ${step}`);
    const metrics: Record<string, number> = { loss: value };
    if (step % ctx.evalEvery === 0 || step === steps) {
      const decoded = await record(step);
      if (step === steps) {
        run.decoded = { dtype: "float32", shape: decoded.shape, data: (await decoded.data()) as Float32Array };
        run.finalLpips = await pixelLpips(ctx, decoded);
      }
      decoded.dispose();
      metrics.psnr = run.psnr[run.psnr.length - 1];
    }
    progress.tick(1, metrics);
  }
  progress.finish();
  run.msPerStep = stepMs / steps;
  adam.dispose();
  z.dispose();
  return run;
}

/** What every result on one photograph reports besides its runs: engine, trunks, target, codec ceiling. */
export interface TargetReport {
  backend: string;
  lpipsTrunk: string;
  latentTrunk: string;
  /** The photograph's latent decoded (the reconstruction target), [1, S, S, 3]. */
  target: HostTensor;
  /** PSNR of the decoded target against the photograph: the ceiling any latent can reach through this codec. */
  codecPsnr: number;
}

export interface ReconstructionResult extends TargetReport {
  config: ReconstructionConfig;
  codec: string;
  /** The photograph at config.size, [1, S, S, 3]. */
  original: HostTensor;
  runs: LossRun[];
  /** The yardstick: noisy copies of the target latent (config.probeSigmas). */
  probes: NoiseProbe[];
}

async function host(t: tf.Tensor4D): Promise<HostTensor> {
  return { dtype: "float32", shape: t.shape, data: (await t.data()) as Float32Array };
}

/**
 * Opens what every optimisation of one photograph shares (codec, perceptual nets, target), runs `body`, and frees
 * what it opened, even when `body` throws. `nets` defaults to the stand-ins, which are then freed too.
 */
export async function withTarget<T>(
  config: Omit<ReconstructionConfig, "losses">,
  nets: PerceptualNets | undefined,
  body: (ctx: OptimiseContext) => Promise<T>,
): Promise<T> {
  const codec = await taef2Codec();
  const n = nets ?? loadPerceptualNets(config.l1, config.weights);
  try {
    const target = await loadTarget(config.image, config.size, codec);
    try {
      return await body({ codec, nets: n, target, ...config });
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
  const [codecPsnr] = await psnr8bit(ctx.target.decoded, ctx.target.original);
  return { backend: tf.getBackend(), lpipsTrunk: ctx.nets.lpipsTrunk, latentTrunk: ctx.nets.latentTrunk, target: await host(ctx.target.decoded), codecPsnr };
}

/** Every loss of the config in turn, from the same noise latent. `nets` defaults to the stand-ins. */
export async function run(config: ReconstructionConfig = reconstructionConfig(), nets?: PerceptualNets): Promise<ReconstructionResult> {
  return withTarget(config, nets, async (ctx) => {
    const runs: LossRun[] = [];
    for (const spec of config.losses) runs.push(await optimiseLatent(ctx, spec));
    const probes = await noiseProbes(ctx, config.probeSigmas);
    return { config, codec: ctx.codec.name, original: await host(ctx.target.original), ...(await targetReport(ctx)), runs, probes };
  });
}

// ---- presentation ----

/** Photograph, decoded target, then each loss's result: one batch for an image grid, with captions. */
export function comparisonImages(r: ReconstructionResult): { images: HostTensor; captions: string[] } {
  const [, h, w, c] = r.target.shape;
  const per = h * w * c;
  const parts = [r.original, r.target, ...r.runs.map((x) => x.decoded)];
  const data = new Float32Array(parts.length * per);
  parts.forEach((p, i) => data.set(p.data as Float32Array, i * per));
  const psnr = (x: LossRun) => `${x.psnr[x.psnr.length - 1].toFixed(1)} dB`;
  return {
    images: { dtype: "float32", shape: [parts.length, h, w, c], data },
    captions: ["photograph", "target: decode(encode)", ...r.runs.map((x) => `${x.spec.label}, ${psnr(x)}`)],
  };
}

export function psnrFigure(title: string, runs: LossRun[]): Figure {
  return lineFigure(title, runs.map((x) => ({ name: x.spec.label, x: x.evalSteps, y: x.psnr })), { x: "Adam step", y: "PSNR of decode(z) vs target (dB)" });
}

export function latentLpipsFigure(title: string, runs: LossRun[]): Figure {
  return lineFigure(title, runs.map((x) => ({ name: x.spec.label, x: x.evalSteps, y: x.latentLpips })), {
    x: "Adam step",
    y: "LatentLPIPS(z, target)",
    logY: true,
  });
}

/** Each optimised loss relative to its first value (the losses have different units). */
export function lossFigure(title: string, runs: LossRun[]): Figure {
  return lineFigure(title, runs.map((x) => ({ name: x.spec.label, y: x.losses.map((v) => v / x.losses[0]) })), {
    x: "Adam step",
    y: "loss / loss at step 1",
    logY: true,
  });
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

export function probeRows(r: ReconstructionResult): Row[] {
  return r.probes.map((p) => ({
    latent: `target + ${p.sigma} N(0,1)`,
    "PSNR (dB)": p.psnr,
    LatentLPIPS: p.latentLpips,
    LPIPS: p.lpips,
  }));
}

export function summaryRows(r: ReconstructionResult): Row[] {
  return r.runs.map((x) => ({
    loss: x.spec.label,
    steps: x.steps,
    "PSNR (dB)": x.psnr[x.psnr.length - 1],
    "final LatentLPIPS": x.latentLpips[x.latentLpips.length - 1],
    "final LPIPS": x.finalLpips,
    "PSNR of a noisy target at this LatentLPIPS": noisyCopyPsnr(r.probes, x.latentLpips[x.latentLpips.length - 1]) ?? null,
    "ms/step": Math.round(x.msPerStep * 10) / 10,
    "LatentLPIPS trunk": r.latentTrunk,
    "LPIPS trunk": r.lpipsTrunk,
  }));
}
