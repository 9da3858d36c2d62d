import { CheckpointError } from "./checkpoint_error";
import { HostTensor } from "./host_tensor";

// A restricted unpickler for Python pickle protocols 2-5 (and the binary protocol-0/1 opcodes they reuse).
// It runs no code: every GLOBAL must be in the table below, which knows plain containers and what torch.save
// emits (OrderedDict, tensor/parameter rebuild functions, storage classes). Anything else is refused by name,
// except, when reading a TorchScript archive, the `__torch__.*` classes its modules are pickled as (see
// UnpickleOptions.scriptObjects).
// Its work is bounded by the pickle's size: the VM is a loop over opcodes (no recursion, so any nesting depth is
// fine), each opcode does constant work except where it copies, and copies draw on a budget proportional to the
// pickle's length, so a small pickle cannot build a huge object graph.

/** A reference to a torch storage, from a persistent id; pth.ts turns it into bytes. */
export class StorageRef {
  constructor(
    /** The storage class name, e.g. "FloatStorage". */
    readonly storageType: string,
    readonly key: string,
    readonly location: string,
    /** Elements in the whole storage named by `key`. */
    readonly numel: number,
    /** Old legacy files can point a tensor at a slice of a storage: the slice's first element. */
    readonly viewOffset = 0,
  ) {}
}

/** A tensor as torch._utils._rebuild_tensor_v2 describes it: a strided window onto a storage. */
export class TensorRef {
  constructor(
    readonly storage: StorageRef,
    readonly offset: number,
    readonly shape: number[],
    readonly stride: number[],
    readonly requiresGrad: boolean,
  ) {}
}

/** A global the table allows that stands for itself (a storage class passed inside a persistent id). */
export class PyGlobal {
  constructor(readonly module: string, readonly name: string) {}
  toString(): string {
    return `${this.module}.${this.name}`;
  }
}

/**
 * Python values as JS: None -> null, int -> number (bigint beyond 2^53), float -> number, str -> string, bytes -> Uint8Array,
 * list/tuple -> array, dict/OrderedDict -> Map (keeps order and non-string keys), set -> Set.
 * HostTensor appears only after pth.ts has replaced each TensorRef with its data.
 */
export type PyValue =
  | null | boolean | number | bigint | string | Uint8Array
  | PyValue[] | Map<PyValue, PyValue> | Set<PyValue>
  | PyGlobal | StorageRef | TensorRef | HostTensor;

/** Thrown when the bytes end mid-pickle, so a caller reading a file in pieces can fetch more. */
export class PickleEOF extends CheckpointError {}

interface CallContext {
  fail: (msg: string) => never;
  /** Account for copying n items (see the budget in unpickle). */
  spend: (n: number) => void;
}

/** What calling an allowed global (REDUCE / NEWOBJ) gives. */
type GlobalCall = (args: PyValue[], ctx: CallContext) => PyValue;

function int(v: PyValue, what: string, fail: (m: string) => never): number {
  if (typeof v === "number" && Number.isInteger(v)) return v;
  return fail(`${what} should be an int, got ${describe(v)}`);
}

function intList(v: PyValue, what: string, fail: (m: string) => never): number[] {
  if (!Array.isArray(v)) return fail(`${what} should be a tuple of ints, got ${describe(v)}`);
  return v.map((x, i) => int(x, `${what}[${i}]`, fail));
}

const shapeText = (xs: number[]) => `[${xs.join(",")}]`;

