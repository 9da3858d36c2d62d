import * as fs from "fs";
import * as path from "path";
import { Rng } from "../core/random";
import { ELEMENT_SIZE, typedView } from "./file_bytes";
import { DType, HostTensor, numel } from "./host_tensor";
import { writeNpy, writeNpz } from "./npy";
import { stateDictPickle, StorageSpec, torchLegacyBytes, torchZipBytes, ViewSpec } from "./pickle_assembler";
import { writeSafetensors } from "./safetensors";
import { crc32 } from "./zip";

// The corpus of the loader fuzz test (lib/io/fuzz.ts runs it): valid files of every format written here (by the
// project's writers, or, for torch checkpoints, from pickles assembled opcode by opcode), then mutated at random:
// truncations, byte flips, huge or negative length fields, and pickles changed with their zip CRC fixed so that
// the unpickler sees them. The hostile files made by hand are in lib/io/fuzz_hostile.ts. Every case says which
// outcomes are valid for it (Expectation).

export type LoaderFormat = "safetensors" | "npy" | "npz" | "pth";

/** A tensor as the fuzz compares it: raw little-endian bytes. */
export interface TensorValue {
  dtype: DType;
  shape: number[];
  bytes: Uint8Array;
}
export type TensorSet = Map<string, TensorValue>;

/**
 * What a case may produce. Besides these, nothing may hang, exceed the memory bound or run a payload.
 * - error: only the project's CheckpointError naming the file.
 * - exact: only a load equal to `tensors` (names, dtypes, shapes, bytes); an error is a false rejection.
 * - open (a mutation of bytes the format does not checksum, in its header or structure): an error, or a load
 *   that is identical to `original`, or equal to `flipped` (the original with the mutated data bytes), or a
 *   re-reading of the file: every tensor well-formed and every element's bytes present in `sources` (the mutated
 *   file, and the uncompressed entries a CRC vouches for), contiguously for the formats that store tensors whole.
 */
export type Expectation =
  | { kind: "error" }
  | { kind: "exact"; tensors: TensorSet }
  | { kind: "open"; original: TensorSet; flipped?: TensorSet; sources: Uint8Array[]; contiguous: boolean };

export interface FuzzCase {
  /** Unique, file-name safe, says what was done, e.g. "flip-npz-stored-17". */
  id: string;
  format: LoaderFormat;
  bytes: Uint8Array;
  expect: Expectation;
}

/** The bytes of a view, element by element (the fuzz's own reading of a strided window, independent of pth.ts). */
export function viewValue(s: StorageSpec, v: ViewSpec): TensorValue {
  const size = ELEMENT_SIZE[s.dtype];
  const n = numel(v.shape);
  const bytes = new Uint8Array(n * size);
  for (let i = 0; i < n; i++) {
    let rest = i;
    let at = v.offset;
    for (let d = v.shape.length - 1; d >= 0; d--) {
      at += (rest % v.shape[d]) * v.stride[d];
      rest = Math.floor(rest / v.shape[d]);
    }
    bytes.set(s.bytes.subarray(at * size, (at + 1) * size), i * size);
  }
  return { dtype: s.dtype, shape: [...v.shape], bytes };
}

export function viewsValue(storages: StorageSpec[], views: ViewSpec[]): TensorSet {
  const byKey = new Map(storages.map((s) => [s.key, s]));
  return new Map(views.map((v) => [v.name, viewValue(byKey.get(v.storage)!, v)]));
}

export function hostValue(t: HostTensor): TensorValue {
  return { dtype: t.dtype, shape: [...t.shape], bytes: new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength).slice() };
}

// ---- the valid files --------------------------------------------------------------------------------------------

/** A byte range of a file and what it holds. */
export interface Region {
  start: number;
  end: number;
  /** data: raw tensor or storage bytes nothing checksums; crc: bytes of a zip entry (its CRC-32 covers them). */
  kind: "data" | "crc";
  /** Whose bytes: a tensor (contiguous formats) or a storage (torch), at byte `start` of it. */
  owner: string;
}

export interface BaseFile {
  id: string;
  format: LoaderFormat;
  bytes: Uint8Array;
  /** What loading the unmutated file gives. */
  tensors: TensorSet;
  /** Data and CRC-covered ranges; everything else is header or structure. */
  regions: Region[];
  /** Torch checkpoints: the storages and views, to recompute tensors after a data byte changed. */
  torch?: { storages: StorageSpec[]; views: ViewSpec[] };
  /** Offsets of length/size/offset/count fields, and their width in bytes, for huge-length mutations. */
  lengths: Array<{ at: number; width: 2 | 4 | 8 }>;
  /** Zip-format torch checkpoints: the data.pkl entry, so a mutated pickle can be re-sealed with a fixed CRC. */
  pickleEntry?: { localHeader: number; centralHeader: number; start: number; end: number };
}

