import { runDir } from "../core/paths";
import { HostTensor } from "../io/host_tensor";
import { resolveOps } from "../perceptual/augment";
import { Figure, Interval, intervalFigure, Panel, panelFigure, Series } from "../viz/plot";
import { Row } from "../viz/table";
import { avg, curveTable, findings, formatDifference, groupBy, imageName, NO_AUGMENTATION, pairTable, PairedDifference, pairedDifference, releasedOps, sdOf, side, variantStats, VariantStats, variantWithOps } from "./ablation_stats";
import { Claim, committedTableIfAny, numberIn } from "./claims";
import { LossRun, LossSpec } from "./latent_optimisation";
import { ASTRONAUT, optimiseEach, PHOTOGRAPHS, reconstructionConfig, RELEASED_PRESET, targetReport, TargetConfig, TargetReport, withTarget } from "./reconstruction";
import { PerceptualNets } from "./reconstruction_eval";
import { subtitle } from "./reconstruction_report";
import { byScale, currentScale, Scale } from "./scale";
import { PAPER_REGRESSION_ABLATION } from "./t2i_distillation";

// Notebook 05: which augmentations make E-LatentLPIPS work? The latent reconstruction of notebook 01
// (lib/experiments/reconstruction.ts) on several photographs from several seeds, once per augmentation variant
// (presets of elatentlpips; "none" is plain LatentLPIPS). All (photograph, seed) problems of a variant run as one
// batch, a resumable unit under runs/<scale>/augmentation_ablation/. Every variant sees the same problems from the
// same start latents, so variants are compared pair by pair (lib/experiments/ablation_stats.ts). The committed
// cpu-scale table of every pair (figures/05_pairs.csv) is what the statistics, the findings and the Result read.

/** Variant name -> ops or presets (lib/perceptual/augment.ts); an empty list is plain LatentLPIPS. */
export type Variants = Record<string, readonly string[]>;

export type AblationConfig = TargetConfig;

function shared(scale: Scale): TargetConfig {
  const { losses, probeSigmas, spread, ...rest } = reconstructionConfig(scale);
  return rest;
}

export const ABLATION_CONFIGS: Record<Scale, AblationConfig> = {
  smoke: { ...shared("smoke"), images: [ASTRONAUT, PHOTOGRAPHS[1]], seeds: [0, 1], steps: 3 },
  // 4 photographs x 3 seeds = 12 problems per variant, one batch; a fixed budget of 1,500 steps with the learning
  // rate annealed to zero, notebook 01's size and schedule. Sized to the 2-core machine: a 12-row E-LatentLPIPS
  // step at 128 px took ~0.19 s (18 rows: ~0.4 s), so 8 variants x 1,500 steps take about 40 minutes; 6
  // photographs or 2,000 steps would double or add a third. lib/experiments/plan.ts gives the time.
  cpu: { ...shared("cpu"), images: PHOTOGRAPHS.slice(0, 4), seeds: [0, 1, 2], size: 128, steps: 1500, evalEvery: 100, ckptEvery: 50 },
  paper: { ...shared("paper"), images: PHOTOGRAPHS, seeds: [0, 1, 2] },
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
  /** One run per variant, each over every (photograph, seed) row of the target. */
  runs: LossRun[];
}

/**
 * Every variant on every (photograph, seed) problem, the same start latents for all. `nets` defaults to the
 * stand-ins; `base` is where the runs keep their checkpoints.
 */
export async function run(variants: Variants, config: AblationConfig = ablationConfig(), nets?: PerceptualNets, base = runDir(currentScale(), "augmentation_ablation")): Promise<AblationResult> {
  const specs = Object.entries(variants).map(([name, ops]) => variantLoss(name, ops));
  if (specs.length === 0) throw new Error("augmentation ablation: no variants given");
  return withTarget(config, nets, async (ctx) => {
    const runs = await optimiseEach(ctx, config, specs, base, "ablation");
    return { config, ...(await targetReport(ctx)), variants, runs };
  });
}

function opsText(spec: LossSpec): string {
  return spec.augment === undefined ? NO_AUGMENTATION : resolveOps(spec.augment).join("+");
}

