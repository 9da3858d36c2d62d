import { HostTensor } from "../io/host_tensor";
import { Figure, lineFigure, Panel, panelFigure } from "../viz/plot";
import { Row } from "../viz/table";
import { avg, curveTable, formatDifference, groupBy, NO_AUGMENTATION, pairedDifference, pairTable, releasedOps, sdOf, side, signed, variantWithOps } from "./ablation_stats";
import { Claim, committedTable, committedTableIfAny, numberIn } from "./claims";
import { LossRun, LossSpec } from "./latent_optimisation";
import { DEFAULT_LOSSES, ReconstructionResult, RELEASED_PRESET, SpreadResult, TargetConfig } from "./reconstruction";
import { noisyCopyPsnr } from "./reconstruction_eval";

// Notebook 01's tables, figures and its comparison with the paper. Figures are drawn from the same rows that are
// saved as CSV (figures/01_curves.csv, 01_loss.csv, 01_spread_curves.csv), so a saved table re-renders its figure
// without recomputing.

/** PAPER.md "Ensembled LatentLPIPS": the values the paper's single-image reconstruction figure prints. */
export const PAPER_RECONSTRUCTION_FIGURE = { lpips: 0.016, latentLpips: 0.49, eLatentLpips: 0.001 };
/** PAPER.md "Cost": one evaluation on an A100, decode + LPIPS against E-LatentLPIPS (3.7 ms augment + 8.4 ms network). */
export const PAPER_COST_MS = { decodeLpips: 117, eLatentLpips: 12.1, ratio: 9.7 };
/** How much higher a PSNR must be to count as "much higher" (3 dB: the error's RMS at most 0.7x). */
export const MUCH_HIGHER_DB = 3;
/** How far below pixel LPIPS' PSNR E-LatentLPIPS may end and still count as "close" (1 dB: RMS error 1.12x). */
export const CLOSE_DB = 1;

/**
 * The spread of the first claim, which notebook 01 measures on one photograph and one seed: notebook 05's paired
 * difference of the released preset against plain LatentLPIPS over several photographs and seeds, from its committed
 * cpu-scale table (at its own image size and step budget, named).
 */
function ensembleSpread(): string {
  const rows = committedTableIfAny("05_pairs");
  const none = rows && variantWithOps(rows, NO_AUGMENTATION);
  const released = rows && variantWithOps(rows, releasedOps());
  if (!rows || !none || !released) return "no spread yet: notebook 05's committed cpu-scale table (figures/05_pairs.csv) gives it once written";
  const d = pairedDifference(rows, released, none);
  const photos = new Set(rows.map((r) => r.image)).size;
  const seeds = new Set(rows.map((r) => r.seed)).size;
  return `over ${photos} photographs x ${seeds} seeds (notebook 05, ${numberIn(rows[0], "steps", "05_pairs").toLocaleString("en")} steps): ${released} - ${none} = ${formatDifference(d.diff)} (mean, 95% interval, paired)`;
}

/** The config in one line, for the notebook's introduction (the numbers come from the config, never from prose). */
export function describeConfig(c: TargetConfig & { losses?: LossSpec[] }): string {
  const own = (c.losses ?? []).flatMap((l) => (l.steps === undefined ? [] : [`${l.label}: ${l.steps.toLocaleString("en")}`]));
  const problems = c.images.length * c.seeds.length > 1 ? `${c.images.length} photographs x ${c.seeds.length} seeds, ` : "";
  return `${problems}${c.size} px (latents ${c.size / 8}x${c.size / 8}), ${c.steps.toLocaleString("en")} Adam steps per loss` +
    `${own.length ? ` (${own.join(", ")})` : ""}, lr ${c.lr} ${c.lrDecay === "cosine" ? "with cosine decay" : "constant"}, ` +
    `scored every ${c.evalEvery} steps, checkpointed every ${c.ckptEvery}`;
}

/** Short names of the trunks behind the distances, for figure subtitles. */
export function trunksLine(latentTrunk: string, lpipsTrunk: string): string {
  const short = (d: string) => d.split(/ trained | from |;/)[0];
  return `LatentLPIPS: ${short(latentTrunk)}; LPIPS: ${short(lpipsTrunk)}`;
}

