import * as os from "os";
import * as path from "path";
import { Worker } from "worker_threads";
import { JOB_PARAMS, MatmulNT, OP_END, OP_PASS, encodeMatmul, matmulNT, runJob } from "./linalg_kernels";

// Threads for the O(n^3) loops of the Fréchet distance. The calls stay synchronous: the main thread takes one
// share of each job and blocks on an atomic counter for the others, which work on SharedArrayBuffer-backed arrays.
// D2G_LINALG_THREADS sets the thread count (default: the cores, at most 4; 1 turns threads off).

export const CTL_GEN = 0;
export const CTL_DONE = 1;
export const CTL_READY = 2;
export const CTL_ERR = 3;

export function threadCount(): number {
  const env = process.env.D2G_LINALG_THREADS;
  const n = env !== undefined && env !== "" ? Number(env) : Math.min(4, os.availableParallelism());
  if (!Number.isInteger(n) || n < 1) throw new Error(`D2G_LINALG_THREADS must be a positive integer, got '${env}'`);
  return n;
}

class Pool {
  readonly ctl = new Int32Array(new SharedArrayBuffer(16));
  readonly params: Float64Array;
  private readonly workers: Worker[] = [];
  constructor(readonly size: number) {
    this.params = new Float64Array(new SharedArrayBuffer(size * JOB_PARAMS * 8));
    const file = path.join(__dirname, "linalg_worker.js");
    for (let t = 1; t < size; t++) {
      const w = new Worker(file, { workerData: { ctl: this.ctl, params: this.params, index: t } });
      // Idle threads must not keep the process alive.
      w.unref();
      this.workers.push(w);
    }
    const deadline = Date.now() + 20000;
    for (let ready; (ready = Atomics.load(this.ctl, CTL_READY)) < size - 1; ) {
      if (Date.now() > deadline) {
        this.workers.forEach((w) => void w.terminate());
        throw new Error(`linalg pool: only ${ready} of ${size - 1} threads started from ${file}`);
      }
      Atomics.wait(this.ctl, CTL_READY, ready, 100);
    }
  }

  /** Bind the threads to `arrays` (SharedArrayBuffer-backed) for the jobs that `body` runs. */
  session<T>(arrays: Float64Array[], body: (run: (fill: (row: Float64Array, thread: number) => void) => void) => T): T {
    const gen = Atomics.load(this.ctl, CTL_GEN);
    for (const w of this.workers) w.postMessage({ arrays, gen });
    const run = (fill: (row: Float64Array, thread: number) => void): void => {
      Atomics.store(this.ctl, CTL_DONE, 0);
      for (let t = 0; t < this.size; t++) fill(this.params.subarray(t * JOB_PARAMS, (t + 1) * JOB_PARAMS), t);
      Atomics.add(this.ctl, CTL_GEN, 1);
      Atomics.notify(this.ctl, CTL_GEN);
      const row = this.params.subarray(0, JOB_PARAMS);
      if (row[0] !== OP_END) runJob(row, arrays);
      for (let done; (done = Atomics.load(this.ctl, CTL_DONE)) < this.size - 1; ) Atomics.wait(this.ctl, CTL_DONE, done);
      if (Atomics.exchange(this.ctl, CTL_ERR, 0) !== 0) throw new Error("linalg pool: a thread failed (its error is on stderr)");
    };
    try {
      return body(run);
    } finally {
      // Wait for every thread to leave the session before the next one can be bound.
      run((row) => row.fill(0).set([OP_END]));
    }
  }
}

let pool: Pool | null | undefined;

/** The shared pool, or null when one thread is all there is. */
function getPool(): Pool | null {
  if (pool === undefined) {
    const n = threadCount();
    pool = n > 1 ? new Pool(n) : null;
  }
  return pool;
}

/** A Float64Array that pool threads can share (plain when there are no threads). */
export function sharedF64(length: number): Float64Array {
  return threadCount() > 1 ? new Float64Array(new SharedArrayBuffer(length * 8)) : new Float64Array(length);
}

const isShared = (a: Float64Array): boolean => a.buffer instanceof SharedArrayBuffer;

/** Split [lo, hi) into `parts` ranges of about equal total cost, boundaries rounded to multiples of `align` from lo. */
function split(lo: number, hi: number, parts: number, cost: (i: number) => number, align: number): number[] {
  let total = 0;
  for (let i = lo; i < hi; i++) total += cost(i);
  const cuts = [lo];
  let acc = 0;
  let i = lo;
  for (let t = 1; t < parts; t++) {
    while (i < hi && acc < (total * t) / parts) acc += cost(i++);
    cuts.push(Math.min(hi, lo + Math.ceil((i - lo) / align) * align));
  }
  cuts.push(hi);
  return cuts;
}

/** matmulNT with C's rows shared out by work; small products and unshared arrays run on this thread. */
export function matmulNTParallel(p: MatmulNT): void {
  const pl = getPool();
  const lo = p.rowStart ?? 0;
  const hi = Math.min(p.m, p.rowEnd ?? p.m);
  const part = p.part ?? "all";
  const cost = (i: number): number => {
    const cols = part === "lower" ? Math.min(p.n, i + 1) : part === "upper" ? Math.max(0, p.n - i) : p.n;
    return cols * (p.aUpper ? Math.max(0, p.k - i) : p.k);
  };
  let work = 0;
  for (let i = lo; i < hi; i++) work += cost(i);
  if (!pl || work < 1e7 || !isShared(p.a) || !isShared(p.b) || !isShared(p.c)) return matmulNT(p);
  const cuts = split(lo, hi, pl.size, cost, 2);
  pl.session([p.a, p.b, p.c], (run) => run((row, t) => encodeMatmul(row, p, cuts[t], cuts[t + 1])));
}

/** Below this many trailing rows a reduction step is too short to be worth waking threads for. */
const PASS_MIN_ROWS = 384;

/**
 * One pass per step of the tridiagonal reduction over threads. `arrays` = [a, 4 vector slots, one p per thread],
 * all shared; step(k, vPrev, wPrev, v) fills slot p0 with the summed p for rows k+1.. .
 */
export function passTeam<T>(n: number, arrays: Float64Array[], body: (pass: (k: number, vPrev: number, wPrev: number, v: number) => void) => T): T | null {
  const pl = getPool();
  if (!pl || n < 2 * PASS_MIN_ROWS || !arrays.every(isShared)) return null;
  const pOf = (t: number): number => 5 + t;
  return pl.session(arrays, (run) => body((k, vPrev, wPrev, v) => {
    const lo = k + 1;
    if (n - lo < PASS_MIN_ROWS) {
      runJob(Float64Array.from([OP_PASS, 0, n, vPrev, wPrev, v, pOf(0), lo, n, lo]), arrays);
      return;
    }
    const cuts = split(lo, n, pl.size, (i) => n - i, 4);
    run((row, t) => row.set([OP_PASS, 0, n, vPrev, wPrev, v, pOf(t), cuts[t], cuts[t + 1], lo]));
    const p0 = arrays[pOf(0)];
    for (let t = 1; t < pl.size; t++) {
      const pt = arrays[pOf(t)];
      for (let c = lo; c < n; c++) p0[c] += pt[c];
    }
  }));
}

/** Threads a reduction would use (for sizing the p buffers). */
export function poolSize(): number {
  return getPool()?.size ?? 1;
}
