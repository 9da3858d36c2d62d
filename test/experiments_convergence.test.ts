import { test } from "node:test";
import assert from "node:assert/strict";
import { loadSources, resolveNames } from "../lib/data/sources";
import { CD_DEFAULTS } from "../lib/distill/consistency";
import {
  armConfig, armEvaluations, ARMS, armSteps, claims, CONFIGS, ConvergencePoint, evaluationSteps, HEADLINE, matchedClaim, OFFICIAL_FILES, OPPONENT, pairEvaluations, pickRate, searchConfig,
} from "../lib/experiments/cifar10_convergence";
import { SCALES } from "../lib/experiments/scale";

test("the paper scale of the CIFAR-10 comparison asks for official networks that data/sources.json lists with a checksum", () => {
  assert.equal(CONFIGS.paper.official, true);
  assert.equal(CONFIGS.cpu.official, false);
  const files = resolveNames(loadSources(), Object.values(OFFICIAL_FILES));
  assert.deepEqual(files.map((f) => f.path), Object.values(OFFICIAL_FILES));
  for (const f of files) assert.match(f.sha256 ?? "", /^[0-9a-f]{64}$/, `${f.path}: no sha256 in sources.json`);
});

test("every arm gets the same evaluation-EMA rule, optimiser betas, batch and seed; CD's target is the online network (mu = 0)", () => {
  assert.equal(CD_DEFAULTS.targetEma, 0);
  for (const scale of SCALES) {
    const cfg = CONFIGS[scale];
    for (const arm of ARMS) {
      const a = armConfig(cfg, arm, 3e-4, 7);
      const t = a.method === "CD" ? a.cd : a.d2g;
      assert.deepEqual({ emaBeta: t.emaBeta, emaHalflifeImages: t.emaHalflifeImages, emaRampup: t.emaRampup }, cfg.ema, `${scale} ${arm.id}: EMA rule`);
      assert.deepEqual(t.betas, cfg.betas, `${scale} ${arm.id}: betas`);
      assert.equal(t.batch, cfg.batch);
      assert.equal(t.seed, 7);
      if (a.method === "CD") {
        assert.equal(a.cd.lr, 3e-4);
        assert.equal(a.cd.targetEma, 0, `${scale}: CD's target rate`);
      } else {
        assert.deepEqual([a.d2g.lrG, a.d2g.lrD], [3e-4, 3e-4]);
        assert.equal(a.d2g.ganSteps > 0, arm.gan, `${scale} ${arm.id}: GAN phase`);
      }
    }
  }
});

test("the counting rule: pairs 35 teacher evaluations each, a regression step 1 per sample, a GAN step 2 G + 3 D per sample + mix-and-match + R1, a CD step 4", () => {
  const cfg = CONFIGS.cpu;
  const by = (id: string) => armConfig(cfg, ARMS.find((a) => a.id === id)!, 1e-4, 0);
  assert.equal(pairEvaluations(cfg), 1024 * 35);
  assert.deepEqual(armEvaluations(cfg, by("d2g-lpips"), 100), { teacher: 35_840, student: 3_200, disc: 0, total: 39_040 });
  assert.deepEqual(armEvaluations(cfg, by("cd"), 100), { teacher: 6_400, student: 6_400, disc: 0, total: 12_800 });
  const gan = by("d2g-lpips-gan");
  if (gan.method !== "Diffusion2GAN") throw new Error("not a Diffusion2GAN arm");
  const r = gan.d2g.regressionSteps;
  // 16 GAN steps at batch 32: G 2 x 32 each, D 32 reals + 32 fakes + 8 mix-and-match + 32 for G's update each, R1 once
  const after = armEvaluations(cfg, gan, r + 16);
  assert.equal(after.student, 32 * r + 16 * 64);
  assert.equal(after.disc, 16 * 104 + 1);
  // every arm spends at most the budget, and less than one more step's worth below it
  for (const arm of ARMS) {
    const a = armConfig(cfg, arm, 1e-4, 0);
    const s = armSteps(a);
    assert.ok(armEvaluations(cfg, a, s).total <= cfg.budget, `${arm.id} overspends`);
    // one more step (for the +GAN arm, one more GAN step: d2gEvaluations counts no step beyond the config's)
    const more = a.method === "Diffusion2GAN" && a.d2g.ganSteps > 0 ? { ...a, d2g: { ...a.d2g, ganSteps: a.d2g.ganSteps + 1 } } : a;
    assert.ok(armEvaluations(cfg, more, s + 1).total > cfg.budget, `${arm.id} could take another step`);
  }
});