/** Subtitle of every figure of a result: scale, image size, latent space, trunks. */
export function subtitle(r: { scale: string; config: { size: number }; latentTrunk: string; lpipsTrunk: string }): string {
  return `${r.scale} scale, ${r.config.size} px, TAEF2 latents; ${trunksLine(r.latentTrunk, r.lpipsTrunk)}`;
}

/** Photograph, decoded target, then each loss's result: one batch for an image grid, with captions and a title. */
export function comparisonImages(r: ReconstructionResult): { images: HostTensor; captions: string[]; title: string } {
  const [, h, w, c] = r.target.shape;
  const per = h * w * c;
  const parts = [r.original, r.target, ...r.runs.map((x) => x.decoded)];
  const data = new Float32Array(parts.length * per);
  parts.forEach((p, i) => data.set(p.data as Float32Array, i * per));
  const psnr = (x: LossRun) => `${last(x.psnr[0]).toFixed(1)} dB`;
  return {
    images: { dtype: "float32", shape: [parts.length, h, w, c], data },
    captions: ["photograph", "target: decode(encode)", ...r.runs.map((x) => `${x.spec.label}, ${psnr(x)}`)],
    title: `Latent reconstruction by loss, decoded (${subtitle(r)})`,
  };
}

const last = (xs: number[]) => xs[xs.length - 1];

/** Every evaluation of every run: loss, kind, step, PSNR, LatentLPIPS (figures/01_curves.csv). */
export function curveRows(runs: LossRun[]): Row[] {
  return runs.flatMap((x) => x.evalSteps.map((step, i) => ({ loss: x.spec.label, kind: x.spec.kind, step, "PSNR (dB)": x.psnr[0][i], LatentLPIPS: x.latentLpips[0][i] })));
}

/** The optimised loss of every run at every step, one column per run (figures/01_loss.csv; empty past a run's end). */
export function lossRows(runs: LossRun[]): Row[] {
  const n = Math.max(...runs.map((x) => x.losses.length));
  return Array.from({ length: n }, (_, i) => {
    const row: Row = { step: i + 1 };
    for (const x of runs) row[x.spec.label] = i < x.losses.length ? Number(x.losses[i].toPrecision(6)) : null;
    return row;
  });
}

/** One series per loss of curve rows, in order of appearance; `kind` tells which are latent MSE. */
function curveSeries(rows: Row[], col: string): Array<{ name: string; kind: string; x: number[]; y: number[] }> {
  const out = new Map<string, { name: string; kind: string; x: number[]; y: number[] }>();
  for (const r of rows) {
    const name = String(r.loss);
    let s = out.get(name);
    if (!s) out.set(name, (s = { name, kind: String(r.kind), x: [], y: [] }));
    s.x.push(Number(r.step));
    s.y.push(Number(r[col]));
  }
  return [...out.values()];
}

/**
 * Latent MSE fits the latent itself, so its PSNR runs to ~95 dB and its LatentLPIPS to ~1e-11: drawn on the same axis
 * it squeezes every other curve into a strip. When it reaches that far (beyond the other curves' span again), the
 * axis is fitted to the other curves, MSE runs off it, and a note in the corner gives where it ends.
 */
function clipLatentMse(fig: Figure, series: Array<{ name: string; kind: string; y: number[] }>, log: boolean, unit: string): Figure {
  const others = series.filter((s) => s.kind !== "latent-mse");
  const mse = series.filter((s) => s.kind === "latent-mse");
  if (others.length === 0 || mse.length === 0) return fig;
  const t = (v: number) => (log ? Math.log10(v) : v);
  const ys = others.flatMap((s) => s.y).filter(Number.isFinite).map(t);
  const [lo, hi] = [Math.min(...ys), Math.max(...ys)];
  const span = Math.max(hi - lo, log ? 0.3 : 1);
  const far = mse.filter((s) => s.y.some((v) => t(v) > hi + span || t(v) < lo - span));
  if (far.length === 0) return fig;
  const range = [lo - 0.1 * span, hi + 0.1 * span];
  const layout = fig.layout as Record<string, unknown>;
  (layout.yaxis as Record<string, unknown>).range = range;
  layout.annotations = far.map((s, k) => {
    const last = s.y[s.y.length - 1];
    const where = t(last) > range[1] ? "above" : t(last) < range[0] ? "below" : "within";
    return {
      text: `${s.name} ends at ${log ? last.toExponential(1) : last.toFixed(1)}${unit}${where === "within" ? "" : `, ${where} this axis`}`,
      xref: "paper", yref: "paper", x: 0.99, y: where === "above" ? 0.99 - 0.07 * k : 0.01 + 0.07 * k,
      xanchor: "right", yanchor: where === "above" ? "top" : "bottom", showarrow: false,
      bgcolor: "rgba(255,255,255,0.85)", bordercolor: "#999", font: { size: 11 },
    };
  });
  return fig;
}

