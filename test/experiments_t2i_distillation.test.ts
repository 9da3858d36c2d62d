import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as tf from "@tensorflow/tfjs";
import { initEngine } from "../lib/backend/engine";
import { loadOrt } from "../lib/backend/onnx_runtime";
import { requestInterrupt } from "../lib/core/interrupt";
import { DISCRIMINATOR_LADDER, ladderRung } from "../lib/distill/diffusion2gan";
import { generateUNet2D } from "../lib/distill/generator";
import { OdePairs } from "../lib/distill/ode_pairs";
import { readSafetensors } from "../lib/io/safetensors";
import { loadUNet2DConditionModel } from "../lib/nn/sd/load";
import { notebookPlan } from "../lib/experiments/plan";
import { ArmResult, augmentationArms, augmentationClaims, augmentationRanking, claims, distillationArms, HEADLINE_RUNGS, T2I_DISTILLATION_CONFIGS, T2iDistillation, WORLD_DDIM } from "../lib/experiments/t2i_distillation";
import { WorldJudges } from "../lib/experiments/world_judges";
import { Row } from "../lib/viz/table";

// Notebook 03's experiment at smoke scale (the micro world teacher, a few steps): an arm stopped mid-training and
// resumed is the uninterrupted arm, bit for bit; no tensor outlives an arm; the judges' numbers on inputs whose
// answers are known; the exported generator reads back as the same network.

let d2g: T2iDistillation;
let tmp: string;

before(async () => {
  await initEngine({ quiet: true });
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "d2g-t2i-distillation-"));
  d2g = await T2iDistillation.open(T2I_DISTILLATION_CONFIGS.smoke, "smoke", { base: tmp });
});

after(() => d2g?.dispose());

test("the arms: five losses on CFG-3, the ladder's rows on CFG-8 as ladderRung makes them, the headline rows at the extra seed", () => {
  const c = T2I_DISTILLATION_CONFIGS.cpu;
  const arms = distillationArms(c);
  assert.deepEqual(arms.map((a) => a.id), [
    ...c.losses.map((l) => `regression-${l}`),
    "ladder-0", "ladder-0-seed1", "ladder-1", "ladder-2", "ladder-3", "ladder-4", "ladder-5", "ladder-5-seed1",
    "augmentation-b", "augmentation-g", "augmentation-bgc", "augmentation-bgco", "augmentation-bgo",
  ]);
  for (const a of arms.filter((x) => x.table === "regression")) {
    assert.equal(a.guidance, 3);
    assert.deepEqual([a.cfg.regressionSteps, a.cfg.ganSteps, a.cfg.batch], [c.regressionAblationSteps, 0, c.recipe.batch]);
  }
  for (const a of arms.filter((x) => x.table === "ladder")) {
    assert.equal(a.guidance, 8);
    assert.deepEqual(a.cfg, { ...ladderRung(c.recipe, a.rung), seed: a.cfg.seed }, a.id);
    assert.equal(a.row, DISCRIMINATOR_LADDER[a.rung]);
  }
  assert.deepEqual(arms.filter((a) => a.cfg.seed !== c.recipe.seed).map((a) => a.rung), HEADLINE_RUNGS);
});

test("the augmentation rows: none and bg are the regression ablation's LatentLPIPS and E-LatentLPIPS arms, the others E-LatentLPIPS with their ops at its budget", () => {
  const c = T2I_DISTILLATION_CONFIGS.cpu;
  const arms = augmentationArms(c);
  assert.deepEqual(arms.map((a) => [a.row, a.id]), [
    ["none", "regression-latentlpips"], ["b", "augmentation-b"], ["g", "augmentation-g"], ["bg", "regression-e-latentlpips"],
    ["bgc", "augmentation-bgc"], ["bgco", "augmentation-bgco"], ["bgo", "augmentation-bgo"],
  ]);
  const regression = distillationArms(c).filter((a) => a.table === "regression");
  for (const a of arms) {
    const same = regression.find((r) => r.id === a.id);
    if (same) assert.deepEqual(a.cfg, same.cfg, a.row);
    else assert.deepEqual(a.cfg, { ...c.recipe, regression: "e-latentlpips", augment: c.augmentations[a.row], regressionSteps: c.regressionAblationSteps, ganSteps: 0 });
    assert.equal(a.guidance, c.regressionGuidance);
  }
});