function rebuildTensor(args: PyValue[], { fail }: CallContext): TensorRef {
  const [storage, offset, size, stride, requiresGrad] = args;
  if (!(storage instanceof StorageRef)) return fail(`tensor storage should be a persistent storage id, got ${describe(storage)}`);
  const shape = intList(size, "tensor size", fail);
  const strides = intList(stride, "tensor stride", fail);
  const at = int(offset, "storage offset", fail);
  if (strides.length !== shape.length) fail(`tensor size ${shape.length}-d but stride ${strides.length}-d`);
  if (shape.some((d) => d < 0)) fail(`tensor size ${shapeText(shape)} has a negative dimension`);
  if (strides.some((d) => d < 0)) fail(`tensor stride ${shapeText(strides)} has a negative stride`);
  if (at < 0) fail(`storage offset ${at} is negative`);
  return new TensorRef(storage, at, shape, strides, requiresGrad === true);
}

/** torch.nn.Parameter pickles as its data tensor plus flags we do not need. */
function rebuildParameter(args: PyValue[], { fail }: CallContext): TensorRef {
  if (!(args[0] instanceof TensorRef)) return fail(`parameter data should be a tensor, got ${describe(args[0])}`);
  return args[0];
}

function toMap(args: PyValue[], { fail, spend }: CallContext): Map<PyValue, PyValue> {
  const m = new Map<PyValue, PyValue>();
  const src = args[0];
  if (src === undefined || src === null) return m;
  if (src instanceof Map) {
    spend(src.size);
    return new Map(src);
  }
  if (!Array.isArray(src)) return fail(`OrderedDict argument should be a list of pairs, got ${describe(src)}`);
  spend(src.length);
  for (const pair of src) {
    if (!Array.isArray(pair) || pair.length !== 2) fail(`OrderedDict item should be a (key, value) pair`);
    m.set((pair as PyValue[])[0], (pair as PyValue[])[1]);
  }
  return m;
}

function toSet(args: PyValue[], { fail, spend }: CallContext): Set<PyValue> {
  const src = args[0] ?? [];
  if (!Array.isArray(src)) return fail(`set argument should be a list, got ${describe(src)}`);
  spend(src.length);
  return new Set(src);
}

/** Storage classes torch.save names in persistent ids; pth.ts maps the known ones to dtypes. */
const STORAGE_CLASS = /^(?:[A-Z][A-Za-z0-9]*)?Storage$/;

/** Callable globals; torch storage classes (STORAGE_CLASS) are also allowed, as values only. */
const GLOBALS: Record<string, GlobalCall> = {
  "collections.OrderedDict": toMap,
  "builtins.set": toSet,
  "builtins.frozenset": toSet,
  // Protocol 2 writes Python 3 bytes as _codecs.encode(latin-1 text, 'latin1').
  "_codecs.encode": ([s, enc], { fail, spend }) => {
    if (typeof s !== "string" || (enc !== "latin1" && enc !== "latin-1")) return fail(`_codecs.encode only supports latin1 text`);
    spend(s.length);
    return Uint8Array.from(s, (c) => c.charCodeAt(0));
  },
  "torch._utils._rebuild_tensor": rebuildTensor,
  "torch._utils._rebuild_tensor_v2": rebuildTensor,
  "torch._utils._rebuild_parameter": rebuildParameter,
  "torch._utils._rebuild_parameter_with_state": rebuildParameter,
};

export function describe(v: PyValue | undefined): string {
  if (v === null) return "None";
  if (v === undefined) return "nothing";
  if (Array.isArray(v)) return `a sequence of ${v.length}`;
  if (v instanceof Map) return `a dict of ${v.size}`;
  if (v instanceof Uint8Array) return `bytes(${v.length})`;
  if (typeof v === "object") return v.constructor.name;
  return `${typeof v} ${String(v)}`;
}

export interface UnpickleOptions {
  /** Named in every error. */
  file: string;
  /** The zip entry holding the pickle, if any, also named in errors. */
  entry?: string;
  /** Resolves persistent ids (torch uses them for storages). Without it a persistent id is an error. */
  persistentLoad?: (pid: PyValue) => PyValue;
  /**
   * A TorchScript archive (torch.jit.save) pickles each module as an instance of a compiled `__torch__.*` class
   * (`__torch__.model.CLIP`, `__torch__.torch.nn.modules.linear.Linear`, ...), created with no arguments and then
   * given a dict of its attributes (parameters, buffers, submodules, flags). With this set, such an instance
   * becomes a Map of those attributes, so the archive reads like a nested state dict; nothing is called.
   */
  scriptObjects?: boolean;
}

