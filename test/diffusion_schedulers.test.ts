import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "fs";
import * as tf from "@tensorflow/tfjs";
import { fromRoot } from "../lib/core/paths";
import { alphasCumprod, ddimTimesteps, sigmaOfAlphaBar, timestepOfSigma } from "../lib/diffusion/ddpm_schedule";
import { guided, sampleOde } from "../lib/diffusion/samplers";
import { asyncSchedulerDenoiser, parseSchedulerConfig, samplingPlan, schedulerDenoiser, SD15_SCHEDULER_CONFIG_JSON } from "../lib/diffusion/schedulers";

// Reference: diffusers' own DDIMScheduler / EulerDiscreteScheduler code (test/fixtures/diffusion/make_scheduler_fixture.py).
interface Case {
  sampler: "ddim" | "euler";
  config: Record<string, unknown>;
  steps: number;
  timesteps: number[];
  alphas_cumprod?: number[];
  final_alpha_cumprod?: number;
  sigmas?: number[];
  init_noise_sigma?: number;
}
interface Step {
  sampler: "ddim" | "euler";
  prediction_type: string;
  steps: number;
  index: number;
  timestep: number;
  model_input?: number[];
  prev_sample: number[];
}
const FIX = JSON.parse(fs.readFileSync(fromRoot("test", "fixtures", "diffusion", "schedulers.json"), "utf8")) as {
  cases: Case[];
  steps: Step[];
  sample: number[];
  model_output: number[];
  shape: number[];
};
const rel = (a: number, b: number) => Math.abs(a - b) / Math.max(Math.abs(b), 1e-12);
// the fixture's configs are SD1.5's file as PNDMScheduler fills it, with the case's changes
const parse = (c: Record<string, unknown>) => parseSchedulerConfig({ ...c, _class_name: "PNDMScheduler" }, "fixture");

test("DDIM timesteps and noise levels equal diffusers' for SD1.5 (50, 25, 7, 1 steps), trailing spacing and the cosine schedule", () => {
  const ddim = FIX.cases.filter((c) => c.sampler === "ddim");
  assert.deepEqual(ddim.map((c) => c.steps), [50, 25, 7, 1, 10, 20]);
  for (const c of ddim) {
    const plan = samplingPlan(parse(c.config), "ddim", c.steps);
    assert.deepEqual(plan.timesteps, c.timesteps, `${c.steps} steps`);
    c.alphas_cumprod!.forEach((a, i) => assert.ok(rel(plan.sigmas[i], sigmaOfAlphaBar(a)) < 1e-6, `sigma ${i}: ${plan.sigmas[i]} vs ${sigmaOfAlphaBar(a)}`));
    assert.ok(rel(plan.sigmas[c.steps], sigmaOfAlphaBar(c.final_alpha_cumprod!)) < 1e-6 || c.final_alpha_cumprod === 1);
    if (c.final_alpha_cumprod === 1) assert.equal(plan.sigmas[c.steps], 0);
  }
  const sd15 = parseSchedulerConfig(SD15_SCHEDULER_CONFIG_JSON, "SD1.5");
  assert.deepEqual(samplingPlan(sd15, "ddim", 50).timesteps.slice(0, 3), [981, 961, 941]);
  assert.deepEqual(samplingPlan(sd15, "ddim", 25).timesteps, ddimTimesteps(25));
  assert.deepEqual(samplingPlan(sd15, "ddim", 50).timesteps, ddimTimesteps(50));
});

test("Euler timesteps, sigmas and init_noise_sigma equal diffusers' (leading, linspace, trailing, Karras, sigma_min end)", () => {
  const euler = FIX.cases.filter((c) => c.sampler === "euler");
  assert.equal(euler.length, 6);
  for (const c of euler) {
    const cfg = parse(c.config);
    const plan = samplingPlan(cfg, "euler", c.steps);
    const what = JSON.stringify(c.config).slice(0, 160);
    plan.timesteps.forEach((t, i) => assert.ok(Math.abs(t - c.timesteps[i]) < 1e-4, `${what} t[${i}] ${t} vs ${c.timesteps[i]}`));
    plan.sigmas.forEach((s, i) => assert.ok(rel(s, c.sigmas![i]) < 1e-6 || (s === 0 && c.sigmas![i] === 0), `${what} sigma[${i}] ${s} vs ${c.sigmas![i]}`));
    assert.ok(rel(plan.startScale, c.init_noise_sigma!) < 1e-6, `${what} init_noise_sigma ${plan.startScale} vs ${c.init_noise_sigma}`);
    // what the denoiser feeds the network: the same timestep, recovered from the level
    const sig = Array.from(alphasCumprod(cfg), sigmaOfAlphaBar);
    plan.sigmas.slice(0, -1).forEach((s, i) => assert.ok(Math.abs(timestepOfSigma(s, sig, cfg.useKarrasSigmas ? "log" : "linear") - plan.timesteps[i]) < 1e-6));
  }
});

