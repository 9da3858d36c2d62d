import { after, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { CheckpointError } from "../lib/io/checkpoint_error";
import { writeAtomic } from "../lib/io/file_bytes";
import { baseFiles, FuzzCase, hostValue, TensorSet } from "../lib/io/fuzz_corpus";
import { handMadeCases } from "../lib/io/fuzz_hostile";
import { HostTensor } from "../lib/io/host_tensor";
import { readNpy, readNpz } from "../lib/io/npy";
import { readTorchCheckpoint } from "../lib/io/pth";
import { readSafetensors } from "../lib/io/safetensors";

// Regression tests of issue #12, in process: each hostile file of the fuzz corpus (lib/io/fuzz_corpus.ts) must give
// a CheckpointError naming the file with the message below, or load as the corpus says. test/io_fuzz.test.ts runs
// the same files in child processes under time and memory limits, with random mutations besides.

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "d2g-hardening-"));
after(() => fs.rmSync(dir, { recursive: true, force: true }));
const canary = path.join(dir, "CANARY");
const cases = new Map(handMadeCases(dir, baseFiles(dir, 7), canary).map((c) => [c.id, c]));

function load(c: FuzzCase): { file: string; tensors?: Record<string, HostTensor>; error?: unknown } {
  const file = path.join(dir, `${c.id}.${c.format}`);
  fs.writeFileSync(file, c.bytes);
  try {
    if (c.format === "safetensors") return { file, tensors: readSafetensors(file).tensors };
    if (c.format === "npy") return { file, tensors: { x: readNpy(file) } };
    if (c.format === "npz") return { file, tensors: readNpz(file) };
    return { file, tensors: readTorchCheckpoint(file) };
  } catch (error) {
    return { file, error };
  }
}

function assertRefused(id: string, message: RegExp): void {
  const c = cases.get(id);
  assert.ok(c, `no corpus case ${id}`);
  const { file, error } = load(c);
  assert.ok(error, `${id}: loaded, but must be refused`);
  assert.ok(error instanceof CheckpointError, `${id}: ${String((error as Error).stack ?? error)}`);
  assert.equal(error.file, file);
  assert.ok(error.message.startsWith(`${file}: `), error.message);
  assert.match(error.message, message, id);
}

function assertLoads(id: string): void {
  const c = cases.get(id)!;
  assert.equal(c.expect.kind, "exact");
  const want = (c.expect as { tensors: TensorSet }).tensors;
  const { tensors, error } = load(c);
  assert.ifError(error);
  assert.deepEqual(Object.keys(tensors!).sort(), [...want.keys()].sort(), id);
  for (const [name, t] of Object.entries(tensors!)) assert.deepEqual(hostValue(t), want.get(name), `${id} ${name}`);
}

const both = (id: string) => [`${id}-zip`, `${id}-legacy`];

test("valid files of every format load, tensors named __proto__ and constructor included", () => {
  for (const id of ["valid-safetensors", "valid-npy", "valid-npz-stored", "valid-npz-deflated", "valid-pth-zip", "valid-pth-legacy"]) assertLoads(id);
});

test("a missing file is a CheckpointError naming it", () => {
  const file = path.join(dir, "nope");
  for (const f of [readSafetensors, readNpy, readNpz, readTorchCheckpoint]) {
    assert.throws(() => f(file), (e: Error) => e instanceof CheckpointError && e.message.startsWith(`${file}: `) && /no such file/.test(e.message));
  }
});

test("zip: inflation is bounded by the declared size and a global limit; zlib and layout errors name file and entry", () => {
  assertRefused("npz-bomb-declared-small", /entry 'a\.npy': .*inflates to more than its declared 1000 bytes/);
  assertRefused("npz-bomb-declared-honest", /entry 'a\.npy': .*declares 1610612736 bytes.*limit/);
  assertRefused("npz-corrupt-deflate", /entry 'a\.npy': corrupt deflate data/);
  assertRefused("npz-stored-size-mismatch", /entry 'a\.npy': stored entry of \d+ bytes declares 5000/);
  assertRefused("npz-encrypted", /entry 'a\.npy': encrypted/);
  assertRefused("npz-unknown-method", /entry 'a\.npy': compression method 12/);
});

test("zip: the central directory must agree with the end record and the local headers; a name may appear once", () => {
  assertRefused("npz-count-0", /end record lists 0 entries but the central directory holds more/);
  assertRefused("npz-count-minus-1", /end record lists 1 entries but the central directory holds more/);
  assertRefused("npz-duplicate-names", /entry 'a\.npy': appears twice/);
  assertRefused("npz-local-name-differs", /entry 'a\.npy': the local header names 'c\.npy'/);
});

test("pickle: no payload runs, whichever opcode carries it", () => {
  for (const id of [...cases.keys()].filter((k) => k.startsWith("exec-"))) {
    assertRefused(id, /unknown global '(os|posix|nt|builtins|subprocess)\.\w+' refused|unsupported pickle opcode 0x(69|82)/);
  }
  assert.equal(fs.existsSync(canary), false);
});

test("pickle: deep nesting, self-reference, 300k-item APPENDS and a 1 MiB int load (iteratively, in linear time)", () => {
  for (const id of ["deep-lists", "deep-wrappers", "self-reference", "self-list", "appends-300k", "long4-1mib"].flatMap(both)) assertLoads(id);
});