const latin1 = new TextDecoder("latin1");
const utf8 = new TextDecoder("utf-8", { fatal: true });

/** Python refuses int(str) beyond this many digits (sys.int_info.str_digits_check_threshold's default). */
const MAX_INT_DIGITS = 4300;
/** Items a pickle may copy (OrderedDict(d), set(l), bytes from text) beyond one per byte of its own. */
const COPY_BUDGET_FACTOR = 4;
const COPY_BUDGET_BASE = 1 << 18;

/** Unpickle one object starting at `start`; `end` is the offset just past its STOP opcode. */
export function unpickle(bytes: Uint8Array, opts: UnpickleOptions, start = 0): { value: PyValue; end: number } {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = start;
  let stack: PyValue[] = [];
  const marks: PyValue[][] = [];
  const memo = new Map<number, PyValue>();
  const where = { entry: opts.entry };
  const fail = (msg: string): never => {
    throw new CheckpointError(opts.file, `pickle at byte ${pos}: ${msg}`, where);
  };
  const need = (n: number): void => {
    if (pos + n > bytes.length) throw new PickleEOF(opts.file, `truncated file: pickle data ends at byte ${bytes.length}, inside an object`, where);
  };
  let budget = COPY_BUDGET_FACTOR * (bytes.length - start) + COPY_BUDGET_BASE;
  const spend = (n: number): void => {
    budget -= n;
    if (budget < 0) fail(`builds more than ${COPY_BUDGET_FACTOR * (bytes.length - start) + COPY_BUDGET_BASE} items by copying, far beyond what a pickle of ${bytes.length - start} bytes describes (a memory bomb?)`);
  };
  const take = (n: number): Uint8Array => {
    need(n);
    pos += n;
    return bytes.subarray(pos - n, pos);
  };
  const u8 = (): number => take(1)[0];
  const u16 = (): number => (need(2), (pos += 2), dv.getUint16(pos - 2, true));
  const u32 = (): number => (need(4), (pos += 4), dv.getUint32(pos - 4, true));
  const u64 = (): number => {
    need(8);
    pos += 8;
    const v = dv.getBigUint64(pos - 8, true);
    return v > BigInt(Number.MAX_SAFE_INTEGER) ? fail(`length ${v} is too large`) : Number(v);
  };
  const line = (): string => {
    const nl = bytes.indexOf(0x0a, pos);
    if (nl < 0) throw new PickleEOF(opts.file, "truncated file: pickle data ends inside a text line", where);
    const s = latin1.decode(bytes.subarray(pos, nl));
    pos = nl + 1;
    return s;
  };
  const text = (b: Uint8Array): string => {
    try {
      return utf8.decode(b);
    } catch {
      return fail("string is not valid UTF-8");
    }
  };
  // Text opcodes hold what Python's int() and float() accept (decimal here; Python's base-0 int also takes 0x..).
  const textInt = (op: string, s: string, shown = s): number | bigint => {
    const t = s.trim();
    if (!/^[+-]?(0|[1-9][0-9]*)$/.test(t)) return fail(`${op} '${shown}' is not an integer`);
    if (t.replace(/^[+-]/, "").length > MAX_INT_DIGITS) fail(`${op} has ${t.length} digits; Python refuses more than ${MAX_INT_DIGITS}`);
    return toInt(BigInt(t));
  };
  const textFloat = (s: string): number => {
    const t = s.trim().toLowerCase();
    const special = /^([+-]?)(inf|infinity|nan)$/.exec(t);
    if (special) return special[2] === "nan" ? NaN : special[1] === "-" ? -Infinity : Infinity;
    if (!/^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)(e[+-]?[0-9]+)?$/.test(t)) return fail(`FLOAT '${s}' is not a number`);
    return Number(t);
  };
  const memoKey = (op: string, s: string): number => {
    const k = textInt(op, s);
    return typeof k === "number" ? k : fail(`${op} '${s}' is not a memo index`);
  };
  // `stack` is rebound by MARK handling, so always push through this (its argument is evaluated first).
  const push = (v: PyValue): void => {
    stack.push(v);
  };
  const pop = (): PyValue => (stack.length ? (stack.pop() as PyValue) : fail("stack underflow"));
  const top = (): PyValue => (stack.length ? stack[stack.length - 1] : fail("stack underflow"));
  const popMark = (): PyValue[] => {
    const items = stack;
    const prev = marks.pop();
    if (!prev) return fail("no MARK on the stack");
    stack = prev;
    return items;
  };
  const memoGet = (i: number): PyValue => (memo.has(i) ? (memo.get(i) as PyValue) : fail(`memo key ${i} missing`));
  const toInt = (v: bigint): number | bigint => (v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v);
  // Through hex, which is linear in the length (shifting a BigInt byte by byte is quadratic).
  const longLE = (b: Uint8Array): number | bigint => {
    if (b.length === 0) return 0;
    const v = BigInt(`0x${Buffer.from(b).reverse().toString("hex")}`);
    return toInt(b[b.length - 1] & 0x80 ? v - (1n << BigInt(8 * b.length)) : v);
  };
  const isScriptClass = (mod: string) => opts.scriptObjects === true && (mod === "__torch__" || mod.startsWith("__torch__."));
  // instances of TorchScript classes: the Maps that BUILD fills with attributes
  const scriptInstances = new WeakSet<Map<PyValue, PyValue>>();
  const global = (module: string, name: string): PyValue => {
    const mod = module === "__builtin__" ? "builtins" : module; // Python 2's name
    const full = `${mod}.${name}`;
    if (GLOBALS[full] || (mod === "torch" && STORAGE_CLASS.test(name)) || isScriptClass(mod)) return new PyGlobal(mod, name);
    return fail(`unknown global '${full}' refused (only containers, torch tensors and storages are understood)`);
  };
  const call = (fn: PyValue, args: PyValue): PyValue => {
    if (!(fn instanceof PyGlobal)) return fail(`cannot call ${describe(fn)}`);
    if (isScriptClass(fn.module)) {
      if (!Array.isArray(args) || args.length > 0) return fail(`TorchScript object '${fn}' created with arguments`);
      const obj = new Map<PyValue, PyValue>();
      scriptInstances.add(obj);
      return obj;
    }
    const f = GLOBALS[fn.toString()];
    if (!f) return fail(`'${fn}' cannot be called`);
    if (!Array.isArray(args)) return fail(`arguments to '${fn}' should be a tuple, got ${describe(args)}`);
    return f(args, { fail: (m) => fail(`${fn}: ${m}`), spend });
  };
  const setItems = (target: PyValue, kv: PyValue[]): void => {
    if (!(target instanceof Map)) fail(`SETITEM(S) on ${describe(target)}`);
    for (let i = 0; i + 1 < kv.length; i += 2) (target as Map<PyValue, PyValue>).set(kv[i], kv[i + 1]);
  };
  const appendItems = (target: PyValue, items: PyValue[]): void => {
    if (!Array.isArray(target)) fail(`APPEND(S) on ${describe(target)}`);
    // one by one: a spread of 300k arguments overflows the call stack
    for (const x of items) (target as PyValue[]).push(x);
  };
  const persistent = (pid: PyValue): PyValue => (opts.persistentLoad ? opts.persistentLoad(pid) : fail("persistent id without a loader"));

  for (;;) {
    const op = u8();
    switch (op) {
      case 0x80: { // PROTO
        const v = u8();
        if (v > 5) fail(`pickle protocol ${v} is newer than 5`);
        break;
      }
      case 0x95: take(8); break; // FRAME: framing is only a read-ahead hint
      case 0x2e: return { value: pop(), end: pos }; // STOP
      case 0x28: marks.push(stack); stack = []; break; // MARK
      case 0x30: pop(); break; // POP
      case 0x31: popMark(); break; // POP_MARK
      case 0x32: push(top()); break; // DUP
      case 0x4e: push(null); break; // NONE
      case 0x88: push(true); break; // NEWTRUE
      case 0x89: push(false); break; // NEWFALSE
      case 0x4a: need(4); pos += 4; push(dv.getInt32(pos - 4, true)); break; // BININT
      case 0x4b: push(u8()); break; // BININT1
      case 0x4d: push(u16()); break; // BININT2
      case 0x8a: push(longLE(take(u8()))); break; // LONG1
      case 0x8b: push(longLE(take(u32()))); break; // LONG4
      case 0x49: { // INT (text); "01"/"00" are protocol-0 True/False
        const s = line();
        push(s === "01" ? true : s === "00" ? false : textInt("INT", s));
        break;
      }
      case 0x4c: { // LONG (text), Python 2 writes a trailing L
        const s = line();
        push(textInt("LONG", s.endsWith("L") ? s.slice(0, -1) : s, s));
        break;
      }
      case 0x46: push(textFloat(line())); break; // FLOAT (text)
      case 0x47: need(8); pos += 8; push(dv.getFloat64(pos - 8, false)); break; // BINFLOAT is big-endian
      case 0x54: push(latin1.decode(take(u32()))); break; // BINSTRING (Python 2 str)
      case 0x55: push(latin1.decode(take(u8()))); break; // SHORT_BINSTRING
      case 0x58: push(text(take(u32()))); break; // BINUNICODE
      case 0x8c: push(text(take(u8()))); break; // SHORT_BINUNICODE
      case 0x8d: push(text(take(u64()))); break; // BINUNICODE8
      // Copies, so the value neither pins nor aliases the input (which may be a Node Buffer).
      case 0x42: push(new Uint8Array(take(u32()))); break; // BINBYTES
      case 0x43: push(new Uint8Array(take(u8()))); break; // SHORT_BINBYTES
      case 0x8e: case 0x96: push(new Uint8Array(take(u64()))); break; // BINBYTES8, BYTEARRAY8
      case 0x5d: push([]); break; // EMPTY_LIST
      case 0x29: push([]); break; // EMPTY_TUPLE
      case 0x7d: push(new Map()); break; // EMPTY_DICT
      case 0x8f: push(new Set()); break; // EMPTY_SET
      case 0x6c: case 0x74: push(popMark()); break; // LIST, TUPLE
      case 0x85: push([pop()]); break; // TUPLE1
      case 0x86: { const b = pop(); push([pop(), b]); break; } // TUPLE2
      case 0x87: { const c = pop(); const b = pop(); push([pop(), b, c]); break; } // TUPLE3
      case 0x64: { const kv = popMark(); const m = new Map(); setItems(m, kv); push(m); break; } // DICT
      case 0x91: push(new Set(popMark())); break; // FROZENSET
      case 0x61: { const v = pop(); appendItems(top(), [v]); break; } // APPEND
      case 0x65: { const items = popMark(); appendItems(top(), items); break; } // APPENDS
      case 0x73: { const v = pop(); const k = pop(); setItems(top(), [k, v]); break; } // SETITEM
      case 0x75: { const kv = popMark(); setItems(top(), kv); break; } // SETITEMS
      case 0x90: { // ADDITEMS
        const items = popMark();
        const s = top();
        if (!(s instanceof Set)) fail(`ADDITEMS on ${describe(s)}`);
        for (const x of items) (s as Set<PyValue>).add(x);
        break;
      }
      case 0x68: push(memoGet(u8())); break; // BINGET
      case 0x6a: push(memoGet(u32())); break; // LONG_BINGET
      case 0x67: push(memoGet(memoKey("GET", line()))); break; // GET (text)
      case 0x71: memo.set(u8(), top()); break; // BINPUT
      case 0x72: memo.set(u32(), top()); break; // LONG_BINPUT
      case 0x70: memo.set(memoKey("PUT", line()), top()); break; // PUT (text)
      case 0x94: memo.set(memo.size, top()); break; // MEMOIZE
      case 0x63: { const module = line(); push(global(module, line())); break; } // GLOBAL
      case 0x93: { // STACK_GLOBAL
        const name = pop();
        const module = pop();
        if (typeof module !== "string" || typeof name !== "string") fail("STACK_GLOBAL needs two strings");
        push(global(module as string, name as string));
        break;
      }
      case 0x52: { const args = pop(); push(call(pop(), args)); break; } // REDUCE
      case 0x81: { const args = pop(); push(call(pop(), args)); break; } // NEWOBJ: cls.__new__(cls, *args)
      case 0x92: { // NEWOBJ_EX
        const kwargs = pop();
        const args = pop();
        if (!(kwargs instanceof Map) || kwargs.size > 0) fail("NEWOBJ_EX with keyword arguments is not supported");
        push(call(pop(), args));
        break;
      }
      case 0x62: { // BUILD
        const state = pop();
        const target = top();
        if (!(target instanceof Map)) fail(`cannot set state on ${describe(target)}`);
        // A TorchScript object's state is its attribute dict. State dicts carry `_metadata` (module versions) as
        // OrderedDict instance state: dropped, tensors don't need it.
        if (scriptInstances.has(target as Map<PyValue, PyValue>)) {
          if (!(state instanceof Map)) fail(`TorchScript object state should be a dict, got ${describe(state)}`);
          for (const [k, v] of state as Map<PyValue, PyValue>) (target as Map<PyValue, PyValue>).set(k, v);
        }
        break;
      }
      case 0x51: push(persistent(pop())); break; // BINPERSID
      case 0x50: push(persistent(line())); break; // PERSID
      default:
        fail(`unsupported pickle opcode 0x${op.toString(16)}${op >= 0x20 && op < 0x7f ? ` '${String.fromCharCode(op)}'` : ""}`);
    }
  }
}

