import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { HostTensor } from "../lib/io/host_tensor";
import { bf16ToFloat, floatToHalf, halfToFloat } from "../lib/io/dtype";
import { SafetensorsFile, readSafetensors, writeSafetensors } from "../lib/io/safetensors";
import { readNpy, readNpz, writeNpy, writeNpz } from "../lib/io/npy";
import { ZipReader, crc32, crc32Table, writeZip } from "../lib/io/zip";
import { loadTorchObject, readTorchCheckpoint } from "../lib/io/pth";
import { PyValue, torchPersistentLoad, unpickle } from "../lib/io/pickle";
import { fromRoot } from "../lib/core/paths";

const FIX = fromRoot("test/fixtures/io");
const mirror = process.env.D2G_DATA_MIRROR;
const noMirror = mirror ? false : "D2G_DATA_MIRROR not set";

interface Expected {
  tensors: Record<string, { dtype: string; shape: number[]; values: (number | boolean)[] }>;
  [k: string]: unknown;
}
const expected: Record<string, Expected> = JSON.parse(fs.readFileSync(path.join(FIX, "expected.json"), "utf8"));

/** A fresh temporary folder, removed when the test ends whether it passed or not. */
function tmpDir(t: { after: (fn: () => void) => void }): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "d2g-io-"));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Values as plain numbers, decoding float16/bfloat16 bits, for comparison with the JSON PyTorch wrote. */
function values(t: HostTensor): number[] {
  if (t.dtype === "float16") return Array.from(t.data as Uint16Array, halfToFloat);
  if (t.dtype === "bfloat16") return Array.from(t.data as Uint16Array, bf16ToFloat);
  if (t.dtype === "int64") return Array.from(t.data as BigInt64Array, Number);
  return Array.from(t.data as ArrayLike<number>);
}

function assertMatches(got: Record<string, HostTensor>, want: Expected, file: string): void {
  assert.deepEqual(Object.keys(got).sort(), Object.keys(want.tensors).sort(), file);
  for (const [name, w] of Object.entries(want.tensors)) {
    const t = got[name];
    assert.equal(t.dtype, w.dtype, `${file} ${name} dtype`);
    assert.deepEqual(t.shape, w.shape, `${file} ${name} shape`);
    assert.deepEqual(values(t), w.values.map(Number), `${file} ${name} values`);
  }
}

/** One tensor of every dtype, with the awkward values (NaN, -0, infinities, int extremes) that must survive. */
function allDtypes(): Record<string, HostTensor> {
  return {
    f32: { dtype: "float32", shape: [2, 3], data: new Float32Array([1.5, -0, NaN, Infinity, -Infinity, 1e-45]) },
    f64: { dtype: "float64", shape: [3], data: new Float64Array([Math.PI, -0, 5e-324]) },
    f16: { dtype: "float16", shape: [2, 2], data: new Uint16Array([0x3c00, 0x8000, 0x7e00, 0x0001]) },
    bf16: { dtype: "bfloat16", shape: [3], data: new Uint16Array([0x3f80, 0xff80, 0x7fc1]) },
    i64: { dtype: "int64", shape: [3], data: new BigInt64Array([-(2n ** 63n), 2n ** 63n - 1n, 0n]) },
    i32: { dtype: "int32", shape: [1, 2], data: new Int32Array([-(2 ** 31), 2 ** 31 - 1]) },
    i16: { dtype: "int16", shape: [2], data: new Int16Array([-32768, 32767]) },
    i8: { dtype: "int8", shape: [2], data: new Int8Array([-128, 127]) },
    u8: { dtype: "uint8", shape: [4], data: new Uint8Array([0, 1, 128, 255]) },
    bool: { dtype: "bool", shape: [2], data: new Uint8Array([1, 0]) },
    scalar: { dtype: "float32", shape: [], data: new Float32Array([7]) },
    empty: { dtype: "float32", shape: [0, 3], data: new Float32Array(0) },
  };
}

function assertBitExact(got: Record<string, HostTensor>, want: Record<string, HostTensor>): void {
  assert.deepEqual(Object.keys(got), Object.keys(want));
  for (const [name, w] of Object.entries(want)) {
    const g = got[name];
    assert.equal(g.dtype, w.dtype, name);
    assert.deepEqual(g.shape, w.shape, name);
    assert.equal(g.data.constructor, w.data.constructor, name);
    const bytes = (d: HostTensor["data"]) => Buffer.from(d.buffer, d.byteOffset, d.byteLength);
    assert.ok(bytes(g.data).equals(bytes(w.data)), `${name}: bytes differ`);
  }
}

