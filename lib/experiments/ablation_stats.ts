import { meanInterval, MeanInterval } from "../metrics/confidence";
import { AUGMENT_PRESETS, resolveOps } from "../perceptual/augment";
import { Row } from "../viz/table";
import { numberIn } from "./claims";
import { LossRun, LossSpec } from "./latent_optimisation";
import { RELEASED_PRESET } from "./reconstruction";
import { TargetRow } from "./reconstruction_eval";

// The statistics of an augmentation ablation (notebook 05), computed from its table of pairs: one row per variant
// and (photograph, seed) with the final PSNR. Every variant ran the same problems from the same start latents, so
// two variants are compared pair by pair: the difference on each (photograph, seed), averaged over seeds per
// photograph, then over photographs with a Student-t interval, the photographs being the replicates. Also read by
// notebook 01's Result, which quotes the spread of its single-photograph claim from here.

/** The ops column of plain LatentLPIPS. */
export const NO_AUGMENTATION = "none (LatentLPIPS)";

/** The released preset's ops as the ops column writes them. */
export const releasedOps = () => resolveOps(RELEASED_PRESET).join("+");

/** "images/kodak/kodim04.png" -> "kodim04": the image column of the tables. */
export const imageName = (file: string) => file.replace(/^.*\//, "").replace(/\.[^.]+$/, "");

const last = (xs: number[]) => xs[xs.length - 1];

/**
 * The table of pairs: one row per run and (photograph, seed) with the final PSNR, LatentLPIPS and pixel LPIPS, and
 * the time of one step of the run's whole batch; `describe` adds columns naming the run's loss after `variant`.
 */
export function pairTable(runs: LossRun[], problems: TargetRow[], describe: (spec: LossSpec) => Row): Row[] {
  return runs.flatMap((x) =>
    problems.map((row, k) => ({
      variant: x.spec.label,
      ...describe(x.spec),
      image: imageName(row.image),
      seed: row.seed,
      steps: x.steps,
      "PSNR (dB)": last(x.psnr[k]),
      LatentLPIPS: last(x.latentLpips[k]),
      LPIPS: x.finalLpips[k],
      "batch ms/step": Math.round(x.msPerStep * 10) / 10,
    })),
  );
}

/** Every evaluation of every run and (photograph, seed): PSNR and LatentLPIPS; `describe` as in pairTable. */
export function curveTable(runs: LossRun[], problems: TargetRow[], describe: (spec: LossSpec) => Row): Row[] {
  return runs.flatMap((x) =>
    problems.flatMap((row, k) =>
      x.evalSteps.map((step, i) => ({ variant: x.spec.label, ...describe(x.spec), image: imageName(row.image), seed: row.seed, step, "PSNR (dB)": x.psnr[k][i], LatentLPIPS: x.latentLpips[k][i] })),
    ),
  );
}

const psnrOf = (r: Row, table: string) => numberIn(r, "PSNR (dB)", table);
export const avg = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
export const sdOf = (xs: number[]) => (xs.length < 2 ? NaN : Math.sqrt(xs.reduce((s, v) => s + (v - avg(xs)) ** 2, 0) / (xs.length - 1)));

/** Values grouped by a key, groups in order of first appearance. */
export function groupBy<T>(items: T[], key: (t: T) => string): Map<string, T[]> {
  const m = new Map<string, T[]>();
  for (const it of items) {
    const k = key(it);
    m.set(k, [...(m.get(k) ?? []), it]);
  }
  return m;
}

/** A variant's scores on every (image, seed) pair, keyed "image/seed". */
function pairsOf(rows: Row[], variant: string, table: string): Map<string, number> {
  const mine = rows.filter((r) => r.variant === variant);
  if (mine.length === 0) throw new Error(`figures/${table}.csv: no rows for variant "${variant}"`);
  return new Map(mine.map((r) => [`${r.image}/${r.seed}`, psnrOf(r, table)]));
}

/** The paired comparison of two variants: a - b per (photograph, seed), then per photograph, then over photographs. */
export interface PairedDifference {
  a: string;
  b: string;
  /** Mean of the per-photograph mean differences, with the Student-t interval over photographs. */
  diff: MeanInterval;
  pairs: number;
  /** Standard deviation over seeds of the difference averaged over photographs: run-to-run noise of the mean. */
  sdSeeds: number;
}

/**
 * PSNR(a) - PSNR(b) on each (photograph, seed) both ran; the mean over seeds per photograph; the mean over
 * photographs with its 95% Student-t interval (photographs are the replicates; seeds are averaged within one).
 */
export function pairedDifference(rows: Row[], a: string, b: string, table = "05_pairs"): PairedDifference {
  const [pa, pb] = [pairsOf(rows, a, table), pairsOf(rows, b, table)];
  const keys = [...pa.keys()].filter((k) => pb.has(k));
  if (keys.length === 0) throw new Error(`figures/${table}.csv: variants "${a}" and "${b}" share no (image, seed) pair`);
  const d = keys.map((k) => ({ image: k.split("/")[0], seed: k.split("/")[1], v: pa.get(k)! - pb.get(k)! }));
  const perImage = [...groupBy(d, (x) => x.image).values()].map((xs) => avg(xs.map((x) => x.v)));
  const perSeed = [...groupBy(d, (x) => x.seed).values()].map((xs) => avg(xs.map((x) => x.v)));
  return { a, b, diff: meanInterval(perImage), pairs: keys.length, sdSeeds: sdOf(perSeed) };
}

/** Where an interval lies against zero: the difference exceeds the spread when the whole interval is on one side. */
export type Side = "above" | "below" | "within" | "undetermined";

export function side(m: MeanInterval): Side {
  if (!Number.isFinite(m.lo)) return "undetermined";
  return m.lo > 0 ? "above" : m.hi < 0 ? "below" : "within";
}

export const signed = (v: number) => `${v >= 0 ? "+" : ""}${v.toFixed(2)}`;
/** "+1.23 dB [0.45, 2.01]", or without the interval when there is none. */
export function formatDifference(m: MeanInterval): string {
  return `${signed(m.mean)} dB${Number.isFinite(m.lo) ? ` [${signed(m.lo)}, ${signed(m.hi)}]` : ""}`;
}

export interface VariantStats {
  variant: string;
  ops: string;
  /** Mean final PSNR over every (photograph, seed) pair. */
  psnr: number;
  /** Standard deviation over seeds of the mean over photographs (run-to-run noise of `psnr`). */
  sdSeeds: number;
  /** Standard deviation over photographs of the mean over seeds (how much the photographs differ). */
  sdImages: number;
  pairs: number;
  /** Paired against the reference variants (plain LatentLPIPS, the released preset), absent for the reference itself. */
  vsNone?: PairedDifference;
  vsReleased?: PairedDifference;
  batchMsPerStep: number;
}

/** The variant of a pairs table whose ops are `ops` (NO_AUGMENTATION, or a preset's ops joined by "+"). */
export function variantWithOps(rows: Row[], ops: string): string | undefined {
  const r = rows.find((x) => x.ops === ops);
  return r === undefined ? undefined : String(r.variant);
}

/** Per variant: mean, spreads, the paired differences against none and bg; ordered by the difference against none. */
export function variantStats(rows: Row[], table = "05_pairs"): VariantStats[] {
  const none = variantWithOps(rows, NO_AUGMENTATION);
  const released = variantWithOps(rows, releasedOps());
  const stats = [...groupBy(rows, (r) => String(r.variant)).entries()].map(([variant, mine]) => {
    const seedMeans = [...groupBy(mine, (r) => String(r.seed)).values()].map((xs) => avg(xs.map((r) => psnrOf(r, table))));
    const imageMeans = [...groupBy(mine, (r) => String(r.image)).values()].map((xs) => avg(xs.map((r) => psnrOf(r, table))));
    return {
      variant,
      ops: String(mine[0].ops),
      psnr: avg(mine.map((r) => psnrOf(r, table))),
      sdSeeds: sdOf(seedMeans),
      sdImages: sdOf(imageMeans),
      pairs: mine.length,
      vsNone: none !== undefined && variant !== none ? pairedDifference(rows, variant, none, table) : undefined,
      vsReleased: released !== undefined && variant !== released ? pairedDifference(rows, variant, released, table) : undefined,
      batchMsPerStep: numberIn(mine[0], "batch ms/step", table),
    };
  });
  const effect = (s: VariantStats) => s.vsNone?.diff.mean ?? (s.variant === none ? 0 : -Infinity);
  return stats.sort((x, y) => effect(y) - effect(x));
}

/** The statistics as a table, variants ordered by effect. */
export function summaryRows(stats: VariantStats[]): Row[] {
  const cell = (d?: PairedDifference) => (d ? formatDifference(d.diff) : "(reference)");
  const verdict = (d?: PairedDifference) => (d ? side(d.diff) : "");
  return stats.map((s) => ({
    variant: s.variant,
    ops: s.ops,
    "PSNR (dB), mean": Number(s.psnr.toFixed(2)),
    "sd over seeds": Number(s.sdSeeds.toFixed(2)),
    "sd over images": Number(s.sdImages.toFixed(2)),
    "vs none, 95% CI": cell(s.vsNone),
    "vs none": verdict(s.vsNone),
    [`vs ${RELEASED_PRESET}, 95% CI`]: cell(s.vsReleased),
    [`vs ${RELEASED_PRESET}`]: verdict(s.vsReleased),
    "batch ms/step": s.batchMsPerStep,
  }));
}

/** Which family a variant's ops belong to: only blit/geometric ops, only colour ops, only cutout, or a mixture. */
export type Family = "geometric" | "colour" | "cutout" | "mixed" | "none";

export function family(ops: string): Family {
  if (ops === NO_AUGMENTATION) return "none";
  const list = ops.split("+");
  const within = (set: readonly string[]) => list.every((o) => set.includes(o));
  if (within([...AUGMENT_PRESETS.b, ...AUGMENT_PRESETS.g])) return "geometric";
  if (within(AUGMENT_PRESETS.c)) return "colour";
  if (within(AUGMENT_PRESETS.o)) return "cutout";
  return "mixed";
}

const SIDE_WORDS: Record<Side, string> = {
  above: "above the spread",
  below: "below the spread",
  within: "within the spread",
  undetermined: "no interval (one photograph)",
};

/**
 * What the pairs table shows, as sentences computed from it: the ensemble against plain LatentLPIPS, each family of
 * augmentations (blit and geometric, colour, cutout) against none, the families against each other, and what adding
 * colour or cutout to the released preset does. "Beyond the spread" means the 95% interval excludes zero.
 */
export function findings(rows: Row[], table = "05_pairs"): string[] {
  const stats = variantStats(rows, table);
  const none = stats.find((s) => s.ops === NO_AUGMENTATION);
  const images = new Set(rows.map((r) => r.image)).size;
  const seeds = new Set(rows.map((r) => r.seed)).size;
  const out: string[] = [
    `Each difference is paired (same photograph, same seed, same start latent), averaged over ${seeds} seeds per photograph, ` +
      `with a 95% Student-t interval over the ${images} photographs; "above/below the spread" means the interval excludes zero.`,
  ];
  if (!none) return [...out, "No plain LatentLPIPS (\"none\") variant ran, so no effect of augmentation can be measured."];
  const described = (s: VariantStats, d: PairedDifference | undefined) => `${s.variant} ${d ? `${formatDifference(d.diff)} (${SIDE_WORDS[side(d.diff)]})` : "(reference)"}`;
  out.push(`Ordered by the gain over none (${none.psnr.toFixed(2)} dB): ${stats.filter((s) => s !== none).map((s) => `${s.variant} ${signed(s.vsNone!.diff.mean)}`).join(", ")} dB.`);
  const byFamily = groupBy(stats.filter((s) => s !== none), (s) => family(s.ops));
  const names: Record<Family, string> = { geometric: "Blit and geometric sets", colour: "Colour alone", cutout: "Cutout alone", mixed: "Mixtures", none: "" };
  for (const fam of ["geometric", "colour", "cutout"] as const) {
    const members = byFamily.get(fam);
    if (!members) continue;
    const above = members.filter((s) => side(s.vsNone!.diff) === "above").length;
    const verdict = above === members.length ? (members.length > 1 ? "all beat none beyond the spread" : "beats none beyond the spread") : above === 0 ? "no difference beyond the spread" : `${above} of ${members.length} beyond the spread`;
    out.push(`${names[fam]} against none: ${members.map((s) => described(s, s.vsNone)).join("; ")}: ${verdict}.`);
  }
  const best = (fam: Family) => byFamily.get(fam)?.[0];
  const geo = best("geometric");
  for (const other of [best("colour"), best("cutout")]) {
    if (!geo || !other) continue;
    const d = pairedDifference(rows, geo.variant, other.variant, table);
    const s = side(d.diff);
    out.push(`The best ${family(geo.ops)} set against the best ${family(other.ops)} one: ${geo.variant} - ${other.variant} = ${formatDifference(d.diff)}, ${s === "above" ? `${geo.variant} is better beyond the spread` : s === "below" ? `${other.variant} is better beyond the spread` : SIDE_WORDS[s]}.`);
  }
  const released = stats.find((s) => s.ops === releasedOps());
  if (released) {
    const base = released.ops.split("+");
    for (const s of stats.filter((x) => x !== released && base.every((o) => x.ops.split("+").includes(o)))) {
      const extra = s.ops.split("+").filter((o) => !base.includes(o));
      const where = side(s.vsReleased!.diff);
      const effect = where === "above" ? "raises it" : where === "below" ? "lowers it" : "leaves it unchanged";
      out.push(`Adding ${extra.join(", ")} to ${released.variant} (${s.variant}): ${formatDifference(s.vsReleased!.diff)}: ${effect} ${where === "within" || where === "undetermined" ? `(${SIDE_WORDS[where]})` : "beyond the spread"}.`);
    }
  }
  return out;
}
