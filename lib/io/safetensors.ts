import * as fs from "fs";
import { CheckpointError } from "./checkpoint_error";
import { DType, HostTensor, numel, shapeStr } from "./host_tensor";
import { ELEMENT_SIZE, assertLittleEndianHost, openForRead, readAt, tensorBytes, typedView, writeAll, writeAtomic } from "./file_bytes";
import type { TensorSource } from "./tensor_source";

// safetensors (huggingface/safetensors): u64 little-endian header length N, N bytes of JSON
// {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str: str}}, then the tensors' bytes,
// offsets counted from the end of the header. Opening reads only the header; get(name) reads one byte range.
// As the reference implementation requires, the tensors' byte ranges tile the data exactly: sorted by offset, each
// starts where the previous one ended, the first at 0, the last at the end of the file (no gaps, no overlaps, no
// aliasing, no trailing bytes).

const TO_DTYPE = new Map<string, DType>([
  ["F64", "float64"], ["F32", "float32"], ["F16", "float16"], ["BF16", "bfloat16"],
  ["I64", "int64"], ["I32", "int32"], ["I16", "int16"], ["I8", "int8"], ["U8", "uint8"], ["BOOL", "bool"],
]);
const FROM_DTYPE = Object.fromEntries([...TO_DTYPE].map(([k, v]) => [v, k])) as Record<DType, string>;

/** The reference implementation refuses headers over 100 MB; a bigger one means a corrupt length. */
const MAX_HEADER = 100_000_000;

export interface SafetensorsInfo {
  dtype: DType;
  shape: number[];
  /** Byte range inside the file. */
  begin: number;
  end: number;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);
const utf8 = new TextDecoder("utf-8", { fatal: true });

export class SafetensorsFile implements TensorSource {
  readonly metadata: Record<string, string> = Object.create(null);
  private readonly infos = new Map<string, SafetensorsInfo>();
  private readonly stamp: string;

  constructor(readonly file: string) {
    assertLittleEndianHost();
    const fd = openForRead(file);
    try {
      const st = fs.fstatSync(fd);
      this.stamp = `${st.size}:${st.mtimeMs}`;
      this.parseHeader(fd, st.size);
    } finally {
      fs.closeSync(fd);
    }
  }

  private parseHeader(fd: number, size: number): void {
    const fail = (m: string, tensor?: string): never => {
      throw new CheckpointError(this.file, m, { tensor });
    };
    if (size < 8) fail(`truncated file: ${size} bytes is too short for a safetensors header`);
    const n = new DataView(readAt(fd, 0, 8, this.file, "header length").buffer).getBigUint64(0, true);
    if (n > BigInt(MAX_HEADER)) fail(`wrong magic: header length ${n} is not plausible, not a safetensors file`);
    const headerLen = Number(n);
    const bytes = readAt(fd, 8, headerLen, this.file, "JSON header");
    let header: unknown;
    try {
      header = JSON.parse(utf8.decode(bytes));
    } catch (e) {
      return fail(`header is not valid UTF-8 JSON (${(e as Error).message}), not a safetensors file`);
    }
    if (!isObject(header)) return fail("header is not a JSON object");
    const dataStart = 8 + headerLen;
    for (const [name, raw] of Object.entries(header)) {
      if (name === "__metadata__") {
        if (raw === null) continue;
        if (!isObject(raw) || !Object.values(raw).every((v) => typeof v === "string")) fail("__metadata__ should be an object of strings");
        Object.assign(this.metadata, raw);
        continue;
      }
      if (!isObject(raw)) fail("entry should be an object {dtype, shape, data_offsets}", name);
      const e = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
      const dtype = typeof e.dtype === "string" ? TO_DTYPE.get(e.dtype) : undefined;
      if (!dtype) fail(`unknown dtype '${String(e.dtype)}' (supported: ${[...TO_DTYPE.keys()].join(", ")})`, name);
      const shape = e.shape;
      const offs = e.data_offsets;
      const naturals = (v: unknown, len?: number): v is number[] =>
        Array.isArray(v) && (len === undefined || v.length === len) && v.every((d) => Number.isSafeInteger(d) && d >= 0);
      if (!naturals(shape)) return fail(`shape ${JSON.stringify(shape)} is not a list of non-negative integers`, name);
      if (!naturals(offs, 2) || offs[1] < offs[0]) return fail(`data_offsets ${JSON.stringify(offs)} should be [begin, end] with 0 <= begin <= end`, name);
      const [b, en] = offs;
      const want = numel(shape) * ELEMENT_SIZE[dtype!];
      if (!Number.isSafeInteger(want) || en - b !== want) fail(`${dtype}${shapeStr(shape)} needs ${want} bytes but data_offsets span ${en - b}`, name);
      this.infos.set(name, { dtype: dtype!, shape, begin: dataStart + b, end: dataStart + en });
    }
    // Sorted by offsets, tensors must be back to back from 0 to the end of the file.
    let expect = dataStart;
    for (const [name, i] of [...this.infos].sort(([, x], [, y]) => x.begin - y.begin || x.end - y.end)) {
      if (i.begin !== expect) fail(`data_offsets [${i.begin - dataStart},${i.end - dataStart}] start at ${i.begin - dataStart}, expected ${expect - dataStart}: tensors must tile the data without gaps or overlaps`, name);
      expect = i.end;
    }
    if (expect > size) fail(`truncated file: the tensors need ${expect - dataStart} bytes of data but the file holds ${size - dataStart}`);
    if (expect < size) fail(`${size - expect} bytes after the last tensor (the reference implementation refuses trailing data)`);
  }

