import * as tf from "@tensorflow/tfjs";
import * as wasm from "@tensorflow/tfjs-backend-wasm";
import * as fs from "fs";
import * as path from "path";
// The module objects themselves (not esModuleInterop copies): os.cpus and worker_threads.Worker are swapped below.
import os = require("os");
import workerThreads = require("worker_threads");

// Multithreaded wasm in Node. tfjs-backend-wasm 4.22 ships a threaded SIMD build but turns it off in Node
// (flag WASM_HAS_MULTITHREAD_SUPPORT is false when IS_NODE, tfjs issue #3830). Three browser assumptions
// stand in the way, each worked around only while the backend starts:
//  1. the pthread worker script is handed to Emscripten as a blob: URL, which worker_threads rejects
//     (ERR_WORKER_PATH); URL.createObjectURL answers with wasm_pthread_worker.js on disk instead;
//  2. the module caps its pool at (logical cores / 2), i.e. 1 thread on a 2-core machine; os.cpus, which
//     Emscripten reads for the core count, reports 2 * threads entries;
//  3. running pthreads hold a ref on their Worker, so Node would never exit; the Workers are created unref'd
//     and stay so. Kernels run synchronously on the main thread, which waits for the pool, so no work is lost.
// If any step fails the engine falls back to one thread.

const WORKER_FILE = path.join(__dirname, "wasm_pthread_worker.js");
/** Emscripten pre-spawns 8 pthread workers; the C++ side caps the pool there too. */
export const MAX_WASM_THREADS = 8;

class DetachedWorker extends workerThreads.Worker {
  constructor(filename: string | URL, options?: workerThreads.WorkerOptions) {
    super(filename, options);
    this.unref();
  }
  override ref(): void {}
}

async function startThreaded(threads: number): Promise<boolean> {
  const saved = { cpus: os.cpus, createObjectURL: URL.createObjectURL, Worker: workerThreads.Worker };
  tf.env().set("WASM_HAS_MULTITHREAD_SUPPORT", true);
  wasm.setThreadsCount(threads);
  // Emscripten only reads the length of the list.
  os.cpus = () => new Array(2 * threads).fill(saved.cpus()[0]);
  URL.createObjectURL = (obj: Blob | MediaSource) =>
    obj instanceof Blob && obj.type === "application/javascript" ? WORKER_FILE : saved.createObjectURL(obj);
  workerThreads.Worker = DetachedWorker;
  try {
    return await tf.setBackend("wasm");
  } finally {
    os.cpus = saved.cpus;
    URL.createObjectURL = saved.createObjectURL;
    workerThreads.Worker = saved.Worker;
  }
}

function wasmStarted(): boolean {
  try {
    wasm.getThreadsCount();
    return true;
  } catch {
    return false; // "WASM backend not initialized"
  }
}

/** Starts the wasm backend with up to `threads` threads; returns the number it runs. */
export async function startWasm(threads: number): Promise<number> {
  if (!Number.isInteger(threads) || threads < 1) throw new Error(`wasm threads: expected a positive integer, got ${threads}`);
  if (wasmStarted()) {
    // Threads are fixed when the backend starts; one that already runs keeps its own.
    await tf.setBackend("wasm");
    return wasm.getThreadsCount();
  }
  // The worker file exists once lib/ is compiled (npm run build); sources run directly get one thread.
  if (threads > 1 && fs.existsSync(WORKER_FILE)) {
    try {
      if (await startThreaded(Math.min(threads, MAX_WASM_THREADS))) return wasm.getThreadsCount();
    } catch (e) {
      console.warn(`wasm: multithreading failed (${(e as Error).message}); continuing with 1 thread`);
    }
  }
  tf.env().set("WASM_HAS_MULTITHREAD_SUPPORT", false);
  wasm.setThreadsCount(1);
  if (!(await tf.setBackend("wasm"))) throw new Error("the wasm backend did not start (see the warning above)");
  return wasm.getThreadsCount();
}
