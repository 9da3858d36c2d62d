import * as zlib from "zlib";
import { BaseFile, Expectation, FuzzCase, TensorSet, viewValue, written, zipMembers } from "./fuzz_corpus";
import { HostTensor } from "./host_tensor";
import { encodeNpy, writeNpz } from "./npy";
import { concat, latin1Bytes, PickleAssembler, pushTensor, stateDictPickle, StorageSpec, torchLegacyBytes, torchZipBytes, ViewSpec } from "./pickle_assembler";
import { writeZip } from "./zip";

// The hand-made hostile files of the loader fuzz (issue #12), each with the only outcome valid for it: pickles
// that would run code, nest 100k deep, refer to themselves, copy themselves into gigabytes; torch views that are
// negative, stride-0, out of bounds or many; safetensors offsets that overlap, leave gaps or trailing bytes; .npy
// headers that are not numpy's; zip bombs and zip directories that lie. The valid base files come first.

const W: StorageSpec = { key: "0", dtype: "float32", bytes: Uint8Array.from([0, 0, 128, 63, 0, 0, 0, 64, 0, 0, 64, 64]) };
const W_VIEW: ViewSpec = { name: "w", storage: "0", offset: 0, shape: [3], stride: [1] };
const W_ONLY: TensorSet = new Map([["w", viewValue(W, W_VIEW)]]);

/** Both torch containers around one object pickle (legacy pickles carry legacy persistent ids). */
function bothTorch(dir: string, id: string, pickle: (legacy: boolean) => Uint8Array, storages: StorageSpec[], expect: Expectation): FuzzCase[] {
  return [
    { id: `${id}-zip`, format: "pth", bytes: torchZipBytes(pickle(false), storages, dir), expect },
    { id: `${id}-legacy`, format: "pth", bytes: torchLegacyBytes(pickle(true), storages).bytes, expect },
  ];
}

/** {'w': tensor} plus whatever `extra` pushes as further (key, value) pairs. */
function withW(extra: (p: PickleAssembler, legacy: boolean) => void): (legacy: boolean) => Uint8Array {
  return (legacy) => stateDictPickle([W], [W_VIEW], legacy, (p) => extra(p, legacy));
}

/** Pickles that would run `touch canary` (or write it from Python) if anything executed them. */
function execPayloads(canary: string): Array<[string, (p: PickleAssembler) => void]> {
  const cmd = `touch '${canary}'`;
  const py = `open(${JSON.stringify(canary)}, 'w').close()`;
  const call = (module: string, name: string, arg: string) => (p: PickleAssembler) => p.global(module, name).str(arg).raw([0x85]).reduce();
  return [
    ["os-system", call("os", "system", cmd)],
    ["posix-system", call("posix", "system", cmd)],
    ["nt-system", call("nt", "system", cmd)],
    ["builtins-eval", call("builtins", "eval", `__import__('os').system(${JSON.stringify(cmd)})`)],
    ["builtins-exec", call("builtins", "exec", py)],
    ["python2-builtin-eval", call("__builtin__", "eval", py)],
    ["subprocess-call", (p) => p.global("subprocess", "call").mark().str("touch").str(canary).list().raw([0x85]).reduce()],
    ["stack-global", (p) => p.str("os").str("system").raw([0x93]).str(cmd).raw([0x85]).reduce()],
    ["getattr", (p) => p.global("builtins", "getattr").global("os", "system").str("__call__").raw([0x86]).reduce().str(cmd).raw([0x85]).reduce()],
    ["newobj", (p) => p.global("subprocess", "Popen").mark().str("touch").str(canary).list().raw([0x85, 0x81])],
    // protocol 0/1 INST and OBJ build an instance by calling the class
    ["inst", (p) => p.mark().str(cmd).raw([0x69, ...latin1Bytes("os\nsystem\n")])],
    ["obj", (p) => p.mark().global("os", "system").str(cmd).raw([0x6f])],
    // EXT1 looks a callable up in copyreg's extension registry
    ["ext1", (p) => p.raw([0x82, 1]).str(cmd).raw([0x85]).reduce()],
    // an allowed callable whose argument is a refused call
    ["nested", (p) => p.global("collections", "OrderedDict").global("os", "system").str(cmd).raw([0x85]).reduce().raw([0x85]).reduce()],
    // BUILD on an allowed object with a __setstate__-style state
    ["build", (p) => p.global("collections", "OrderedDict").emptyTuple().reduce().global("os", "system").str(cmd).raw([0x85]).reduce().build()],
  ];
}

