import { test } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { initEngine } from "../lib/backend/engine";
import { Rng } from "../lib/core/random";
import { BodyHooks } from "../lib/distill/discriminator";
import { D2G_DEFAULTS, DISCRIMINATOR_LADDER, ladderRung, t2iDiffusion2GanDefaults } from "../lib/distill/diffusion2gan";
import { discriminatorBatchLoss, discriminatorLoss, mixAndMatchPairs, r1Penalty } from "../lib/distill/gan_loss";
import { generateUNet2D, unet2dGeneratorDefaults } from "../lib/distill/generator";
import { UNET2D_DISCRIMINATOR_DEFAULTS, UNet2DDiscriminator, UNet2DDiscriminatorConfig } from "../lib/distill/unet2d_discriminator";
import { alphasCumprod } from "../lib/diffusion/ddpm_schedule";
import { cloneModule } from "../lib/nn/module";
import { UNet2DConditionModel } from "../lib/nn/sd/unet2d_condition";
import { SCHEDULER, tinyTextEncoder, tinyUNet, tokenRow } from "./t2i_tiny";

// Diffusion2GAN's parts for a text-to-image UNet2DConditionModel teacher at a tiny configuration.

/** The body walk with no additions, to compare with the teacher's own forward pass. */
class Probe extends UNet2DDiscriminator {
  plainWalk(x: tf.Tensor4D, c: tf.Tensor3D): tf.Tensor4D {
    const id: BodyHooks = { stem: (h) => h, down: (_, h) => h, tap: () => undefined };
    return this.walk(x, c, id);
  }
}

const context = (encoderSeed: number, captions: number[]) => tf.tidy(() => tinyTextEncoder(encoderSeed).forward(captions.map(tokenRow)).lastHiddenState);
const names = (m: { namedVariables(): Array<[string, tf.Variable]> }) => m.namedVariables().map(([n]) => n);
const data = (ts: tf.Tensor[]) => ts.map((t) => Array.from(t.dataSync()));

test("UNet2D discriminator at init: the teacher's forward pass, z and the multi-scale input add nothing, a head at every level", async () => {
  await tf.setBackend("cpu");
  const teacher = tinyUNet(1);
  const d = new Probe(teacher, UNET2D_DISCRIMINATOR_DEFAULTS, new Rng(2));
  const x = tf.randomNormal([2, 8, 8, 4], 0, 1, "float32", 3) as tf.Tensor4D;
  const c = context(4, [0, 1]);
  // the walk is the teacher's forward pass up to conv_norm_out (skips, upsampling, middle block, cross-attention)
  const h = d.plainWalk(x, c);
  const normed = teacher.conv_norm_out.forward(h);
  const out = teacher.conv_out.forward(tf.mul(normed, tf.sigmoid(normed)) as tf.Tensor4D);
  const want = teacher.forward(x, 0, c);
  assert.ok(tf.max(tf.abs(tf.sub(out, want))).dataSync()[0] <= 1e-6 * tf.max(tf.abs(want)).dataSync()[0]);
  // zero-initialised conv_z and injections: the logits do not depend on z, bit for bit
  const a = d.logits(x, tf.randomNormal([2, 8, 8, 4], 0, 1, "float32", 5) as tf.Tensor4D, c);
  const b = d.logits(x, tf.zeros([2, 8, 8, 4]) as tf.Tensor4D, c);
  assert.equal(a.length, 3 * 3 + 1, "before/at/after for each of the 3 up blocks, and the final head");
  assert.deepEqual(data(a), data(b));
  assert.deepEqual([...d.inject.items.keys()], ["down_blocks.0", "down_blocks.1"], "x at 1/2 and 1/4, after the first two down blocks");
  // both branches are live once their convs move
  const perturbed = (name: "z_conv" | "inject") => {
    const p = new UNet2DDiscriminator(teacher, UNET2D_DISCRIMINATOR_DEFAULTS, new Rng(2));
    const convs = name === "z_conv" ? [p.z_conv!] : [...p.inject.items.values()];
    for (const conv of convs) conv.weight.assign(tf.fill(conv.weight.shape, 0.05));
    return p.logits(x, tf.randomNormal([2, 8, 8, 4], 0, 1, "float32", 5) as tf.Tensor4D, c);
  };
  for (const which of ["z_conv", "inject"] as const) assert.notDeepEqual(data(perturbed(which)), data(a), `${which} changes nothing`);
  // the text enters through cross-attention
  assert.notDeepEqual(data(d.logits(x, tf.zeros([2, 8, 8, 4]) as tf.Tensor4D, context(4, [2, 3]))), data(b));
  assert.throws(() => d.logits(x, x, undefined), /encoder hidden states \[2, L, D\]/);
});

