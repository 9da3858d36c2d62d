import { test } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { initEngine } from "../lib/backend/engine";
import "../lib/backend/second_order_grads";

// Second derivatives through the ops whose tfjs gradients are built from their output (lib/backend/second_order_grads.ts):
// R(w) = |d/dx sum(r f(x w))|^2 is what an R1 penalty is, and dR/dw needs the derivative of f's gradient in x.

const OPS: Array<[string, (t: tf.Tensor) => tf.Tensor]> = [
  ["sigmoid", tf.sigmoid],
  ["tanh", tf.tanh],
  ["exp", tf.exp],
  ["softmax", (t) => tf.softmax(t)],
];

for (const backend of ["cpu", "wasm"]) {
  test(`second derivatives through sigmoid, tanh, exp and softmax match finite differences (${backend})`, async () => {
    await initEngine({ quiet: true });
    await tf.setBackend(backend);
    const x0 = tf.tensor2d([0.3, -0.7, 1.2, 0.1, -1.5, 0.8, 0.4, -0.2, 1.1, -0.9], [2, 5]);
    const r = tf.tensor2d([1, -2, 0.5, 1.5, -1, 0.3, 2, -0.7, 1, 0.6], [2, 5]);
    const u = tf.tensor1d([1, -2, 0.5, 0.7, -1.2]);
    for (const [name, f] of OPS) {
      const w = tf.variable(tf.tensor1d([0.5, 1.5, -0.8, 1.1, 0.9]));
      const R = () => tf.tidy(() => tf.sum(tf.square(tf.grad((x: tf.Tensor) => tf.sum(tf.mul(r, f(tf.mul(x, w)))))(x0))) as tf.Scalar);
      const { grads } = tf.variableGrads(R, [w]);
      const analytic = tf.sum(tf.mul(grads[w.name], u)).dataSync()[0];
      const w0 = w.clone();
      const at = (s: number) => {
        w.assign(tf.add(w0, tf.mul(u, s)));
        return R().dataSync()[0];
      };
      const h = 1e-2;
      const fd = (at(h) - at(-h)) / (2 * h);
      assert.ok(Math.abs(analytic - fd) < 1e-2 * Math.abs(fd), `${name}: dR/dw . u = ${analytic}, finite differences ${fd}`);
      tf.dispose([w, w0, grads[w.name]]);
    }
  });
}