/** Hand-made hostile or malformed torch checkpoints, each with the only outcome that is valid for it. */
function torchCases(dir: string, canary: string): FuzzCase[] {
  const err: Expectation = { kind: "error" };
  const out: FuzzCase[] = [];
  for (const [name, payload] of execPayloads(canary)) {
    out.push(...bothTorch(dir, `exec-${name}`, withW((p) => payload(p.str("payload"))), [W], err));
  }
  // deep nesting: 100k nested lists next to the weights (valid, Python loads it), and a 50k-deep chain of wrapper
  // dicts {'state_dict': {'state_dict': ... {'w': tensor}}} that findStateDict descends
  const depth = 100_000;
  out.push(...bothTorch(dir, "deep-lists", withW((p) => {
    p.str("deep");
    for (let i = 0; i < depth; i++) p.emptyList();
    for (let i = 0; i < depth - 1; i++) p.append();
  }), [W], { kind: "exact", tensors: W_ONLY }));
  out.push(...bothTorch(dir, "deep-wrappers", (legacy) => {
    const p = new PickleAssembler().proto(2);
    const levels = 50_000;
    for (let i = 0; i < levels; i++) p.emptyDict().str("state_dict");
    p.emptyDict().str("w");
    pushTensor(p, W_VIEW, W, legacy).setitem();
    for (let i = 0; i < levels; i++) p.setitem();
    return p.stop().bytes();
  }, [W], { kind: "exact", tensors: W_ONLY }));
  // a dict holding itself: d = {'w': tensor}; d['state_dict'] = d
  out.push(...bothTorch(dir, "self-reference", (legacy) => {
    const p = new PickleAssembler().proto(2).emptyDict();
    const d = p.put();
    pushTensor(p.str("w"), W_VIEW, W, legacy).setitem();
    return p.str("state_dict").get(d).setitem().stop().bytes();
  }, [W], { kind: "exact", tensors: W_ONLY }));
  // a list holding itself next to the weights
  out.push(...bothTorch(dir, "self-list", withW((p) => {
    p.str("loop").emptyList();
    const l = p.put();
    p.get(l).append();
  }), [W], { kind: "exact", tensors: W_ONLY }));
  // 300k items in one APPENDS (a spread of that many arguments overflows the JS stack)
  out.push(...bothTorch(dir, "appends-300k", withW((p) => {
    p.str("many").emptyList().mark();
    for (let i = 0; i < 300_000; i++) p.int(i & 0xff);
    p.appends();
  }), [W], { kind: "exact", tensors: W_ONLY }));
  // a 1 MiB integer (LONG4): Python reads it; so must we, in linear time
  out.push(...bothTorch(dir, "long4-1mib", withW((p) => p.str("big").long4(new Uint8Array(1 << 20).fill(0x5a))), [W], { kind: "exact", tensors: W_ONLY }));
  // text opcodes with junk: INT '12abc', LONG '12abcL', FLOAT '1.5abc', GET '0abc', and an INT of 5000 digits
  // (past Python's 4300-digit limit for int(str))
  for (const [name, op, text] of [["int", "I", "12abc"], ["long", "L", "12abcL"], ["float", "F", "1.5abc"], ["int-5000-digits", "I", "7".repeat(5000)]] as const) {
    out.push(...bothTorch(dir, `text-${name}`, withW((p) => p.str("junk").textOp(op, text)), [W], err));
  }
  out.push(...bothTorch(dir, "text-get", withW((p) => p.str("x").emptyList().textOp("p", "0").str("y").textOp("g", "0abc")), [W], err));
  // negative sizes: a dimension of -1, a storage of -4 elements, a negative offset and stride
  const view = (v: Partial<ViewSpec>): ViewSpec => ({ ...W_VIEW, ...v });
  out.push(...bothTorch(dir, "negative-dim", (legacy) => stateDictPickle([W], [view({ shape: [-1] })], legacy), [W], err));
  out.push(...bothTorch(dir, "negative-offset", (legacy) => stateDictPickle([W], [view({ offset: -1, shape: [2] })], legacy), [W], err));
  out.push(...bothTorch(dir, "negative-stride", (legacy) => stateDictPickle([W], [view({ offset: 2, stride: [-1] })], legacy), [W], err));
  const negativeStorage = (legacy: boolean) => {
    const p = new PickleAssembler().proto(2).global("collections", "OrderedDict").emptyTuple().reduce().mark();
    return pushTensor(p.str("w"), W_VIEW, W, legacy, -4).setitems().stop().bytes();
  };
  out.push(...bothTorch(dir, "negative-storage-size", negativeStorage, [W], err));
  out.push({ id: "negative-storage-count-legacy", format: "pth", expect: err, bytes: torchLegacyBytes(negativeStorage(true), [W], new Map([["0", -4n]])).bytes });
  // a 1-element storage viewed as float64 [20000, 20000] with strides 0: 3.2 GB if materialised
  const one: StorageSpec = { key: "0", dtype: "float64", bytes: new Uint8Array(8) };
  out.push(...bothTorch(dir, "stride-0", (legacy) => stateDictPickle([one], [{ name: "w", storage: "0", offset: 0, shape: [20000, 20000], stride: [0, 0] }], legacy), [one], err));
  // views past the end of their storage
  out.push(...bothTorch(dir, "view-out-of-bounds", (legacy) => stateDictPickle([W], [view({ offset: 1 })], legacy), [W], err));
  // one storage key declared with two dtypes
  out.push(...bothTorch(dir, "storage-two-dtypes", (legacy) => stateDictPickle([W], [W_VIEW], legacy, (p) => {
    pushTensor(p.str("v"), view({ shape: [3] }), { ...W, dtype: "int32" }, legacy);
  }), [W], err));
  // 20k transposed views of one 64 KiB storage: 1.3 GB of copies from a 300 KB file
  const big: StorageSpec = { key: "0", dtype: "float32", bytes: new Uint8Array(64 * 256 * 4) };
  out.push(...bothTorch(dir, "many-views", (legacy) => {
    const views = Array.from({ length: 20_000 }, (_, i) => ({ name: `t${i}`, storage: "0", offset: 0, shape: [256, 64], stride: [1, 256] }));
    return stateDictPickle([big], views, legacy);
  }, [big], err));
  // OrderedDict(d) on one 3000-item dict, 3000 times: 9M dict entries from a 40 KB pickle
  out.push(...bothTorch(dir, "copy-blowup", withW((p) => {
    p.str("copies").emptyDict().mark();
    for (let i = 0; i < 3000; i++) p.int(i).none();
    p.setitems();
    const d = p.put();
    p.pop().emptyList().mark();
    for (let i = 0; i < 3000; i++) p.global("collections", "OrderedDict").get(d).raw([0x85]).reduce();
    p.appends();
  }), [W], err));
  // two tensors that would get one name ('a.b' as a key, and 'b' inside 'a')
  out.push(...bothTorch(dir, "name-collision", withW((p, legacy) => {
    pushTensor(p.str("a.b"), W_VIEW, W, legacy);
    p.str("a").emptyDict();
    pushTensor(p.str("b"), W_VIEW, W, legacy).setitem();
  }), [W], err));
  return out;
}