  get source(): string {
    return this.file;
  }

  names(): string[] {
    return [...this.infos.keys()];
  }

  has(name: string): boolean {
    return this.infos.has(name);
  }

  info(name: string): SafetensorsInfo {
    const i = this.infos.get(name);
    if (!i) throw new CheckpointError(this.file, `no such tensor (the file has ${this.infos.size}: ${this.names().slice(0, 5).join(", ")}${this.infos.size > 5 ? ", ..." : ""})`, { tensor: name });
    return i;
  }

  /** Read one tensor's bytes from disk; the rest of the file is not touched. */
  get(name: string): HostTensor {
    const i = this.info(name);
    const fd = openForRead(this.file);
    try {
      const st = fs.fstatSync(fd);
      if (`${st.size}:${st.mtimeMs}` !== this.stamp) throw new CheckpointError(this.file, "file changed since its header was read; open it again");
      const bytes = readAt(fd, i.begin, i.end - i.begin, this.file, `tensor '${name}'`);
      return { dtype: i.dtype, shape: [...i.shape], data: typedView(i.dtype, bytes) };
    } finally {
      fs.closeSync(fd);
    }
  }
}

/** All tensors and the metadata of a safetensors file. */
export function readSafetensors(file: string): { tensors: Record<string, HostTensor>; metadata: Record<string, string> } {
  const f = new SafetensorsFile(file);
  // null-prototype records: a tensor may be named __proto__ or constructor
  const tensors: Record<string, HostTensor> = Object.create(null);
  for (const name of f.names()) tensors[name] = f.get(name);
  return { tensors, metadata: Object.assign(Object.create(null), f.metadata) };
}

/** A tensor to write, read only when its turn comes (so a big model is written without a second copy in memory). */
export interface LazyTensor {
  dtype: DType;
  shape: number[];
  read: () => HostTensor;
}

/** Write tensors (in the given order) and optional string metadata, atomically. */
export function writeSafetensors(file: string, tensors: Record<string, HostTensor>, metadata?: Record<string, string>): void {
  writeSafetensorsLazy(file, Object.entries(tensors).map(([name, t]) => [name, { dtype: t.dtype, shape: t.shape, read: () => t }]), metadata);
}

/** writeSafetensors for tensors produced one at a time; each read() must match its declared dtype and shape. */
export function writeSafetensorsLazy(file: string, tensors: Array<[string, LazyTensor]>, metadata?: Record<string, string>): void {
  assertLittleEndianHost();
  const header: Record<string, unknown> = Object.create(null);
  if (metadata) {
    for (const [k, v] of Object.entries(metadata)) if (typeof v !== "string") throw new Error(`${file}: metadata '${k}' must be a string`);
    header.__metadata__ = metadata;
  }
  let offset = 0;
  for (const [name, t] of tensors) {
    if (name === "__metadata__") throw new Error(`${file}: '__metadata__' is reserved and cannot name a tensor`);
    if (name in header) throw new Error(`${file}: tensor '${name}' given twice`);
    const bytes = numel(t.shape) * ELEMENT_SIZE[t.dtype];
    header[name] = { dtype: FROM_DTYPE[t.dtype], shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  // Pad with spaces so the data starts 8-byte aligned, as the reference writer does.
  json += " ".repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);
  const headerBytes = new TextEncoder().encode(json);
  const len = new Uint8Array(8);
  new DataView(len.buffer).setBigUint64(0, BigInt(headerBytes.length), true);
  writeAtomic(file, (fd) => {
    writeAll(fd, len);
    writeAll(fd, headerBytes);
    for (const [name, spec] of tensors) {
      const t = spec.read();
      const what = `${file}: tensor '${name}'`;
      if (t.dtype !== spec.dtype || shapeStr(t.shape) !== shapeStr(spec.shape)) {
        throw new Error(`${what}: read ${t.dtype}${shapeStr(t.shape)}, declared ${spec.dtype}${shapeStr(spec.shape)}`);
      }
      writeAll(fd, tensorBytes(t, what));
    }
  });
}
