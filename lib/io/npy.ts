import * as fs from "fs";
import { DType, HostTensor, shapeStr } from "./host_tensor";
import { ELEMENT_SIZE, assertLittleEndianHost, tensorBytes, typedView, writeAll, writeAtomic } from "./file_bytes";
import { ZipReader, writeZip } from "./zip";

// NumPy .npy (format versions 1-3): "\x93NUMPY", major, minor, header length (u16 in v1, u32 after), a Python
// dict literal {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), } padded to 64 bytes, then the raw data.
// .npz is a zip of <name>.npy entries (stored by np.savez, deflated by np.savez_compressed).

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY

/** Little-endian (or byte-order-free) descr strings numpy writes; '=' is native, little-endian here. */
const FROM_DESCR: Record<string, DType> = {
  f8: "float64", f4: "float32", f2: "float16", i8: "int64", i4: "int32", i2: "int16", i1: "int8", u1: "uint8", b1: "bool",
};
const TO_DESCR: Partial<Record<DType, string>> = {
  float64: "<f8", float32: "<f4", float16: "<f2", int64: "<i8", int32: "<i4", int16: "<i2", int8: "|i1", uint8: "|u1", bool: "|b1",
};

/** Parse .npy bytes; `what` names the file (and entry) in errors. */
export function parseNpy(bytes: Uint8Array, what: string): HostTensor {
  assertLittleEndianHost();
  if (bytes.length < 10 || MAGIC.some((b, i) => bytes[i] !== b)) throw new Error(`${what}: wrong magic: not a .npy file`);
  const major = bytes[6];
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (major < 1 || major > 3) throw new Error(`${what}: .npy format version ${major} is not supported`);
  const lenBytes = major === 1 ? 2 : 4;
  if (bytes.length < 8 + lenBytes) throw new Error(`${what}: truncated file: .npy header cut short`);
  const headerLen = major === 1 ? dv.getUint16(8, true) : dv.getUint32(8, true);
  const dataStart = 8 + lenBytes + headerLen;
  if (bytes.length < dataStart) throw new Error(`${what}: truncated file: .npy header cut short`);
  const header = new TextDecoder(major === 3 ? "utf-8" : "latin1").decode(bytes.subarray(8 + lenBytes, dataStart));
  const descr = /'descr'\s*:\s*'([^']*)'/.exec(header)?.[1];
  const fortran = /'fortran_order'\s*:\s*(True|False)/.exec(header)?.[1];
  const shapeText = /'shape'\s*:\s*\(([^)]*)\)/.exec(header)?.[1];
  if (descr === undefined || fortran === undefined || shapeText === undefined) throw new Error(`${what}: malformed .npy header ${JSON.stringify(header.trim())}`);
  if (fortran === "True") throw new Error(`${what}: fortran_order arrays are not supported (save with np.ascontiguousarray)`);
  const order = descr[0];
  const dtype = "<|=".includes(order) ? FROM_DESCR[descr.slice(1)] : undefined;
  if (!dtype) {
    const why = order === ">" ? "big-endian data is not supported" : `supported: ${Object.values(TO_DESCR).join(", ")}`;
    throw new Error(`${what}: unknown dtype '${descr}' (${why})`);
  }
  const shape = shapeText.split(",").map((s) => s.trim()).filter((s) => s !== "").map((s) => parseInt(s.replace(/L$/, ""), 10));
  if (shape.some((d) => !Number.isInteger(d) || d < 0)) throw new Error(`${what}: bad shape (${shapeText}) in .npy header`);
  const bytesNeeded = shape.reduce((a, b) => a * b, 1) * ELEMENT_SIZE[dtype];
  if (bytes.length < dataStart + bytesNeeded) {
    throw new Error(`${what}: truncated file: ${dtype}${shapeStr(shape)} needs ${bytesNeeded} data bytes, found ${bytes.length - dataStart}`);
  }
  return { dtype, shape, data: typedView(dtype, bytes.subarray(dataStart, dataStart + bytesNeeded)) };
}

/** Encode a tensor as .npy: [header, data] (format 1.0, or 2.0 if the header needs more than 64 KiB). */
export function encodeNpy(t: HostTensor, what: string): Uint8Array[] {
  const descr = TO_DESCR[t.dtype];
  if (!descr) throw new Error(`${what}: dtype ${t.dtype} has no .npy equivalent`);
  const data = tensorBytes(t, what);
  const shape = t.shape.length === 1 ? `(${t.shape[0]},)` : `(${t.shape.join(", ")})`;
  let dict = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${shape}, }`;
  const major = dict.length + 64 > 0xffff ? 2 : 1;
  const pre = 8 + (major === 1 ? 2 : 4);
  // Pad with spaces and end with a newline so the data starts 64-byte aligned, as numpy does.
  dict += " ".repeat((64 - ((pre + dict.length + 1) % 64)) % 64) + "\n";
  const head = new Uint8Array(pre + dict.length);
  head.set(MAGIC, 0);
  head[6] = major;
  head[7] = 0;
  const dv = new DataView(head.buffer);
  if (major === 1) dv.setUint16(8, dict.length, true);
  else dv.setUint32(8, dict.length, true);
  for (let i = 0; i < dict.length; i++) head[pre + i] = dict.charCodeAt(i);
  return [head, data];
}

export function readNpy(file: string): HostTensor {
  return parseNpy(fs.readFileSync(file), file);
}

export function writeNpy(file: string, t: HostTensor): void {
  const parts = encodeNpy(t, file);
  writeAtomic(file, (fd) => parts.forEach((p) => writeAll(fd, p)));
}

/** All arrays of an .npz, named as np.savez named them (without ".npy"). */
export function readNpz(file: string): Record<string, HostTensor> {
  const zip = new ZipReader(file);
  try {
    const out: Record<string, HostTensor> = {};
    for (const name of zip.entries.keys()) {
      if (!name.endsWith(".npy")) throw new Error(`${file}: .npz entry '${name}' is not an .npy array`);
      out[name.slice(0, -4)] = parseNpy(zip.read(name), `${file}: ${name}`);
    }
    return out;
  } finally {
    zip.close();
  }
}

/** Write arrays as an .npz (np.load reads it); `compress` deflates like np.savez_compressed. */
export function writeNpz(file: string, arrays: Record<string, HostTensor>, opts: { compress?: boolean } = {}): void {
  writeZip(file, Object.entries(arrays).map(([name, t]) => {
    const [head, data] = encodeNpy(t, `${file}: ${name}`);
    const bytes = new Uint8Array(head.length + data.length);
    bytes.set(head, 0);
    bytes.set(data, head.length);
    return { name: `${name}.npy`, data: bytes, deflate: opts.compress };
  }));
}
