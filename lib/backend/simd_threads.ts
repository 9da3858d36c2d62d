import * as wasm from "@tensorflow/tfjs-backend-wasm";
import * as fs from "fs";
import * as path from "path";
import { MessageChannel, MessagePort, Worker } from "worker_threads";
import { memoryOf, Scratch, SimdModule, WasmBackend } from "./wasm_simd";

// Threads for our SIMD kernels. tfjs-wasm runs its own kernels on the main thread (XNNPACK's convolutions on
// its pthread pool); ours are called from there too, and a call that is worth splitting runs on the main thread
// and on worker threads that share the engine's memory at once (only when the engine runs threaded, where that
// memory is a SharedArrayBuffer). A worker sleeps on a control word in that memory between jobs
// (Atomics.wait/notify), so an idle pool costs nothing; workers are unref'd and never keep Node alive. Work is
// shared through an atomic counter (sharedLoop), and a worker must claim a posted job (state 1 -> 4) before it
// starts: when the main thread finishes all the work first, it withdraws the job (1 -> 0) instead of waiting
// for a worker that a busy machine has not scheduled yet (or that never started).

const WORKER_FILE = path.join(__dirname, "simd_worker.js");
/** Most arguments of one call (the control block holds 64 ints: state, module, function, count, arguments). */
const MAX_ARGS = 60;

interface PoolWorker {
  ctl: Int32Array;
  port: MessagePort;
  /** Module ids this worker has been sent. */
  known: Set<number>;
}

class Pool {
  readonly workers: PoolWorker[] = [];
  constructor(backend: object, size: number) {
    const memory = memoryOf(backend);
    for (let i = 0; i < size; i++) {
      const control = (backend as WasmBackend).wasm._malloc(64 * 4);
      const ctl = new Int32Array(memory.buffer, control, 64);
      ctl.fill(0);
      const { port1, port2 } = new MessageChannel();
      const worker = new Worker(WORKER_FILE, { workerData: { memory, control, port: port2 }, transferList: [port2] });
      worker.unref();
      port1.unref();
      this.workers.push({ ctl, port: port1, known: new Set() });
    }
  }

  /** Runs fn(...args) on this thread and on every worker at once; returns when all are done. */
  run(mod: SimdModule, fn: string, args: number[]): void {
    if (args.length > MAX_ARGS) throw new Error(`simd threads: ${fn} has ${args.length} arguments, at most ${MAX_ARGS}`);
    const functions = Object.keys(mod.exports);
    for (const w of this.workers) {
      if (!w.known.has(mod.id)) {
        w.port.postMessage({ id: mod.id, module: mod.module, functions });
        w.known.add(mod.id);
      }
      w.ctl[1] = mod.id;
      w.ctl[2] = functions.indexOf(fn);
      w.ctl[3] = args.length;
      w.ctl.set(args, 4);
      Atomics.store(w.ctl, 0, 1);
      Atomics.notify(w.ctl, 0);
    }
    let failed = false;
    try {
      mod.exports[fn](...args);
    } finally {
      for (const w of this.workers) {
        if (Atomics.compareExchange(w.ctl, 0, 1, 0) === 1) continue;
        let state: number;
        while ((state = Atomics.load(w.ctl, 0)) === 4) Atomics.wait(w.ctl, 0, 4);
        failed ||= state === 3;
        Atomics.store(w.ctl, 0, 0);
      }
    }
    if (failed) throw new Error(`simd threads: ${fn} failed on a worker thread`);
  }
}

const pools = new WeakMap<WebAssembly.Memory, Pool | null>();

function pool(backend: object): Pool | null {
  const memory = memoryOf(backend);
  let p = pools.get(memory);
  if (p === undefined) {
    const shared = typeof SharedArrayBuffer !== "undefined" && memory.buffer instanceof SharedArrayBuffer;
    // tfjs-wasm's own thread count: the worker threads it started for XNNPACK, plus the main thread
    const threads = shared ? wasm.getThreadsCount() : 1;
    // the worker file exists once lib/ is compiled (npm run build)
    p = threads > 1 && fs.existsSync(WORKER_FILE) ? new Pool(backend, threads - 1) : null;
    pools.set(memory, p);
  }
  return p;
}

/**
 * WAT of `name`_shared: `name` (whose parameters `params` include $g0, $g1, a range of work items, and $tile, a
 * 128-byte buffer of its own per thread) over [0, $total) in chunks of $chunk. Every thread calls it with the
 * same arguments: chunks come from the counter at $counter (an atomic add), each thread's buffer from $tiles by
 * the slot counter at $counter + 4. So a thread that the OS does not schedule leaves its share to the others.
 */
export function sharedLoop(name: string, params: string[]): string {
  const names = params.map((p) => p.split(" ")[0]);
  const own = params.filter((p) => !/^\$(g0|g1|tile) /.test(p));
  return `
  (func $${name}_shared ${own.map((p) => `(param ${p})`).join(" ")} (param $tiles i32) (param $counter i32) (param $chunk i32) (param $total i32)
      (local $g0 i32) (local $g1 i32) (local $tile i32)
    local.get $tiles local.get $counter i32.const 1 i32.atomic.rmw.add offset=4 i32.const 7 i32.shl i32.add local.set $tile
    block $d loop $l
      local.get $counter local.get $chunk i32.atomic.rmw.add local.tee $g0 local.get $total i32.ge_u br_if $d
      local.get $g0 local.get $chunk i32.add local.tee $g1 local.get $total local.get $g1 local.get $total i32.lt_u select local.set $g1
      ${names.map((n) => `local.get ${n}`).join(" ")}
      call $${name}
      br $l
    end end)`;
}

/**
 * `fn`(...args, tiles, counter, chunk, total) of a sharedLoop on every thread at once (only this one unless
 * `parallel`): [0, total) in chunks sized so that each thread takes several, each with its own 128-byte buffer.
 */
export function runShared(backend: object, mod: SimdModule, fn: string, args: number[], total: number, parallel = true): void {
  const p = parallel ? pool(backend) : null;
  const threads = p ? p.workers.length + 1 : 1;
  const scratch = new Scratch(backend, 2 + 32 * threads);
  const chunk = Math.max(1, Math.ceil(total / (threads * 8)));
  const all = [...args, scratch.at(2), scratch.ptr, chunk, total];
  try {
    if (p) p.run(mod, fn, all);
    else mod.exports[fn](...all);
  } finally {
    scratch.free();
  }
}