/** PSNR over the optimisation, from curve rows. */
export function psnrFigure(rows: Row[], sub: string): Figure {
  const series = curveSeries(rows, "PSNR (dB)");
  const fig = lineFigure("Reconstruction PSNR against the decoded target, by loss", series, { x: "Adam step", y: "PSNR of decode(z) (dB, higher is better)", subtitle: sub, markers: true });
  return clipLatentMse(fig, series, false, " dB");
}

/** Plain LatentLPIPS to the target latent over the optimisation, from curve rows. */
export function latentLpipsFigure(rows: Row[], sub: string): Figure {
  const series = curveSeries(rows, "LatentLPIPS");
  const fig = lineFigure("LatentLPIPS to the target latent, by loss", series, { x: "Adam step", y: "LatentLPIPS(z, target) (log scale)", logY: true, subtitle: sub, markers: true });
  return clipLatentMse(fig, series, true, "");
}

/** Each run's optimised loss in its own panel (the losses have different units), log scale, from loss rows. */
export function lossFigure(rows: Row[], sub: string): Figure {
  const names = Object.keys(rows[0] ?? {}).filter((k) => k !== "step");
  const panels: Panel[] = names.map((name) => {
    const kept = rows.filter((r) => typeof r[name] === "number");
    return { title: name, series: [{ name, x: kept.map((r) => Number(r.step)), y: kept.map((r) => Number(r[name])) }] };
  });
  return panelFigure("The optimised loss of each run", panels, { x: "Adam step", y: "loss (log scale)", logY: true, columns: 3, subtitle: sub });
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
    "PSNR (dB)": last(x.psnr[0]),
    "final LatentLPIPS": last(x.latentLpips[0]),
    "final LPIPS": x.finalLpips[0],
    "PSNR of a noisy target at this LatentLPIPS": noisyCopyPsnr(r.probes, last(x.latentLpips[0])) ?? null,
    "ms/step": Math.round(x.msPerStep * 10) / 10,
    "LatentLPIPS trunk": r.latentTrunk,
    "LPIPS trunk": r.lpipsTrunk,
  }));
}

// ---- the spread: the comparison on several photographs (runSpread) ----

/** The label of a default loss: its kind, and for E-LatentLPIPS its preset. */
const lossLabel = (kind: string, augment?: string) => DEFAULT_LOSSES.find((l) => l.kind === kind && (augment === undefined || l.augment === augment))!.label;
const ENSEMBLE = () => lossLabel("e-latent-lpips", RELEASED_PRESET);
const PIXEL = () => lossLabel("lpips");

/**
 * figures/01_spread.csv: per loss and (photograph, seed) the final PSNR, LatentLPIPS and pixel LPIPS, and the time
 * of one step of the loss's whole batch. The columns of notebook 05's pairs, so its paired statistics read it.
 */
export function spreadRows(r: SpreadResult): Row[] {
  return pairTable(r.runs, r.rows, (spec) => ({ kind: spec.kind }));
}

/** Every evaluation of every loss and problem of the spread (figures/01_spread_curves.csv). */
export function spreadCurveRows(r: SpreadResult): Row[] {
  return curveTable(r.runs, r.rows, (spec) => ({ kind: spec.kind }));
}