test("each discriminator switch adds or removes exactly its own parts; the ladder turns one component on per row", async () => {
  await tf.setBackend("cpu");
  const teacher = tinyUNet(1);
  const build = (sw: Partial<UNet2DDiscriminatorConfig>) => new UNet2DDiscriminator(teacher, { ...UNET2D_DISCRIMINATOR_DEFAULTS, ...sw }, new Rng(2));
  const full = build({});
  const diff = (a: string[], b: string[]) => a.filter((n) => !b.includes(n));
  assert.deepEqual(diff(names(full), names(build({ zCond: false }))), ["z_conv.weight", "z_conv.bias"]);
  const single = build({ multiScale: false });
  assert.ok(diff(names(full), names(single)).every((n) => /^(inject|heads)\./.test(n)));
  assert.equal(diff(names(full), names(single)).length, 2 * 2 + 2 * 9, "2 injections and 9 heads, weight and bias each");
  assert.deepEqual(diff(names(single), names(full)), []);
  const x = tf.randomNormal([1, 8, 8, 4], 0, 1, "float32", 3) as tf.Tensor4D;
  assert.equal(single.logits(x, x, context(4, [0])).length, 1);
  // diffusionInit: the same architecture, the teacher's weights or fresh ones
  const fresh = build({ diffusionInit: false });
  assert.deepEqual(names(fresh), names(full));
  const teacherW = new Map(teacher.namedVariables().map(([n, v]) => [n, Array.from(v.dataSync())]));
  for (const [n, v] of full.body.namedVariables()) assert.deepEqual(Array.from(v.dataSync()), teacherW.get(n), n);
  assert.ok(fresh.body.namedVariables().some(([n, v]) => v.size > 1 && Array.from(v.dataSync()).some((w, i) => w !== teacherW.get(n)![i])));
  // the ladder: row k differs from row k - 1 in the one component it names, and keeps the number of steps
  const recipe = { ...D2G_DEFAULTS, batch: 4, regressionSteps: 10, ganSteps: 20 };
  const flat = (k: number) => {
    const r = ladderRung(recipe, k);
    return { gan: r.ganSteps > 0, steps: r.regressionSteps + r.ganSteps, zCond: r.disc.zCond, r1: r.r1Gamma > 0, multiScale: r.disc.multiScale, mixAndMatch: r.mixAndMatch > 0 };
  };
  const changed = ["gan", "zCond", "r1", "multiScale", "mixAndMatch"];
  for (let k = 1; k < DISCRIMINATOR_LADDER.length; k++) {
    const [a, b] = [flat(k - 1), flat(k)] as Array<Record<string, unknown>>;
    assert.deepEqual(Object.keys(b).filter((key) => a[key] !== b[key]), [changed[k - 1]], DISCRIMINATOR_LADDER[k]);
    assert.equal(b.steps, 30);
  }
  assert.deepEqual(flat(5), { gan: true, steps: 30, zCond: true, r1: true, multiScale: true, mixAndMatch: true });
  assert.deepEqual(ladderRung(recipe, 5), recipe);
  assert.throws(() => ladderRung(recipe, 6), /row 6 is not one of 0..5/);
});

