import * as tf from "@tensorflow/tfjs";
import * as v8 from "v8";
import { assembleWat } from "./wat";

// Our own WebAssembly SIMD kernels, run on the tfjs wasm engine's memory. tfjs-backend-wasm keeps every tensor
// in one WebAssembly.Memory (shared between its threads when it runs several); a module assembled from our
// WAT source (lib/backend/wat.ts) imports that same memory, so a kernel reads its inputs and writes its output
// in place, with no copy. A kernelFunc registered for 'wasm' receives the backend object: its dataIdMap gives
// each tensor's byte offset and makeOutput allocates the result. Kernels call these functions synchronously
// on the main thread, between tfjs's own kernels.

/** The parts of tfjs-backend-wasm's BackendWasm that our kernels use. */
export interface WasmBackend {
  wasm: { wasmMemory?: WebAssembly.Memory; asm?: { memory?: WebAssembly.Memory }; _malloc(bytes: number): number; _free(ptr: number): void };
  dataIdMap: { get(dataId: object): { memoryOffset: number } | undefined };
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  disposeData(dataId: object): boolean;
}

export type Exports = Record<string, (...args: number[]) => number>;

/** One of our modules, instantiated on the engine's memory. */
export interface SimdModule {
  /** Distinct per module within the process (the worker threads instantiate modules by id). */
  id: number;
  module: WebAssembly.Module;
  exports: Exports;
  memory: WebAssembly.Memory;
}

const instances = new WeakMap<WebAssembly.Memory, Map<string, SimdModule>>();
let nextId = 0;

export function memoryOf(backend: object): WebAssembly.Memory {
  // the threaded build exposes its shared memory as wasmMemory, the single-threaded one as an export
  const wasm = (backend as WasmBackend).wasm;
  const memory = wasm.wasmMemory ?? wasm.asm?.memory;
  if (!(memory instanceof WebAssembly.Memory)) throw new Error("wasm kernels (lib/backend/wasm_simd.ts): the tfjs wasm backend exposes no WebAssembly.Memory");
  return memory;
}

let relaxed: boolean | undefined;

/**
 * Whether our modules may use relaxed SIMD's f32x4.relaxed_madd (a fused multiply-add on CPUs with FMA: twice
 * the arithmetic of a multiply and an add per cycle in the matrix products). It is standard WebAssembly and on by
 * default from Node 22 (V8 11.4); Node 20 has it behind a V8 flag, which is turned on here for the modules we
 * compile (process-wide, before any of them is compiled). D2G_WASM_RELAXED=0 keeps the plain SIMD kernels.
 */
export function relaxedSimd(): boolean {
  if (relaxed === undefined) {
    const probe = assembleWat("(func $f (param $a v128) (result v128) local.get $a local.get $a local.get $a f32x4.relaxed_madd)", false);
    relaxed = false;
    if (process.env.D2G_WASM_RELAXED !== "0") {
      if (!WebAssembly.validate(probe)) v8.setFlagsFromString("--experimental-wasm-relaxed-simd");
      relaxed = WebAssembly.validate(probe);
    }
  }
  return relaxed;
}

/** The module assembled from `wat` (once per engine memory), instantiated on the backend's memory. */
export function simdInstance(backend: object, name: string, wat: string): SimdModule {
  const memory = memoryOf(backend);
  let byName = instances.get(memory);
  if (!byName) instances.set(memory, (byName = new Map()));
  let m = byName.get(name);
  if (!m) {
    const shared = typeof SharedArrayBuffer !== "undefined" && memory.buffer instanceof SharedArrayBuffer;
    const module = new WebAssembly.Module(assembleWat(wat, shared));
    m = { id: nextId++, module, exports: new WebAssembly.Instance(module, { env: { memory } }).exports as unknown as Exports, memory };
    byName.set(name, m);
  }
  return m;
}

/** The functions of `wat`, bound to the backend's memory, for calls on this thread. */
export function simdModule(backend: object, name: string, wat: string): Exports {
  return simdInstance(backend, name, wat).exports;
}

/** Byte offset of a tensor's data in the engine's memory. */
export function offsetOf(backend: object, t: tf.TensorInfo): number {
  const data = (backend as unknown as WasmBackend).dataIdMap.get(t.dataId);
  if (!data) throw new Error("wasm kernels: a tensor has no data on the wasm backend");
  return data.memoryOffset;
}

/** A float32 output tensor of `shape`, allocated by the engine. */
export function makeOutput(backend: object, shape: number[]): tf.TensorInfo {
  return (backend as unknown as WasmBackend).makeOutput(shape, "float32");
}

/**
 * Scratch memory for one kernel call: `floats` 4-byte entries, zeroed unless `zeroed` is false. view() and
 * i32() give fresh typed arrays over it (the engine's memory may grow, and a grown memory has a new buffer,
 * whenever anything is allocated).
 */
export class Scratch {
  readonly ptr: number;
  constructor(private readonly backend: object, readonly floats: number, zeroed = true) {
    this.ptr = (backend as unknown as WasmBackend).wasm._malloc(Math.max(16, floats * 4));
    if (zeroed) this.view().fill(0);
  }
  view(offset = 0, length = this.floats - offset): Float32Array {
    return new Float32Array(memoryOf(this.backend).buffer, this.ptr + offset * 4, length);
  }
  i32(): Int32Array {
    return new Int32Array(memoryOf(this.backend).buffer, this.ptr, this.floats);
  }
  /** Byte address of entry `i`. */
  at(i: number): number {
    return this.ptr + i * 4;
  }
  free(): void {
    (this.backend as unknown as WasmBackend).wasm._free(this.ptr);
  }
}