test("pickle: text opcodes must hold what Python accepts", () => {
  for (const id of both("text-int")) assertRefused(id, /INT '12abc' is not an integer/);
  for (const id of both("text-long")) assertRefused(id, /LONG '12abcL' is not an integer/);
  for (const id of both("text-float")) assertRefused(id, /FLOAT '1\.5abc' is not a number/);
  for (const id of both("text-int-5000-digits")) assertRefused(id, /5000 digits.*4300/);
  for (const id of both("text-get")) assertRefused(id, /GET '0abc' is not an integer/);
});

test("pth: negative sizes, offsets and strides, views outside or aliasing their storage are refused", () => {
  for (const id of both("negative-dim")) assertRefused(id, /tensor size \[-1\] has a negative dimension/);
  for (const id of both("negative-offset")) assertRefused(id, /storage offset -1 is negative/);
  for (const id of both("negative-stride")) assertRefused(id, /tensor stride \[-1\] has a negative stride/);
  for (const id of both("negative-storage-size")) assertRefused(id, /storage of -4 elements/);
  assertRefused("negative-storage-count-legacy", /storage of -4 elements/);
  for (const id of both("stride-0")) assertRefused(id, /tensor 'w': \[20000,20000\] with stride \[0,0\] at offset 0 overlaps itself/);
  for (const id of both("view-out-of-bounds")) assertRefused(id, /tensor 'w': .*reaches outside its storage '0' of 3 elements/);
  for (const id of both("storage-two-dtypes")) assertRefused(id, /storage '0' is declared as both float32 x 3 and int32 x 3/);
});

test("pth: memory stays bounded by the file: view copies and container copies have a budget", () => {
  for (const id of both("many-views")) assertRefused(id, /views would copy more than 2 x the 65536 bytes of storage/);
  for (const id of both("copy-blowup")) assertRefused(id, /builds more than \d+ items/);
});

test("pth: two tensors may not get one name", () => {
  for (const id of both("name-collision")) assertRefused(id, /two tensors are named 'a\.b'/);
});

test("safetensors: offsets must tile the data exactly, as the reference implementation requires", () => {
  assertRefused("safetensors-duplicated-offsets", /tensor 'b': data_offsets \[0,8\] start at 0, expected 8/);
  assertRefused("safetensors-overlapping-offsets", /tensor 'b': data_offsets \[4,16\] start at 4, expected 12/);
  assertRefused("safetensors-gap", /tensor 'b': data_offsets \[8,16\] start at 8, expected 4/);
  assertRefused("safetensors-trailing-bytes", /8 bytes after the last tensor/);
  assertRefused("safetensors-duplicate-key", /8 bytes after the last tensor/);
  assertRefused("safetensors-offsets-past-end", /truncated file/);
  assertRefused("safetensors-negative-dim", /tensor 'a': shape \[-4\] is not a list of non-negative integers/);
  assertRefused("safetensors-huge-dim", /tensor 'a': shape \[4611686018427388000\] is not a list of non-negative integers/);
  assertRefused("safetensors-metadata-not-object", /__metadata__ should be an object of strings/);
  assertRefused("safetensors-tensor-not-object", /tensor 'a': entry should be an object/);
});

test("npy: the header is a Python dict literal with exactly numpy's keys; shapes are tuples of decimal ints", () => {
  assertRefused("npy-descr-constructor", /unknown dtype '<constructor'/);
  assertRefused("npy-descr-proto", /unknown dtype '<__proto__'/);
  assertRefused("npy-descr-object", /unknown dtype '\|O'/);
  assertRefused("npy-shape-hex", /shape/);
  assertRefused("npy-shape-float", /shape/);
  assertRefused("npy-shape-spaces", /shape/);
  assertRefused("npy-shape-negative", /shape/);
  assertRefused("npy-shape-not-tuple", /'shape' should be a tuple of ints/);
  assertRefused("npy-extra-key", /keys descr, fortran_order, shape/);
  assertRefused("npy-missing-key", /keys descr, fortran_order, shape/);
});

test("writeAtomic removes the temporary files a killed writer left (dead pid on this host), not a live one's", (t) => {
  const target = path.join(dir, "atomic.bin");
  const host = os.hostname().replace(/[^A-Za-z0-9-]/g, "-");
  const dead = spawnSync(process.execPath, ["-e", "0"]).pid!;
  const stale = [`.atomic.bin.${host}.${dead}.1.tmp`, `.other.bin.${host}.${dead}.2.tmp`].map((n) => path.join(dir, n));
  const live = path.join(dir, `.atomic.bin.${host}.${process.ppid}.3.tmp`);
  const foreign = path.join(dir, `.atomic.bin.elsewhere.${dead}.4.tmp`);
  for (const f of [...stale, live, foreign]) fs.writeFileSync(f, "x");
  t.after(() => [live, foreign].forEach((f) => fs.rmSync(f, { force: true })));
  writeAtomic(target, (fd) => fs.writeSync(fd, "data"));
  assert.equal(fs.readFileSync(target, "utf8"), "data");
  for (const f of stale) assert.equal(fs.existsSync(f), false, `${f} should be swept`);
  assert.ok(fs.existsSync(live), "a live writer's temporary stays");
  assert.ok(fs.existsSync(foreign), "another host's temporary stays (its pid means nothing here)");
});