test("the generator is the teacher's one-step DDIM estimate at init: x0 = (z - sqrt(1 - abar) eps) / sqrt(abar) at the first DDIM timestep", async () => {
  await tf.setBackend("cpu");
  const teacher = tinyUNet(1);
  const g = unet2dGeneratorDefaults(SCHEDULER, 50);
  assert.deepEqual(g, { timestep: 981, prediction: "epsilon" });
  assert.equal(t2iDiffusion2GanDefaults(SCHEDULER, 50).generator.timestep, 981);
  const student = cloneModule(teacher);
  const z = tf.randomNormal([2, 8, 8, 4], 0, 1, "float32", 6) as tf.Tensor4D;
  const c = context(4, [0, 1]);
  const a = alphasCumprod(SCHEDULER)[981];
  const eps = teacher.forward(z, 981, c);
  const want = tf.div(tf.sub(z, tf.mul(eps, Math.sqrt(1 - a))), Math.sqrt(a));
  assert.deepEqual(generateUNet2D(student, z, c, g, SCHEDULER).dataSync(), want.dataSync());
  // v and sample readings of the same output
  const v = generateUNet2D(student, z, c, { ...g, prediction: "v_prediction" }, SCHEDULER);
  assert.ok(tf.max(tf.abs(tf.sub(v, tf.sub(tf.mul(z, Math.sqrt(a)), tf.mul(eps, Math.sqrt(1 - a)))))).dataSync()[0] < 1e-6);
  assert.deepEqual(generateUNet2D(student, z, c, { ...g, prediction: "sample" }, SCHEDULER).dataSync(), eps.dataSync());
  assert.throws(() => generateUNet2D(student, z, c, { ...g, timestep: 1000 }, SCHEDULER), /timestep 1000 is not an integer in 0..999/);
});

for (const backend of ["cpu", "wasm"]) {
  test(`single-sample R1 through cross-attention: its value and its gradient in the discriminator's weights match finite differences (${backend})`, async () => {
    await initEngine({ quiet: true });
    await tf.setBackend(backend);
    const teacher = tinyUNet(7);
    const d = new UNet2DDiscriminator(teacher, UNET2D_DISCRIMINATOR_DEFAULTS, new Rng(8));
    for (const conv of [d.z_conv!, ...d.inject.items.values()]) conv.weight.assign(tf.randomNormal(conv.weight.shape, 0, 0.1, "float32", 9));
    const x0 = tf.randomNormal([1, 8, 8, 4], 0, 1, "float32", 10) as tf.Tensor4D;
    const z0 = tf.randomNormal([1, 8, 8, 4], 0, 1, "float32", 11) as tf.Tensor4D;
    const c0 = context(12, [4]);
    const f = (x: tf.Tensor4D) => d.logits(x, z0, c0);
    const total = (x: tf.Tensor4D) => tf.tidy(() => tf.addN(f(x).map((l) => tf.sum(l))).dataSync()[0]);
    // R1 = gamma/2 |grad_x D|^2 with gamma = 2; the gradient along a direction v against central differences
    const g = tf.grad((x: tf.Tensor) => tf.addN(f(x as tf.Tensor4D).map((l) => tf.sum(l))) as tf.Scalar)(x0);
    const r1 = r1Penalty(f, x0, 2).dataSync()[0];
    assert.ok(Math.abs(r1 - tf.sum(tf.square(g)).dataSync()[0]) <= 1e-5 * r1);
    const v = tf.randomNormal(x0.shape, 0, 1, "float32", 13) as tf.Tensor4D;
    const h = 1e-2;
    const fd = (total(tf.add(x0, tf.mul(v, h)) as tf.Tensor4D) - total(tf.sub(x0, tf.mul(v, h)) as tf.Tensor4D)) / (2 * h);
    const gv = tf.sum(tf.mul(g, v)).dataSync()[0];
    assert.ok(Math.abs(fd - gv) < 2e-2 * Math.abs(gv), `grad_x D . v = ${gv}, finite differences ${fd}`);
    // the gradient of R1 in the key projection of a cross-attention (a gradient of a gradient through the softmax
    // over the caption's tokens), against central differences of R1 along a random direction u of that weight
    const toK = d.body.down_blocks[0].attentions[0].transformer_blocks[0].attn2.to_k.weight;
    const { grads } = tf.variableGrads(() => r1Penalty(f, x0, 2), d.parameters());
    const dK = grads[toK.name];
    assert.ok(Object.values(grads).every((gr) => tf.all(tf.isFinite(gr)).dataSync()[0] === 1));
    const u = tf.randomNormal(toK.shape, 0, 1, "float32", 14);
    const k0 = toK.clone();
    const r1At = (s: number) => {
      toK.assign(tf.add(k0, tf.mul(u, s)));
      return r1Penalty(f, x0, 2).dataSync()[0];
    };
    const eps = 2e-2;
    const fdK = (r1At(eps) - r1At(-eps)) / (2 * eps);
    toK.assign(k0);
    const gradK = tf.sum(tf.mul(dK, u)).dataSync()[0];
    assert.ok(Math.abs(gradK) > 1e-3 * r1, `dR1/dk . u = ${gradK} is too small to test`);
    assert.ok(Math.abs(fdK - gradK) < 5e-2 * Math.abs(gradK), `dR1/dk . u = ${gradK}, finite differences ${fdK}`);
  });
}

