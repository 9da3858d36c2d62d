import * as fs from "fs";
import { DType, HostData, HostTensor, numel, shapeStr } from "./host_tensor";
import { ELEMENT_SIZE, assertLittleEndianHost, fileSize, openForRead, readAt, typedView } from "./file_bytes";
import { PickleEOF, PyValue, StorageRef, TensorRef, describe, torchPersistentLoad, unpickle } from "./pickle";
import { ZipReader } from "./zip";

// PyTorch checkpoints without Python. Two containers:
//  (a) zip (torch.save since 1.6): <dir>/data.pkl plus one entry <dir>/data/<key> of raw bytes per storage;
//      a TorchScript archive (torch.jit.save, e.g. OpenAI's CLIP ViT-B-32.pt) has the same layout plus
//      constants.pkl and code/, and pickles its modules as objects, which read as nested dicts of attributes;
//  (b) legacy: consecutive pickles (magic number, protocol version, sys info, the object, the storage keys),
//      then for each key an int64 element count and the raw data.
// Tensors are strided windows onto storages; they come back contiguous and little-endian.

const STORAGE_DTYPE: Record<string, DType> = {
  FloatStorage: "float32",
  DoubleStorage: "float64",
  HalfStorage: "float16",
  BFloat16Storage: "bfloat16",
  LongStorage: "int64",
  IntStorage: "int32",
  ShortStorage: "int16",
  CharStorage: "int8",
  ByteStorage: "uint8",
  BoolStorage: "bool",
};

const LEGACY_MAGIC = 0x1950a86a20f9469cfc6cn;
const LEGACY_PROTOCOL = 1001;

function storageDtype(ref: StorageRef, file: string): DType {
  const dtype = STORAGE_DTYPE[ref.storageType];
  if (!dtype) throw new Error(`${file}: unknown dtype: storage class torch.${ref.storageType} is not supported`);
  return dtype;
}

/** Copy a strided window of `src` into a new contiguous array of the same type. */
function gather(src: HostData, shape: number[], stride: number[], offset: number): HostData {
  const n = numel(shape);
  const out = new (src.constructor as new (n: number) => HostData)(n);
  const s = src as unknown as number[];
  const o = out as unknown as number[];
  const idx = new Array<number>(shape.length).fill(0);
  let at = offset;
  for (let i = 0; i < n; i++) {
    o[i] = s[at];
    for (let d = shape.length - 1; d >= 0; d--) {
      at += stride[d];
      if (++idx[d] < shape[d]) break;
      at -= stride[d] * shape[d];
      idx[d] = 0;
    }
  }
  return out;
}

function isContiguous(shape: number[], stride: number[]): boolean {
  let expect = 1;
  for (let d = shape.length - 1; d >= 0; d--) {
    if (shape[d] !== 1 && stride[d] !== expect) return false;
    expect *= shape[d];
  }
  return true;
}

/** Replace every TensorRef in the tree by a contiguous HostTensor; `storageBytes` reads one storage's bytes. */
function materialise(root: PyValue, storageBytes: (ref: StorageRef) => Uint8Array, file: string): PyValue {
  const storages = new Map<string, HostData>();
  const done = new Map<object, PyValue>();
  const tensor = (t: TensorRef): HostTensor => {
    const dtype = storageDtype(t.storage, file);
    let data = storages.get(t.storage.key);
    if (!data) {
      const bytes = storageBytes(t.storage);
      const want = t.storage.numel * ELEMENT_SIZE[dtype];
      if (bytes.length !== want) throw new Error(`${file}: storage '${t.storage.key}' has ${bytes.length} bytes, expected ${want} (${t.storage.numel} x ${dtype})`);
      data = typedView(dtype, bytes);
      storages.set(t.storage.key, data);
    }
    const offset = t.storage.viewOffset + t.offset;
    const n = numel(t.shape);
    const last = offset + t.shape.reduce((a, d, i) => a + (d - 1) * t.stride[i], 0);
    if (n > 0 && (offset < 0 || last >= data.length || t.stride.some((s) => s < 0))) {
      throw new Error(`${file}: tensor ${shapeStr(t.shape)} with stride ${shapeStr(t.stride)} at offset ${offset} reaches outside its storage '${t.storage.key}' of ${data.length} elements`);
    }
    let out: HostData;
    if (!isContiguous(t.shape, t.stride)) out = gather(data, t.shape, t.stride, offset);
    // A tensor that is its whole storage (the usual case) keeps the storage's memory: no copy of big weights.
    else if (offset === 0 && n === data.length) out = data;
    else out = data.slice(offset, offset + n);
    return { dtype, shape: [...t.shape], data: out };
  };
  const walk = (v: PyValue): PyValue => {
    if (v === null || typeof v !== "object" || v instanceof Uint8Array) return v;
    const seen = done.get(v);
    if (seen !== undefined) return seen;
    if (v instanceof TensorRef) {
      const t = tensor(v);
      done.set(v, t);
      return t;
    }
    if (Array.isArray(v)) {
      const out: PyValue[] = [];
      done.set(v, out);
      for (const x of v) out.push(walk(x));
      return out;
    }
    if (v instanceof Map) {
      const out = new Map<PyValue, PyValue>();
      done.set(v, out);
      for (const [k, x] of v) out.set(k, walk(x));
      return out;
    }
    if (v instanceof Set) {
      const out = new Set<PyValue>();
      done.set(v, out);
      for (const x of v) out.add(walk(x));
      return out;
    }
    return v;
  };
  return walk(root);
}

