import { CheckpointError } from "./checkpoint_error";
import { DType, HostTensor, numel, shapeStr } from "./host_tensor";
import { ELEMENT_SIZE, assertLittleEndianHost, readWhole, tensorBytes, typedView, writeAll, writeAtomic } from "./file_bytes";
import { ZipReader, writeZip } from "./zip";

// NumPy .npy (format versions 1-3): "\x93NUMPY", major, minor, header length (u16 in v1, u32 after), a Python
// dict literal {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), } padded to 64 bytes, then the raw data.
// .npz is a zip of <name>.npy entries (stored by np.savez, deflated by np.savez_compressed).
// The header is parsed as the Python literal it is (numpy reads it with ast.literal_eval and then requires exactly
// these three keys and a tuple of ints for the shape); anything else is refused rather than guessed at.

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY

/** Little-endian (or byte-order-free) descr strings numpy writes; '=' is native, little-endian here. */
const FROM_DESCR = new Map<string, DType>([
  ["f8", "float64"], ["f4", "float32"], ["f2", "float16"], ["i8", "int64"], ["i4", "int32"], ["i2", "int16"], ["i1", "int8"], ["u1", "uint8"], ["b1", "bool"],
]);
const TO_DESCR: Partial<Record<DType, string>> = {
  float64: "<f8", float32: "<f4", float16: "<f2", int64: "<i8", int32: "<i4", int16: "<i2", int8: "|i1", uint8: "|u1", bool: "|b1",
};

type HeaderValue = string | boolean | number | number[];

/**
 * The header's dict literal: string keys; values that are strings, True/False, decimal ints or tuples of them
 * (Python 2's trailing L allowed; a one-item tuple needs its comma, as in Python). Throws a message otherwise.
 */
function parseHeaderDict(text: string): Map<string, HeaderValue> {
  let i = 0;
  const fail = (what: string): never => {
    throw new Error(`${what} at character ${i} of ${JSON.stringify(text.trim())}`);
  };
  const ws = () => {
    while (i < text.length && " \t\r\n".includes(text[i])) i++;
  };
  const eat = (c: string) => {
    ws();
    if (text[i] !== c) fail(`expected '${c}'`);
    i++;
  };
  const str = (): string => {
    ws();
    const q = text[i];
    if (q !== "'" && q !== '"') return fail("expected a string");
    const end = text.indexOf(q, i + 1);
    if (end < 0) return fail("unterminated string");
    const s = text.slice(i + 1, end);
    if (s.includes("\\")) fail("escapes in strings are not supported");
    i = end + 1;
    return s;
  };
  const value = (): HeaderValue => {
    ws();
    for (const [word, v] of [["True", true], ["False", false]] as const) {
      if (text.startsWith(word, i)) {
        i += word.length;
        return v;
      }
    }
    if (text[i] === "'" || text[i] === '"') return str();
    const int = /^[+-]?(0|[1-9][0-9]*)L?/;
    if (text[i] !== "(") {
      const m = int.exec(text.slice(i));
      if (!m) return fail("expected a string, True, False, an int or a tuple");
      i += m[0].length;
      return Number(m[0].replace(/L$/, ""));
    }
    i++;
    const items: number[] = [];
    let comma = false;
    for (;;) {
      ws();
      if (text[i] === ")") break;
      const m = int.exec(text.slice(i));
      if (!m) return fail("expected a decimal integer");
      items.push(Number(m[0].replace(/L$/, "")));
      i += m[0].length;
      ws();
      comma = text[i] === ",";
      if (comma) i++;
      else if (text[i] !== ")") return fail("expected ',' or ')'");
    }
    i++;
    if (items.length === 1 && !comma) fail("(n) is not a tuple; a one-item tuple is written (n,)");
    return items;
  };
  const out = new Map<string, HeaderValue>();
  eat("{");
  for (;;) {
    ws();
    if (text[i] === "}") break;
    const key = str();
    if (out.has(key)) fail(`key '${key}' appears twice`);
    eat(":");
    out.set(key, value());
    ws();
    if (text[i] === ",") i++;
    else if (text[i] !== "}") fail("expected ',' or '}'");
  }
  i++;
  ws();
  if (i !== text.length) fail("unexpected text after the dict");
  return out;
}

