import * as fs from "fs";
import * as path from "path";
import { ELEMENT_SIZE } from "./file_bytes";
import { DType } from "./host_tensor";
import { STORAGE_DTYPE } from "./pth";
import { writeZip } from "./zip";

// Pickles and torch checkpoints written opcode by opcode, for tests and the fuzz corpus (lib/io/fuzz_corpus.ts):
// the project has no torch.save writer, and hostile files need opcodes no writer would emit in that order.

// ---- pickles, opcode by opcode ----------------------------------------------------------------------------------

export const latin1Bytes = (s: string): number[] => Array.from(s, (c) => c.charCodeAt(0) & 0xff);

/** Two's complement, little-endian, as few bytes as hold the sign (pickle's LONG1/LONG4 encoding). */
function longBytes(v: bigint): number[] {
  const out: number[] = [];
  let x = v;
  for (;;) {
    out.push(Number(x & 0xffn));
    x >>= 8n;
    const signBit = (out[out.length - 1] & 0x80) !== 0;
    if ((x === 0n && !signBit) || (x === -1n && signBit)) return out;
  }
}

/** Writes pickle opcodes; each method appends one opcode (or a fixed short sequence) and returns this. */
export class PickleAssembler {
  private readonly out: number[] = [];
  private memo = 0;
  raw(bytes: ArrayLike<number>): this {
    for (let i = 0; i < bytes.length; i++) this.out.push(bytes[i]);
    return this;
  }
  /** A text opcode: the opcode, then `line` and a newline (INT, LONG, FLOAT, GET, PUT take their argument so). */
  textOp(op: string, line: string): this {
    return this.raw([op.charCodeAt(0), ...latin1Bytes(line), 0x0a]);
  }
  proto(v = 2): this {
    return this.raw([0x80, v]);
  }
  int(v: number | bigint): this {
    const n = typeof v === "bigint" ? v : BigInt(v);
    if (n >= 0n && n < 256n) return this.raw([0x4b, Number(n)]);
    if (n >= 0n && n < 65536n) return this.raw([0x4d, Number(n) & 0xff, Number(n) >> 8]);
    if (n >= -(2n ** 31n) && n < 2n ** 31n) {
      const b = new Uint8Array(4);
      new DataView(b.buffer).setInt32(0, Number(n), true);
      return this.raw([0x4a, ...b]);
    }
    const bytes = longBytes(n);
    return this.raw([0x8a, bytes.length, ...bytes]);
  }
  /** LONG4 with exactly these little-endian bytes. */
  long4(bytes: Uint8Array): this {
    const len = new Uint8Array(4);
    new DataView(len.buffer).setUint32(0, bytes.length, true);
    return this.raw([0x8b, ...len]).raw(bytes);
  }
  str(s: string): this {
    const b = new TextEncoder().encode(s);
    const len = new Uint8Array(4);
    new DataView(len.buffer).setUint32(0, b.length, true);
    return this.raw([0x58, ...len]).raw(b);
  }
  none(): this {
    return this.raw([0x4e]);
  }
  bool(b: boolean): this {
    return this.raw([b ? 0x88 : 0x89]);
  }
  global(module: string, name: string): this {
    return this.raw([0x63, ...latin1Bytes(`${module}\n${name}\n`)]);
  }
  mark(): this {
    return this.raw([0x28]);
  }
  /** MARK ... TUPLE, LIST: the items pushed since the mark. */
  tuple(): this {
    return this.raw([0x74]);
  }
  list(): this {
    return this.raw([0x6c]);
  }
  emptyTuple(): this {
    return this.raw([0x29]);
  }
  emptyList(): this {
    return this.raw([0x5d]);
  }
  emptyDict(): this {
    return this.raw([0x7d]);
  }
  setitem(): this {
    return this.raw([0x73]);
  }
  setitems(): this {
    return this.raw([0x75]);
  }
  append(): this {
    return this.raw([0x61]);
  }
  appends(): this {
    return this.raw([0x65]);
  }
  reduce(): this {
    return this.raw([0x52]);
  }
  build(): this {
    return this.raw([0x62]);
  }
  binpersid(): this {
    return this.raw([0x51]);
  }
  pop(): this {
    return this.raw([0x30]);
  }
  /** Memoise the top of the stack; returns its memo index (LONG_BINPUT, so any count works). */
  put(): number {
    const i = this.memo++;
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, i, true);
    this.raw([0x72, ...b]);
    return i;
  }
  get(i: number): this {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, i, true);
    return this.raw([0x6a, ...b]);
  }
  stop(): this {
    return this.raw([0x2e]);
  }
  bytes(): Uint8Array {
    return Uint8Array.from(this.out);
  }
}

// ---- torch checkpoints ------------------------------------------------------------------------------------------

export interface StorageSpec {
  key: string;
  dtype: DType;
  bytes: Uint8Array;
}

