import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { fromRoot } from "../lib/core/paths";
import { HostTensor } from "../lib/io/host_tensor";
import { readTorchCheckpoint, TorchCheckpointFile } from "../lib/io/pth";
import { readSafetensors, writeSafetensorsLazy } from "../lib/io/safetensors";
import { openTensorFile, prefixSource, recordSource, ShardedSource, viewSource } from "../lib/io/tensor_source";
import { streamWeights } from "../lib/io/weight_map";

// Lazy tensor sources: what big checkpoints stream through, one tensor at a time.

const IO = fromRoot("test/fixtures/io");

function tmpDir(t: { after: (fn: () => void) => void }): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "d2g-src-"));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const f32 = (shape: number[], values: number[]): HostTensor => ({ dtype: "float32", shape, data: new Float32Array(values) });

test("torch checkpoints read lazily give what the whole-file reader gives (zip, legacy, views, nested, prefix)", () => {
  const cases: Array<[string, { key?: string; stripPrefix?: string }]> = [
    ["torch_zip.pth", {}], ["torch_legacy.pth", {}], ["torch_legacy_view.pth", {}], ["torch_proto4.pth", {}],
    ["torch_nested.pth", { stripPrefix: "module." }], ["torch_nested.pth", { key: "state_dict" }],
  ];
  for (const [name, opts] of cases) {
    const file = path.join(IO, name);
    const whole = readTorchCheckpoint(file, opts);
    const lazy = new TorchCheckpointFile(file, opts);
    assert.deepEqual(lazy.names().sort(), Object.keys(whole).sort(), name);
    for (const k of lazy.names()) {
      const t = lazy.get(k);
      assert.equal(t.dtype, whole[k].dtype, `${name} ${k}`);
      assert.deepEqual(lazy.info(k), { dtype: whole[k].dtype, shape: whole[k].shape }, `${name} ${k}`);
      assert.deepEqual(t.shape, whole[k].shape, `${name} ${k}`);
      assert.deepEqual(Array.from(t.data as ArrayLike<number | bigint>), Array.from(whole[k].data as ArrayLike<number | bigint>), `${name} ${k}`);
    }
    lazy.close();
  }
  assert.throws(() => new TorchCheckpointFile(path.join(IO, "torch_nested.pth"), { key: "ema" }), /torch_nested\.pth: no 'ema'/);
});

test("views rename, select by prefix and reshape; a reshape that changes the element count is refused", () => {
  const src = recordSource({ "a.w": f32([2, 2, 1, 1], [1, 2, 3, 4]), "a.b": f32([2], [5, 6]), c: f32([1], [7]) }, "mem");
  const v = viewSource(src, new Map([["lin.weight", { from: "a.w", shape: [2, 2] }], ["lin.bias", { from: "a.b" }]]), "view");
  assert.deepEqual(v.info("lin.weight"), { dtype: "float32", shape: [2, 2] });
  assert.deepEqual(Array.from(v.get("lin.weight").data as Float32Array), [1, 2, 3, 4]);
  assert.deepEqual(v.get("lin.weight").shape, [2, 2]);
  assert.deepEqual(prefixSource(src, "a.").names(), ["w", "b"]);
  assert.throws(() => viewSource(src, new Map([["x", { from: "a.w", shape: [3] }]])), /mem: cannot view 'a\.w' \[2,2,1,1\] as 'x' \[3\]/);
  assert.throws(() => viewSource(src, new Map([["x", { from: "nope" }]])), /mem: tensor 'nope': no such tensor/);
  assert.throws(() => v.get("c"), /view: tensor 'c': no such tensor/);
});

