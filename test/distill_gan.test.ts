import { test } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { Rng } from "../lib/core/random";
import { SongUNet, SongUNetConfig } from "../lib/nn/unet";
import { ConditionalDiscriminator, DISCRIMINATOR_DEFAULTS } from "../lib/distill/discriminator";
import { discriminatorLoss, mixAndMatchPairs, r1Penalty } from "../lib/distill/gan_loss";
import { consistencyFn, heunStep, karrasLevels } from "../lib/distill/consistency";
import { edmDenoise, edmSigmas, RawNet } from "../lib/diffusion/edm";
import { sampleOde } from "../lib/diffusion/samplers";
import { rawNetOf } from "../lib/diffusion/train_edm";
import { regressionLoss } from "../lib/distill/regression";

const TINY: SongUNetConfig = { imgResolution: 8, inChannels: 3, outChannels: 3, labelDim: 3, augmentDim: 0, modelChannels: 8, channelMult: [1, 2], channelMultEmb: 2, numBlocks: 1, attnResolutions: [4], dropout: 0 };

test("discriminator: the zero-initialised z branch and multi-scale injections leave the teacher body unchanged at init", async () => {
  await tf.setBackend("cpu");
  const teacher = new SongUNet(TINY, new Rng(1));
  const d = new ConditionalDiscriminator(TINY, DISCRIMINATOR_DEFAULTS, new Rng(2), teacher);
  const x = tf.randomNormal([2, 8, 8, 3], 0, 1, "float32", 3) as tf.Tensor4D;
  const c = tf.oneHot(tf.tensor1d([0, 2], "int32"), 3).toFloat() as tf.Tensor2D;
  const a = d.logits(x, tf.randomNormal([2, 8, 8, 3], 0, 1, "float32", 4) as tf.Tensor4D, c);
  const b = d.logits(x, tf.zeros([2, 8, 8, 3]) as tf.Tensor4D, c);
  assert.equal(a.length, 1 + 3 * TINY.channelMult.length); // before/at/after per decoder level + final head
  a.forEach((l, i) => assert.deepEqual(l.dataSync(), b[i].dataSync(), `head ${i} depends on z at init`));
  // the body starts as the teacher: its first conv equals the teacher's
  assert.deepEqual(d.body.enc.items.get("8x8_conv")!.namedVariables()[0][1].dataSync(), teacher.enc.items.get("8x8_conv")!.namedVariables()[0][1].dataSync());
  // and after a perturbation of z_conv, z matters (the branch is live)
  d.z_conv!.weight.assign(tf.onesLike(d.z_conv!.weight));
  const a2 = d.logits(x, tf.randomNormal([2, 8, 8, 3], 0, 1, "float32", 4) as tf.Tensor4D, c);
  assert.notDeepEqual(a2[a2.length - 1].dataSync(), b[b.length - 1].dataSync());
  const single = new ConditionalDiscriminator(TINY, { ...DISCRIMINATOR_DEFAULTS, multiScale: false, zCond: false }, new Rng(2), teacher);
  assert.equal(single.logits(x, x, c).length, 1);
  assert.throws(() => new ConditionalDiscriminator(TINY, DISCRIMINATOR_DEFAULTS, new Rng(2)), /needs the teacher/);
});

test("R1 equals a finite-difference estimate of |grad_x D|^2 on a tiny network", async () => {
  await tf.setBackend("cpu");
  const teacher = new SongUNet({ ...TINY, imgResolution: 4, channelMult: [1], attnResolutions: [] }, new Rng(5));
  const d = new ConditionalDiscriminator(teacher.config, { ...DISCRIMINATOR_DEFAULTS, zCond: false }, new Rng(6), teacher);
  const z = tf.zeros([1, 4, 4, 3]) as tf.Tensor4D;
  const c = tf.oneHot(tf.tensor1d([1], "int32"), 3).toFloat() as tf.Tensor2D;
  const f = (x: tf.Tensor4D) => d.logits(x, z, c);
  const x0 = tf.randomNormal([1, 4, 4, 3], 0, 1, "float32", 7) as tf.Tensor4D;
  const gamma = 2; // R1 = gamma/2 |g|^2 = |g|^2
  const r1 = r1Penalty(f, x0, gamma).dataSync()[0];
  const base = Float64Array.from(x0.dataSync());
  const total = (v: Float64Array): number => {
    let s = 0;
    tf.tidy(() => f(tf.tensor4d(Float32Array.from(v), [1, 4, 4, 3])).forEach((l) => (s += l.dataSync()[0])));
    return s;
  };
  const h = 1e-2;
  let fd = 0;
  for (let i = 0; i < base.length; i++) {
    const p = base.slice();
    const m = base.slice();
    p[i] += h;
    m[i] -= h;
    fd += ((total(p) - total(m)) / (2 * h)) ** 2;
  }
  assert.ok(Math.abs(r1 - fd) / fd < 2e-2, `R1 ${r1} vs finite differences ${fd}`);
  // and R1 is differentiable w.r.t. the discriminator's parameters (a gradient of a gradient)
  const { grads } = tf.variableGrads(() => r1Penalty(f, x0, gamma), d.parameters());
  const norm = Object.values(grads).reduce((s, g) => s + tf.sum(tf.square(g)).dataSync()[0], 0);
  assert.ok(Number.isFinite(norm) && norm > 0);
});