test("arms are scored at the first step reaching each grid budget; Diffusion2GAN skips budgets below its pairs' cost", () => {
  const cfg = CONFIGS.cpu;
  for (const arm of ARMS) {
    const a = armConfig(cfg, arm, 1e-4, 0);
    const at = evaluationSteps(cfg, a);
    for (const [e, s] of at) {
      if (s < armSteps(a)) assert.ok(armEvaluations(cfg, a, s).total >= e && armEvaluations(cfg, a, s - 1).total < e, `${arm.id} at ${e}`);
    }
    assert.equal(at[at.length - 1][1], armSteps(a));
    if (a.method === "Diffusion2GAN") assert.ok(at.every(([e]) => e > pairEvaluations(cfg)));
    else assert.equal(at.length, cfg.evalPoints);
  }
  // the search keeps a +GAN arm's proportions of regression and GAN steps
  const gan = searchConfig(armConfig(cfg, ARMS.find((a) => a.gan)!, 1e-4, 0), 100);
  assert.ok(gan.method === "Diffusion2GAN" && gan.d2g.regressionSteps + gan.d2g.ganSteps === 100 && gan.d2g.ganSteps > 0);
});

test("the learning-rate search picks the lowest FID; a diverged trial never wins; a tie goes to the smaller rate", () => {
  assert.equal(pickRate([{ arm: "a", lr: 1e-4, fid: 30 }, { arm: "a", lr: 2e-4, fid: 21.5 }, { arm: "a", lr: 4e-4, fid: 25 }]), 2e-4);
  assert.equal(pickRate([{ arm: "a", lr: 1e-4, fid: 30 }, { arm: "a", lr: 4e-4, fid: NaN }]), 1e-4);
  assert.equal(pickRate([{ arm: "a", lr: 4e-4, fid: 20 }, { arm: "a", lr: 1e-4, fid: 20 }]), 1e-4);
  assert.throws(() => pickRate([{ arm: "a", lr: 1e-4, fid: NaN }]), /every trial diverged/);
});

test("the registered claim: held / did not hold beyond the noise floor, within noise, not reached below the pairs' cost", () => {
  const p = (arm: string, seed: number, gridEvals: number, fidEma: number): ConvergencePoint =>
    ({ arm, seed, lr: 1e-4, step: 1, gridEvals, teacherEvals: 0, studentEvals: 0, discEvals: 0, totalEvals: gridEvals, fidEma, fidRaw: fidEma, heldOutLpips: 0 });
  const points = [
    p(OPPONENT, 0, 10, 50), p(OPPONENT, 1, 10, 52),
    p(OPPONENT, 0, 20, 40), p(OPPONENT, 1, 20, 41), p(HEADLINE, 0, 20, 30), p(HEADLINE, 1, 20, 38.5),
    p(OPPONENT, 0, 30, 30), p(OPPONENT, 1, 30, 31), p(HEADLINE, 0, 30, 29.5), p(HEADLINE, 1, 30, 30),
    p(OPPONENT, 0, 40, 20), p(OPPONENT, 1, 40, 21), p(HEADLINE, 0, 40, 25), p(HEADLINE, 1, 40, 26),
  ];
  assert.deepEqual(matchedClaim(points, 1).map((c) => [c.evals, c.verdict]), [[10, "not reached"], [20, "held"], [30, "within noise"], [40, "did not hold"]]);
  // a looser floor makes E = 20 a tie (38.5 + 2 is not below 40)
  assert.equal(matchedClaim(points, 2)[1].verdict, "within noise");
});

test("without the committed cpu tables the claim is not tested, with the reason", () => {
  const [c] = claims("FID-C10", {});
  assert.equal(c.verdict, "not tested");
  assert.match(c.why ?? "", /D2G_SCALE=cpu npm run reproduce/);
});