function randomBytes(rng: Rng, n: number): Uint8Array {
  return Uint8Array.from({ length: n }, () => rng.int(256));
}

function tensor(rng: Rng, dtype: DType, shape: number[]): TensorValue {
  const bytes = randomBytes(rng, numel(shape) * ELEMENT_SIZE[dtype]);
  // bool storage holds 0 or 1 only
  if (dtype === "bool") bytes.forEach((b, i) => (bytes[i] = b & 1));
  return { dtype, shape, bytes };
}

function toHost(v: TensorValue): HostTensor {
  return { dtype: v.dtype, shape: [...v.shape], data: typedView(v.dtype, v.bytes.slice()) };
}

function hostRecord(set: TensorSet): Record<string, HostTensor> {
  const out: Record<string, HostTensor> = Object.create(null);
  for (const [k, v] of set) out[k] = toHost(v);
  return out;
}

const u16 = (b: Uint8Array, at: number) => b[at] | (b[at + 1] << 8);
const u32 = (b: Uint8Array, at: number) => new DataView(b.buffer, b.byteOffset).getUint32(at, true);

/** Where each member of a zip our writer made lies: local header, central header, data range. */
export function zipMembers(b: Uint8Array): Map<string, { local: number; central: number; start: number; end: number }> {
  const out = new Map<string, { local: number; central: number; start: number; end: number }>();
  const eocd = b.length - 22;
  let p = u32(b, eocd + 16);
  for (let n = u16(b, eocd + 10); n > 0; n--) {
    const nameLen = u16(b, p + 28);
    const name = new TextDecoder().decode(b.subarray(p + 46, p + 46 + nameLen));
    const local = u32(b, p + 42);
    const start = local + 30 + u16(b, local + 26) + u16(b, local + 28);
    out.set(name, { local, central: p, start, end: start + u32(b, p + 20) });
    p += 46 + nameLen + u16(b, p + 30) + u16(b, p + 32);
  }
  return out;
}

/** The size/offset/count fields of a zip our writer made (local and central headers, end record). */
function zipLengths(b: Uint8Array): Array<{ at: number; width: 2 | 4 | 8 }> {
  const out: Array<{ at: number; width: 2 | 4 | 8 }> = [];
  for (const m of zipMembers(b).values()) {
    out.push({ at: m.local + 18, width: 4 }, { at: m.local + 22, width: 4 }, { at: m.local + 26, width: 2 }, { at: m.local + 28, width: 2 });
    out.push({ at: m.central + 20, width: 4 }, { at: m.central + 24, width: 4 }, { at: m.central + 28, width: 2 }, { at: m.central + 30, width: 2 }, { at: m.central + 42, width: 4 });
  }
  const eocd = b.length - 22;
  out.push({ at: eocd + 8, width: 2 }, { at: eocd + 10, width: 2 }, { at: eocd + 12, width: 4 }, { at: eocd + 16, width: 4 });
  return out;
}

/** The project's writers put each file in `dir` first: the corpus starts from what they really write. */
export function written(dir: string, name: string, write: (file: string) => void): Uint8Array {
  const file = path.join(dir, name);
  write(file);
  const bytes = new Uint8Array(fs.readFileSync(file));
  fs.rmSync(file);
  return bytes;
}

function safetensorsBase(dir: string, rng: Rng): BaseFile {
  const set: TensorSet = new Map([
    ["__proto__", tensor(rng, "float32", [2, 3])],
    ["constructor", tensor(rng, "int64", [2])],
    ["b.bias", tensor(rng, "float16", [3])],
    ["u", tensor(rng, "uint8", [5])],
    ["bf", tensor(rng, "bfloat16", [2])],
    ["empty", tensor(rng, "float32", [0, 2])],
  ]);
  const bytes = written(dir, "base.safetensors", (f) => writeSafetensors(f, hostRecord(set), Object.fromEntries([["__proto__", "meta"], ["note", "fuzz"]])));
  const headerLen = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + headerLen))) as Record<string, { data_offsets: number[] }>;
  const regions: Region[] = Object.entries(header)
    .filter(([k]) => k !== "__metadata__")
    .map(([k, e]) => ({ start: 8 + headerLen + e.data_offsets[0], end: 8 + headerLen + e.data_offsets[1], kind: "data" as const, owner: k }))
    .filter((r) => r.end > r.start);
  return { id: "safetensors", format: "safetensors", bytes, tensors: set, regions, lengths: [{ at: 0, width: 8 }] };
}

function npyBase(dir: string, rng: Rng): BaseFile {
  const x = tensor(rng, "float32", [2, 3]);
  const bytes = written(dir, "base.npy", (f) => writeNpy(f, toHost(x)));
  const start = bytes.length - x.bytes.length;
  return { id: "npy", format: "npy", bytes, tensors: new Map([["x", x]]), regions: [{ start, end: bytes.length, kind: "data", owner: "x" }], lengths: [{ at: 8, width: 2 }] };
}

