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