/** PSNR over the optimisation per loss: mean over the problems, band +-1 sd over them (how much the photographs differ). */
export function spreadFigure(rows: Row[], sub: string): Figure {
  const series = [...groupBy(rows, (r) => String(r.variant)).entries()].map(([name, mine]) => {
    const bySteps = [...groupBy(mine, (r) => String(r.step)).values()];
    const values = bySteps.map((g) => g.map((r) => Number(r["PSNR (dB)"])));
    const y = values.map(avg);
    const sd = values.map((v) => (v.length < 2 ? 0 : sdOf(v)));
    return { name, x: bySteps.map((g) => Number(g[0].step)), y, band: { lo: y.map((v, i) => v - sd[i]), hi: y.map((v, i) => v + sd[i]) } };
  });
  const problems = new Set(rows.map((r) => `${r.image}/${r.seed}`)).size;
  return lineFigure(`PSNR by loss on ${problems} problems (mean; band: +-1 sd over them)`, series, { x: "Adam step", y: "PSNR of decode(z) (dB, higher is better)", subtitle: sub, markers: true });
}

/**
 * Per loss of the spread: mean PSNR, its sd over photographs, the paired difference of E-LatentLPIPS (the released
 * preset) against it with its 95% interval over photographs and where that interval lies, and the batch's ms/step.
 */
export function spreadSummary(rows: Row[]): Row[] {
  const ens = ENSEMBLE();
  return [...groupBy(rows, (r) => String(r.variant)).entries()].map(([loss, mine]) => {
    const psnr = mine.map((r) => numberIn(r, "PSNR (dB)", "01_spread"));
    const d = loss === ens ? undefined : pairedDifference(rows, ens, loss, "01_spread");
    return {
      loss,
      problems: mine.length,
      "PSNR (dB), mean": Number(avg(psnr).toFixed(2)),
      "sd over problems": Number(sdOf(psnr).toFixed(2)),
      [`${ens} minus this, 95% CI`]: d ? formatDifference(d.diff) : "(reference)",
      "interval against 0": d ? side(d.diff) : "",
      "batch ms/step": numberIn(mine[0], "batch ms/step", "01_spread"),
    };
  });
}

/** The committed cpu-scale tables the Result reads; `spread` is absent before the spread has run at cpu scale. */
export interface ClaimTables {
  summary: Row[];
  spread?: Row[];
}

const committedTables = (): ClaimTables => ({ summary: committedTable("01_summary", "01_latent_lpips_reconstruction"), spread: committedTableIfAny("01_spread") });

/**
 * "Close to pixel LPIPS" on the spread's problems: E-LatentLPIPS minus pixel LPIPS, paired, 95% interval over the
 * photographs. Held when the whole interval lies above -CLOSE_DB, did not hold when it lies below, undecided when
 * it reaches both sides.
 */
function closeOnSpread(rows: Row[]): Pick<Claim, "ours" | "verdict" | "why"> {
  const d = pairedDifference(rows, ENSEMBLE(), PIXEL(), "01_spread");
  const steps = (label: string) => numberIn(rows.find((r) => r.variant === label)!, "steps", "01_spread");
  const ms = (label: string) => numberIn(rows.find((r) => r.variant === label)!, "batch ms/step", "01_spread");
  const photos = new Set(rows.map((r) => r.image)).size;
  const seeds = new Set(rows.map((r) => r.seed)).size;
  const ours = `${d.a} - ${d.b} = ${formatDifference(d.diff)} (mean, 95% interval over ${photos} photographs x ${seeds} seed${seeds > 1 ? "s" : ""}, paired, ${steps(d.a).toLocaleString("en")} and ${steps(d.b).toLocaleString("en")} steps); a batch step ${ms(d.b)} ms against ${ms(d.a)} ms (${(ms(d.b) / ms(d.a)).toFixed(1)}x)`;
  if (steps(d.b) < steps(d.a)) return { ours, verdict: "not tested", why: `pixel LPIPS ran fewer steps than E-LatentLPIPS` };
  if (!Number.isFinite(d.diff.lo)) return { ours, verdict: "not tested", why: "one photograph gives no interval" };
  if (d.diff.lo >= -CLOSE_DB) return { ours, verdict: "held" };
  if (d.diff.hi < -CLOSE_DB) return { ours, verdict: "did not hold", why: `with the same steps, pixel LPIPS through the decoder ends higher by more than ${CLOSE_DB} dB on every reading of the interval` };
  return { ours, verdict: "undecided", why: `the interval reaches both sides of -${CLOSE_DB} dB: ${photos} photographs cannot tell whether the gap is within ${CLOSE_DB} dB` };
}