const last = (xs: number[]) => xs[xs.length - 1];

/**
 * One row per variant and (photograph, seed): the final PSNR, LatentLPIPS and pixel LPIPS, and the variant's time
 * per step of its whole batch (figures/05_pairs.csv: what the statistics and the Result read).
 */
export function pairRows(r: AblationResult): Row[] {
  return pairTable(r.runs, r.rows, (spec) => ({ ops: opsText(spec) }));
}

/** Every evaluation of every variant and problem (figures/05_curves.csv). */
export function curveRows(r: AblationResult): Row[] {
  return curveTable(r.runs, r.rows, (spec) => ({ ops: opsText(spec) }));
}

// ---- figures ----

/**
 * PSNR over the optimisation per variant: the mean over photographs and seeds, with a band of +-1 standard
 * deviation over seeds of the mean over photographs (the run-to-run noise of the curve). Two panels: plain
 * LatentLPIPS with the single families (b, g, c, o), and with the released preset and what adds to it. Drawn from
 * curve rows, so figures/05_curves.csv re-renders it.
 */
export function ablationFigure(rows: Row[], sub: string): Figure {
  const curves = [...groupBy(rows, (r) => String(r.variant)).entries()].map(([name, mine]) => {
    const ops = String(mine[0].ops);
    const bySteps = [...groupBy(mine, (r) => String(r.step)).values()];
    const x = bySteps.map((g) => Number(g[0].step));
    const seedMeans = bySteps.map((g) => [...groupBy(g, (r) => String(r.seed)).values()].map((xs) => avg(xs.map((r) => Number(r["PSNR (dB)"])))));
    const y = seedMeans.map(avg);
    const sd = seedMeans.map((m) => (m.length < 2 ? 0 : sdOf(m)));
    return { ops, series: { name, x, y, band: { lo: y.map((v, i) => v - sd[i]), hi: y.map((v, i) => v + sd[i]) } } as Series };
  });
  const none = curves.filter((c) => c.ops === NO_AUGMENTATION).map((c) => ({ ...c.series, style: { color: "#000000", dash: "solid", width: 3 } }));
  const base = releasedOps().split("+");
  const isCombination = (ops: string) => base.every((o) => ops.split("+").includes(o));
  const panels: Panel[] = [
    { title: "single families (b blit, g geometric, c colour, o cutout)", series: [...curves.filter((c) => c.ops !== NO_AUGMENTATION && !isCombination(c.ops)).map((c) => c.series), ...none] },
    { title: `${RELEASED_PRESET} and what adds to it`, series: [...curves.filter((c) => c.ops !== NO_AUGMENTATION && isCombination(c.ops)).map((c) => c.series), ...none] },
  ].filter((p) => p.series.length > none.length);
  return panelFigure("Reconstruction PSNR by E-LatentLPIPS augmentation (mean over photographs and seeds, band: +-1 sd over seeds)", panels, {
    x: "Adam step", y: "PSNR of decode(z) (dB, higher is better)", columns: 2, sharedY: true, subtitle: sub,
  });
}

/** The paired differences against none and against the released preset, each with its 95% interval. */
export function pairedFigure(stats: VariantStats[], sub: string): Figure {
  const items = (pick: (s: VariantStats) => PairedDifference | undefined): Interval[] =>
    stats.flatMap((s) => {
      const d = pick(s);
      return d ? [{ label: s.variant, mean: d.diff.mean, lo: Number.isFinite(d.diff.lo) ? d.diff.lo : d.diff.mean, hi: Number.isFinite(d.diff.hi) ? d.diff.hi : d.diff.mean }] : [];
    });
  return intervalFigure("Paired PSNR differences (same photograph and seed), mean and 95% interval over photographs", [
    { title: "against none (plain LatentLPIPS)", items: items((s) => s.vsNone) },
    { title: `against ${RELEASED_PRESET} (the released preset)`, items: items((s) => s.vsReleased) },
  ], { x: "PSNR difference (dB)", subtitle: sub });
}

