import { test } from "node:test";
import assert from "node:assert/strict";
import * as path from "path";
import * as tf from "@tensorflow/tfjs";
import "@tensorflow/tfjs-backend-wasm";
import { fromRoot } from "../lib/core/paths";
import { readNpz } from "../lib/io/npy";
import { metricLabel } from "../lib/metrics/feature_net";
import { FidInceptionV3, InceptionFeatures, cleanResize } from "../lib/metrics/inception";

const FIX = fromRoot("test", "fixtures", "inception");

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

test("the width/16 FID Inception loads pytorch-fid's key layout and matches PyTorch's pool features", async () => {
  await tf.setBackend("wasm");
  const file = path.join(FIX, "fid_inception_w16.npz");
  const model = new FidInceptionV3(16);
  model.loadFidWeights(readNpz(file), file);
  const io = readNpz(path.join(FIX, "fid_inception_w16_io.npz"));
  const [n, c, h, w] = io.input.shape;
  const net = new InceptionFeatures(model, "bilinear", false, "w16fixture");
  // The fixture's input is NCHW in [0, 1]; the extractor takes NHWC in [-1, 1].
  const x = tf.tidy(() => tf.sub(tf.mul(tf.transpose(tf.tensor4d(io.input.data as Float32Array, [n, c, h, w]), [0, 2, 3, 1]), 2), 1) as tf.Tensor4D);
  const f = await net.features(x);
  assert.deepEqual(f.shape, [n, net.dim]);
  assert.equal(net.dim, 128);
  const want = io.features.data as Float32Array;
  const scale = Math.max(...Array.from(want, Math.abs));
  const err = maxAbsDiff(f.dataSync(), want);
  assert.ok(err < 1e-4 * scale, `max abs diff ${err} (features up to ${scale})`);
  tf.dispose([x, f]);
  model.dispose();
});

test("loading names a missing key, and the classifier and num_batches_tracked are optional", () => {
  const file = path.join(FIX, "fid_inception_w16.npz");
  const sd = readNpz(file);
  const trimmed = Object.fromEntries(Object.entries(sd).filter(([k]) => !k.endsWith("num_batches_tracked") && !k.startsWith("fc.")));
  const model = new FidInceptionV3(16);
  model.loadFidWeights(trimmed, file);
  delete trimmed["Mixed_7c.branch_pool.bn.running_var"];
  assert.throws(() => model.loadFidWeights(trimmed, file), /missing weight 'Mixed_7c\.branch_pool\.bn\.running_var'/);
  model.dispose();
});

test("metric names carry the extractor: only the official full-width Inception prints as FID", () => {
  const small = new FidInceptionV3(16);
  const unofficial = new InceptionFeatures(small, "bilinear", false, "abcd1234");
  assert.equal(metricLabel("FID", unofficial), "FID-inception[abcd1234]");
  // Even with official=true, a reduced-width network is not the standard extractor.
  assert.notEqual(metricLabel("FID", new InceptionFeatures(small, "bilinear", true, "6726825d")), "FID");
  assert.equal(metricLabel("KID", { label: "C10" }), "KID-C10");
  assert.equal(metricLabel("FID", { label: "" }), "FID");
  small.dispose();
});

test("cleanResize matches PIL's float bicubic resize (clean-fid) up, down and to 299", () => {
  const z = readNpz(path.join(FIX, "clean_resize.npz"));
  for (const name of ["up", "down"]) {
    const src = z[`${name}_in`];
    const want = z[`${name}_out`];
    const [h, w, c] = src.shape;
    const got = cleanResize(src.data as Float32Array, h, w, c, want.shape[0], want.shape[1]);
    const err = maxAbsDiff(got, want.data as Float32Array);
    assert.ok(err < 2e-4, `${name}: max abs diff ${err} on [0, 255] values`);
  }
  const src = z.cifar_in;
  const got = cleanResize(src.data as Float32Array, 32, 32, 3, 299, 299);
  const rows = z.cifar_out_rows13;
  const want = rows.data as Float32Array;
  const picked = new Float32Array(want.length);
  for (let r = 0; r < rows.shape[0]; r++) picked.set(got.subarray(r * 13 * 299 * 3, (r * 13 + 1) * 299 * 3), r * 299 * 3);
  const err = maxAbsDiff(picked, want);
  assert.ok(err < 2e-4, `32 -> 299: max abs diff ${err}`);
});