/**
 * The paper's claims of notebook 01 against the committed cpu-scale tables (figures/01_summary.csv, and for the
 * spread figures/01_spread.csv and notebook 05's 05_pairs.csv).
 */
export function claims(tables: ClaimTables = committedTables()): Claim[] {
  const table = "01_summary";
  const rows = tables.summary;
  const row = (kind: string, augment?: string) => {
    const label = lossLabel(kind, augment);
    const r = rows.find((x) => x.loss === label);
    if (!r) throw new Error(`figures/${table}.csv: no row for loss "${label}"`);
    return { label, steps: numberIn(r, "steps", table), psnr: numberIn(r, "PSNR (dB)", table), ms: numberIn(r, "ms/step", table) };
  };
  const [plain, ens, pixel] = [row("latent-lpips"), row("e-latent-lpips", RELEASED_PRESET), row("lpips")];
  const f = (x: { psnr: number; steps: number }) => `${x.psnr.toFixed(2)} dB after ${x.steps.toLocaleString("en")} steps`;
  const cost = (x: { label: string; ms: number }) => `${x.label} ${x.ms} ms/step`;
  const gain = ens.psnr - plain.psnr;
  const gap = ens.psnr - pixel.psnr;
  const ratio = pixel.ms / ens.ms;
  const fig = PAPER_RECONSTRUCTION_FIGURE;
  const spread = ensembleSpread();
  const single = `${pixel.label} ${f(pixel)}, ${ens.label} ${f(ens)}: ${signed(gap)} dB on one photograph and seed; ${cost(pixel)} against ${cost(ens)} (${ratio.toFixed(1)}x)`;
  const close: Pick<Claim, "ours" | "verdict" | "why"> = tables.spread
    ? (({ ours, ...v }) => ({ ours: `${ours}. Single problem: ${single}`, ...v }))(closeOnSpread(tables.spread))
    : pixel.steps < ens.steps
      ? { ours: single, verdict: "not tested", why: `pixel LPIPS ran ${pixel.steps.toLocaleString("en")} of ${ens.steps.toLocaleString("en")} steps (one of its steps costs ${ratio.toFixed(1)} E-LatentLPIPS steps here) and had not converged` }
      : { ours: `${single}; no spread (figures/01_spread.csv not written yet)`, verdict: "not tested", why: "one photograph from one seed has no spread" };
  return [
    {
      claim: `E-LatentLPIPS reconstructs far better than plain LatentLPIPS (here: a PSNR at least ${MUCH_HIGHER_DB} dB higher)`,
      paper: `LatentLPIPS leaves wavy, patchy artifacts, E-LatentLPIPS reconstructs almost perfectly (figure values: LatentLPIPS ${fig.latentLpips}, E-LatentLPIPS ${fig.eLatentLpips})`,
      ours: `${ens.label} ${f(ens)}, ${plain.label} ${f(plain)}: ${signed(gain)} dB (one photograph, one seed); ${spread}`,
      verdict: gain >= MUCH_HIGHER_DB ? "held" : "did not hold",
      why: gain >= MUCH_HIGHER_DB ? undefined : "see environment.md: the stand-in latent trunk and the step budget limit both runs",
    },
    {
      claim: `E-LatentLPIPS comes close to optimising pixel LPIPS through the decoder (here: within ${CLOSE_DB} dB of it or above, the whole 95% interval over photographs)`,
      paper: `figure value for pixel LPIPS ${fig.lpips}, between the two latent ones`,
      ...close,
    },
    {
      claim: "E-LatentLPIPS costs a fraction of decoding and using pixel LPIPS (here: at most half)",
      paper: `A100, one evaluation: ${PAPER_COST_MS.decodeLpips} ms against ${PAPER_COST_MS.eLatentLpips} ms, ${PAPER_COST_MS.ratio}x`,
      ours: `one optimisation step: ${pixel.ms} ms against ${ens.ms} ms, ${ratio.toFixed(1)}x (TAEF2 decoder, stand-in trunks)`,
      verdict: ratio >= 2 ? "held" : "did not hold",
    },
  ];
}
