import * as fs from "fs";
import * as path from "path";
import { DType, HostData, HostTensor, numel, shapeStr } from "./host_tensor";

// Byte-level helpers shared by the file formats: positioned reads (so big files are never loaded whole),
// typed views over little-endian bytes, and atomic writes. Every error names the file.

/** fs.readSync moves at most ~2 GiB per call. */
const MAX_READ = 1 << 30;

/** Read exactly `length` bytes at `position` into a fresh (hence aligned) buffer; a short read means truncation. */
export function readAt(fd: number, position: number, length: number, file: string, what: string): Uint8Array {
  const out = new Uint8Array(length);
  let done = 0;
  while (done < length) {
    const n = fs.readSync(fd, out, done, Math.min(length - done, MAX_READ), position + done);
    if (n === 0) throw new Error(`${file}: truncated file: ${what} needs bytes ${position}..${position + length} but the file ends at ${position + done}`);
    done += n;
  }
  return out;
}

export function fileSize(fd: number): number {
  return fs.fstatSync(fd).size;
}

export function openForRead(file: string): number {
  return fs.openSync(file, "r");
}

/** Bytes per element of each dtype. */
export const ELEMENT_SIZE: Record<DType, number> = {
  float64: 8, int64: 8, float32: 4, int32: 4, float16: 2, bfloat16: 2, int16: 2, int8: 1, uint8: 1, bool: 1,
};

/** View little-endian bytes as the typed array for `dtype`; bytes at a misaligned offset are copied first. */
export function typedView(dtype: DType, bytes: Uint8Array): HostData {
  const size = ELEMENT_SIZE[dtype];
  if (bytes.byteOffset % size !== 0) bytes = new Uint8Array(bytes);
  const { buffer, byteOffset, byteLength } = bytes;
  const n = byteLength / size;
  switch (dtype) {
    case "float64": return new Float64Array(buffer, byteOffset, n);
    case "int64": return new BigInt64Array(buffer, byteOffset, n);
    case "float32": return new Float32Array(buffer, byteOffset, n);
    case "int32": return new Int32Array(buffer, byteOffset, n);
    case "float16": case "bfloat16": return new Uint16Array(buffer, byteOffset, n);
    case "int16": return new Int16Array(buffer, byteOffset, n);
    case "int8": return new Int8Array(buffer, byteOffset, n);
    case "uint8": case "bool": return new Uint8Array(buffer, byteOffset, n);
  }
}

/** The tensor's raw little-endian bytes, after checking that data, dtype and shape agree. */
export function tensorBytes(t: HostTensor, what: string): Uint8Array {
  const want = numel(t.shape);
  if (t.data.length !== want) throw new Error(`${what}: holds ${t.data.length} values for shape ${shapeStr(t.shape)}`);
  if (t.data.BYTES_PER_ELEMENT !== ELEMENT_SIZE[t.dtype]) {
    throw new Error(`${what}: dtype ${t.dtype} does not match its ${t.data.constructor.name} data`);
  }
  return new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
}

/** A host is assumed little-endian (every platform tfjs runs on); say so loudly if not. */
export function assertLittleEndianHost(): void {
  if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) throw new Error("io: big-endian hosts are not supported");
}

/**
 * Write a file atomically: `write(fd)` fills a temporary file next to the target, which is then renamed over it,
 * so readers never see a half-written file and a failure leaves any old file untouched.
 */
export function writeAtomic(file: string, write: (fd: number) => void): void {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.${Date.now()}.tmp`);
  const fd = fs.openSync(tmp, "w");
  try {
    write(fd);
    fs.fsyncSync(fd);
  } catch (e) {
    fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    throw e;
  }
  fs.closeSync(fd);
  fs.renameSync(tmp, file);
}

/** Write all of `bytes`; fs.writeSync may write less than asked. */
export function writeAll(fd: number, bytes: Uint8Array): void {
  let done = 0;
  while (done < bytes.length) done += fs.writeSync(fd, bytes, done, Math.min(bytes.length - done, MAX_READ));
}