/** A tensor as torch.save describes it: a strided window (in elements) onto a storage. */
export interface ViewSpec {
  name: string;
  storage: string;
  offset: number;
  shape: number[];
  stride: number[];
}

const STORAGE_CLASS = new Map(Object.entries(STORAGE_DTYPE).map(([cls, dtype]) => [dtype, cls]));

/** Push torch's persistent id of a storage (legacy files add view metadata, None for a whole storage). */
export function pushStorage(p: PickleAssembler, s: StorageSpec, legacy: boolean, numelOverride?: number): PickleAssembler {
  p.mark().str("storage").global("torch", STORAGE_CLASS.get(s.dtype)!).str(s.key).str("cpu");
  p.int(numelOverride ?? s.bytes.length / ELEMENT_SIZE[s.dtype]);
  if (legacy) p.none();
  return p.tuple().binpersid();
}

/** Push `_rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())`. */
export function pushTensor(p: PickleAssembler, v: ViewSpec, s: StorageSpec, legacy: boolean, storageNumel?: number): PickleAssembler {
  p.global("torch._utils", "_rebuild_tensor_v2").mark();
  pushStorage(p, s, legacy, storageNumel).int(v.offset);
  p.mark();
  v.shape.forEach((d) => p.int(d));
  p.tuple().mark();
  v.stride.forEach((d) => p.int(d));
  p.tuple().bool(false).global("collections", "OrderedDict").emptyTuple().reduce();
  return p.tuple().reduce();
}

/**
 * A whole state-dict pickle: OrderedDict(name -> tensor) in view order; `extra` may push more (key, value) pairs
 * into the same SETITEMS.
 */
export function stateDictPickle(storages: StorageSpec[], views: ViewSpec[], legacy: boolean, extra?: (p: PickleAssembler) => void): Uint8Array {
  const byKey = new Map(storages.map((s) => [s.key, s]));
  const p = new PickleAssembler().proto(2).global("collections", "OrderedDict").emptyTuple().reduce().mark();
  for (const v of views) pushTensor(p.str(v.name), v, byKey.get(v.storage)!, legacy);
  extra?.(p);
  return p.setitems().stop().bytes();
}

/** A zip-format torch checkpoint (torch.save since 1.6) around a data.pkl; storages stored as archive/data/<key>. */
export function torchZipBytes(dataPkl: Uint8Array, storages: StorageSpec[], dir: string): Uint8Array {
  const file = path.join(dir, `.zip-${process.pid}-${Math.random().toString(36).slice(2)}.pth`);
  writeZip(file, [
    { name: "archive/data.pkl", data: dataPkl },
    ...storages.map((s) => ({ name: `archive/data/${s.key}`, data: s.bytes })),
    { name: "archive/version", data: new TextEncoder().encode("3\n") },
    { name: "archive/byteorder", data: new TextEncoder().encode("little") },
  ]);
  const bytes = new Uint8Array(fs.readFileSync(file));
  fs.rmSync(file);
  return bytes;
}

const LEGACY_MAGIC = 0x1950a86a20f9469cfc6cn;

/** A legacy torch checkpoint: magic, protocol, sys info, the object pickle, the key list, then the storages
 * (an int64 element count, then the bytes) in key order. Returns the bytes and where each storage's data starts. */
export function torchLegacyBytes(objectPkl: Uint8Array, storages: StorageSpec[], numelOverride = new Map<string, bigint>()): { bytes: Uint8Array; dataAt: Map<string, number> } {
  const head = [
    new PickleAssembler().proto(2).int(LEGACY_MAGIC).stop().bytes(),
    new PickleAssembler().proto(2).int(1001).stop().bytes(),
    new PickleAssembler().proto(2).emptyDict().mark().str("protocol_version").int(1001).str("little_endian").bool(true)
      .str("type_sizes").emptyDict().mark().str("short").int(2).str("int").int(4).str("long").int(4).setitems().setitems().stop().bytes(),
    objectPkl,
    (() => {
      const p = new PickleAssembler().proto(2).emptyList().mark();
      storages.forEach((s) => p.str(s.key));
      return p.appends().stop().bytes();
    })(),
  ];
  const parts: Uint8Array[] = [...head];
  const dataAt = new Map<string, number>();
  let at = head.reduce((a, b) => a + b.length, 0);
  for (const s of storages) {
    const count = new Uint8Array(8);
    new DataView(count.buffer).setBigInt64(0, numelOverride.get(s.key) ?? BigInt(s.bytes.length / ELEMENT_SIZE[s.dtype]), true);
    parts.push(count, s.bytes);
    dataAt.set(s.key, at + 8);
    at += 8 + s.bytes.length;
  }
  return { bytes: concat(parts), dataAt };
}

export function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((a, b) => a + b.length, 0));
  parts.reduce((o, b) => (out.set(b, o), o + b.length), 0);
  return out;
}