/** Parse .npy bytes of `file` (or of its zip entry `entry`). */
export function parseNpy(bytes: Uint8Array, file: string, entry?: string): HostTensor {
  assertLittleEndianHost();
  const fail = (m: string): never => {
    throw new CheckpointError(file, m, { entry });
  };
  if (bytes.length < 10 || MAGIC.some((b, i) => bytes[i] !== b)) fail("wrong magic: not a .npy file");
  const major = bytes[6];
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (major < 1 || major > 3) fail(`.npy format version ${major} is not supported`);
  const lenBytes = major === 1 ? 2 : 4;
  if (bytes.length < 8 + lenBytes) fail("truncated file: .npy header cut short");
  const headerLen = major === 1 ? dv.getUint16(8, true) : dv.getUint32(8, true);
  const dataStart = 8 + lenBytes + headerLen;
  if (bytes.length < dataStart) fail("truncated file: .npy header cut short");
  const header = new TextDecoder(major === 3 ? "utf-8" : "latin1").decode(bytes.subarray(8 + lenBytes, dataStart));
  let dict: Map<string, HeaderValue>;
  try {
    dict = parseHeaderDict(header);
  } catch (e) {
    return fail(`malformed .npy header: ${(e as Error).message}`);
  }
  if (dict.size !== 3 || !["descr", "fortran_order", "shape"].every((k) => dict.has(k))) {
    fail(`.npy header should have exactly the keys descr, fortran_order, shape; it has ${[...dict.keys()].join(", ") || "none"}`);
  }
  const descr = dict.get("descr");
  const fortran = dict.get("fortran_order");
  const shape = dict.get("shape");
  if (typeof descr !== "string") return fail("'descr' should be a string (structured dtypes are not supported)");
  if (typeof fortran !== "boolean") return fail("'fortran_order' should be True or False");
  if (!Array.isArray(shape)) return fail("'shape' should be a tuple of ints");
  if (fortran) fail("fortran_order arrays are not supported (save with np.ascontiguousarray)");
  const order = descr[0];
  const dtype = "<|=".includes(order) ? FROM_DESCR.get(descr.slice(1)) : undefined;
  if (!dtype) {
    const why = order === ">" ? "big-endian data is not supported" : `supported: ${Object.values(TO_DESCR).join(", ")}`;
    return fail(`unknown dtype '${descr}' (${why})`);
  }
  if (shape.some((d) => !Number.isSafeInteger(d) || d < 0)) fail(`bad shape (${shape.join(", ")}) in .npy header: dimensions must be non-negative integers`);
  const bytesNeeded = numel(shape) * ELEMENT_SIZE[dtype];
  if (!Number.isSafeInteger(bytesNeeded) || bytes.length < dataStart + bytesNeeded) {
    fail(`truncated file: ${dtype}${shapeStr(shape)} needs ${bytesNeeded} data bytes, found ${bytes.length - dataStart}`);
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
  return parseNpy(readWhole(file), file);
}

export function writeNpy(file: string, t: HostTensor): void {
  const parts = encodeNpy(t, file);
  writeAtomic(file, (fd) => parts.forEach((p) => writeAll(fd, p)));
}

/** All arrays of an .npz, named as np.savez named them (without ".npy"). */
export function readNpz(file: string): Record<string, HostTensor> {
  const zip = new ZipReader(file);
  try {
    // null prototype: an array may be named __proto__ or constructor
    const out: Record<string, HostTensor> = Object.create(null);
    for (const name of zip.entries.keys()) {
      if (!name.endsWith(".npy")) throw new CheckpointError(file, "is not an .npy array (an .npz holds only <name>.npy entries)", { entry: name });
      out[name.slice(0, -4)] = parseNpy(zip.read(name), file, name);
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