test("mix-and-match pairs re-pair real samples with other samples' (z, c), and count as fake", () => {
  const rng = new Rng(3);
  for (let t = 0; t < 50; t++) {
    const pairs = mixAndMatchPairs(8, 2, rng);
    assert.equal(pairs.length, 2);
    assert.equal(new Set(pairs.map(([i]) => i)).size, 2);
    for (const [i, j] of pairs) assert.ok(i !== j && i >= 0 && i < 8 && j >= 0 && j < 8);
  }
  assert.deepEqual(mixAndMatchPairs(1, 1, rng), []);
  // labels: a mismatched real pair enters the fake side of the loss. With a discriminator that says "real"
  // (large logit) to everything, adding mismatched pairs to the fake side must raise the loss.
  const real = [tf.fill([4], 5) as tf.Tensor1D];
  const fake = [tf.fill([4], -5) as tf.Tensor1D];
  const withMm = [tf.concat([fake[0], tf.fill([2], 5)]) as tf.Tensor1D];
  assert.ok(discriminatorLoss(real, withMm).dataSync()[0] > discriminatorLoss(real, fake).dataSync()[0] + 1);
});

test("consistency distillation: boundary condition, teacher Heun step, EMA target without gradient", async () => {
  await tf.setBackend("cpu");
  const net = new SongUNet(TINY, new Rng(8));
  const x = tf.randomNormal([2, 8, 8, 3], 0, 1, "float32", 9) as tf.Tensor4D;
  const c = tf.oneHot(tf.tensor1d([0, 1], "int32"), 3).toFloat() as tf.Tensor2D;
  // f(x, sigma_min) = x exactly
  const lv = karrasLevels(18);
  assert.ok(Math.abs(lv[0] - 0.002) < 1e-12 && Math.abs(lv[17] - 80) < 1e-9);
  const fx = consistencyFn(net, x, tf.tensor1d([lv[0], lv[0]]), c);
  assert.deepEqual(fx.dataSync(), x.dataSync());
  // heunStep equals the sampler's Heun step for the same levels
  const raw: RawNet = rawNetOf(net);
  const a = heunStep(raw, x, [lv[5], lv[5]], [lv[4], lv[4]], c, 0.5);
  const D = (xx: tf.Tensor4D, s: number) => edmDenoise(raw, xx, tf.fill([xx.shape[0]], s) as tf.Tensor1D, c);
  const b = (await sampleOde(D, x, { sigmas: [lv[5], lv[4]], method: "heun" })).x;
  let err = 0;
  const av = a.dataSync();
  b.dataSync().forEach((v, i) => (err = Math.max(err, Math.abs(v - av[i]))));
  assert.ok(err < 1e-5, `heunStep vs sampler ${err}`);
  assert.equal(edmSigmas(18).length, 19);
  // the target is an EMA network: a loss through it gives no gradient to the online parameters
  const target = new SongUNet(TINY, new Rng(10));
  const online = new SongUNet(TINY, new Rng(11));
  const mse = regressionLoss("mse");
  const goal = consistencyFn(target, x, tf.tensor1d([1, 1]), c);
  const { grads } = tf.variableGrads(() => mse(consistencyFn(online, x, tf.tensor1d([1, 1]), c), goal), [...online.parameters(), ...target.parameters()]);
  const onlineNames = new Set(online.parameters().map((p) => p.name));
  for (const p of target.parameters()) assert.equal(grads[p.name], undefined, "gradient flowed into the target");
  assert.ok(Object.keys(grads).some((k) => onlineNames.has(k)));
});
