import * as fs from "fs";
import { CheckpointError } from "./checkpoint_error";
import { DType, HostData, HostTensor, numel, shapeStr } from "./host_tensor";
import { ELEMENT_SIZE, assertLittleEndianHost, fileSize, openForRead, readAt, typedView } from "./file_bytes";
import { PickleEOF, PyValue, StorageRef, TensorRef, describe, torchPersistentLoad, unpickle } from "./pickle";
import type { TensorSource } from "./tensor_source";
import { ZipReader } from "./zip";

// PyTorch checkpoints without Python. Two containers:
//  (a) zip (torch.save since 1.6): <dir>/data.pkl plus one entry <dir>/data/<key> of raw bytes per storage;
//      a TorchScript archive (torch.jit.save, e.g. OpenAI's CLIP ViT-B-32.pt) has the same layout plus
//      constants.pkl and code/, and pickles its modules as objects, which read as nested dicts of attributes;
//  (b) legacy: consecutive pickles (magic number, protocol version, sys info, the object, the storage keys),
//      then for each key an int64 element count and the raw data.
// Tensors are strided windows onto storages; they come back contiguous and little-endian. Memory is bounded by the
// file: storages must be as large as the file says (and inside it), views may not overlap themselves (a stride-0
// view of one element could otherwise claim gigabytes), and what views copy is bounded by COPY_FACTOR x the
// storage bytes + COPY_SLACK. Every walk over the object tree is iterative, so any nesting depth works.

export const STORAGE_DTYPE: Record<string, DType> = {
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
  const dtype = Object.prototype.hasOwnProperty.call(STORAGE_DTYPE, ref.storageType) ? STORAGE_DTYPE[ref.storageType] : undefined;
  if (!dtype) throw new CheckpointError(file, `unknown dtype: storage class torch.${ref.storageType} is not supported`);
  return dtype;
}

