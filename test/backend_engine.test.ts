import { test } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { spawnSync } from "child_process";
import * as path from "path";
import { formatEngine, initEngine } from "../lib/backend/engine";

test("an unknown D2G_BACKEND is a clear error listing the engines", async () => {
  process.env.D2G_BACKEND = "bogus";
  try {
    await assert.rejects(initEngine({ quiet: true }), /D2G_BACKEND="bogus".*tfjs-node-gpu, tfjs-node, wasm, cpu/);
  } finally {
    delete process.env.D2G_BACKEND;
  }
  await assert.rejects(initEngine({ backend: "gpu", quiet: true }), /"gpu" is not an engine/);
});

test("initEngine starts wasm once and reports it", async () => {
  const info = await initEngine({ backend: "wasm", quiet: true });
  assert.equal(info.engine, "wasm");
  assert.equal(tf.getBackend(), "wasm");
  assert.equal(info.version, tf.version_core);
  assert.ok(info.threads >= 1);
  assert.deepEqual(await initEngine({ quiet: true }), info);
  await assert.rejects(initEngine({ backend: "cpu", quiet: true }), /already started as wasm/);
  assert.match(formatEngine(info), /^engine: wasm \(tfjs \d+\.\d+\.\d+, \d+ threads?, (no )?SIMD\); inference: onnxruntime-node \d+\.\d+\.\d+ \(cpu, \d+ threads?\)$/);
  assert.equal(formatEngine({ engine: "tfjs-node-gpu", version: "4.22.0", threads: 16, gpu: "NVIDIA H100" }), "engine: tfjs-node-gpu (tfjs 4.22.0, 16 threads, GPU NVIDIA H100)");
  const cuda = { engine: "onnxruntime" as const, version: "1.30.0", provider: "cuda" as const, threads: 16 };
  assert.equal(formatEngine({ engine: "wasm", version: "4.22.0", threads: 2, simd: true, inference: cuda }), "engine: wasm (tfjs 4.22.0, 2 threads, SIMD); inference: onnxruntime-node 1.30.0 (cuda, 16 threads)");
  assert.equal(formatEngine({ engine: "cpu", version: "4.22.0", threads: 1, inference: { engine: "tfjs", reason: "D2G_INFER=tfjs" } }), "engine: cpu (tfjs 4.22.0, 1 thread); inference: tfjs (D2G_INFER=tfjs)");
});

test("tfjs's advice to install its node backend is not printed; its other warnings still are", () => {
  const tfjs = require.resolve("@tensorflow/tfjs");
  const advice = path.join(__dirname, "..", "lib", "backend", "node_advice.js");
  const script = `const tf = require(${JSON.stringify(tfjs)}); require(${JSON.stringify(advice)}).silenceNodeBackendAdvice();
    tf.tensor1d([1, 2]).sum().dataSync(); tf.registerBackend("cpu", () => null);`;
  const r = spawnSync(process.execPath, ["-e", script], { encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  assert.doesNotMatch(r.stdout + r.stderr, /looks like you are running TensorFlow\.js in Node\.js/);
  assert.match(r.stderr, /cpu backend was already registered/);
  const bare = spawnSync(process.execPath, ["-e", `const tf = require(${JSON.stringify(tfjs)}); tf.tensor1d([1]).dataSync();`], { encoding: "utf8" });
  assert.match(bare.stderr, /looks like you are running TensorFlow\.js in Node\.js/, "without it tfjs prints the advice (the test would prove nothing)");
});
