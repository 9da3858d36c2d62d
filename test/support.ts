// Helpers the tests share for comparing against PyTorch fixtures (stored NCHW; tfjs works NHWC).
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
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