/** Two persistent ids naming one storage key must agree on it; torch would silently keep the first. */
function checkSameStorage(a: StorageRef, b: StorageRef, file: string, tensor?: string): void {
  if (a.storageType === b.storageType && a.numel === b.numel) return;
  const what = (r: StorageRef) => `${STORAGE_DTYPE[r.storageType] ?? `torch.${r.storageType}`} x ${r.numel}`;
  throw new CheckpointError(file, `storage '${a.key}' is declared as both ${what(a)} and ${what(b)}`, { tensor });
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

/**
 * Whether no two elements of the view share a storage element, by the sufficient test that each stride (in
 * increasing order) passes the span of the dimensions with smaller strides. Views made by slicing, transposing or
 * permuting a tensor pass; expanded (stride-0) and other self-overlapping views do not.
 */
function nonOverlapping(shape: number[], stride: number[]): boolean {
  const dims = shape.map((n, d) => ({ n, s: stride[d] })).filter((x) => x.n > 1).sort((a, b) => a.s - b.s);
  let span = 1;
  for (const { n, s } of dims) {
    if (s < span) return false;
    span += (n - 1) * s;
  }
  return true;
}

/** Views that copy (non-contiguous, or part of a storage) may copy this multiple of the storage bytes read... */
const COPY_FACTOR = 2;
/** ...plus this much, so that a small file's views never depend on the order its storages are met in. */
const COPY_SLACK = 16 * 2 ** 20;

/** Dicts and lists: what the walks below descend into (sets cannot hold tensors: tensors are unhashable). */
function isContainer(v: PyValue): v is Map<PyValue, PyValue> | PyValue[] {
  return v instanceof Map || Array.isArray(v);
}

/**
 * Depth-first walk over the dicts and lists under `root` in their order, each container once (shared ones, and
 * cycles, are entered at their first path only), iteratively, so any nesting depth works. `visit` sees every
 * (container, key, value) and where the container is; pathName(at, key) names the value. Memory is a few objects
 * per container (none per entry), and no name is built unless asked for.
 */
function walkTree(root: PyValue, visit: (parent: Map<PyValue, PyValue> | PyValue[], key: PyValue, value: PyValue, at: PathNode | null) => void): void {
  interface Frame { it: IterableIterator<[PyValue, PyValue]>; node: PathNode | null; container: Map<PyValue, PyValue> | PyValue[] }
  const seen = new Set<object>();
  const stack: Frame[] = [];
  const enter = (v: Map<PyValue, PyValue> | PyValue[], node: PathNode | null) => {
    seen.add(v);
    // a Map's entries are [key, value]; a list's are [index, item]
    stack.push({ it: v.entries() as IterableIterator<[PyValue, PyValue]>, node, container: v });
  };
  if (isContainer(root)) enter(root, null);
  while (stack.length > 0) {
    const top = stack[stack.length - 1];
    const next = top.it.next();
    if (next.done) {
      stack.pop();
      continue;
    }
    const [key, value] = next.value;
    visit(top.container, key, value, top.node);
    if (isContainer(value) && !seen.has(value)) enter(value, { parent: top.node, key });
  }
}

interface PathNode {
  parent: PathNode | null;
  key: PyValue;
}

/** A state dict's names are dotted paths; names past this length mean a nesting no state dict has. */
const MAX_NAME = 4096;

/** The dotted path of `key` inside the container at `at` (keys that are not str/int show as <what they are>), or
 * undefined past MAX_NAME. */
function pathName(at: PathNode | null, key: PyValue): string | undefined {
  const parts: string[] = [];
  let length = 0;
  for (let n: PathNode | null = { parent: at, key }; n; n = n.parent) {
    const k = n.key;
    const part = typeof k === "string" ? k : typeof k === "number" || typeof k === "bigint" || typeof k === "boolean" || k === null ? String(k) : `<${describe(k)}>`;
    length += part.length + 1;
    if (length > MAX_NAME) return undefined;
    parts.push(part);
  }
  return parts.reverse().join(".");
}

/** One storage's elements from its raw bytes, after checking the byte count. */
function storageData(ref: StorageRef, bytes: Uint8Array, file: string, tensor: string): HostData {
  const dtype = storageDtype(ref, file);
  const want = ref.numel * ELEMENT_SIZE[dtype];
  if (bytes.length !== want) throw new CheckpointError(file, `storage '${ref.key}' has ${bytes.length} bytes, expected ${want} (${ref.numel} x ${dtype})`, { tensor });
  return typedView(dtype, bytes);
}

/** What views may copy, against what storage was read (see COPY_FACTOR): one budget per opened file. */
class CopyBudget {
  private storageBytesRead = 0;
  private copied = 0;
  read(bytes: number): void {
    this.storageBytesRead += bytes;
  }
  copy(bytes: number, file: string, tensor: string): void {
    this.copied += bytes;
    if (this.copied > COPY_FACTOR * this.storageBytesRead + COPY_SLACK) {
      throw new CheckpointError(file, `views would copy more than ${COPY_FACTOR} x the ${this.storageBytesRead} bytes of storage read + ${COPY_SLACK} bytes; refusing (a memory bomb?)`, { tensor });
    }
  }
}

/** The contiguous tensor a TensorRef describes, from its storage's elements. */
function tensorFromStorage(t: TensorRef, data: HostData, file: string, name: string, budget: CopyBudget): HostTensor {
  const fail = (m: string): never => {
    throw new CheckpointError(file, m, { tensor: name });
  };
  const dtype = storageDtype(t.storage, file);
  const offset = t.storage.viewOffset + t.offset;
  const n = numel(t.shape);
  const where = `${shapeStr(t.shape)} with stride ${shapeStr(t.stride)} at offset ${offset}`;
  if (n > 0 && offset + t.shape.reduce((a, d, i) => a + (d - 1) * t.stride[i], 0) >= data.length) {
    fail(`${where} reaches outside its storage '${t.storage.key}' of ${data.length} elements`);
  }
  if (n > 0 && !nonOverlapping(t.shape, t.stride)) {
    fail(`${where} overlaps itself (a stride-0 or expanded view of storage '${t.storage.key}'); materialising it would copy ${n} elements from ${data.length}; save it with .contiguous()`);
  }
  // A tensor that is its whole storage (the usual case) keeps the storage's memory: no copy of big weights.
  if (isContiguous(t.shape, t.stride) && offset === 0 && n === data.length) return { dtype, shape: [...t.shape], data };
  budget.copy(n * ELEMENT_SIZE[dtype], file, name);
  const out = isContiguous(t.shape, t.stride) ? data.slice(offset, offset + n) : gather(data, t.shape, t.stride, offset);
  return { dtype, shape: [...t.shape], data: out };
}

/** Replace every TensorRef in the tree by a contiguous HostTensor, in place; `storageBytes` reads one storage's bytes. */
function materialise(root: PyValue, storageBytes: (ref: StorageRef) => Uint8Array, file: string): PyValue {
  const storages = new Map<string, { ref: StorageRef; data: HostData }>();
  const done = new Map<TensorRef, HostTensor>();
  const budget = new CopyBudget();
  const tensor = (t: TensorRef, name: string): HostTensor => {
    let s = storages.get(t.storage.key);
    if (s) checkSameStorage(s.ref, t.storage, file, name);
    else {
      const bytes = storageBytes(t.storage);
      s = { ref: t.storage, data: storageData(t.storage, bytes, file, name) };
      storages.set(t.storage.key, s);
      budget.read(bytes.length);
    }
    return tensorFromStorage(t, s.data, file, name, budget);
  };
  const get = (t: TensorRef, name: () => string | undefined): HostTensor => {
    let h = done.get(t);
    if (!h) {
      h = tensor(t, name() ?? `<a name over ${MAX_NAME} characters>`);
      done.set(t, h);
    }
    return h;
  };
  if (root instanceof TensorRef) return get(root, () => "");
  walkTree(root, (parent, key, value, at) => {
    if (!(value instanceof TensorRef)) return;
    const h = get(value, () => pathName(at, key));
    if (parent instanceof Map) parent.set(key, h);
    else parent[key as number] = h;
  });
  return root;
}

/** A torch.save file opened: its pickled object (tensors still as TensorRefs) and a reader of storage bytes. */
interface TorchFile {
  root: PyValue;
  storageBytes: (ref: StorageRef) => Uint8Array;
  close: () => void;
}

function openZip(file: string): TorchFile {
  const zip = new ZipReader(file);
  try {
    const pkl = [...zip.entries.keys()].find((n) => /^[^/]*\/?data\.pkl$/.test(n));
    if (!pkl) throw new CheckpointError(file, "zip archive without data.pkl: not a torch.save checkpoint");
    const dir = pkl.slice(0, -"data.pkl".length);
    if (zip.has(`${dir}byteorder`)) {
      const order = new TextDecoder().decode(zip.read(`${dir}byteorder`));
      if (order !== "little") throw new CheckpointError(file, `storages are ${order}-endian; only little-endian is supported`);
    }
    const scriptObjects = zip.has(`${dir}constants.pkl`);
    const { value } = unpickle(zip.read(pkl), { file, entry: pkl, persistentLoad: torchPersistentLoad(file), scriptObjects });
    const storageBytes = (ref: StorageRef): Uint8Array => {
      const name = `${dir}data/${ref.key}`;
      if (!zip.has(name)) throw new CheckpointError(file, `storage '${ref.key}' missing (no entry ${name})`);
      return zip.read(name);
    };
    return { root: value, storageBytes, close: () => zip.close() };
  } catch (e) {
    zip.close();
    throw e;
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
    throw new CheckpointError(file, `wrong magic number: not a torch checkpoint (got ${describe(magic)})`);
  }
  const protocol = next();
  if (protocol !== LEGACY_PROTOCOL) throw new CheckpointError(file, `legacy torch protocol ${describe(protocol)}, expected ${LEGACY_PROTOCOL}`);
  const sysInfo = next();
  if (sysInfo instanceof Map && sysInfo.get("little_endian") === false) throw new CheckpointError(file, "saved on a big-endian machine; only little-endian is supported");
  const storages = new Map<string, StorageRef>();
  const load = torchPersistentLoad(file);
  const object = next((pid) => {
    const ref = load(pid) as StorageRef;
    const seen = storages.get(ref.key);
    if (seen) checkSameStorage(seen, ref, file);
    storages.set(ref.key, ref);
    return ref;
  });
  const keys = next();
  return { object, keys, dataStart: at, storages };
}

function openLegacy(file: string, fd: number): TorchFile {
  const size = fileSize(fd);
  // The pickles are small next to the data: read a prefix, and a bigger one if they do not fit.
  let head: LegacyHead | undefined;
  for (let len = Math.min(size, 1 << 20); !head; len = Math.min(size, len * 4)) {
    try {
      head = parseLegacyHead(readAt(fd, 0, len, file, "legacy pickles"), file);
    } catch (e) {
      if (!(e instanceof PickleEOF)) throw e;
      if (len === size) throw new CheckpointError(file, "truncated file: the pickled object ends before its STOP opcode");
    }
  }
  const { object, keys, storages } = head;
  if (!Array.isArray(keys)) throw new CheckpointError(file, `storage key list should be a list, got ${describe(keys)}`);
  // Each storage record is an int64 element count then the elements.
  const where = new Map<string, { at: number; bytes: number }>();
  let at = head.dataStart;
  for (const k of keys) {
    if (typeof k !== "string") throw new CheckpointError(file, `storage keys should be strings, got ${describe(k)}`);
    const ref = storages.get(k);
    if (!ref) throw new CheckpointError(file, `storage key '${k}' is listed but never used`);
    if (where.has(k)) throw new CheckpointError(file, `storage key '${k}' is listed twice`);
    const count = new DataView(readAt(fd, at, 8, file, `element count of storage '${k}'`).buffer).getBigInt64(0, true);
    if (count !== BigInt(ref.numel)) throw new CheckpointError(file, `storage '${k}' holds ${count} elements, expected ${ref.numel}`);
    const bytes = ref.numel * ELEMENT_SIZE[storageDtype(ref, file)];
    where.set(k, { at: at + 8, bytes });
    at += 8 + bytes;
  }
  if (at > size) throw new CheckpointError(file, `truncated file: storages need ${at} bytes but the file has ${size}`);
  const storageBytes = (ref: StorageRef): Uint8Array => {
    const w = where.get(ref.key);
    if (!w) throw new CheckpointError(file, `storage '${ref.key}' is not in the storage key list`);
    return readAt(fd, w.at, w.bytes, file, `storage '${ref.key}'`);
  };
  return { root: object, storageBytes, close: () => fs.closeSync(fd) };
}

/** Open either container; the caller closes the result. */
function openTorchFile(file: string): TorchFile {
  assertLittleEndianHost();
  const fd = openForRead(file);
  let keepOpen = false;
  try {
    const size = fileSize(fd);
    if (size < 4) throw new CheckpointError(file, `truncated file: ${size} bytes is too short for a torch checkpoint`);
    const head = readAt(fd, 0, Math.min(size, 512), file, "file header");
    if (head[0] === 0x50 && head[1] === 0x4b && head[2] === 0x03 && head[3] === 0x04) return openZip(file);
    if (head[0] === 0x80) {
      const f = openLegacy(file, fd);
      keepOpen = true;
      return f;
    }
    if (size >= 262 && new TextDecoder().decode(head.subarray(257, 262)) === "ustar") {
      throw new CheckpointError(file, "tar-format torch checkpoint (PyTorch < 0.4) is not supported");
    }
    throw new CheckpointError(file, "wrong magic: neither a zip archive nor a pickle, not a torch checkpoint");
  } finally {
    if (!keepOpen) fs.closeSync(fd);
  }
}

/**
 * Load a torch.save file as a Python value tree (see PyValue) whose tensors are contiguous HostTensors.
 * No code from the file runs; globals other than containers, tensors and storages are refused.
 */
export function loadTorchObject(file: string): PyValue {
  const f = openTorchFile(file);
  try {
    return materialise(f.root, f.storageBytes, file);
  } finally {
    f.close();
  }
}

export function isHostTensor(v: PyValue | undefined): v is HostTensor {
  return typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof Map) && !(v instanceof Set) &&
    !(v instanceof Uint8Array) && "dtype" in v && "shape" in v && "data" in v;
}