test("one DDIM or Euler step through the Denoiser and sampleOde equals diffusers' step for epsilon, v and sample prediction", async () => {
  const shape = FIX.shape as [number, number, number, number];
  for (const s of FIX.steps) {
    const cfg = parseSchedulerConfig({ ...SD15_SCHEDULER_CONFIG_JSON, prediction_type: s.prediction_type }, "SD1.5");
    const plan = samplingPlan(cfg, s.sampler, s.steps);
    const [s0, s1] = [plan.sigmas[s.index], plan.sigmas[s.index + 1]];
    let seen: { input: Float32Array; t: number } | undefined;
    const D = schedulerDenoiser((xt, t) => {
      seen = { input: xt.dataSync() as Float32Array, t };
      return tf.tensor4d(FIX.model_output, shape);
    }, cfg);
    // diffusers' DDIM sample is VP (x_t), Euler's is VE already
    const vpToVe = s.sampler === "ddim" ? Math.sqrt(1 + s0 * s0) : 1;
    const x = tf.mul(tf.tensor4d(FIX.sample, shape), vpToVe) as tf.Tensor4D;
    const r = await sampleOde(D, x, { sigmas: [s0, s1], method: "euler" });
    const prev = tf.mul(r.x, s.sampler === "ddim" ? 1 / Math.sqrt(1 + s1 * s1) : 1).dataSync();
    const what = `${s.sampler} ${s.prediction_type} step ${s.index}`;
    assert.ok(Math.abs(seen!.t - s.timestep) < 2e-3, `${what}: timestep ${seen!.t} vs ${s.timestep}`);
    const wantIn = s.model_input ?? FIX.sample;
    wantIn.forEach((v, i) => assert.ok(Math.abs(seen!.input[i] - v) < 1e-5, `${what}: model input ${i}`));
    s.prev_sample.forEach((v, i) => assert.ok(Math.abs(prev[i] - v) < 2e-4 * Math.max(1, Math.abs(v)), `${what}: prev_sample[${i}] ${prev[i]} vs ${v}`));
    tf.dispose([x, r.x]);
  }
});

test("classifier-free guidance on the denoiser is SD's eps_u + w (eps_c - eps_u) (and the same for v)", async () => {
  for (const prediction of ["epsilon", "v_prediction"]) {
    const cfg = parseSchedulerConfig({ ...SD15_SCHEDULER_CONFIG_JSON, prediction_type: prediction }, "SD1.5");
    // a network whose output depends on the condition: out = 0.3 x_t + c (c broadcast per sample)
    const net = (xt: tf.Tensor4D, _t: number, c?: tf.Tensor) => tf.tidy(() => tf.add(tf.mul(xt, 0.3), tf.reshape(c!, [-1, 1, 1, 1])) as tf.Tensor4D);
    const D = schedulerDenoiser(net, cfg);
    const x = tf.tensor4d([0.5, -1, 2, 0.25, 1, -0.5, 3, 0], [2, 2, 2, 1]);
    const cond = tf.tensor1d([1.5, -2]);
    const uncond = tf.tensor1d([0.2, 0.2]);
    const w = 7.5;
    const sigma = samplingPlan(cfg, "ddim", 50).sigmas[10];
    const got = await guided(D, { cond, uncond, scale: w }).D(x, sigma);
    // the pipeline's combination on the network output, then the same denoiser
    const combined = (xt: tf.Tensor4D, t: number) => tf.tidy(() => {
      const u = net(xt, t, uncond);
      const c = net(xt, t, cond);
      return tf.add(u, tf.mul(tf.sub(c, u), w)) as tf.Tensor4D;
    });
    const want = await schedulerDenoiser(combined, cfg)(x, sigma);
    const [g, e] = [got.dataSync(), want.dataSync()];
    e.forEach((v, i) => assert.ok(Math.abs(g[i] - v) < 1e-4 * Math.max(1, Math.abs(v)), `${prediction} [${i}] ${g[i]} vs ${v}`));
    tf.dispose([x, cond, uncond, got, want]);
  }
});

