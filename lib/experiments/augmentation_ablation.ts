import { HostTensor } from "../io/host_tensor";
import { AUGMENT_PRESETS, resolveOps } from "../perceptual/augment";
import { Figure } from "../viz/plot";
import { Row } from "../viz/table";
import {
  LossRun,
  LossSpec,
  optimiseLatent,
  PerceptualNets,
  psnrFigure,
  reconstructionConfig,
  ReconstructionConfig,
  targetReport,
  TargetReport,
  withTarget,
} from "./reconstruction";
import { byScale, currentScale, Scale } from "./scale";

// Notebook 05: which augmentations make E-LatentLPIPS work? The single-image reconstruction of notebook 01
// (lib/experiments/reconstruction.ts), repeated with the ensemble's augmentation drawn from each preset of
// elatentlpips (b, g, c, o and their combinations) and from each op alone; "none" is plain LatentLPIPS.

/** Variant name -> ops or presets (lib/perceptual/augment.ts); an empty list is plain LatentLPIPS. */
export type Variants = Record<string, readonly string[]>;

/** The reconstruction settings, minus the losses, which the variants replace. */
export type AblationConfig = Omit<ReconstructionConfig, "losses">;

function withoutLosses(c: ReconstructionConfig): AblationConfig {
  const { losses, ...rest } = c;
  return rest;
}

export const ABLATION_CONFIGS: Record<Scale, AblationConfig> = {
  smoke: { ...withoutLosses(reconstructionConfig("smoke")), steps: 3 },
  // 20 variants: the notebook takes about 20 x steps x (notebook 01's E-LatentLPIPS ms/step at this size)
  cpu: { ...withoutLosses(reconstructionConfig("cpu")), size: 128, steps: 1000 },
  paper: withoutLosses(reconstructionConfig("paper")),
};

export function ablationConfig(scale: Scale = currentScale()): AblationConfig {
  return byScale(ABLATION_CONFIGS, scale);
}

/** A variant as the loss it optimises; bad op names fail here, before any work. */
export function variantLoss(name: string, ops: readonly string[]): LossSpec {
  if (ops.length === 0) return { kind: "latent-lpips", label: name };
  resolveOps(ops);
  return { kind: "e-latent-lpips", label: name, augment: ops };
}

export interface AblationResult extends TargetReport {
  config: AblationConfig;
  variants: Variants;
  runs: LossRun[];
}

/** Every variant from the same noise latent with the same step budget. `nets` defaults to the stand-ins. */
export async function run(variants: Variants, config: AblationConfig = ablationConfig(), nets?: PerceptualNets): Promise<AblationResult> {
  const specs = Object.entries(variants).map(([name, ops]) => variantLoss(name, ops));
  if (specs.length === 0) throw new Error("augmentation ablation: no variants given");
  return withTarget(config, nets, async (ctx) => {
    const runs: LossRun[] = [];
    for (const [k, spec] of specs.entries()) runs.push(await optimiseLatent(ctx, spec, `ablation ${k + 1}/${specs.length}: ${spec.label}`));
    return { config, ...(await targetReport(ctx)), variants, runs };
  });
}

/** PSNR over steps; variants made of single ops are dotted, so twenty curves stay apart on a ten-colour palette. */
export function ablationFigure(r: AblationResult): Figure {
  const fig = psnrFigure(`E-LatentLPIPS augmentation ablation (${r.config.size} px, TAEF2 latents, ${r.backend})`, r.runs);
  fig.data.forEach((trace, i) => {
    const ops = r.runs[i].spec.augment;
    if (ops && ops.length === 1 && !(ops[0] in AUGMENT_PRESETS)) trace.line = { dash: "dot" };
  });
  return fig;
}

/** The decoded target, then each variant's result, with captions. */
export function resultImages(r: AblationResult): { images: HostTensor; captions: string[] } {
  const per = r.target.data.length;
  const parts = [r.target, ...r.runs.map((x) => x.decoded)];
  const data = new Float32Array(parts.length * per);
  parts.forEach((p, i) => data.set(p.data as Float32Array, i * per));
  return {
    images: { dtype: "float32", shape: [parts.length, ...r.target.shape.slice(1)], data },
    captions: ["target", ...r.runs.map((x) => `${x.spec.label} ${x.psnr[x.psnr.length - 1].toFixed(1)} dB`)],
  };
}

/** One row per variant, in the order given. */
export function summaryRows(r: AblationResult): Row[] {
  return r.runs.map((x) => ({
    variant: x.spec.label,
    ops: x.spec.augment === undefined ? "(none: LatentLPIPS)" : resolveOps(x.spec.augment).join("+"),
    steps: x.steps,
    "PSNR (dB)": x.psnr[x.psnr.length - 1],
    "final LatentLPIPS": x.latentLpips[x.latentLpips.length - 1],
    "final LPIPS": x.finalLpips,
    "ms/step": Math.round(x.msPerStep * 10) / 10,
  }));
}