/**
 * Every tensor in a tree, named by its path with dots (dict keys, list indices), as state dicts name them. A dict or
 * list reached by two paths (or a cycle) is named by the first; two tensors may not end up with one name.
 */
export function flattenTensors(tree: PyValue, file: string, prefix = ""): Record<string, HostTensor> {
  return flattenLeaves(tree, isHostTensor, file, prefix);
}

/** flattenTensors for any kind of leaf (TensorRef for lazy reading). */
function flattenLeaves<T extends PyValue>(tree: PyValue, isLeaf: (v: PyValue) => v is T, file: string, prefix = ""): Record<string, T> {
  const out: Record<string, T> = Object.create(null);
  const add = (name: string | undefined, t: T) => {
    if (name === undefined) throw new CheckpointError(file, `a tensor's name would be longer than ${MAX_NAME} characters: nested deeper than any state dict`);
    const full = prefix && name ? `${prefix}.${name}` : prefix || name;
    if (Object.prototype.hasOwnProperty.call(out, full)) throw new CheckpointError(file, `two tensors are named '${full}'`, { tensor: full });
    out[full] = t;
  };
  if (isLeaf(tree)) add("", tree);
  walkTree(tree, (_, key, value, at) => {
    if (isLeaf(value)) add(pathName(at, key), value);
  });
  return out;
}