function safetensorsFile(header: object, data: Uint8Array, rawHeader?: string): Uint8Array {
  const json = new TextEncoder().encode(rawHeader ?? JSON.stringify(header));
  const len = new Uint8Array(8);
  new DataView(len.buffer).setBigUint64(0, BigInt(json.length), true);
  return concat([len, json, data]);
}

function safetensorsCases(): FuzzCase[] {
  const err: Expectation = { kind: "error" };
  const f32 = (begin: number, end: number, shape = [(end - begin) / 4]) => ({ dtype: "F32", shape, data_offsets: [begin, end] });
  const data = new Uint8Array(16).map((_, i) => i);
  const cases: Array<[string, Uint8Array]> = [
    ["duplicated-offsets", safetensorsFile({ a: f32(0, 8), b: f32(0, 8), c: f32(8, 16) }, data)],
    ["overlapping-offsets", safetensorsFile({ a: f32(0, 12), b: f32(4, 16) }, data)],
    ["gap", safetensorsFile({ a: f32(0, 4), b: f32(8, 16) }, data)],
    ["trailing-bytes", safetensorsFile({ a: f32(0, 8) }, data)],
    ["negative-dim", safetensorsFile({ a: f32(0, 16, [-4]) }, data)],
    ["offsets-past-end", safetensorsFile({ a: f32(0, 16), b: f32(16, 24) }, data)],
    ["metadata-not-object", safetensorsFile({ __metadata__: "xy", a: f32(0, 16) }, data)],
    ["tensor-not-object", safetensorsFile({ a: 5 }, data)],
    ["huge-dim", safetensorsFile({ a: { dtype: "F32", shape: [2 ** 62], data_offsets: [0, 16] } }, data)],
    ["duplicate-key", safetensorsFile({}, data, '{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}')],
  ];
  return cases.map(([id, bytes]) => ({ id: `safetensors-${id}`, format: "safetensors", bytes, expect: err }));
}