/** For each photograph (its first seed): the decoded target, then every variant's result, with captions. */
export function resultImages(r: AblationResult): { images: HostTensor; captions: string[]; title: string; cols: number } {
  const per = r.target.data.length / r.rows.length;
  const firstSeed = r.rows.flatMap((row, k) => (row.seed === r.rows[0].seed ? [k] : []));
  const parts: Array<{ src: HostTensor; row: number; caption: string }> = firstSeed.flatMap((k) => [
    { src: r.target, row: k, caption: `${imageName(r.rows[k].image)} target` },
    ...r.runs.map((x) => ({ src: x.decoded, row: k, caption: `${x.spec.label} ${last(x.psnr[k]).toFixed(1)} dB` })),
  ]);
  const data = new Float32Array(parts.length * per);
  parts.forEach((p, i) => data.set((p.src.data as Float32Array).subarray(p.row * per, (p.row + 1) * per), i * per));
  return {
    images: { dtype: "float32", shape: [parts.length, ...r.target.shape.slice(1)], data },
    captions: parts.map((p) => p.caption),
    title: `Reconstructions after ${r.config.steps.toLocaleString("en")} steps, seed ${r.rows[0].seed}, decoded (${subtitle(r)})`,
    cols: r.runs.length + 1,
  };
}

// ---- the Result section ----

/** The committed cpu-scale table of every pair, or undefined before notebook 05 has run at cpu scale. */
export function committedPairs(): Row[] | null {
  return committedTableIfAny("05_pairs") ?? null;
}

/** The paper's claims of notebook 05 against the committed cpu-scale pairs (figures/05_pairs.csv). */
export function claims(rows: Row[] | null = committedPairs()): Claim[] {
  const paperEnsemble = `regression-loss ablation, FID (SD-CFG-3): LatentLPIPS ${PAPER_REGRESSION_ABLATION.latentlpips.fid}, E-LatentLPIPS ${PAPER_REGRESSION_ABLATION["e-latentlpips"].fid}`;
  const paperWhich = `no per-augmentation numbers; released default ${RELEASED_PRESET}, distillation preset not given`;
  const ensemble = `the augmentation ensemble is what makes LatentLPIPS work as a loss (here: ${RELEASED_PRESET} above none beyond the spread)`;
  if (!rows) {
    const why = "notebook 05 has not run at cpu scale with this design yet: `npm run reproduce -- 05 --update-figures` writes figures/05_pairs.csv";
    return [
      { claim: ensemble, paper: paperEnsemble, ours: "(no committed cpu-scale table)", verdict: "not tested", why },
      { claim: "which augmentations matter", paper: paperWhich, ours: "(no committed cpu-scale table)", verdict: "not tested", why },
    ];
  }
  const none = variantWithOps(rows, NO_AUGMENTATION);
  const released = variantWithOps(rows, releasedOps());
  if (!none || !released) throw new Error(`figures/05_pairs.csv: needs the variants with ops "${NO_AUGMENTATION}" and "${releasedOps()}"`);
  const d = pairedDifference(rows, released, none);
  const images = new Set(rows.map((r) => r.image)).size;
  const seeds = new Set(rows.map((r) => r.seed)).size;
  const steps = numberIn(rows[0], "steps", "05_pairs");
  const held = side(d.diff) === "above";
  const stats = variantStats(rows);
  return [
    {
      claim: ensemble,
      paper: paperEnsemble,
      ours: `${released} - none = ${formatDifference(d.diff)} (mean, 95% interval over ${images} photographs x ${seeds} seeds, paired; sd over seeds ${d.sdSeeds.toFixed(2)} dB) after ${steps.toLocaleString("en")} steps`,
      verdict: held ? "held" : "did not hold",
      why: held ? undefined : `the interval includes zero or lies below it at this budget (${steps.toLocaleString("en")} steps)`,
    },
    {
      claim: "which augmentations matter",
      paper: paperWhich,
      ours: findings(rows).slice(1).join(" "),
      verdict: "not tested",
      why: `the paper states no result to test; ordered by effect: ${stats.map((s) => s.variant).join(" > ")}`,
    },
  ];
}
