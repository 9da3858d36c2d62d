// Helpers the tests share: comparing against PyTorch fixtures (stored NCHW; tfjs works NHWC), and running the
// same computation on two tfjs backends.
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { Rng } from "../lib/core/random";
import { HostTensor } from "../lib/io/host_tensor";

/** NCHW host tensor -> NHWC tf tensor. */
export function nhwc(t: HostTensor): tf.Tensor4D {
  return tf.tidy(() => tf.transpose(tf.tensor4d(t.data as Float32Array, t.shape as [number, number, number, number]), [0, 2, 3, 1]));
}

/** Element-wise relative error below `rel` (|want| floored at 1e-6), naming the first element that is not. */
export function assertRelClose(got: ArrayLike<number>, want: ArrayLike<number>, rel: number, what: string): void {
  assert.equal(got.length, want.length, what);
  for (let i = 0; i < want.length; i++) {
    const err = Math.abs(got[i] - want[i]) / Math.max(Math.abs(want[i]), 1e-6);
    assert.ok(err < rel, `${what}[${i}]: got ${got[i]}, PyTorch ${want[i]} (relative error ${err.toExponential(2)})`);
  }
}

/** Host data for a tensor, made once and handed to each backend. */
export interface HostArray {
  shape: number[];
  data: Float32Array;
}

/** N(mean, std^2) host data. */
export function randn(rng: Rng, shape: number[], std = 1, mean = 0): HostArray {
  const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
  for (let i = 0; i < data.length; i++) data[i] = mean + std * rng.normal();
  return { shape, data };
}

/** Runs `f` on `backend` with fresh tensors made from `inputs` and returns host copies of its results. */
export async function on(backend: string, inputs: HostArray[], f: (...xs: tf.Tensor[]) => tf.Tensor[]): Promise<Float32Array[]> {
  await tf.setBackend(backend);
  const xs = inputs.map((a) => tf.tensor(a.data, a.shape));
  const outs = f(...xs);
  const host = await Promise.all(outs.map(async (t) => (await t.data()) as Float32Array));
  tf.dispose([...xs, ...outs]);
  return host;
}

/** Largest error within `tol` of the largest |value| of the reference; NaN exactly where the reference has NaN. */
export function assertClose(got: Float32Array, want: Float32Array, what: string, tol = 1e-4): void {
  assert.equal(got.length, want.length, `${what}: length`);
  let scale = 0, err = 0;
  for (let i = 0; i < want.length; i++) {
    assert.equal(Number.isNaN(got[i]), Number.isNaN(want[i]), `${what}[${i}]: got ${got[i]}, want ${want[i]}`);
    if (Number.isNaN(want[i])) continue;
    scale = Math.max(scale, Math.abs(want[i]));
    err = Math.max(err, Math.abs(got[i] - want[i]));
  }
  assert.ok(scale > 0, `${what}: reference is all zeros`);
  assert.ok(err <= tol * scale, `${what}: max error ${err} vs max |value| ${scale}`);
}

/** `f` on the wasm engine against tfjs's reference cpu backend, every output within `tol` (see assertClose). */
export async function compareWithCpu(what: string, inputs: HostArray[], f: (...xs: tf.Tensor[]) => tf.Tensor[], tol = 1e-4): Promise<void> {
  const want = await on("cpu", inputs, f);
  const got = await on("wasm", inputs, f);
  want.forEach((w, i) => assertClose(got[i], w, `${what} output ${i}`, tol));
}

/** Largest |got - want| over the largest |want|: the error relative to the output's scale. */
export function scaledErr(got: tf.Tensor, want: HostTensor, what: string): number {
  assert.deepEqual(got.shape, want.shape, what);
  const g = got.dataSync();
  const w = want.data as Float32Array;
  let err = 0;
  let scale = 0;
  for (let i = 0; i < w.length; i++) {
    err = Math.max(err, Math.abs(g[i] - w[i]));
    scale = Math.max(scale, Math.abs(w[i]));
  }
  return err / scale;
}

/** An integer [N, L] host tensor (token ids) as N rows. */
export function rowsOf(t: HostTensor): number[][] {
  const [n, l] = t.shape;
  const d = t.data as Int32Array;
  return Array.from({ length: n }, (_, i) => Array.from(d.subarray(i * l, (i + 1) * l)));
}
