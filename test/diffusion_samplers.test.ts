import { test } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { edmPreconditioning, edmSigmas, Denoiser } from "../lib/diffusion/edm";
import { alphasCumprod, ddimTimesteps, epsDenoiser, sigmaOfAlphaBar } from "../lib/diffusion/ddpm_schedule";
import { sampleDdim, sampleOde, SolverDenoiser } from "../lib/diffusion/samplers";

// Data y ~ N(mu, s0^2) per element. Then x = y + sigma n ~ N(mu, s0^2 + sigma^2), the ideal denoiser is
// D(x; sigma) = mu + s0^2 / (s0^2 + sigma^2) (x - mu), and the PF-ODE keeps (x - mu) / sqrt(s0^2 + sigma^2) fixed.
const MU = 0.3;
const S0 = 0.5;
const gaussD: Denoiser = (x, sigma) => tf.tidy(() => tf.add(tf.mul(tf.sub(x, MU), (S0 * S0) / (S0 * S0 + sigma * sigma)), MU));
const exact = (xStart: number[], sFrom: number, sTo: number) =>
  xStart.map((v) => MU + ((v - MU) * Math.sqrt(S0 * S0 + sTo * sTo)) / Math.sqrt(S0 * S0 + sFrom * sFrom));

function maxErr(a: ArrayLike<number>, b: number[]): number {
  let m = 0;
  for (let i = 0; i < b.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

test("EDM preconditioning equals its formulas at several sigmas", () => {
  for (const [sigma, cSkip, cOut, cIn] of [
    [0.002, 0.25 / (0.25 + 4e-6), (0.002 * 0.5) / Math.sqrt(0.25 + 4e-6), 1 / Math.sqrt(0.25 + 4e-6)],
    [0.5, 0.5, 0.25 / Math.sqrt(0.5), 1 / Math.sqrt(0.5)],
    [80, 0.25 / 6400.25, 40 / Math.sqrt(6400.25), 1 / Math.sqrt(6400.25)],
  ]) {
    const p = edmPreconditioning(sigma);
    assert.ok(Math.abs(p.cSkip - cSkip) < 1e-12 && Math.abs(p.cOut - cOut) < 1e-12 && Math.abs(p.cIn - cIn) < 1e-12, `sigma ${sigma}`);
    assert.ok(Math.abs(p.cNoise - Math.log(sigma) / 4) < 1e-12);
    // the identity c_out^2 + sigma_data^2 c_skip = sigma_data^2 ties the three together
    assert.ok(Math.abs(p.cOut ** 2 + 0.25 * p.cSkip - 0.25) < 1e-12);
  }
});

test("EDM discretisation: 18 levels from 80 to 0.002, then 0", () => {
  const s = edmSigmas(18);
  assert.equal(s.length, 19);
  assert.ok(Math.abs(s[0] - 80) < 1e-9 && Math.abs(s[17] - 0.002) < 1e-12 && s[18] === 0);
  for (let i = 0; i < 18; i++) assert.ok(s[i] > s[i + 1]);
});

test("Heun costs 35 evaluations for 18 levels and converges at second order to the closed form", async () => {
  const start = [-3, -1, 0, 2, 5, 40, 80, 120];
  const errs: number[] = [];
  for (const n of [8, 16, 32]) {
    const sig = edmSigmas(n, { sigmaMin: 0.002, sigmaMax: 80, rho: 7, sigmaData: 0.5 }).slice(0, n);
    const x0 = tf.tensor4d(start, [1, 1, start.length, 1]);
    const r = await sampleOde(gaussD, x0, { sigmas: sig, method: "heun" });
    errs.push(maxErr(r.x.dataSync(), exact(start, sig[0], sig[n - 1])));
    if (n === 16) assert.equal(r.nfe, 2 * 16 - 2); // ends at sigma_min > 0: every step corrected
    tf.dispose([x0, r.x]);
  }
  const o1 = Math.log2(errs[0] / errs[1]);
  const o2 = Math.log2(errs[1] / errs[2]);
  assert.ok(o1 > 1.7 && o2 > 1.7, `observed orders ${o1.toFixed(2)}, ${o2.toFixed(2)} (errors ${errs.map((e) => e.toExponential(2))})`);
  const x0 = tf.zeros([1, 2, 2, 1]) as tf.Tensor4D;
  const r = await sampleOde(gaussD, x0, { sigmas: edmSigmas(18), method: "heun" });
  assert.equal(r.nfe, 35);
  tf.dispose([x0, r.x]);
});

test("Euler converges at first order", async () => {
  const start = [-3, 1, 7];
  const errs: number[] = [];
  for (const n of [16, 32]) {
    const sig = edmSigmas(n).slice(0, n);
    const x0 = tf.tensor4d(start, [1, 1, 3, 1]);
    const r = await sampleOde(gaussD, x0, { sigmas: sig, method: "euler" });
    errs.push(maxErr(r.x.dataSync(), exact(start, sig[0], sig[n - 1])));
    tf.dispose([x0, r.x]);
  }
  const order = Math.log2(errs[0] / errs[1]);
  assert.ok(order > 0.8 && order < 1.3, `observed order ${order}`);
});

test("DDIM with 1000 steps on an eps network matches the closed form", async () => {
  const abar = alphasCumprod();
  assert.ok(Math.abs(abar[999] - 0.0046) < 2e-4, `abar_T = ${abar[999]}`); // SD's scaled-linear schedule
  const sig = Array.from(abar, sigmaOfAlphaBar);
  // eps(x_t, t) of the Gaussian data: x = x_t sqrt(1 + sigma^2), eps = (x - D(x)) / sigma
  const D = epsDenoiser((xt, t) =>
    tf.tidy(() => {
      const s = sig[t];
      const x = tf.mul(xt, Math.sqrt(1 + s * s)) as tf.Tensor4D;
      return tf.div(tf.sub(x, gaussD(x, s)), s) as tf.Tensor4D;
    }),
  );
  const zs = [-2, -0.5, 0, 1, 2.5];
  const z = tf.tensor4d(zs, [1, 1, 5, 1]);
  assert.deepEqual(ddimTimesteps(50).slice(0, 2), [981, 961]); // diffusers' leading spacing, steps_offset 1
  const errs: number[] = [];
  for (const steps of [250, 1000]) {
    const ts = ddimTimesteps(steps);
    const r = await sampleDdim(D, z, { steps });
    assert.equal(r.nfe, steps);
    const sT = sig[ts[0]];
    const sEnd = sig[0];
    const want = exact(zs.map((v) => v * Math.sqrt(1 + sT * sT)), sT, sEnd).map((v) => v / Math.sqrt(1 + sEnd * sEnd));
    errs.push(maxErr(r.x.dataSync(), want));
    r.x.dispose();
  }
  // DDIM is first order: 4x the steps, about 4x less error
  assert.ok(errs[1] < 5e-3 && errs[0] / errs[1] > 3, `DDIM errors ${errs}`);
  z.dispose();
});

test("guidance: scale 1 is the conditional model, a guided step costs two evaluations, trajectory is kept", async () => {
  const D: Denoiser = (x, _s, c) => tf.tidy(() => tf.add(tf.mul(x, 0), tf.reshape(c!, [-1, 1, 1, 1])));
  const x = tf.ones([2, 1, 1, 1]) as tf.Tensor4D;
  const cond = tf.tensor1d([1, 2]);
  const uncond = tf.tensor1d([0, 0]);
  const sig = [1, 0.5, 0];
  const r1 = await sampleOde(D, x, { sigmas: sig, method: "euler", guidance: { cond, uncond, scale: 1 }, trajectory: true });
  assert.equal(r1.nfe, 2);
  assert.equal(r1.trajectory!.length, 3);
  assert.deepEqual(Array.from(r1.x.dataSync()), [1, 2]); // ends at sigma 0: x = D = c
  const r3 = await sampleOde(D, x, { sigmas: sig, method: "euler", guidance: { cond, uncond, scale: 3 } });
  assert.equal(r3.nfe, 4);
  assert.deepEqual(Array.from(r3.x.dataSync()), [3, 6]); // D_u + 3 (D_c - D_u)
  const before = tf.memory().numTensors;
  const r4 = await sampleOde(D, x, { sigmas: sig, method: "heun", guidance: { cond, uncond, scale: 3 } });
  r4.x.dispose();
  assert.equal(tf.memory().numTensors, before, "sampling leaks no tensors");
  tf.dispose([x, cond, uncond, r1.x, ...r1.trajectory!, r3.x]);
});

test("the solvers await a denoiser that answers later, with the same result as a synchronous one", async () => {
  const later: SolverDenoiser = async (x, sigma) => {
    await new Promise((r) => setImmediate(r));
    return gaussD(x, sigma);
  };
  const x0 = tf.tensor4d([-3, 1, 7, 40], [1, 1, 4, 1]);
  const cond = tf.tensor1d([1]);
  const uncond = tf.tensor1d([0]);
  const before = tf.memory().numTensors;
  for (const opts of [{ sigmas: edmSigmas(8), method: "heun" as const }, { sigmas: edmSigmas(8), method: "heun" as const, guidance: { cond, uncond, scale: 2 } }]) {
    const a = await sampleOde(gaussD, x0, opts);
    const b = await sampleOde(later, x0, opts);
    assert.equal(a.nfe, b.nfe);
    assert.deepEqual(Array.from(b.x.dataSync()), Array.from(a.x.dataSync()));
    tf.dispose([a.x, b.x]);
  }
  assert.equal(tf.memory().numTensors, before, "sampling leaks no tensors");
  tf.dispose([x0, cond, uncond]);
});