/** The error must name the file and say what went wrong. */
function assertFails(fn: () => unknown, file: string, what: RegExp): void {
  assert.throws(fn, (e: Error) => {
    assert.ok(e.message.includes(file), `error should name ${file}: ${e.message}`);
    assert.match(e.message, what);
    return true;
  });
}

test("safetensors: written and read back bit-exact, all dtypes, metadata kept", (t) => {
  const dir = tmpDir(t);
  const file = path.join(dir, "all.safetensors");
  writeSafetensors(file, allDtypes(), { step: "12", note: "ünïcode" });
  assert.ok(fs.readdirSync(dir).every((n) => n === "all.safetensors"), "no temp file left behind");
  const { tensors, metadata } = readSafetensors(file);
  assertBitExact(tensors, allDtypes());
  assert.deepEqual({ ...metadata }, { step: "12", note: "ünïcode" });
  const head = fs.readFileSync(file).readBigUInt64LE(0);
  assert.equal((8n + head) % 8n, 0n, "data starts 8-byte aligned");
});

test("safetensors: the reference implementation's file reads with PyTorch's values", () => {
  const file = path.join(FIX, "reference.safetensors");
  const want = expected["reference.safetensors"];
  const { tensors, metadata } = readSafetensors(file);
  assertMatches(tensors, want, file);
  assert.deepEqual({ ...metadata }, want.metadata);
});

test("safetensors: opening reads only the header; get() reads one tensor of a sparse 5 GB file", (t) => {
  const dir = tmpDir(t);
  const file = path.join(dir, "big.safetensors");
  const big = 5 * 2 ** 30;
  const small = new Float32Array([1, 2, 3]);
  const header = JSON.stringify({ big: { dtype: "U8", shape: [big], data_offsets: [0, big] }, small: { dtype: "F32", shape: [3], data_offsets: [big, big + 12] } });
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(header.length));
  fs.writeFileSync(file, Buffer.concat([len, Buffer.from(header)]));
  // Sparse: the 5 GB of zeros take no disk; reading them whole would take seconds and 5 GB of memory.
  fs.truncateSync(file, 8 + header.length + big + 12);
  const fd = fs.openSync(file, "r+");
  fs.writeSync(fd, Buffer.from(small.buffer), 0, 12, 8 + header.length + big);
  fs.closeSync(fd);
  const f = new SafetensorsFile(file);
  assert.deepEqual(f.names(), ["big", "small"]);
  assert.deepEqual(f.info("big").shape, [big]);
  assert.deepEqual(Array.from(f.get("small").data as Float32Array), [1, 2, 3]);
  assertFails(() => f.get("nope"), file, /tensor 'nope': no such tensor/);
});

test("npy and npz: written and read back bit-exact, stored and deflated", (t) => {
  const dir = tmpDir(t);
  const arrays = allDtypes();
  delete arrays.bf16; // numpy has no bfloat16
  for (const [name, t] of Object.entries(arrays)) {
    const file = path.join(dir, `${name}.npy`);
    writeNpy(file, t);
    assertBitExact({ [name]: readNpy(file) }, { [name]: t });
    assert.equal(fs.readFileSync(file).readUInt16LE(8) % 64, 64 - 10, "data starts 64-byte aligned");
  }
  for (const compress of [false, true]) {
    const file = path.join(dir, `all${compress}.npz`);
    writeNpz(file, arrays, { compress });
    assertBitExact(readNpz(file), arrays);
  }
  assertFails(() => writeNpy(path.join(dir, "x.npy"), allDtypes().bf16), path.join(dir, "x.npy"), /bfloat16 has no \.npy/);
});

test("npy and npz: files numpy wrote read with numpy's values", () => {
  const want = expected.numpy;
  for (const f of ["numpy_arrays.npz", "numpy_compressed.npz"]) assertMatches(readNpz(path.join(FIX, f)), want, f);
  assertMatches({ f32: readNpy(path.join(FIX, "numpy_f32.npy")) }, { tensors: { f32: want.tensors.f32 } }, "numpy_f32.npy");
  const fortran = path.join(FIX, "numpy_fortran.npy");
  assertFails(() => readNpy(fortran), fortran, /fortran_order/);
});