function npyFile(header: string, data: Uint8Array): Uint8Array {
  const dict = header + " ".repeat((64 - ((10 + header.length + 1) % 64)) % 64) + "\n";
  const head = new Uint8Array(10 + dict.length);
  head.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]);
  new DataView(head.buffer).setUint16(8, dict.length, true);
  head.set(latin1Bytes(dict), 10);
  return concat([head, data]);
}

function npyCases(): FuzzCase[] {
  const err: Expectation = { kind: "error" };
  const data = new Uint8Array(64 * 4).fill(1);
  const h = (descr: string, shape: string) => `{'descr': '${descr}', 'fortran_order': False, 'shape': ${shape}, }`;
  const cases: Array<[string, string]> = [
    ["descr-constructor", h("<constructor", "(4,)")],
    ["descr-proto", h("<__proto__", "(4,)")],
    ["descr-object", h("|O", "(4,)")],
    ["shape-hex", h("<f4", "(0x10,)")],
    ["shape-float", h("<f4", "(1e1,)")],
    ["shape-spaces", h("<f4", "(4 4 4 4)")],
    ["shape-negative", h("<f4", "(-1,)")],
    ["shape-not-tuple", h("<f4", "4")],
    ["extra-key", `{'descr': '<f4', 'fortran_order': False, 'shape': (4,), 'x': 1, }`],
    ["missing-key", `{'descr': '<f4', 'shape': (4,), }`],
  ];
  return cases.map(([id, header]) => ({ id: `npy-${id}`, format: "npy", bytes: npyFile(header, data), expect: err }));
}

/** A raw-deflate stream that inflates to `blocks` MiB of zeros from about a KiB per MiB (full-flush blocks repeat). */
function zeroBomb(blocks: number): Uint8Array {
  const block = new Uint8Array(zlib.deflateRawSync(new Uint8Array(1 << 20), { finishFlush: zlib.constants.Z_FULL_FLUSH }));
  const parts = new Array<Uint8Array>(blocks).fill(block);
  parts.push(Uint8Array.from([0x03, 0x00])); // a final, empty, fixed-Huffman block
  return concat(parts);
}