test("scheduler configs: SD1.5 parses; unsupported switches, unknown keys and impossible DDIM walks are named", () => {
  const sd = parseSchedulerConfig(SD15_SCHEDULER_CONFIG_JSON, "SD1.5");
  assert.deepEqual(
    [sd.className, sd.steps, sd.betaSchedule, sd.predictionType, sd.timestepSpacing, sd.stepsOffset, sd.setAlphaToOne],
    ["PNDMScheduler", 1000, "scaled_linear", "epsilon", "leading", 1, false],
  );
  // Euler.from_pretrained on SD1.5's folder: Euler's own default spacing (linspace) fills the missing key
  assert.equal(parseSchedulerConfig(SD15_SCHEDULER_CONFIG_JSON, "SD1.5", { className: "EulerDiscreteScheduler" }).timestepSpacing, "linspace");
  const ddim = { _class_name: "DDIMScheduler", beta_schedule: "scaled_linear", beta_start: 0.00085, beta_end: 0.012 };
  assert.throws(() => parseSchedulerConfig(ddim, "s.json"), /s\.json: clip_sample is true; .*stableDiffusionPipeline/);
  const piped = parseSchedulerConfig(ddim, "s.json", { stableDiffusionPipeline: true });
  assert.deepEqual([piped.stepsOffset, piped.setAlphaToOne], [1, true]);
  assert.throws(() => parseSchedulerConfig({ ...SD15_SCHEDULER_CONFIG_JSON, thresholding: true }, "s.json"), /thresholding is true/);
  assert.throws(() => parseSchedulerConfig({ ...SD15_SCHEDULER_CONFIG_JSON, magic: 1 }, "s.json"), /unknown key "magic"/);
  assert.throws(() => parseSchedulerConfig({ ...SD15_SCHEDULER_CONFIG_JSON, _class_name: "FooScheduler" }, "s.json"), /"FooScheduler" is not one of/);
  assert.throws(() => parseSchedulerConfig({ ...SD15_SCHEDULER_CONFIG_JSON, prediction_type: "flow" }, "s.json"), /prediction_type "flow" is not one of/);
  assert.throws(() => parseSchedulerConfig({ ...SD15_SCHEDULER_CONFIG_JSON, trained_betas: [0.1, 0.2] }, "s.json"), /2 trained_betas for num_train_timesteps 1000/);
  assert.throws(() => samplingPlan(parseSchedulerConfig({ ...SD15_SCHEDULER_CONFIG_JSON, timestep_spacing: "linspace" }), "ddim", 50), /steps from timestep 999 to 979, not to the next listed 979|not to the next listed/);
  assert.throws(() => samplingPlan(sd, "ddim", 1000), /timestep 1000 .* outside 0\.\.999/);
  assert.throws(() => samplingPlan(sd, "euler", 0), /0 inference steps/);
});

test("the denoiser of an asynchronous network (a UNet on onnxruntime) is the same D as the synchronous one, for every prediction type", async () => {
  const x = tf.randomNormal([2, 4, 4, 3], 0, 1, "float32", 1) as tf.Tensor4D;
  const cond = tf.randomNormal([2, 4, 4, 3], 0, 1, "float32", 2) as tf.Tensor4D;
  // a network whose output depends on its input, timestep and condition
  const net = (xt: tf.Tensor4D, t: number, c?: tf.Tensor) => tf.tidy(() => tf.add(tf.mul(tf.sin(xt), t / 1000), c!) as tf.Tensor4D);
  for (const prediction_type of ["epsilon", "v_prediction", "sample"]) {
    const cfg = parseSchedulerConfig({ ...SD15_SCHEDULER_CONFIG_JSON, prediction_type }, "test", { className: "DDIMScheduler" });
    const want = schedulerDenoiser(net, cfg)(x, 3.7, cond);
    const before = tf.memory().numTensors;
    const got = await asyncSchedulerDenoiser(async (xt, t, c) => net(xt, t, c), cfg)(x, 3.7, cond);
    assert.equal(tf.memory().numTensors, before + 1, "only the result is left");
    assert.deepEqual(Array.from(got.dataSync()), Array.from(want.dataSync()), prediction_type);
    tf.dispose([got, want]);
  }
  tf.dispose([x, cond]);
});