function npzBase(dir: string, rng: Rng, compress: boolean): BaseFile {
  const set: TensorSet = new Map([
    ["__proto__", tensor(rng, "float32", [2, 2])],
    ["a", tensor(rng, "int32", [3])],
    ["constructor", tensor(rng, "uint8", [4])],
  ]);
  const bytes = written(dir, "base.npz", (f) => writeNpz(f, hostRecord(set), { compress }));
  const regions: Region[] = [];
  for (const [name, m] of zipMembers(bytes)) {
    // the CRC-32 covers the whole .npy, tensor bytes included: a flipped byte there must be caught
    const owner = name.slice(0, -4);
    regions.push({ start: m.start, end: m.end, kind: "crc", owner });
  }
  return { id: compress ? "npz-deflated" : "npz-stored", format: "npz", bytes, tensors: set, regions, lengths: zipLengths(bytes) };
}

/** The torch content of both pth base files: three storages, whole, transposed, offset and strided views. */
function torchContent(rng: Rng): { storages: StorageSpec[]; views: ViewSpec[] } {
  const storages: StorageSpec[] = [
    { key: "0", dtype: "float32", bytes: randomBytes(rng, 6 * 4) },
    { key: "1", dtype: "int64", bytes: randomBytes(rng, 3 * 8) },
    { key: "2", dtype: "float16", bytes: randomBytes(rng, 4 * 2) },
  ];
  const views: ViewSpec[] = [
    { name: "layer.weight", storage: "0", offset: 0, shape: [2, 3], stride: [3, 1] },
    { name: "layer.weight_t", storage: "0", offset: 0, shape: [3, 2], stride: [1, 3] },
    { name: "__proto__", storage: "1", offset: 0, shape: [3], stride: [1] },
    { name: "constructor", storage: "2", offset: 0, shape: [2, 2], stride: [2, 1] },
    { name: "part", storage: "0", offset: 1, shape: [2], stride: [2] },
  ];
  return { storages, views };
}

function pthZipBase(dir: string, rng: Rng): BaseFile {
  const { storages, views } = torchContent(rng);
  const bytes = torchZipBytes(stateDictPickle(storages, views, false), storages, dir);
  const members = zipMembers(bytes);
  const regions: Region[] = [...members].map(([name, m]) => ({ start: m.start, end: m.end, kind: "crc" as const, owner: name }));
  const pkl = members.get("archive/data.pkl")!;
  return {
    id: "pth-zip", format: "pth", bytes, tensors: viewsValue(storages, views), regions, torch: { storages, views }, lengths: zipLengths(bytes),
    pickleEntry: { localHeader: pkl.local, centralHeader: pkl.central, start: pkl.start, end: pkl.end },
  };
}

function pthLegacyBase(rng: Rng): BaseFile {
  const { storages, views } = torchContent(rng);
  const { bytes, dataAt } = torchLegacyBytes(stateDictPickle(storages, views, true), storages);
  const regions: Region[] = storages.map((s) => ({ start: dataAt.get(s.key)!, end: dataAt.get(s.key)! + s.bytes.length, kind: "data" as const, owner: s.key }));
  const lengths = storages.map((s) => ({ at: dataAt.get(s.key)! - 8, width: 8 as const }));
  return { id: "pth-legacy", format: "pth", bytes, tensors: viewsValue(storages, views), regions, torch: { storages, views }, lengths };
}

/** One valid file of every format and container variant, written into (and removed from) `dir`. */
export function baseFiles(dir: string, seed: number): BaseFile[] {
  const rng = new Rng(seed);
  return [safetensorsBase(dir, rng), npyBase(dir, rng), npzBase(dir, rng, false), npzBase(dir, rng, true), pthZipBase(dir, rng), pthLegacyBase(rng)];
}

// ---- random mutations -------------------------------------------------------------------------------------------

/** The original tensors with every flipped byte that falls in a data region applied. */
function withDataFlips(base: BaseFile, mutated: Uint8Array, positions: number[]): TensorSet {
  const hit = base.regions.filter((r) => r.kind === "data" && positions.some((p) => p >= r.start && p < r.end));
  if (base.torch) {
    const storages = base.torch.storages.map((s) => {
      const r = hit.find((h) => h.owner === s.key);
      return r ? { ...s, bytes: mutated.slice(r.start, r.end) } : s;
    });
    return viewsValue(storages, base.torch.views);
  }
  const out: TensorSet = new Map(base.tensors);
  for (const r of hit) out.set(r.owner, { ...base.tensors.get(r.owner)!, bytes: mutated.slice(r.start, r.end) });
  return out;
}