/**
 * torch.save's persistent ids for storages: ('storage', StorageClass, key, location, numel) in zip archives, and
 * the same plus view metadata (view_key, offset, view_numel) or None in legacy files.
 */
export function torchPersistentLoad(file: string): (pid: PyValue) => PyValue {
  return (pid) => {
    const fail = (m: string): never => {
      throw new CheckpointError(file, `persistent id: ${m}`);
    };
    if (!Array.isArray(pid) || pid[0] !== "storage") return fail(`only storages are supported, got ${describe(Array.isArray(pid) ? pid[0] : pid)}`);
    const [, cls, key, location, numel, viewMeta] = pid;
    if (!(cls instanceof PyGlobal)) return fail(`storage type should be a torch storage class, got ${describe(cls)}`);
    if (typeof key !== "string" || typeof location !== "string") return fail("storage key and location should be strings");
    const n = int(numel ?? null, "storage numel", fail);
    if (n < 0) fail(`storage '${key}': a storage of ${n} elements is impossible`);
    if (viewMeta === undefined || viewMeta === null) return new StorageRef(cls.name, key, location, n);
    if (!Array.isArray(viewMeta) || viewMeta.length !== 3) return fail("storage view metadata should be (key, offset, numel)");
    const viewOffset = int(viewMeta[1], "view offset", fail);
    if (viewOffset < 0) fail(`storage '${key}': view offset ${viewOffset} is negative`);
    return new StorageRef(cls.name, key, location, n, viewOffset);
  };
}
