import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as tf from "@tensorflow/tfjs";
import { Denoiser, edmSigmas } from "../lib/diffusion/edm";
import { sampleOde } from "../lib/diffusion/samplers";
import { ConditionFn, generatePairs, mergePairs, OdePairs, PairRecord, PairTeacher } from "../lib/distill/ode_pairs";

// A teacher with a known ODE: per-class Gaussian data N(class, 0.5^2), 6-level Heun.
const D: Denoiser = (x, s, c) =>
  tf.tidy(() => {
    const mu = tf.reshape(tf.argMax(c!, 1).toFloat(), [-1, 1, 1, 1]);
    return tf.add(tf.mul(tf.sub(x, mu), 0.25 / (0.25 + s * s)), mu) as tf.Tensor4D;
  });
const teacher: PairTeacher = async (z, c) => {
  const sig = edmSigmas(6);
  const x0 = tf.mul(z, sig[0]) as tf.Tensor4D;
  const r = await sampleOde(D, x0, { sigmas: sig, method: "heun", cond: c });
  x0.dispose();
  return { x: r.x, nfe: r.nfe };
};
const condition: ConditionFn = (rng) => {
  const c = [0, 0, 0];
  c[rng.int(3)] = 1;
  return c;
};
const REC: PairRecord = { teacher: "gaussian-test", sampler: "heun", steps: 6, guidance: 1, seed: 5, count: 10, shardSize: 3, zShape: [4, 4, 2], cDim: 3 };
const tmp = (tag: string) => fs.mkdtempSync(path.join(os.tmpdir(), `d2g-pairs-${tag}-`));

test("ODE pairs: a killed, sharded generation resumes to exactly the uninterrupted dataset", async () => {
  const a = tmp("a");
  await generatePairs(a, REC, teacher, condition, { batch: 2 });
  const ma = mergePairs(a, REC);
  assert.equal(ma.shards.length, 4);
  assert.equal(ma.teacherEvals, 10 * 11); // 6 levels ending at 0: 2*6 - 1 evaluations a sample

  const b = tmp("b");
  await assert.rejects(generatePairs(b, REC, teacher, condition, { batch: 2, afterShard: (k) => { if (k === 1) throw new Error("killed"); } }), /killed/);
  assert.throws(() => mergePairs(b, REC), /shard 2 of 4 .* is missing/);
  await generatePairs(b, REC, teacher, condition, { batch: 3, shard: { index: 1, of: 2 } });
  await generatePairs(b, REC, teacher, condition, { batch: 3, shard: { index: 0, of: 2 } });
  mergePairs(b, REC);

  const pa = OdePairs.open(a);
  const pb = OdePairs.open(b);
  assert.deepEqual(Array.from(pb.index), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  assert.deepEqual(pb.z, pa.z);
  assert.deepEqual(pb.c, pa.c);
  // batch size changes the teacher's batching but not its per-sample result beyond float rounding
  let err = 0;
  pa.x.forEach((v, i) => (err = Math.max(err, Math.abs(v - pb.x[i]))));
  assert.ok(err < 1e-5, `x differs by ${err}`);

  // seeded shuffled batches, reproducible per (seed, step)
  const b1 = pa.batchAt(3, 4, 9);
  const b2 = OdePairs.open(a).batchAt(3, 4, 9);
  assert.deepEqual(b1.index, b2.index);
  assert.deepEqual(b1.z.shape, [4, 4, 4, 2]);
  tf.dispose([b1.z, b1.x, b1.c, b2.z, b2.x, b2.c]);
  fs.rmSync(b, { recursive: true });

  const shard = path.join(a, "shard-00002.safetensors");
  fs.truncateSync(shard, fs.statSync(shard).size - 10);
  assert.throws(() => OdePairs.open(a), (e: Error) => e.message.includes(shard) && /sha256 .* does not match/.test(e.message));
  fs.rmSync(a, { recursive: true });
});

test("ODE pairs: invalid shard split and a changed record are refused", async () => {
  const a = tmp("c");
  await assert.rejects(generatePairs(a, REC, teacher, condition, { batch: 2, shard: { index: 2, of: 2 } }), /shard 2\/2 is not valid/);
  await generatePairs(a, { ...REC, count: 3 }, teacher, condition, { batch: 3 });
  await assert.rejects(generatePairs(a, { ...REC, count: 3, seed: 6 }, teacher, condition, { batch: 3 }), /another generation record/);
  fs.rmSync(a, { recursive: true });
});
