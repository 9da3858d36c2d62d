import { before, test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { initEngine } from "../lib/backend/engine";
import { Rng } from "../lib/core/random";
import { LatentLpips } from "../lib/perceptual/latent_lpips";
import { Lpips } from "../lib/perceptual/lpips";
import { STANDIN_WIDTH } from "../lib/perceptual/standins";
import { resolveOps } from "../lib/perceptual/augment";
import { family, findings, NO_AUGMENTATION, pairedDifference, side, variantStats } from "../lib/experiments/ablation_stats";
import { ablationConfig, ablationFigure, claims, curveRows, pairedFigure, pairRows, resultImages, run } from "../lib/experiments/augmentation_ablation";
import { Row } from "../lib/viz/table";

before(async () => {
  await initEngine({ quiet: true });
});

/**
 * A pairs table with known effects: 3 photographs x 3 seeds; each variant is "none" plus a per-photograph offset
 * (plus a per-seed term that averages to zero over seeds), so every mean and interval is known in closed form.
 */
function syntheticPairs(): Row[] {
  const offsets: Record<string, { ops: string; byImage: number[]; bySeed?: number[] }> = {
    none: { ops: NO_AUGMENTATION, byImage: [0, 0, 0] },
    b: { ops: resolveOps("b").join("+"), byImage: [2.8, 3.0, 3.2], bySeed: [-0.1, 0, 0.1] },
    g: { ops: resolveOps("g").join("+"), byImage: [1.5, 2.0, 2.5] },
    c: { ops: resolveOps("c").join("+"), byImage: [-0.5, 0.2, 0.4] },
    o: { ops: resolveOps("o").join("+"), byImage: [-1.0, 0.5, 0.3] },
    bg: { ops: resolveOps("bg").join("+"), byImage: [4.0, 4.5, 5.0] },
    bgc: { ops: resolveOps("bgc").join("+"), byImage: [3.1, 3.5, 3.9] },
  };
  const rows: Row[] = [];
  for (const [variant, o] of Object.entries(offsets)) {
    for (const [i, image] of ["kodim04", "kodim08", "astronaut"].entries()) {
      for (const seed of [0, 1, 2]) {
        const psnr = 10 + i + 0.3 * seed + o.byImage[i] + (o.bySeed?.[seed] ?? 0);
        rows.push({ variant, ops: o.ops, image, seed, steps: 100, "PSNR (dB)": psnr, LatentLPIPS: 0.1, LPIPS: 0.2, "batch ms/step": 50 });
      }
    }
  }
  return rows;
}

const close = (a: number, b: number, what: string) => assert.ok(Math.abs(a - b) < 1e-9, `${what}: ${a}, expected ${b}`);

test("paired differences: per photograph over seeds, then a Student-t interval over photographs", () => {
  const rows = syntheticPairs();
  const d = pairedDifference(rows, "b", "none");
  close(d.diff.mean, 3, "mean");
  close(d.diff.sd, 0.2, "sd over photographs");
  // t(0.975, 2) = 4.3027
  assert.ok(Math.abs(d.diff.hi - 3 - (4.3027 * 0.2) / Math.sqrt(3)) < 1e-3, `upper bound ${d.diff.hi}`);
  close(d.sdSeeds, 0.1, "sd over seeds of the mean over photographs");
  assert.equal(d.pairs, 9);
  assert.equal(side(d.diff), "above");
  assert.equal(side(pairedDifference(rows, "c", "none").diff), "within");
  assert.equal(side(pairedDifference(rows, "bgc", "bg").diff), "below");
  assert.throws(() => pairedDifference(rows, "b", "nope"), /no rows for variant "nope"/);
  // a pair one variant lacks is left out of the comparison, not matched with another
  assert.equal(pairedDifference(rows.filter((r) => !(r.variant === "b" && r.image === "kodim04" && r.seed === 0)), "b", "none").pairs, 8);
});

test("variants ordered by their gain over none, each against none and bg; families from the ops", () => {
  const stats = variantStats(syntheticPairs());
  assert.deepEqual(stats.map((s) => s.variant), ["bg", "bgc", "b", "g", "c", "none", "o"]);
  const bg = stats[0];
  assert.equal(bg.vsReleased, undefined, "bg is the reference of its own column");
  close(bg.vsNone!.diff.mean, 4.5, "bg - none");
  close(stats[1].vsReleased!.diff.mean, -1, "bgc - bg");
  close(stats.find((s) => s.variant === "none")!.psnr, 10 + 1 + 0.3, "none's mean over photographs and seeds");
  close(stats.find((s) => s.variant === "none")!.sdSeeds, 0.3, "none's sd over seeds");
  assert.deepEqual(["b", "g", "bg", "c", "o", "bgc"].map((v) => family(stats.find((s) => s.variant === v)!.ops)), ["geometric", "geometric", "geometric", "colour", "cutout", "mixed"]);
});

test("findings are computed from the table: geometric above the spread, colour and cutout within, colour added to bg below", () => {
  const text = findings(syntheticPairs());
  const line = (start: string) => text.find((l) => l.startsWith(start)) ?? assert.fail(`no finding starting "${start}" in\n${text.join("\n")}`);
  assert.match(line("Ordered by the gain over none"), /bg \+4\.50, bgc \+3\.50, b \+3\.00, g \+2\.00, c \+0\.03, o -0\.07 dB/);
  assert.match(line("Blit and geometric sets against none"), /all beat none beyond the spread\.$/);
  assert.match(line("Colour alone against none"), /c \+0\.03 dB \[-?\d\.\d\d, \+\d\.\d\d\] \(within the spread\): no difference beyond the spread\.$/);
  assert.match(line("Cutout alone against none"), /no difference beyond the spread\.$/);
  assert.match(line("The best geometric set against the best colour one"), /bg - c = \+4\.47 dB .*bg is better beyond the spread/);
  assert.match(line("Adding brightness, contrast, saturation to bg (bgc)"), /-1\.00 dB .*lowers it beyond the spread/);
  // without plain LatentLPIPS there is no effect to measure
  assert.match(findings(syntheticPairs().filter((r) => r.variant !== "none")).join(" "), /No plain LatentLPIPS/);
});

test("the Result: not tested before the cpu table exists; from a table, the ensemble's paired gain decides", () => {
  assert.deepEqual(claims(null).map((c) => c.verdict), ["not tested", "not tested"]);
  const [ensemble, which] = claims(syntheticPairs());
  assert.equal(ensemble.verdict, "held");
  assert.match(ensemble.ours, /^bg - none = \+4\.50 dB \[\+\d\.\d\d, \+\d\.\d\d\] \(mean, 95% interval over 3 photographs x 3 seeds/);
  assert.match(which.why!, /bg > bgc > b > g > c > none > o/);
  const flat = syntheticPairs().map((r) => (r.variant === "bg" ? { ...r, "PSNR (dB)": Number(r["PSNR (dB)"]) - 4.5 + (r.image === "kodim04" ? 1 : -0.5) } : r));
  assert.equal(claims(flat)[0].verdict, "did not hold", "a gain whose interval includes zero does not hold");
});

test("run() at smoke scale: one batch per variant over every photograph and seed; tables, figures and grid from it", async () => {
  const config = ablationConfig("smoke");
  const nets = {
    lpips: new Lpips(new Rng(0), { width: STANDIN_WIDTH }),
    lpipsTrunk: "random VGG16",
    latent: new LatentLpips({ latentChannels: 32, width: STANDIN_WIDTH, l1: false }, new Rng(1)),
    latentTrunk: "random latent VGG16-BN",
  };
  const base = fs.mkdtempSync(path.join(os.tmpdir(), "d2g-ablation-"));
  try {
    const r = await run({ none: [], bg: ["bg"] }, config, nets, base);
    const rows = config.images.length * config.seeds.length;
    assert.equal(r.rows.length, rows);
    const pairs = pairRows(r);
    assert.equal(pairs.length, 2 * rows);
    assert.deepEqual(new Set(pairs.map((p) => `${p.image}/${p.seed}`)).size, rows);
    assert.ok(pairs.every((p) => Number.isFinite(p["PSNR (dB)"] as number) && Number.isFinite(p.LPIPS as number)));
    // the same start latents: both variants begin at the same PSNR on each row
    const curves = curveRows(r);
    const start = (v: string) => curves.filter((c) => c.variant === v && c.step === 0).map((c) => c["PSNR (dB)"]);
    assert.deepEqual(start("none"), start("bg"));
    assert.equal(curves.length, 2 * rows * r.runs[0].evalSteps.length);
    const fig = ablationFigure(curves, "smoke");
    assert.ok(fig.data.some((t) => t.fill === "tonexty"), "curves carry their seed band");
    assert.equal(pairedFigure(variantStats(pairs), "smoke").data.length, 2);
    const grid = resultImages(r);
    assert.equal(grid.images.shape[0], config.images.length * 3, "per photograph: target, none, bg");
    assert.equal(grid.cols, 3);
    // rerun: read back, same numbers
    assert.deepEqual(pairRows(await run({ none: [], bg: ["bg"] }, config, nets, base)).map((p) => p["PSNR (dB)"]), pairs.map((p) => p["PSNR (dB)"]));
  } finally {
    nets.lpips.dispose();
    nets.latent.dispose();
    fs.rmSync(base, { recursive: true, force: true });
  }
});