function loadZip(file: string): PyValue {
  const zip = new ZipReader(file);
  try {
    const pkl = [...zip.entries.keys()].find((n) => /^[^/]*\/?data\.pkl$/.test(n));
    if (!pkl) throw new Error(`${file}: zip archive without data.pkl: not a torch.save checkpoint`);
    const dir = pkl.slice(0, -"data.pkl".length);
    if (zip.has(`${dir}byteorder`)) {
      const order = new TextDecoder().decode(zip.read(`${dir}byteorder`));
      if (order !== "little") throw new Error(`${file}: storages are ${order}-endian; only little-endian is supported`);
    }
    const scriptObjects = zip.has(`${dir}constants.pkl`);
    const { value } = unpickle(zip.read(pkl), { file, persistentLoad: torchPersistentLoad(file), scriptObjects });
    return materialise(value, (ref) => {
      const name = `${dir}data/${ref.key}`;
      if (!zip.has(name)) throw new Error(`${file}: storage '${ref.key}' missing (no entry ${name})`);
      return zip.read(name);
    }, file);
  } finally {
    zip.close();
  }
}

interface LegacyHead {
  object: PyValue;
  keys: PyValue;
  /** Where the raw storage records start. */
  dataStart: number;
  storages: Map<string, StorageRef>;
}

/** Parse the five leading pickles from the first `bytes` of the file (throws PickleEOF if they run past it). */
function parseLegacyHead(bytes: Uint8Array, file: string): LegacyHead {
  let at = 0;
  const next = (persistentLoad?: (pid: PyValue) => PyValue): PyValue => {
    const r = unpickle(bytes, { file, persistentLoad }, at);
    at = r.end;
    return r.value;
  };
  const magic = next();
  if (magic !== LEGACY_MAGIC) {
    throw new Error(`${file}: wrong magic number: not a torch checkpoint (got ${describe(magic)})`);
  }
  const protocol = next();
  if (protocol !== LEGACY_PROTOCOL) throw new Error(`${file}: legacy torch protocol ${describe(protocol)}, expected ${LEGACY_PROTOCOL}`);
  const sysInfo = next();
  if (sysInfo instanceof Map && sysInfo.get("little_endian") === false) throw new Error(`${file}: saved on a big-endian machine; only little-endian is supported`);
  const storages = new Map<string, StorageRef>();
  const load = torchPersistentLoad(file);
  const object = next((pid) => {
    const ref = load(pid) as StorageRef;
    storages.set(ref.key, ref);
    return ref;
  });
  const keys = next();
  return { object, keys, dataStart: at, storages };
}

function loadLegacy(file: string, fd: number): PyValue {
  const size = fileSize(fd);
  // The pickles are small next to the data: read a prefix, and a bigger one if they do not fit.
  let head: LegacyHead | undefined;
  for (let len = Math.min(size, 1 << 20); !head; len = Math.min(size, len * 4)) {
    try {
      head = parseLegacyHead(readAt(fd, 0, len, file, "legacy pickles"), file);
    } catch (e) {
      if (!(e instanceof PickleEOF)) throw e;
      if (len === size) throw new Error(`${file}: truncated file: the pickled object ends before its STOP opcode`);
    }
  }
  const { object, keys, storages } = head;
  if (!Array.isArray(keys)) throw new Error(`${file}: storage key list should be a list, got ${describe(keys)}`);
  // Each storage record is an int64 element count then the elements.
  const where = new Map<string, { at: number; bytes: number }>();
  let at = head.dataStart;
  for (const k of keys) {
    const ref = storages.get(String(k));
    if (!ref) throw new Error(`${file}: storage key '${String(k)}' is listed but never used`);
    const count = new DataView(readAt(fd, at, 8, file, `element count of storage '${ref.key}'`).buffer).getBigInt64(0, true);
    if (count !== BigInt(ref.numel)) throw new Error(`${file}: storage '${ref.key}' holds ${count} elements, expected ${ref.numel}`);
    const bytes = ref.numel * ELEMENT_SIZE[storageDtype(ref, file)];
    where.set(ref.key, { at: at + 8, bytes });
    at += 8 + bytes;
  }
  if (at > size) throw new Error(`${file}: truncated file: storages need ${at} bytes but the file has ${size}`);
  return materialise(object, (ref) => {
    const w = where.get(ref.key);
    if (!w) throw new Error(`${file}: storage '${ref.key}' is not in the storage key list`);
    return readAt(fd, w.at, w.bytes, file, `storage '${ref.key}'`);
  }, file);
}