test("sharded index: tensors from both shards; a bad index or a shard that lacks its tensor is named", (t) => {
  const dir = tmpDir(t);
  const write = (name: string, tensors: Record<string, HostTensor>) => writeSafetensorsLazy(path.join(dir, name), Object.entries(tensors).map(([k, x]) => [k, { dtype: x.dtype, shape: x.shape, read: () => x }]));
  write("s1.safetensors", { x: f32([2], [1, 2]) });
  write("s2.safetensors", { y: f32([1], [3]) });
  const index = path.join(dir, "m.safetensors.index.json");
  fs.writeFileSync(index, JSON.stringify({ weight_map: { x: "s1.safetensors", y: "s2.safetensors" } }));
  const s = openTensorFile(index);
  assert.ok(s instanceof ShardedSource);
  assert.deepEqual(Array.from(s.get("y").data as Float32Array), [3]);
  assert.deepEqual(s.info("x").shape, [2]);
  fs.writeFileSync(index, JSON.stringify({ weight_map: { x: "s2.safetensors" } }));
  assert.throws(() => openTensorFile(index).get("x"), /index\.json: the index puts 'x' in 's2\.safetensors', which does not hold it/);
  fs.writeFileSync(index, JSON.stringify({ metadata: {} }));
  assert.throws(() => openTensorFile(index), /index\.json: shard index without a "weight_map" object/);
  fs.writeFileSync(index, JSON.stringify({ weight_map: { x: "../s1.safetensors" } }));
  assert.throws(() => openTensorFile(index), /should name a file beside the index/);
  assert.throws(() => openTensorFile(path.join(dir, "w.onnx")), /w\.onnx: no such file/);
  fs.writeFileSync(path.join(dir, "w.onnx"), "");
  assert.throws(() => openTensorFile(path.join(dir, "w.onnx")), /unknown weights format/);
});

test("lazy safetensors writing: reads each tensor when written; a tensor unlike its declaration is refused", (t) => {
  const dir = tmpDir(t);
  const file = path.join(dir, "lazy.safetensors");
  let reads = 0;
  const x = f32([3], [1, 2, 3]);
  writeSafetensorsLazy(file, [["x", { dtype: "float32", shape: [3], read: () => (reads++, x) }]], { format: "pt" });
  assert.equal(reads, 1);
  const back = readSafetensors(file);
  assert.deepEqual(Array.from(back.tensors.x.data as Float32Array), [1, 2, 3]);
  assert.equal(back.metadata.format, "pt");
  assert.throws(() => writeSafetensorsLazy(file, [["x", { dtype: "float32", shape: [2], read: () => x }]]), /lazy\.safetensors: tensor 'x': read float32\[3\], declared float32\[2\]/);
  assert.deepEqual(Array.from(readSafetensors(file).tensors.x.data as Float32Array), [1, 2, 3], "a failed write leaves the old file");
});

test("streaming weights: every problem in one message, nothing read before all keys and shapes check out", () => {
  let reads = 0;
  const tensors = { w: f32([2, 3], [1, 2, 3, 4, 5, 6]), extra: f32([1], [0]), b: f32([3], [0, 0, 0]) };
  const src = recordSource(tensors, "ckpt");
  const counting = { ...src, get: (n: string) => (reads++, src.get(n)) };
  const expected = [
    { name: "w", shape: [3, 2], layout: "linear" as const },
    { name: "b", shape: [2], layout: "plain" as const },
    { name: "gone", shape: [4], layout: "plain" as const },
  ];
  assert.throws(() => streamWeights(counting, expected, {}, () => undefined), (e: Error) => {
    assert.match(e.message, /^ckpt: missing weight 'gone' \(expected shape \[4\]\); weight 'b' has shape \[3\], expected \[2\]; 1 weight\(s\) not used by the model: 'extra'$/);
    return true;
  });
  assert.equal(reads, 0);
  const got: Record<string, number[]> = {};
  streamWeights(counting, expected.slice(0, 1), { allowUnused: true }, (e, data) => (got[e.name] = Array.from(data)));
  // torch's [out, in] = [2, 3] linear weight arrives as tfjs' [in, out]
  assert.deepEqual(got.w, [1, 4, 2, 5, 3, 6]);
});