/** A fresh Float32Array over a tensor's data (valid until the next allocation). */
export function f32(backend: object, t: tf.TensorInfo): Float32Array {
  return new Float32Array(memoryOf(backend).buffer, offsetOf(backend, t), tf.util.sizeFromShape(t.shape));
}

/**
 * WAT of a function that walks a [rows, C] block four channels at a time (C a multiple of 4): $j is the byte
 * offset of the vector within the row, and the pointers named in `rowPtrs` advance by one row (4C bytes) after
 * each row. Per-channel arrays (sums, scales) are indexed by $j alone. The function takes `params`, then $rows
 * and $c; `body` may use the v128 scratch locals $v $s $t $n.
 */
export function rowsFunc(name: string, params: string[], rowPtrs: string[], body: string, locals = ""): string {
  return `
  (func $${name} ${params.map((p) => `(param ${p})`).join(" ")} (param $rows i32) (param $c i32)
    (local $r i32) (local $j i32) (local $cb i32) (local $v v128) (local $s v128) (local $t v128) (local $n v128) ${locals}
    local.get $c i32.const 2 i32.shl local.set $cb
    ${countLoop("$r", "local.get $rows", 1, `
      ${countLoop("$j", "local.get $cb", 16, body)}
      ${rowPtrs.map((p) => `local.get ${p} local.get $cb i32.add local.set ${p}`).join("\n      ")}`)})`;
}

/** WAT: for (counter = 0; counter < bound; counter += step) body, `bound` an i32 expression. */
export function countLoop(counter: string, bound: string, step: number, body: string): string {
  const label = counter.slice(1);
  return `
    i32.const 0 local.set ${counter}
    block $${label}_done loop $${label}_next
      local.get ${counter} ${bound} i32.ge_u br_if $${label}_done
      ${body}
      local.get ${counter} i32.const ${step} i32.add local.set ${counter} br $${label}_next
    end end`;
}

/** WAT: the address of the current vector of `ptr` (see rowsFunc), and its load. */
export const at = (ptr: string) => `local.get ${ptr} local.get $j i32.add`;
export const load = (ptr: string) => `${at(ptr)} v128.load`;

/** sum_rows(x, acc, rows, c): acc[c] += sum_r x[r, c]. */
export const SUM_ROWS = rowsFunc("sum_rows", ["$x i32", "$acc i32"], ["$x"], `${at("$acc")} ${load("$acc")} ${load("$x")} f32x4.add v128.store`);

const splat = (v: number) => `v128.const f32x4 ${v} ${v} ${v} ${v}`;

const MAGIC = 12582912; // 1.5 * 2^23: adding it rounds a float of magnitude below 2^22 to an integer

/**
 * WAT that replaces the f32x4 in local `y` by sigmoid(y) = 1 / (1 + exp(-y)), using v128 locals `t` and `n`.
 * exp(t) = 2^n exp(r) with n = round(t / ln 2), r = t - n ln 2 (ln 2 split in two for precision, Cephes), and
 * exp(r) by its Taylor polynomial to degree 6 (|r| <= ln2/2: relative error below 2e-7). t is clamped to
 * [-87, 88] so that 2^n stays a normal float32. n is rounded by adding 1.5 * 2^23, which also leaves n + that
 * number's bit pattern in the sum's bits, from which 2^n's bits come by an integer add and shift.
 */
export function sigmoidInPlace(y: string, t: string, n: string): string {
  const nf = `local.get ${n} ${splat(MAGIC)} f32x4.sub`;
  const expBias = 127 - 0x4b400000;
  return `
    local.get ${y} f32x4.neg ${splat(-87)} f32x4.pmax ${splat(88)} f32x4.pmin local.set ${t}
    local.get ${t} ${splat(Math.LOG2E)} f32x4.mul ${splat(MAGIC)} f32x4.add local.set ${n}
    local.get ${t} ${nf} ${splat(0.693359375)} f32x4.mul f32x4.sub
    ${nf} ${splat(-2.12194440e-4)} f32x4.mul f32x4.sub local.set ${t}
    ${splat(1 / 720)} local.get ${t} f32x4.mul ${splat(1 / 120)} f32x4.add
    local.get ${t} f32x4.mul ${splat(1 / 24)} f32x4.add
    local.get ${t} f32x4.mul ${splat(1 / 6)} f32x4.add
    local.get ${t} f32x4.mul ${splat(0.5)} f32x4.add
    local.get ${t} f32x4.mul ${splat(1)} f32x4.add
    local.get ${t} f32x4.mul ${splat(1)} f32x4.add
    local.get ${n} v128.const i32x4 ${expBias} ${expBias} ${expBias} ${expBias} i32x4.add i32.const 23 i32x4.shl
    f32x4.mul local.set ${t}
    ${splat(1)} ${splat(1)} local.get ${t} f32x4.add f32x4.div local.set ${y}`;
}

/** True when the active backend has `kernelName` registered (our wasm kernels; elsewhere the public-op composite runs). */
export function hasKernel(kernelName: string): boolean {
  return tf.getKernel(kernelName, tf.getBackend()) !== undefined;
}

/**
 * True while a gradient of a gradient is being recorded (e.g. R1: the discriminator's input gradient inside a
 * parameter gradient). Fused kernels have hand-written backward kernels that are not themselves differentiable,
 * so then the ops fall back to their public-op composites, which the engine differentiates as often as asked.
 */
export function recordingSecondOrder(): boolean {
  return tf.engine().state.gradientDepth >= 2;
}