/** Keys under which training scripts commonly nest the weights, most likely first. */
export const STATE_DICT_KEYS = ["state_dict", "model_state_dict", "model", "ema", "model_ema", "state_dict_ema", "net", "params"];

/** The dicts and lists under `root` from which a leaf can be reached (one walk, whatever the nesting or cycles). */
function leafHolders(root: PyValue, isLeaf: (v: PyValue) => boolean): Set<object> {
  const parents = new Map<object, object[]>();
  const holders = new Set<object>();
  const todo: object[] = [];
  walkTree(root, (parent, _, value) => {
    if (isLeaf(value)) todo.push(parent);
    else if (isContainer(value)) {
      const list = parents.get(value as object);
      if (list) list.push(parent);
      else parents.set(value as object, [parent]);
    }
  });
  while (todo.length > 0) {
    const c = todo.pop()!;
    if (holders.has(c)) continue;
    holders.add(c);
    for (const p of parents.get(c) ?? []) todo.push(p);
  }
  return holders;
}

/** Descend through wrapper dicts ({'state_dict': ..., 'epoch': 3}) to the dict that holds the weights. */
export function findStateDict(tree: PyValue, isLeaf: (v: PyValue) => boolean = isHostTensor): PyValue {
  const holders = leafHolders(tree, isLeaf);
  const visited = new Set<PyValue>();
  let v = tree;
  while (v instanceof Map && !visited.has(v)) {
    visited.add(v);
    const m = v;
    const key = STATE_DICT_KEYS.find((k) => {
      const x = m.get(k);
      return (x !== undefined && isLeaf(x)) || (typeof x === "object" && x !== null && holders.has(x));
    });
    if (key === undefined) return v;
    const inner = m.get(key) as PyValue;
    // a dict that holds itself (d['state_dict'] = d) is where the descent ends
    if (visited.has(inner)) return v;
    v = inner;
  }
  return v;
}