/** Rewrite the central directory record and local header of an npz's first entry (method, sizes, CRC). */
function patchFirstEntry(bytes: Uint8Array, patch: { method?: number; compressed?: Uint8Array; size?: number; flags?: number }): Uint8Array {
  const [m] = zipMembers(bytes).values();
  const body = patch.compressed ?? bytes.subarray(m.start, m.end);
  const out = concat([bytes.subarray(0, m.start), body, bytes.subarray(m.end)]);
  const shift = body.length - (m.end - m.start);
  const dv = new DataView(out.buffer);
  const central = m.central + shift;
  if (patch.method !== undefined) (dv.setUint16(m.local + 8, patch.method, true), dv.setUint16(central + 10, patch.method, true));
  if (patch.flags !== undefined) (dv.setUint16(m.local + 6, patch.flags, true), dv.setUint16(central + 8, patch.flags, true));
  dv.setUint32(m.local + 18, body.length, true);
  dv.setUint32(central + 20, body.length, true);
  if (patch.size !== undefined) (dv.setUint32(m.local + 22, patch.size, true), dv.setUint32(central + 24, patch.size, true));
  // later entries' local headers and the central directory moved by `shift`
  const eocd = out.length - 22;
  let p = dv.getUint32(eocd + 16, true) + shift;
  dv.setUint32(eocd + 16, p, true);
  for (let n = dv.getUint16(eocd + 10, true); n > 0; n--) {
    if (p !== central) dv.setUint32(p + 42, dv.getUint32(p + 42, true) + shift, true);
    p += 46 + dv.getUint16(p + 28, true) + dv.getUint16(p + 30, true) + dv.getUint16(p + 32, true);
  }
  return out;
}

function zipCases(dir: string): FuzzCase[] {
  const err: Expectation = { kind: "error" };
  const arrays: Record<string, HostTensor> = {
    a: { dtype: "float32", shape: [2], data: new Float32Array([1, 2]) },
    b: { dtype: "uint8", shape: [3], data: new Uint8Array([1, 2, 3]) },
  };
  const npz = written(dir, "zip.npz", (f) => writeNpz(f, arrays));
  const eocd = npz.length - 22;
  const withCount = (n: number) => {
    const b = npz.slice();
    new DataView(b.buffer).setUint16(eocd + 8, n, true);
    new DataView(b.buffer).setUint16(eocd + 10, n, true);
    return b;
  };
  const bomb = zeroBomb(1536);
  const cases: Array<[string, Uint8Array]> = [
    ["count-0", withCount(0)],
    ["count-minus-1", withCount(1)],
    // 1.5 GiB of zeros behind a small declared size, and behind an honest one above the loader's limit
    ["bomb-declared-small", patchFirstEntry(npz, { method: 8, compressed: bomb, size: 1000 })],
    ["bomb-declared-honest", patchFirstEntry(npz, { method: 8, compressed: bomb, size: 1536 * 2 ** 20 })],
    ["corrupt-deflate", patchFirstEntry(npz, { method: 8, compressed: Uint8Array.from([0xff, 0xff, 0xff, 0xff, 0x00, 0x11]), size: 100 })],
    ["stored-size-mismatch", patchFirstEntry(npz, { size: 5000 })],
    ["encrypted", patchFirstEntry(npz, { flags: 1 })],
    ["unknown-method", patchFirstEntry(npz, { method: 12 })],
  ];
  // the local header names another file than the central directory
  const renamed = npz.slice();
  renamed[[...zipMembers(npz).values()][0].local + 30] = "c".charCodeAt(0);
  cases.push(["local-name-differs", renamed]);
  // the same name twice
  const npy = concat(encodeNpy(arrays.a, "a"));
  const dup = written(dir, "dup.npz", (f) => writeZip(f, [{ name: "a.npy", data: npy }, { name: "a.npy", data: npy }]));
  cases.push(["duplicate-names", dup]);
  return cases.map(([id, bytes]) => ({ id: `npz-${id}`, format: "npz", bytes, expect: err }));
}

/** The pristine base files (loads must equal them) and every hand-made hostile case. `canary` is the file an
 * executed payload would create. */
export function handMadeCases(dir: string, bases: BaseFile[], canary: string): FuzzCase[] {
  return [
    ...bases.map((b): FuzzCase => ({ id: `valid-${b.id}`, format: b.format, bytes: b.bytes, expect: { kind: "exact", tensors: b.tensors } })),
    ...torchCases(dir, canary),
    ...safetensorsCases(),
    ...npyCases(),
    ...zipCases(dir),
  ];
}