test("an arm stopped mid-training and run again is the uninterrupted arm, bit for bit; no tensor outlives it", async () => {
  const arm = d2g.armById("ladder-5");
  assert.ok(arm.cfg.ganSteps > 0 && arm.cfg.r1Gamma > 0 && arm.cfg.mixAndMatch > 0 && arm.cfg.disc.multiScale && arm.cfg.disc.zCond, "every component on");
  await d2g.teacherRow(arm.guidance);
  const before = tf.memory().numTensors;
  const straight = await d2g.arm(arm);
  assert.equal(tf.memory().numTensors, before, "an arm (training and judging) leaves no tensor behind");
  assert.equal(straight.training.tensorsAtEnd, straight.training.tensorsAfterFirstStep, "tensors grew across training steps");
  const dir = d2g.armDir(arm);
  const weights = readSafetensors(path.join(dir, "generator.safetensors")).tensors;
  assert.ok(!fs.existsSync(path.join(dir, "ckpt")), "a finished arm keeps its generator, not its checkpoints");

  // the same arm again, asked to stop during its second step: it checkpoints at step 2 and stops
  fs.rmSync(dir, { recursive: true });
  const proto = OdePairs.prototype;
  const batchAt = proto.batchAt;
  proto.batchAt = function (this: OdePairs, step: number, batch: number, seed: number) {
    if (step === 1) requestInterrupt();
    return batchAt.call(this, step, batch, seed);
  } as typeof proto.batchAt;
  try {
    await assert.rejects(d2g.arm(arm), /stopped at step 2 of 3; checkpoint kept/);
  } finally {
    proto.batchAt = batchAt;
  }
  assert.ok(fs.existsSync(path.join(dir, "ckpt")) && !fs.existsSync(path.join(dir, "generator.safetensors")));
  const resumed = await d2g.arm(arm);
  const again = readSafetensors(path.join(dir, "generator.safetensors")).tensors;
  for (const [k, t] of Object.entries(weights)) assert.deepEqual(again[k].data, t.data, `generator tensor ${k} differs after the resume`);
  const same = (r: ArmResult) => ({ judged: { ...r.judged, seconds: 0 }, toTeacher: r.toTeacher, curve: r.training.curve });
  assert.deepEqual(same(resumed), same(straight));
  assert.ok(Number.isFinite(straight.toTeacher.latentLpips) && straight.toTeacher.lpips > 0 && straight.toTeacher.eLatentLpips > 0);
  // a finished arm is read back, not trained or judged again
  const t0 = Date.now();
  assert.equal(JSON.stringify(await d2g.arm(arm)), JSON.stringify(resumed));
  assert.ok(Date.now() - t0 < 1000);
});

test("the judges on known inputs: the reference scenes themselves score FID-wCLIP 0, blank images no object; batching changes nothing", async () => {
  const n = 16;
  const judges = await WorldJudges.load("smoke", { prompts: n, reference: n });
  try {
    const real = (b: number, m: number) => judges.rendered(b, m).then((images) => ({ images, nfe: 0 }));
    const grey = async (_b: number, m: number) => ({ images: tf.zeros([m, 64, 64, 3]) as tf.Tensor4D, nfe: 0 });
    const before = tf.memory().numTensors;
    const [a, b, g] = [await judges.judge("real", real, { batch: n }), await judges.judge("real", real, { batch: 5, figure: 3 }), await judges.judge("grey", grey, { batch: 8 })];
    assert.equal(tf.memory().numTensors, before);
    assert.ok(Math.abs(a.fidWClip) < 1e-3, `the reference against itself: FID-wCLIP ${a.fidWClip}`);
    assert.ok(g.fidWClip > 100 * Math.abs(a.fidWClip) + 1, `grey images: ${g.fidWClip}`);
    assert.equal(b.samples, n);
    assert.ok(Math.abs(a.fidWClip - b.fidWClip) < 1e-3 && Math.abs(a.clipScore - b.clipScore) < 1e-6, "batch size changes the scores");
    assert.deepEqual(a.attributes, b.attributes);
    assert.equal(b.figure.length, 3 * 64 * 64 * 3);
    assert.deepEqual([g.attributes.shape, g.attributes.colour, g.attributes.count, g.attributes.objectsCorrect], [0, 0, 0, 0], "no object is read from a blank image");
    assert.ok(a.attributes.objectsCorrect >= 0.5 && a.attributes.shape >= 0.8, `the rendered scenes read back: ${JSON.stringify(a.attributes)}`);
    await assert.rejects(judges.judge("wrong size", async (_b, m) => ({ images: tf.zeros([m, 32, 32, 3]) as tf.Tensor4D, nfe: 0 }), { batch: 4 }), /gave images \[4,32,32,3\] for 4 prompts, expected \[4, 64, 64, 3\]/);
  } finally {
    judges.dispose();
  }
});