export interface CheckpointOptions {
  /** Remove this prefix from the names that have it, e.g. "module." from DataParallel checkpoints. */
  stripPrefix?: string;
  /** Take the tensors under this dotted path instead of guessing the state dict (e.g. "ema"). */
  key?: string;
}

/** The state dict inside a loaded tree: at `opts.key`, or found by findStateDict. */
function selectStateDict(root: PyValue, path: string, opts: CheckpointOptions, isLeaf: (v: PyValue) => boolean): PyValue {
  if (opts.key === undefined) return findStateDict(root, isLeaf);
  let tree: PyValue = root;
  for (const part of opts.key.split(".")) {
    if (!(tree instanceof Map) || !tree.has(part)) {
      const keys = root instanceof Map ? [...root.keys()].slice(0, 20).map(String).join(", ") : describe(root);
      throw new CheckpointError(path, `no '${opts.key}' in the checkpoint (top level: ${keys})`);
    }
    tree = tree.get(part) as PyValue;
  }
  return tree;
}

function stripNames<T>(flat: Record<string, T>, stripPrefix: string | undefined, path: string): Record<string, T> {
  if (!stripPrefix) return flat;
  const out: Record<string, T> = Object.create(null);
  for (const [k, t] of Object.entries(flat)) {
    const name = k.startsWith(stripPrefix) ? k.slice(stripPrefix.length) : k;
    if (Object.prototype.hasOwnProperty.call(out, name)) throw new CheckpointError(path, `two tensors are named '${name}' once '${stripPrefix}' is stripped`, { tensor: name });
    out[name] = t;
  }
  return out;
}