function openExpectation(base: BaseFile, mutated: Uint8Array, positions: number[]): Expectation {
  const crcSources = base.format === "npz" || base.id === "pth-zip" ? [...base.tensors.values()].map((t) => t.bytes) : [];
  const storageSources = base.torch ? base.torch.storages.map((s) => s.bytes) : [];
  return {
    kind: "open",
    original: base.tensors,
    flipped: withDataFlips(base, mutated, positions),
    sources: [mutated, ...crcSources, ...(base.id === "pth-zip" ? storageSources : [])],
    contiguous: base.format !== "pth",
  };
}

/** Flip bytes at distinct positions (XOR with a non-zero value) and say what is valid afterwards. */
function flipCase(base: BaseFile, rng: Rng, count: number, id: string): FuzzCase {
  const bytes = base.bytes.slice();
  const positions = new Set<number>();
  while (positions.size < count) positions.add(rng.int(bytes.length));
  for (const p of positions) bytes[p] ^= 1 + rng.int(255);
  const list = [...positions];
  const inside = (kind: Region["kind"]) => (p: number) => base.regions.some((r) => r.kind === kind && p >= r.start && p < r.end);
  let expect: Expectation;
  if (list.some(inside("crc"))) expect = { kind: "error" }; // a CRC-32 catches any change of 1-8 bytes
  else if (list.every(inside("data"))) expect = { kind: "exact", tensors: withDataFlips(base, bytes, list) };
  else expect = openExpectation(base, bytes, list);
  return { id, format: base.format, bytes, expect };
}

const HUGE: Array<(width: 2 | 4 | 8) => bigint> = [
  (w) => 2n ** BigInt(8 * w) - 1n, // all ones: -1 when read signed
  (w) => 2n ** BigInt(8 * w - 1), // the most negative when read signed
  (w) => 2n ** BigInt(8 * w - 1) - 1n,
  (w) => (w === 2 ? 0x8000n : 0xfffffff0n),
];

function lengthCase(base: BaseFile, rng: Rng, id: string): FuzzCase {
  const bytes = base.bytes.slice();
  const field = base.lengths[rng.int(base.lengths.length)];
  const value = HUGE[rng.int(HUGE.length)](field.width);
  const dv = new DataView(bytes.buffer);
  if (field.width === 2) dv.setUint16(field.at, Number(value), true);
  else if (field.width === 4) dv.setUint32(field.at, Number(value), true);
  else dv.setBigUint64(field.at, value, true);
  const positions = Array.from({ length: field.width }, (_, i) => field.at + i);
  return { id, format: base.format, bytes, expect: openExpectation(base, bytes, positions) };
}

/** Flip bytes of data.pkl inside a zip-format checkpoint and fix its CRC-32, so the unpickler sees the change. */
function resealCase(base: BaseFile, rng: Rng, id: string): FuzzCase {
  const e = base.pickleEntry!;
  const bytes = base.bytes.slice();
  const count = 1 + rng.int(3);
  for (let i = 0; i < count; i++) bytes[e.start + rng.int(e.end - e.start)] ^= 1 + rng.int(255);
  const crc = crc32(bytes.subarray(e.start, e.end));
  const dv = new DataView(bytes.buffer);
  dv.setUint32(e.localHeader + 14, crc, true);
  dv.setUint32(e.centralHeader + 16, crc, true);
  return { id, format: base.format, bytes, expect: openExpectation(base, bytes, []) };
}

function truncateCase(base: BaseFile, rng: Rng, id: string): FuzzCase {
  // half the cuts take a few bytes off the end, half keep a random prefix
  const keep = rng.uniform() < 0.5 ? base.bytes.length - 1 - rng.int(Math.min(16, base.bytes.length)) : rng.int(base.bytes.length);
  return { id, format: base.format, bytes: base.bytes.slice(0, keep), expect: { kind: "error" } };
}

/** `count` random mutations of the base files, reproducible from `seed`. */
export function randomCases(bases: BaseFile[], count: number, seed: number): FuzzCase[] {
  const rng = new Rng(seed ^ 0x5eed);
  const out: FuzzCase[] = [];
  for (let i = 0; i < count; i++) {
    const base = bases[rng.int(bases.length)];
    const kinds = base.pickleEntry ? ["truncate", "flip", "flips", "length", "reseal", "reseal"] : ["truncate", "flip", "flips", "length"];
    const kind = kinds[rng.int(kinds.length)];
    const id = `${kind}-${base.id}-${i}`;
    if (kind === "truncate") out.push(truncateCase(base, rng, id));
    else if (kind === "flip") out.push(flipCase(base, rng, 1, id));
    else if (kind === "flips") out.push(flipCase(base, rng, 2 + rng.int(7), id));
    else if (kind === "length") out.push(lengthCase(base, rng, id));
    else out.push(resealCase(base, rng, id));
  }
  return out;
}