test("the exported generator is a diffusers UNet folder that reads back as the same network, and an ONNX model that computes G(z, c) on onnxruntime", async () => {
  const out = await d2g.exportGenerator(path.join(tmp, "export", "unet"));
  assert.deepEqual(out.files, ["config.json", "diffusion2gan.json", "diffusion_pytorch_model.safetensors"]);
  const back = loadUNet2DConditionModel(out.dir);
  const net = await d2g.generator(d2g.armById("ladder-5"));
  try {
    assert.equal(back.numParameters(), out.parameters);
    const mine = new Map(net.namedVariables());
    for (const [k, v] of back.namedVariables()) assert.deepEqual(v.dataSync(), mine.get(k)!.dataSync(), k);
    const z = tf.randomNormal([1, 8, 8, 32], 0, 1, "float32", 3) as tf.Tensor4D;
    const c = tf.randomNormal([1, 77, 32], 0, 1, "float32", 4) as tf.Tensor3D;
    const [a, b] = [back.forward(z, out.generator.timestep, c), net.forward(z, out.generator.timestep, c)];
    assert.deepEqual(a.dataSync(), b.dataSync());
    tf.dispose([z, c, a, b]);
    const z1 = tf.randomNormal([1, 8, 8, 32], 0, 1, "float32", 5) as tf.Tensor4D;
    const c1 = tf.randomNormal([1, 77, 32], 0, 1, "float32", 6) as tf.Tensor3D;
    const note = JSON.parse(fs.readFileSync(path.join(out.dir, "diffusion2gan.json"), "utf8"));
    assert.deepEqual(note.generator, out.generator);
    // the ONNX file computes G(z, c) on onnxruntime as tfjs does
    const ort = loadOrt();
    const session = await ort.InferenceSession.create(out.onnx);
    const x0 = generateUNet2D(net, z1, c1, out.generator, WORLD_DDIM);
    const y = (await session.run({ z: new ort.Tensor("float32", z1.dataSync() as Float32Array, z1.shape), c: new ort.Tensor("float32", c1.dataSync() as Float32Array, c1.shape) })).x0;
    assert.deepEqual(y.dims, x0.shape);
    const want = x0.dataSync();
    const worst = (y.data as Float32Array).reduce((m, v, i) => Math.max(m, Math.abs(v - want[i])), 0);
    assert.ok(worst < 1e-4, `onnxruntime differs from tfjs by ${worst}`);
    await session.release();
    tf.dispose([z1, c1, x0]);
  } finally {
    back.dispose();
    net.dispose();
  }
});

/** Committed-table rows as notebook 03 writes them, with the FID-wCLIP values given. */
function tables(reg: number[], ladder: number[], floor: number): { regression: Row[]; ladder: Row[]; floor: Row[] } {
  const losses = ["MSE", "pseudo-Huber", "LPIPS (TAEF2 decode)", "LatentLPIPS", "E-LatentLPIPS"];
  return {
    regression: [{ loss: "teacher, DDIM 50 (CFG-3)", "FID-wCLIP": 1 }, ...losses.map((loss, i) => ({ loss, "FID-wCLIP": reg[i], steps: 200 }))],
    ladder: [{ row: "teacher, DDIM 50 (CFG-8)", "FID-wCLIP": 1 }, ...DISCRIMINATOR_LADDER.map((row, i) => ({ row, "FID-wCLIP": ladder[i], steps: 250 }))],
    floor: [{ metric: "FID-wCLIP", "evaluation noise |difference|": floor, "full recipe: seed spread": floor / 2 }],
  };
}

test("the Result: the paper's orderings read from the tables, differences within the noise floor not counted", () => {
  const held = claims(tables([50, 40, 12, 30, 10], [20, 18, 16, 14, 12, 10], 1));
  assert.deepEqual(held.map((c) => c.verdict), ["held", "held", "held", "held"]);
  // LPIPS within the floor of E-LatentLPIPS; LatentLPIPS not far enough above; one rung no better
  const not = claims(tables([50, 40, 10.5, 13, 10], [20, 18, 18.2, 14, 12, 10], 1));
  assert.deepEqual(not.map((c) => c.verdict), ["did not hold", "did not hold", "did not hold", "held"]);
  assert.match(not[0].why!, /LPIPS \(TAEF2 decode\) \(10\.5\)/);
  assert.match(not[2].why!, /1 of 5 components/);
  assert.ok(claims({}).every((c) => c.verdict === "not tested"));
});

test("the augmentation Result: the best preset against none and the paper's note against bg, beyond the noise floor only", () => {
  const rows = (fids: Record<string, number>): Row[] => [{ preset: "teacher, DDIM 50 (CFG-3)", "FID-wCLIP": 1 }, ...Object.entries(fids).map(([preset, v]) => ({ preset, "FID-wCLIP": v, steps: 200 }))];
  const floor = tables([1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1], 1).floor;
  const held = augmentationClaims({ augmentation: rows({ none: 13, b: 11, bg: 10, bgo: 10.8 }), floor });
  assert.deepEqual(held.map((c) => c.verdict), ["held", "held"]);
  const not = augmentationClaims({ augmentation: rows({ none: 10.5, b: 11, bg: 10, bgo: 11.2 }), floor });
  assert.deepEqual(not.map((c) => c.verdict), ["did not hold", "did not hold"]);
  assert.ok(augmentationClaims({ floor }).every((c) => c.verdict === "not tested"));
  assert.equal(augmentationRanking(rows({ none: 13, b: 11, bg: 10, bgo: 10.8 }), floor), 'FID-wCLIP, best first ("<": the gap exceeds the noise floor of 1; "~": it does not): bg 10 ~ bgo 10.8 ~ b 11 < none 13');
});

test("the cpu estimate fits two hours; the paper scale prints its cost in SD1.5 evaluations", () => {
  const cpu = notebookPlan("03b_t2i_distillation", "cpu")!;
  assert.ok(cpu.seconds < 2 * 3600, `${cpu.seconds} s`);
  assert.match(notebookPlan("03b_t2i_distillation", "paper")!.summary, /SD1\.5 \(paper scale\): [\d.e+]+ UNet evaluations/);
});