test("zip: stored and deflated entries round-trip; a corrupt byte fails the CRC", (t) => {
  const dir = tmpDir(t);
  const file = path.join(dir, "a.zip");
  const text = new TextEncoder().encode("hello zip ".repeat(100));
  writeZip(file, [{ name: "s.txt", data: text }, { name: "dir/d.txt", data: text, deflate: true }, { name: "empty", data: new Uint8Array(0) }]);
  const check = new TextEncoder().encode("123456789"); // the standard CRC-32 check value is 0xcbf43926
  assert.equal(crc32(check), 0xcbf43926);
  assert.equal(crc32Table(check), 0xcbf43926);
  const zip = new ZipReader(file);
  assert.deepEqual([...zip.entries.keys()], ["s.txt", "dir/d.txt", "empty"]);
  assert.ok(zip.entries.get("dir/d.txt")!.compressedSize < text.length);
  assert.deepEqual(zip.read("s.txt"), text);
  assert.deepEqual(zip.read("dir/d.txt"), text);
  assert.equal(zip.read("empty").length, 0);
  zip.close();
  const bytes = fs.readFileSync(file);
  bytes[40] ^= 1; // inside s.txt's data
  fs.writeFileSync(file, bytes);
  const bad = new ZipReader(file);
  assertFails(() => bad.read("s.txt"), file, /CRC/);
  bad.close();
});

test("zip: a zip64 archive (zip64 end records and extra fields) reads", () => {
  const file = path.join(FIX, "zip64.zip");
  const want = expected["zip64.zip"].entries as Record<string, string>;
  const zip = new ZipReader(file);
  assert.deepEqual([...zip.entries.keys()], Object.keys(want));
  for (const [name, text] of Object.entries(want)) assert.equal(new TextDecoder().decode(zip.read(name)), text);
  zip.close();
});

test("pickle: protocols 2-5 give the same tree; unknown globals are refused", () => {
  const shared = [7];
  const tree = new Map<PyValue, PyValue>([
    ["text", "h\u00e9llo \u2713"],
    ["bytes", new Uint8Array([0, 255, 97, 98])],
    ["float", 0.1],
    ["none", null],
    ["flags", [true, false]],
    ["ints", [0, 255, 256, 65535, 65536, -1, -(2 ** 31), 2 ** 31, 2n ** 70n, -(2n ** 70n)]],
    ["set", new Set([1, 2])],
    ["frozen", new Set(["a"])],
    ["nested", new Map<PyValue, PyValue>([[1, [2, 3]], ["d", new Map([["x", [1.5]]])]])],
    ["shared", [shared, shared]],
  ]);
  for (const protocol of [2, 3, 4, 5]) {
    const file = path.join(FIX, `tree_p${protocol}.pkl`);
    const bytes = fs.readFileSync(file);
    const { value, end } = unpickle(bytes, { file });
    assert.equal(end, bytes.length);
    assert.deepEqual(value, tree, file);
    const got = (value as Map<PyValue, PyValue>).get("shared") as PyValue[];
    assert.equal(got[0], got[1], "memoised objects stay shared");
  }
  const counter = path.join(FIX, "counter_p4.pkl");
  assertFails(() => unpickle(fs.readFileSync(counter), { file: counter }), counter, /unknown global 'collections\.Counter'/);
});

test("pth zip format: every dtype, parameters, transposed and offset views", () => {
  const file = path.join(FIX, "torch_zip.pth");
  const got = readTorchCheckpoint(file);
  assertMatches(got, expected["torch_zip.pth"], file);
  assert.deepEqual(values(got.transposed).slice(0, 3), [0, 0.5, 1]); // column 0 of base / 8
});

test("pth: nested training checkpoint, state dict found, module. prefix stripped", () => {
  const file = path.join(FIX, "torch_nested.pth");
  const want = expected["torch_nested.pth"];
  assertMatches(readTorchCheckpoint(file), want, file);
  const stripped = readTorchCheckpoint(file, { stripPrefix: "module." });
  assert.deepEqual(Object.keys(stripped).sort(), Object.keys(want.tensors).map((k) => k.slice("module.".length)).sort());
  const root = loadTorchObject(file) as Map<PyValue, PyValue>;
  assert.equal(root.get("epoch"), 3);
  assert.equal(root.get("best_acc1"), 71.5);
  assert.equal(root.get("arch"), "tiny");
  assert.ok(root.get("state_dict") instanceof Map);
  const groups = (root.get("optimizer") as Map<PyValue, PyValue>).get("param_groups") as Map<PyValue, PyValue>[];
  assert.equal(groups[0].get("lr"), 0.1);
  assert.deepEqual(Object.keys(readTorchCheckpoint(file, { key: "state_dict" })).sort(), Object.keys(want.tensors).sort());
  assertFails(() => readTorchCheckpoint(file, { key: "ema" }), file, /no 'ema'.*epoch/);
});

