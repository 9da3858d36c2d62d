import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "fs";
import { fromRoot } from "../lib/core/paths";
import { ABLATION_VARIANTS, notebookPlan } from "../lib/experiments/plan";
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
    assert.match(after.summary, new RegExp(`4 losses x ${2 * steps} steps`));
    assert.ok(after.seconds > 1.8 * before.seconds - 60, `${before.seconds} -> ${after.seconds}`);
  } finally {
    cfg.steps = steps;
  }
});

test("the cpu-scale estimates of notebooks 01 and 05 are within 25% of their measured wall times", () => {
  // README, "Results at cpu scale": 01 took 1,051 s, 05 1,479 s on the 2-core machine
  for (const [nb, measured] of [["01_latent_lpips_reconstruction", 1051], ["05_augmentation_ablation", 1479]] as const) {
    const est = notebookPlan(nb, "cpu")!.seconds;
    assert.ok(Math.abs(est - measured) / measured < 0.25, `${nb}: estimate ${est.toFixed(0)} s, measured ${measured} s`);
  }
});

test("the plan's variant count is notebook 05's", () => {
  const nb = JSON.parse(fs.readFileSync(fromRoot("notebooks", "05_augmentation_ablation.ipynb"), "utf8"));
  const cell = nb.cells.map((c: { source: string[] }) => c.source.join("")).find((s: string) => s.includes("const VARIANTS"));
  assert.ok(cell, "notebook 05 defines VARIANTS");
  const body = cell.slice(cell.indexOf("{"), cell.lastIndexOf("}"));
  const keys = [...body.matchAll(/^\s*["']?[\w-]+["']?\s*:\s*\[/gm)];
  assert.equal(keys.length, ABLATION_VARIANTS);
});
