import * as fs from "fs";
import { DType, HostTensor, numel, shapeStr } from "./host_tensor";
import { ELEMENT_SIZE, assertLittleEndianHost, openForRead, readAt, tensorBytes, typedView, writeAll, writeAtomic } from "./file_bytes";

// safetensors (huggingface/safetensors): u64 little-endian header length N, N bytes of JSON
// {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str: str}}, then the tensors' bytes,
// offsets counted from the end of the header. Opening reads only the header; get(name) reads one byte range.

const TO_DTYPE: Record<string, DType> = {
  F64: "float64", F32: "float32", F16: "float16", BF16: "bfloat16",
  I64: "int64", I32: "int32", I16: "int16", I8: "int8", U8: "uint8", BOOL: "bool",
};
const FROM_DTYPE = Object.fromEntries(Object.entries(TO_DTYPE).map(([k, v]) => [v, k])) as Record<DType, string>;

/** The reference implementation refuses headers over 100 MB; a bigger one means a corrupt length. */
const MAX_HEADER = 100_000_000;

export interface SafetensorsInfo {
  dtype: DType;
  shape: number[];
  /** Byte range inside the file. */
  begin: number;
  end: number;
}

export class SafetensorsFile {
  readonly metadata: Record<string, string> = {};
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
    const fail = (m: string): never => {
      throw new Error(`${this.file}: ${m}`);
    };
    if (size < 8) fail(`truncated file: ${size} bytes is too short for a safetensors header`);
    const n = new DataView(readAt(fd, 0, 8, this.file, "header length").buffer).getBigUint64(0, true);
    if (n > BigInt(MAX_HEADER)) fail(`wrong magic: header length ${n} is not plausible, not a safetensors file`);
    const headerLen = Number(n);
    const bytes = readAt(fd, 8, headerLen, this.file, "JSON header");
    let header: unknown;
    try {
      header = JSON.parse(new TextDecoder().decode(bytes));
    } catch (e) {
      return fail(`header is not valid JSON (${(e as Error).message}), not a safetensors file`);
    }
    if (typeof header !== "object" || header === null || Array.isArray(header)) return fail("header is not a JSON object");
    const dataStart = 8 + headerLen;
    for (const [name, raw] of Object.entries(header as Record<string, unknown>)) {
      if (name === "__metadata__") {
        for (const [k, v] of Object.entries((raw ?? {}) as Record<string, unknown>)) {
          if (typeof v !== "string") fail(`__metadata__ value '${k}' should be a string`);
          this.metadata[k] = v as string;
        }
        continue;
      }
      const e = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
      const dtype = TO_DTYPE[String(e?.dtype)];
      if (!dtype) fail(`unknown dtype '${String(e?.dtype)}' for tensor '${name}' (supported: ${Object.keys(TO_DTYPE).join(", ")})`);
      const shape = e.shape;
      const offs = e.data_offsets;
      if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d >= 0)) fail(`tensor '${name}' has a bad shape`);
      if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((d) => Number.isInteger(d) && d >= 0) || offs[1] < offs[0]) fail(`tensor '${name}' has bad data_offsets`);
      const [b, en] = offs as number[];
      const want = numel(shape as number[]) * ELEMENT_SIZE[dtype];
      if (en - b !== want) fail(`tensor '${name}' ${dtype}${shapeStr(shape as number[])} needs ${want} bytes but data_offsets span ${en - b}`);
      if (dataStart + en > size) fail(`truncated file: tensor '${name}' ends at byte ${dataStart + en} but the file has ${size}`);
      this.infos.set(name, { dtype, shape: shape as number[], begin: dataStart + b, end: dataStart + en });
    }
  }

  names(): string[] {
    return [...this.infos.keys()];
  }

  info(name: string): SafetensorsInfo {
    const i = this.infos.get(name);
    if (!i) throw new Error(`${this.file}: no tensor '${name}' (has ${this.infos.size}: ${this.names().slice(0, 5).join(", ")}${this.infos.size > 5 ? ", ..." : ""})`);
    return i;
  }

  /** Read one tensor's bytes from disk; the rest of the file is not touched. */
  get(name: string): HostTensor {
    const i = this.info(name);
    const fd = openForRead(this.file);
    try {
      const st = fs.fstatSync(fd);
      if (`${st.size}:${st.mtimeMs}` !== this.stamp) throw new Error(`${this.file}: file changed since its header was read; open it again`);
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
  const tensors: Record<string, HostTensor> = {};
  for (const name of f.names()) tensors[name] = f.get(name);
  return { tensors, metadata: { ...f.metadata } };
}

/** Write tensors (in the given order) and optional string metadata, atomically. */
export function writeSafetensors(file: string, tensors: Record<string, HostTensor>, metadata?: Record<string, string>): void {
  assertLittleEndianHost();
  const header: Record<string, unknown> = {};
  if (metadata) {
    for (const [k, v] of Object.entries(metadata)) if (typeof v !== "string") throw new Error(`${file}: metadata '${k}' must be a string`);
    header.__metadata__ = metadata;
  }
  const bodies: Uint8Array[] = [];
  let offset = 0;
  for (const [name, t] of Object.entries(tensors)) {
    if (name === "__metadata__") throw new Error(`${file}: '__metadata__' is reserved and cannot name a tensor`);
    const bytes = tensorBytes(t, `${file}: tensor '${name}'`);
    header[name] = { dtype: FROM_DTYPE[t.dtype], shape: t.shape, data_offsets: [offset, offset + bytes.length] };
    bodies.push(bytes);
    offset += bytes.length;
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
    for (const b of bodies) writeAll(fd, b);
  });
}