test("pth: pickle protocol 4 checkpoint", () => {
  const file = path.join(FIX, "torch_proto4.pth");
  assertMatches(readTorchCheckpoint(file), expected["torch_proto4.pth"], file);
});

test("pth: a TorchScript archive reads as its module tree; its __torch__ classes are refused in a plain pickle", () => {
  // torch.jit.trace + save of a tiny CLIP (test/fixtures/clip/make_clip_model_fixture.py)
  const file = fromRoot("test/fixtures/clip/openai_tiny_jit.pt");
  const tree = loadTorchObject(file) as Map<PyValue, PyValue>;
  assert.equal(tree.get("training"), false);
  const conv = ((tree.get("visual") as Map<PyValue, PyValue>).get("conv1") as Map<PyValue, PyValue>).get("weight") as HostTensor;
  assert.deepEqual([conv.dtype, conv.shape], ["float16", [16, 3, 8, 8]]);
  assert.ok("transformer.resblocks.1.mlp.c_proj.bias" in readTorchCheckpoint(file));
  const zip = new ZipReader(file);
  const pkl = zip.read("openai_tiny_jit/data.pkl");
  zip.close();
  const opts = { file: "data.pkl", persistentLoad: torchPersistentLoad("data.pkl") };
  assert.throws(() => unpickle(pkl, opts), /data\.pkl: pickle at byte \d+: unknown global '__torch__\.clip\.model\.CLIP' refused/);
  assert.ok(unpickle(pkl, { ...opts, scriptObjects: true }).value instanceof Map);
});

test("pth legacy format: values and views, including a storage slice from a pre-1.0 persistent id", () => {
  for (const name of ["torch_legacy.pth", "torch_legacy_view.pth"]) {
    const file = path.join(FIX, name);
    assertMatches(readTorchCheckpoint(file), expected[name], file);
  }
  assert.deepEqual(expected["torch_legacy_view.pth"].tensors.v.values, [5, 6, 7, 8]);
});

test("pth: every LPIPS head loads with the expected shapes and equals its JSON", { skip: noMirror }, () => {
  const channels: Record<string, number[]> = {
    alex: [64, 192, 384, 256, 256],
    vgg: [64, 128, 256, 512, 512],
    squeeze: [64, 128, 256, 384, 384, 512, 512],
  };
  for (const version of ["v0.0", "v0.1"]) {
    for (const [net, cs] of Object.entries(channels)) {
      const file = path.join(mirror!, "weights/lpips", version, `${net}.pth`);
      const got = readTorchCheckpoint(file);
      const json = JSON.parse(fs.readFileSync(file.replace(/\.pth$/, ".json"), "utf8")).tensors;
      assert.deepEqual(Object.keys(got), cs.map((_, i) => `lin${i}.model.1.weight`), file);
      cs.forEach((c, i) => {
        const t = got[`lin${i}.model.1.weight`];
        assert.equal(t.dtype, "float32");
        assert.deepEqual(t.shape, [1, c, 1, 1], `${file} lin${i}`);
        assert.deepEqual(json[`lin${i}.model.1.weight`].shape, t.shape);
        assert.deepEqual(Array.from(t.data as Float32Array), json[`lin${i}.model.1.weight`].data.flat(3), `${file} lin${i} values`);
      });
    }
  }
});

test("pth: TAEF2 encoder and decoder open and list their tensors", { skip: noMirror }, () => {
  for (const [part, first, last] of [["encoder", [64, 3, 3, 3], [32]], ["decoder", [64, 32, 3, 3], [3]]] as const) {
    const file = path.join(mirror!, `weights/taef2/taef2_${part}.pth`);
    const got = readTorchCheckpoint(file);
    const names = Object.keys(got);
    assert.equal(names.length, 79, file);
    assert.ok(Object.values(got).every((t) => t.dtype === "float16"));
    assert.deepEqual(got[names[0]].shape, first);
    assert.deepEqual(got[names[names.length - 1]].shape, last);
  }
});