test("mix-and-match with text: real x_i is scored with z_j and caption c_j on the fake side of the loss", async () => {
  await tf.setBackend("cpu");
  const x = tf.tensor4d(Array.from({ length: 4 }, (_, i) => i), [4, 1, 1, 1]);
  const fake = tf.add(x, 10) as tf.Tensor4D;
  const z = tf.add(x, 0.1) as tf.Tensor4D;
  const c = tf.tensor3d(Array.from({ length: 8 }, (_, i) => 0.01 * Math.floor(i / 2)), [4, 2, 1]);
  const pairs = mixAndMatchPairs(4, 2, new Rng(3));
  const seen: number[][][] = [];
  // a "discriminator" whose logit is x + z + c[0] of each sample, and which records what it was shown
  const logits = (xx: tf.Tensor4D, zz: tf.Tensor4D, cc: tf.Tensor3D) => {
    seen.push([xx, zz, tf.slice(cc, [0, 0, 0], [-1, 1, 1])].map((t) => Array.from(t.dataSync())));
    return [tf.reshape(tf.add(tf.add(xx, zz), tf.reshape(tf.slice(cc, [0, 0, 0], [-1, 1, 1]), [-1, 1, 1, 1])), [-1]) as tf.Tensor1D];
  };
  const loss = discriminatorBatchLoss(logits, x, fake, z, c, pairs).dataSync()[0];
  assert.equal(seen.length, 3, "real, fake and mix-and-match");
  const [is, js] = [pairs.map(([i]) => i), pairs.map(([, j]) => j)];
  assert.deepEqual(seen[2], [is, js.map((j) => Math.fround(j + 0.1)), js.map((j) => Math.fround(0.01 * j))]);
  assert.ok(pairs.every(([i, j]) => i !== j));
  // the mismatched pairs are labelled fake: the same loss as their logits appended to the fakes
  const real = tf.tensor1d([0, 1, 2, 3].map((i) => i + i + 0.1 + 0.01 * i));
  const fakes = tf.tensor1d([...[0, 1, 2, 3].map((i) => i + 10 + i + 0.1 + 0.01 * i), ...pairs.map(([i, j]) => i + j + 0.1 + 0.01 * j)]);
  assert.ok(Math.abs(loss - discriminatorLoss([real], [fakes]).dataSync()[0]) < 1e-5);
});

test("cloneModule copies any configured module by name; assignFrom names what does not match", async () => {
  await tf.setBackend("cpu");
  const teacher = tinyUNet(1);
  const a = cloneModule(teacher);
  const b = cloneModule(teacher, new Rng(5));
  assert.ok(a instanceof UNet2DConditionModel && a !== teacher);
  const want = data(teacher.parameters());
  assert.deepEqual(data(a.parameters()), want);
  assert.deepEqual(data(b.parameters()), want);
  a.conv_in.weight.assign(tf.zerosLike(a.conv_in.weight));
  assert.deepEqual(data(teacher.parameters()), want, "the copy owns its weights");
  const other = new UNet2DConditionModel({ ...teacher.config, block_out_channels: [8, 8, 8] }, new Rng(0));
  assert.throws(() => other.assignFrom(teacher), /is \[.*\] in the source/);
  assert.throws(() => tinyTextEncoder(1).assignFrom(teacher), /the source has no variable 'text_model/);
});