/** A checkpoint's tensors by dotted name, from either torch.save format, with the state dict found inside wrappers. */
export function readTorchCheckpoint(path: string, opts: CheckpointOptions = {}): Record<string, HostTensor> {
  const flat = flattenTensors(selectStateDict(loadTorchObject(path), path, opts, isHostTensor), path);
  if (Object.keys(flat).length === 0) throw new CheckpointError(path, "no tensors found in the checkpoint");
  return stripNames(flat, opts.stripPrefix, path);
}

const isTensorRef = (v: PyValue): v is TensorRef => v instanceof TensorRef;

/**
 * A torch checkpoint read lazily (TensorSource): opening unpickles only the object; get() reads one tensor's
 * storage. Loading a multi-gigabyte .ckpt or .bin this way never holds more than one tensor's bytes. The file stays
 * open until close().
 */
export class TorchCheckpointFile implements TensorSource {
  private readonly f: TorchFile;
  private readonly refs: Record<string, TensorRef>;
  private readonly budget = new CopyBudget();
  /** The storages met so far, to check that every reference to a key agrees on it. */
  private readonly declared = new Map<string, StorageRef>();
  /** The last storage read: views into one storage (old legacy files) do not read it again for each tensor. */
  private last?: { key: string; data: HostData };

  constructor(readonly source: string, opts: CheckpointOptions = {}) {
    this.f = openTorchFile(source);
    try {
      this.refs = stripNames(flattenLeaves(selectStateDict(this.f.root, source, opts, isTensorRef), isTensorRef, source), opts.stripPrefix, source);
      if (Object.keys(this.refs).length === 0) throw new CheckpointError(source, "no tensors found in the checkpoint");
    } catch (e) {
      this.f.close();
      throw e;
    }
  }

  names(): string[] {
    return Object.keys(this.refs);
  }
  has(name: string): boolean {
    return Object.prototype.hasOwnProperty.call(this.refs, name);
  }
  private ref(name: string): TensorRef {
    if (!this.has(name)) throw new CheckpointError(this.source, `no such tensor (the file has ${this.names().length})`, { tensor: name });
    return this.refs[name];
  }
  info(name: string): { dtype: DType; shape: number[] } {
    const r = this.ref(name);
    return { dtype: storageDtype(r.storage, this.source), shape: [...r.shape] };
  }
  get(name: string): HostTensor {
    const r = this.ref(name);
    const seen = this.declared.get(r.storage.key);
    if (seen) checkSameStorage(seen, r.storage, this.source, name);
    else this.declared.set(r.storage.key, r.storage);
    if (this.last?.key !== r.storage.key) {
      const bytes = this.f.storageBytes(r.storage);
      this.budget.read(bytes.length);
      this.last = { key: r.storage.key, data: storageData(r.storage, bytes, this.source, name) };
    }
    const t = tensorFromStorage(r, this.last.data, this.source, name, this.budget);
    // a tensor that shares the cached storage's memory must not keep the cache alive for the next one
    if (t.data === this.last.data) this.last = undefined;
    return t;
  }
  close(): void {
    this.f.close();
  }
}
