import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { CheckpointError } from "./checkpoint_error";
import { DType, HostData, HostTensor, numel, shapeStr } from "./host_tensor";

// Byte-level helpers shared by the file formats: positioned reads (so big files are never loaded whole),
// typed views over little-endian bytes, and atomic writes. Every read error is a CheckpointError naming the file.

/** fs.readSync moves at most ~2 GiB per call. */
const MAX_READ = 1 << 30;

/**
 * Read exactly `length` bytes at `position` into a fresh (hence aligned) buffer. The range is checked against the
 * file's size before anything is allocated, so a corrupt length or offset costs no memory.
 */
export function readAt(fd: number, position: number, length: number, file: string, what: string): Uint8Array {
  if (!Number.isSafeInteger(position) || !Number.isSafeInteger(length) || position < 0 || length < 0) {
    throw new CheckpointError(file, `corrupt file: ${what} would be ${length} bytes at byte ${position}`);
  }
  const size = fileSize(fd);
  if (position + length > size) {
    throw new CheckpointError(file, `truncated file: ${what} needs bytes ${position}..${position + length} but the file ends at ${size}`);
  }
  const out = new Uint8Array(length);
  let done = 0;
  while (done < length) {
    const n = fs.readSync(fd, out, done, Math.min(length - done, MAX_READ), position + done);
    if (n === 0) throw new CheckpointError(file, `truncated file: ${what} needs bytes ${position}..${position + length} but the file ends at ${position + done}`);
    done += n;
  }
  return out;
}

export function fileSize(fd: number): number {
  return fs.fstatSync(fd).size;
}

export function openForRead(file: string): number {
  try {
    const fd = fs.openSync(file, "r");
    if (fs.fstatSync(fd).isDirectory()) {
      fs.closeSync(fd);
      throw new CheckpointError(file, "is a directory, not a file");
    }
    return fd;
  } catch (e) {
    if (e instanceof CheckpointError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    throw new CheckpointError(file, code === "ENOENT" ? "no such file" : `cannot open: ${(e as Error).message}`);
  }
}

/** The whole file (for formats read in one piece, such as .npy). */
export function readWhole(file: string): Uint8Array {
  const fd = openForRead(file);
  try {
    return readAt(fd, 0, fileSize(fd), file, "the file");
  } finally {
    fs.closeSync(fd);
  }
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

/** This machine in temporary-file names: a pid only says whether its writer is alive on the host that wrote it. */
const HOST = os.hostname().replace(/[^A-Za-z0-9-]/g, "-") || "host";
/** `.<target>.<host>.<pid>.<ms>.tmp`, as writeAtomic names its temporaries. */
const TEMP = /^\.(.+)\.([A-Za-z0-9-]+)\.(\d+)\.(\d+)\.tmp$/;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * Remove the temporaries that writers killed mid-write left in `dir`: those written on this host by a process
 * that no longer runs. A live writer's temporary, or another host's (a shared folder), is left alone.
 */
export function sweepStaleTemporaries(dir: string): void {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return;
  }
  for (const name of names) {
    const m = TEMP.exec(name);
    if (m && m[2] === HOST && Number(m[3]) !== process.pid && !alive(Number(m[3]))) fs.rmSync(path.join(dir, name), { force: true });
  }
}

/**
 * Write a file atomically: `write(fd)` fills a temporary file next to the target, which is then renamed over it,
 * so readers never see a half-written file and a failure leaves any old file untouched. Temporaries that a
 * killed writer left in the same folder are swept first.
 */
export function writeAtomic(file: string, write: (fd: number) => void): void {
  sweepStaleTemporaries(path.dirname(file));
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${HOST}.${process.pid}.${Date.now()}.tmp`);
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