/**
 * Load a torch.save file as a Python value tree (see PyValue) whose tensors are contiguous HostTensors.
 * No code from the file runs; globals other than containers, tensors and storages are refused.
 */
export function loadTorchObject(file: string): PyValue {
  assertLittleEndianHost();
  const fd = openForRead(file);
  try {
    const size = fileSize(fd);
    if (size < 4) throw new Error(`${file}: truncated file: ${size} bytes is too short for a torch checkpoint`);
    const head = readAt(fd, 0, Math.min(size, 512), file, "file header");
    if (head[0] === 0x50 && head[1] === 0x4b && head[2] === 0x03 && head[3] === 0x04) return loadZip(file);
    if (head[0] === 0x80) return loadLegacy(file, fd);
    if (size >= 262 && new TextDecoder().decode(head.subarray(257, 262)) === "ustar") {
      throw new Error(`${file}: tar-format torch checkpoint (PyTorch < 0.4) is not supported`);
    }
    throw new Error(`${file}: wrong magic: neither a zip archive nor a pickle, not a torch checkpoint`);
  } finally {
    fs.closeSync(fd);
  }
}

export function isHostTensor(v: PyValue | undefined): v is HostTensor {
  return typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof Map) && !(v instanceof Set) &&
    !(v instanceof Uint8Array) && "dtype" in v && "shape" in v && "data" in v;
}

/** Every tensor in a tree, named by its path with dots (dict keys, list indices), as state dicts name them. */
export function flattenTensors(tree: PyValue, prefix = ""): Record<string, HostTensor> {
  const out: Record<string, HostTensor> = {};
  const seen = new Set<object>();
  const walk = (v: PyValue, name: string): void => {
    if (isHostTensor(v)) {
      out[name] = v;
      return;
    }
    if (v === null || typeof v !== "object" || seen.has(v)) return;
    seen.add(v);
    const join = (k: PyValue): string => (name ? `${name}.${String(k)}` : String(k));
    if (v instanceof Map) for (const [k, x] of v) walk(x, join(k));
    else if (Array.isArray(v)) v.forEach((x, i) => walk(x, join(i)));
  };
  walk(tree, prefix);
  return out;
}

/** Keys under which training scripts commonly nest the weights, most likely first. */
export const STATE_DICT_KEYS = ["state_dict", "model_state_dict", "model", "ema", "model_ema", "state_dict_ema", "net", "params"];

/** Descend through wrapper dicts ({'state_dict': ..., 'epoch': 3}) to the dict that holds the weights. */
export function findStateDict(tree: PyValue): PyValue {
  let v = tree;
  for (;;) {
    if (!(v instanceof Map)) return v;
    const m = v;
    const key = STATE_DICT_KEYS.find((k) => Object.keys(flattenTensors(m.get(k) ?? null)).length > 0);
    if (key === undefined) return v;
    v = m.get(key) as PyValue;
  }
}

export interface CheckpointOptions {
  /** Remove this prefix from the names that have it, e.g. "module." from DataParallel checkpoints. */
  stripPrefix?: string;
  /** Take the tensors under this dotted path instead of guessing the state dict (e.g. "ema"). */
  key?: string;
}

/** A checkpoint's tensors by dotted name, from either torch.save format, with the state dict found inside wrappers. */
export function readTorchCheckpoint(path: string, opts: CheckpointOptions = {}): Record<string, HostTensor> {
  const root = loadTorchObject(path);
  let tree: PyValue = root;
  if (opts.key !== undefined) {
    for (const part of opts.key.split(".")) {
      if (!(tree instanceof Map) || !tree.has(part)) {
        const keys = root instanceof Map ? [...root.keys()].map(String).join(", ") : describe(root);
        throw new Error(`${path}: no '${opts.key}' in the checkpoint (top level: ${keys})`);
      }
      tree = tree.get(part) as PyValue;
    }
  } else {
    tree = findStateDict(root);
  }
  const flat = flattenTensors(tree);
  if (Object.keys(flat).length === 0) throw new Error(`${path}: no tensors found in the checkpoint`);
  const { stripPrefix } = opts;
  if (!stripPrefix) return flat;
  const out: Record<string, HostTensor> = {};
  for (const [k, t] of Object.entries(flat)) out[k.startsWith(stripPrefix) ? k.slice(stripPrefix.length) : k] = t;
  return out;
}