test("errors name the file: truncated, wrong magic, unknown global, unknown dtype", (t) => {
  const dir = tmpDir(t);
  const cut = (src: string, name: string, keep: number): string => {
    const out = path.join(dir, name);
    const b = fs.readFileSync(src);
    fs.writeFileSync(out, b.subarray(0, keep < 0 ? b.length + keep : keep));
    return out;
  };
  const zipCut = cut(path.join(FIX, "torch_zip.pth"), "zip_cut.pth", -30);
  assertFails(() => readTorchCheckpoint(zipCut), zipCut, /truncated/);
  const legacyCut = cut(path.join(FIX, "torch_legacy.pth"), "legacy_cut.pth", -5);
  assertFails(() => readTorchCheckpoint(legacyCut), legacyCut, /truncated/);
  const legacyPickleCut = cut(path.join(FIX, "torch_legacy.pth"), "legacy_pickle_cut.pth", 200);
  assertFails(() => readTorchCheckpoint(legacyPickleCut), legacyPickleCut, /truncated/);
  const stCut = path.join(dir, "cut.safetensors");
  writeSafetensors(stCut, allDtypes());
  fs.truncateSync(stCut, fs.statSync(stCut).size - 1);
  assertFails(() => new SafetensorsFile(stCut), stCut, /truncated/);
  const npyCut = cut(path.join(FIX, "numpy_f32.npy"), "cut.npy", -1);
  assertFails(() => readNpy(npyCut), npyCut, /truncated/);

  const junk = path.join(dir, "junk.bin");
  fs.writeFileSync(junk, "this is not a checkpoint at all, just text");
  assertFails(() => readTorchCheckpoint(junk), junk, /wrong magic/);
  assertFails(() => new SafetensorsFile(junk), junk, /wrong magic/);
  assertFails(() => readNpy(junk), junk, /wrong magic/);
  const badMagic = path.join(dir, "bad_magic.pth");
  fs.writeFileSync(badMagic, Buffer.from([0x80, 0x02, 0x4b, 0x07, 0x2e])); // pickle of the int 7
  assertFails(() => readTorchCheckpoint(badMagic), badMagic, /wrong magic/);

  const unknownGlobal = path.join(FIX, "torch_unknown_global.pth");
  assertFails(() => readTorchCheckpoint(unknownGlobal), unknownGlobal, /unknown global 'argparse\.Namespace'/);

  const complexPth = path.join(FIX, "torch_complex.pth");
  assertFails(() => readTorchCheckpoint(complexPth), complexPth, /unknown dtype.*ComplexFloatStorage/);
  const complexNpy = path.join(FIX, "numpy_complex.npy");
  assertFails(() => readNpy(complexNpy), complexNpy, /unknown dtype '<c8'/);
  const complexSt = path.join(dir, "complex.safetensors");
  const header = JSON.stringify({ c: { dtype: "C64", shape: [1], data_offsets: [0, 8] } });
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(header.length));
  fs.writeFileSync(complexSt, Buffer.concat([len, Buffer.from(header), Buffer.alloc(8)]));
  assertFails(() => new SafetensorsFile(complexSt), complexSt, /unknown dtype 'C64'/);
});

test("floatToHalf rounds to nearest even as numpy's float16 does, and inverts halfToFloat", () => {
  // expected bits from numpy: np.array([...], np.float32).astype(np.float16).view(np.uint16)
  const cases: Array<[number, number]> = [
    [1, 0x3c00], [-2, 0xc000], [65504, 0x7bff], [65520, 0x7c00], [1e6, 0x7c00], [2 ** -24, 0x0001], [2 ** -25, 0x0000],
    [3 * 2 ** -25, 0x0002], [1 + 2 ** -11, 0x3c00], [1 + 3 * 2 ** -11, 0x3c02], [0.1, 0x2e66], [-0, 0x8000], [6.1e-5, 0x03ff],
  ];
  for (const [x, bits] of cases) assert.equal(floatToHalf(x), bits, `floatToHalf(${x})`);
  assert.equal(floatToHalf(NaN) & 0x7e00, 0x7e00);
  for (let h = 0; h < 0x10000; h++) {
    if ((h & 0x7c00) === 0x7c00 && h & 0x3ff) continue;
    assert.equal(floatToHalf(halfToFloat(h)), h, `half ${h.toString(16)}`);
  }
});
