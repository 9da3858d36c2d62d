import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "fs";
import { fromRoot } from "../lib/core/paths";
import { ABLATION_VARIANTS, notebookPlan } from "../lib/experiments/plan";
import { ABLATION_CONFIGS } from "../lib/experiments/augmentation_ablation";
import { RECONSTRUCTION_CONFIGS } from "../lib/experiments/reconstruction";
import { SCALES } from "../lib/experiments/scale";

const notebooks = fs.readdirSync(fromRoot("notebooks")).filter((f) => f.endsWith(".ipynb")).map((f) => f.replace(/\.ipynb$/, ""));

test("every notebook has an estimate at every scale, the sum of positive parts", () => {
  for (const nb of notebooks) {
    for (const scale of SCALES) {
      const plan = notebookPlan(nb, scale);
      assert.ok(plan, `${nb} has no estimate`);
      assert.ok(plan.parts.every((p) => p.seconds > 0 && Number.isFinite(p.seconds)), `${nb} at ${scale}: ${JSON.stringify(plan.parts)}`);
      assert.equal(plan.seconds, plan.parts.reduce((s, p) => s + p.seconds, 0));
    }
    assert.ok(notebookPlan(nb, "smoke")!.seconds < notebookPlan(nb, "cpu")!.seconds, nb);
  }
  assert.equal(notebookPlan("99_unknown", "cpu"), undefined);
});

test("the estimate follows the config: more steps, more time", () => {
  const cfg = RECONSTRUCTION_CONFIGS.cpu;
  const before = notebookPlan("01_latent_lpips_reconstruction", "cpu")!;
  const steps = cfg.steps;
  cfg.steps = 2 * steps;
  try {
    const after = notebookPlan("01_latent_lpips_reconstruction", "cpu")!;
    assert.match(after.summary, new RegExp(`${cfg.losses.length} losses x ${2 * steps} steps`));
    assert.ok(after.seconds > 1.8 * before.seconds - 60, `${before.seconds} -> ${after.seconds}`);
  } finally {
    cfg.steps = steps;
  }
});

/** Runs `f` with the cpu configs of notebooks 01 and 05 changed as given, restoring them afterwards. */
function withCpuConfigs(change: () => void, f: () => void): void {
  const saved = [structuredClone(RECONSTRUCTION_CONFIGS.cpu), structuredClone(ABLATION_CONFIGS.cpu)] as const;
  try {
    change();
    f();
  } finally {
    RECONSTRUCTION_CONFIGS.cpu = saved[0];
    ABLATION_CONFIGS.cpu = saved[1];
  }
}

test("the per-step and per-evaluation costs reproduce the measured wall times of the cpu runs of 01 and 05", () => {
  // The cpu runs of 2026-11-30 on the wasm SIMD kernels (the 2-core machine, load average 2-5): 05 took 2,235 s
  // (8 variants x 1,500 steps at 128 px on 4 photographs x 3 seeds); 01 took 595 s (5 losses x 1,500 steps at 128 px,
  // before it had its spread, which the comparison leaves out).
  const cases: Array<[string, number]> = [["05_augmentation_ablation", 2235], ["01_latent_lpips_reconstruction", 595]];
  for (const [notebook, measured] of cases) {
    const est = notebookPlan(notebook, "cpu")!.parts.filter((p) => !p.what.startsWith("spread")).reduce((a, p) => a + p.seconds, 0);
    assert.ok(Math.abs(est - measured) / measured < 0.3, `${notebook}: estimate ${est.toFixed(0)} s, measured ${measured} s`);
  }
});

test("notebook 05's estimate grows with its batch: photographs x seeds rows cost less than that many separate runs", () => {
  const one = (() => {
    let s = 0;
    withCpuConfigs(() => Object.assign(ABLATION_CONFIGS.cpu, { images: ABLATION_CONFIGS.cpu.images.slice(0, 1), seeds: [0] }), () => (s = notebookPlan("05_augmentation_ablation", "cpu")!.seconds));
    return s;
  })();
  const c = ABLATION_CONFIGS.cpu;
  const rows = c.images.length * c.seeds.length;
  const all = notebookPlan("05_augmentation_ablation", "cpu")!;
  assert.ok(all.seconds > one && all.seconds < rows * one, `1 row ${one.toFixed(0)} s, ${rows} rows ${all.seconds.toFixed(0)} s`);
  assert.match(all.summary, new RegExp(`${ABLATION_VARIANTS} variants x ${c.steps} steps at ${c.size} px on ${c.images.length} photographs x ${c.seeds.length} seeds`));
});

test("the plan's variant count is notebook 05's", () => {
  const nb = JSON.parse(fs.readFileSync(fromRoot("notebooks", "05_augmentation_ablation.ipynb"), "utf8"));
  const cell = nb.cells.map((c: { source: string[] }) => c.source.join("")).find((s: string) => s.includes("const VARIANTS"));
  assert.ok(cell, "notebook 05 defines VARIANTS");
  const body = cell.slice(cell.indexOf("{"), cell.lastIndexOf("}"));
  const keys = [...body.matchAll(/^\s*["']?[\w-]+["']?\s*:\s*\[/gm)];
  assert.equal(keys.length, ABLATION_VARIANTS);
});
