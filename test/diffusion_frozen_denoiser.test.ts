import { test } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import "@tensorflow/tfjs-backend-wasm";
import { Rng } from "../lib/core/random";
import { edmDenoiser, edmSigmas } from "../lib/diffusion/edm";
import { FrozenEdmDenoiser } from "../lib/diffusion/frozen_denoiser";
import { sampleOde } from "../lib/diffusion/samplers";
import { rawNetOf } from "../lib/diffusion/train_edm";
import { SongUNet } from "../lib/nn/unet";

// The teacher inside the solver through onnxruntime: the exported graph holds the EDM preconditioning and the
// network, so a Heun solve makes one onnxruntime call per evaluation and ends where the tfjs solve ends.

const TINY = { imgResolution: 8, inChannels: 3, outChannels: 3, labelDim: 3, augmentDim: 0, modelChannels: 8, channelMult: [1, 2], channelMultEmb: 2, numBlocks: 1, attnResolutions: [4], dropout: 0 };

test("a frozen EDM teacher on onnxruntime solves the PF-ODE to the tfjs result, without leaking tensors", async () => {
  await tf.setBackend("wasm");
  const net = new SongUNet(TINY, new Rng(1));
  // the zero-initialised output layers would make D(x) = c_skip x whatever the body does
  for (const [, v] of net.namedVariables()) v.assign(tf.tidy(() => tf.mul(tf.randomNormal(v.shape, 0, 1, "float32", 7), 0.2)));
  const frozen = new FrozenEdmDenoiser("tiny-teacher", net.namedVariables(), rawNetOf(net));
  assert.equal(frozen.engine, "onnxruntime");
  const sig = edmSigmas(6);
  const z = tf.randomNormal([3, 8, 8, 3], 0, 1, "float32", 2) as tf.Tensor4D;
  const x0 = tf.mul(z, sig[0]) as tf.Tensor4D;
  const c = tf.oneHot(tf.tensor1d([0, 2, 1], "int32"), 3).toFloat() as tf.Tensor2D;
  const before = tf.memory().numTensors;
  const ort = await sampleOde(frozen.D, x0, { sigmas: sig, method: "heun", cond: c });
  const ref = await sampleOde(edmDenoiser(rawNetOf(net)), x0, { sigmas: sig, method: "heun", cond: c });
  assert.equal(ort.nfe, 11);
  assert.equal(ref.nfe, 11);
  const [a, b] = [ort.x.dataSync(), ref.x.dataSync()];
  let err = 0;
  let scale = 0;
  b.forEach((v, i) => {
    err = Math.max(err, Math.abs(a[i] - v));
    scale = Math.max(scale, Math.abs(v));
  });
  assert.ok(err < 1e-5 * scale, `max difference ${err} at scale ${scale}`);
  tf.dispose([ort.x, ref.x]);
  assert.equal(tf.memory().numTensors, before, "sampling through onnxruntime leaks no tensors");
  tf.dispose([z, x0, c]);
  await frozen.dispose();
  net.dispose();
});
