import { ChildProcessWithoutNullStreams, spawn } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { CheckpointError } from "./checkpoint_error";
import { ELEMENT_SIZE } from "./file_bytes";
import { baseFiles, Expectation, FuzzCase, hostValue, LoaderFormat, randomCases, TensorSet, TensorValue } from "./fuzz_corpus";
import { handMadeCases } from "./fuzz_hostile";
import { DType, HostTensor, numel } from "./host_tensor";
import { readNpy, readNpz } from "./npy";
import { readTorchCheckpoint } from "./pth";
import { readSafetensors } from "./safetensors";

// The loader fuzz run: every case (lib/io/fuzz_corpus.ts, lib/io/fuzz_hostile.ts) is written to a temporary folder
// and loaded in a child process through the public loaders (readSafetensors, readNpy, readNpz, readTorchCheckpoint),
// with a V8 heap limit, a resident-memory watchdog, a per-file peak-memory check and a wall-clock kill; a child
// loads files one at a time and is replaced after a kill or crash. Each outcome is classified:
//   clean error   the loader threw a CheckpointError that names the file, and the case allows an error;
//   valid load    the loader returned tensors the case allows (see Expectation in fuzz_corpus.ts);
//   anything else a foreign error, an error without the file, an error where only a load is valid, a load the case
//                 does not allow, a timeout, a memory overrun, a crash, or a payload that ran (its canary exists).

export type Outcome = "clean error" | "valid load" | "anything else";

export interface CaseResult {
  id: string;
  outcome: Outcome;
  /** What happened, e.g. "CheckpointError: ...", "identical", "timeout after 10000 ms". */
  detail: string;
  ms: number;
  peakRssMb?: number;
}

export interface FuzzOptions {
  /** Random mutations on top of the hand-made cases. */
  count: number;
  seed: number;
  /** Children at once (default: 2, or the core count if smaller). */
  parallel?: number;
  /** Wall-clock limit per file. */
  timeoutMs?: number;
  /** Resident memory limit per child; the V8 heap is capped below it. */
  memoryMb?: number;
  /** Called after each case, e.g. for progress. */
  onResult?: (r: CaseResult, done: number, total: number) => void;
}

export interface FuzzReport {
  results: CaseResult[];
  counts: Record<Outcome, number>;
  canaryRan: boolean;
}

const EXT: Record<LoaderFormat, string> = { safetensors: "safetensors", npy: "npy", npz: "npz", pth: "pth" };
/** Files one loader process serves before a fresh one takes over, so that nothing accumulates for long. */
const FILES_PER_PROCESS = 50;

/** What the child process prints: one JSON line. */
interface ChildReport {
  ok: boolean;
  tensors?: Array<{ name: string; dtype: DType; shape: number[]; elements: number; bytes: string }>;
  error?: { name: string; message: string; file?: string; checkpoint: boolean };
  /** Peak resident memory of the process while it loaded this file. */
  peakRssMb: number;
}

function load(format: LoaderFormat, file: string): Record<string, HostTensor> {
  if (format === "safetensors") return readSafetensors(file).tensors;
  if (format === "npy") return { x: readNpy(file) };
  if (format === "npz") return readNpz(file);
  return readTorchCheckpoint(file);
}

/** Peak resident memory since the last reset, in MB (Linux resets VmHWM on "5" > clear_refs). */
function peakRssMb(): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync("/proc/self/status", "utf8"));
  return m ? Number(m[1]) / 1024 : process.resourceUsage().maxRSS / 1024;
}

function resetPeakRss(): void {
  try {
    fs.writeFileSync("/proc/self/clear_refs", "5");
  } catch {
    // without it the peak is the process's, an over-estimate: a file can only be blamed for too much
  }
}

function loadReport(format: LoaderFormat, file: string): ChildReport {
  resetPeakRss();
  try {
    const tensors = Object.entries(load(format, file)).map(([name, t]) => {
      const v = hostValue(t);
      return { name, dtype: t.dtype, shape: t.shape, elements: t.data.length, bytes: Buffer.from(v.bytes).toString("base64") };
    });
    return { ok: true, tensors, peakRssMb: peakRssMb() };
  } catch (e) {
    const err = e as Error;
    return {
      ok: false,
      error: { name: err?.name ?? typeof e, message: String(err?.message ?? e), file: (err as CheckpointError)?.file, checkpoint: e instanceof CheckpointError },
      peakRssMb: peakRssMb(),
    };
  }
}

/**
 * The loader process's side (started by LoaderProcess): read {format, file} lines from stdin, load each file, answer
 * each with a ChildReport line. Garbage is collected between files, so each file's peak memory is its own.
 */
export function fuzzWorker(): void {
  process.stdout.write("ready\n");
  let buffer = "";
  process.stdin.setEncoding("utf8");
  process.stdin.on("data", (chunk: string) => {
    buffer += chunk;
    for (let nl = buffer.indexOf("\n"); nl >= 0; nl = buffer.indexOf("\n")) {
      const { format, file } = JSON.parse(buffer.slice(0, nl)) as { format: LoaderFormat; file: string };
      buffer = buffer.slice(nl + 1);
      const report = loadReport(format, file);
      process.stdout.write(JSON.stringify(report) + "\n");
      (globalThis as { gc?: () => void }).gc?.();
    }
  });
}

function rssMb(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) / 1024 : 0;
  } catch {
    return 0;
  }
}

interface ChildRun {
  report?: ChildReport;
  killed?: "timeout" | "memory";
  exit?: string;
  stderr: string;
}

/**
 * A Node process that loads files one at a time (fuzzWorker), with a V8 heap cap, a resident-memory watchdog and a
 * wall-clock limit per file: a file that hangs, overruns memory or crashes the process is blamed for it, and the
 * process is gone (start another). Starting Node costs more than loading a small file, hence one process for many.
 */
class LoaderProcess {
  private readonly child: ChildProcessWithoutNullStreams;
  private stdout = "";
  private stderr = "";
  private pending?: { resolve: (r: ChildRun) => void; timer: NodeJS.Timeout; killed?: ChildRun["killed"] };
  private readonly watch: NodeJS.Timeout;
  /** Resolves once the process has started and loaded the loaders, which no file's time limit should include. */
  readonly ready: Promise<boolean>;
  private started?: (ok: boolean) => void;
  alive = true;
  served = 0;

  constructor(private readonly memoryMb: number) {
    const code = `require(${JSON.stringify(__filename)}).fuzzWorker()`;
    this.child = spawn(process.execPath, [`--max-old-space-size=${Math.floor(memoryMb / 2)}`, "--expose-gc", "-e", code]);
    this.ready = new Promise((resolve) => (this.started = resolve));
    this.child.stdout.setEncoding("utf8");
    this.child.stdout.on("data", (d: string) => {
      this.stdout += d;
      for (let nl = this.stdout.indexOf("\n"); nl >= 0; nl = this.stdout.indexOf("\n")) {
        const line = this.stdout.slice(0, nl);
        this.stdout = this.stdout.slice(nl + 1);
        if (line === "ready") this.started?.(true);
        else if (this.pending) this.settle({ report: JSON.parse(line) as ChildReport, stderr: "" });
      }
    });
    this.child.stderr.on("data", (d) => (this.stderr = (this.stderr + d).slice(-2000)));
    // writing to a process that was just killed fails with EPIPE; its close event reports what happened
    this.child.stdin.on("error", () => undefined);
    // ArrayBuffers live outside the V8 heap, so resident memory is watched from here too
    this.watch = setInterval(() => this.pending && this.child.pid !== undefined && rssMb(this.child.pid) > this.memoryMb && this.kill("memory"), 10);
    this.child.on("close", (code, signal) => {
      this.alive = false;
      this.started?.(false);
      clearInterval(this.watch);
      if (this.pending) this.settle({ killed: this.pending.killed, exit: signal ? `signal ${signal}` : `exit ${code}`, stderr: this.stderr });
    });
  }

  private settle(run: ChildRun): void {
    const p = this.pending!;
    this.pending = undefined;
    clearTimeout(p.timer);
    p.resolve(run);
  }

  private kill(why: "timeout" | "memory"): void {
    if (this.pending) this.pending.killed ??= why;
    this.child.kill("SIGKILL");
  }

  load(format: LoaderFormat, file: string, timeoutMs: number): Promise<ChildRun> {
    this.served++;
    return new Promise((resolve) => {
      this.pending = { resolve, timer: setTimeout(() => this.kill("timeout"), timeoutMs) };
      this.child.stdin.write(JSON.stringify({ format, file }) + "\n");
    });
  }

  close(): void {
    clearInterval(this.watch);
    this.child.stdin.end();
  }
}

function sameValue(a: TensorValue, b: { dtype: DType; shape: number[]; bytes: Uint8Array }): boolean {
  return a.dtype === b.dtype && a.shape.length === b.shape.length && a.shape.every((d, i) => d === b.shape[i]) && Buffer.from(a.bytes).equals(b.bytes);
}

function sameSet(want: TensorSet, got: Map<string, { dtype: DType; shape: number[]; bytes: Uint8Array }>): boolean {
  return want.size === got.size && [...want].every(([k, v]) => got.has(k) && sameValue(v, got.get(k)!));
}

/** Every element's bytes occur in one of `sources` (at any offset; as one run when `contiguous`). */
function readsFrom(t: { dtype: DType; bytes: Uint8Array }, sources: Uint8Array[], contiguous: boolean): boolean {
  const buffers = sources.map((s) => Buffer.from(s.buffer, s.byteOffset, s.byteLength));
  if (contiguous || t.bytes.length === 0) return buffers.some((b) => b.includes(Buffer.from(t.bytes)));
  const size = ELEMENT_SIZE[t.dtype];
  for (let i = 0; i < t.bytes.length; i += size) {
    const element = Buffer.from(t.bytes.subarray(i, i + size));
    if (!buffers.some((b) => b.includes(element))) return false;
  }
  return true;
}

/** Judge a child's report against the case's expectation. */
function classify(c: FuzzCase, file: string, run: ChildRun, memoryMb: number): { outcome: Outcome; detail: string } {
  const bad = (detail: string) => ({ outcome: "anything else" as const, detail });
  if (run.killed === "timeout") return bad("timeout (hang)");
  if (run.killed === "memory") return bad("memory limit exceeded");
  const r = run.report;
  if (!r) return bad(`crash (${run.exit}): ${run.stderr.trim().split("\n").slice(-3).join(" | ")}`);
  if (r.peakRssMb > memoryMb) return bad(`peak memory ${r.peakRssMb.toFixed(0)} MB`);
  if (!r.ok) {
    const e = r.error!;
    if (!e.checkpoint) return bad(`foreign error ${e.name}: ${e.message}`);
    if (e.file !== file || !e.message.includes(file)) return bad(`error does not name the file: ${e.message}`);
    if (c.expect.kind === "exact") return bad(`false rejection: ${e.message}`);
    return { outcome: "clean error", detail: e.message.slice(file.length + 2) };
  }
  const got = new Map(r.tensors!.map((t) => [t.name, { dtype: t.dtype, shape: t.shape, elements: t.elements, bytes: new Uint8Array(Buffer.from(t.bytes, "base64")) }]));
  const e: Expectation = c.expect;
  if (e.kind === "error") return bad(`loaded ${got.size} tensors where only an error is valid`);
  if (e.kind === "exact") return sameSet(e.tensors, got) ? { outcome: "valid load", detail: "as expected" } : bad("load differs from the expected tensors");
  if (sameSet(e.original, got)) return { outcome: "valid load", detail: "identical" };
  if (e.flipped && sameSet(e.flipped, got)) return { outcome: "valid load", detail: "data bytes changed" };
  for (const [name, t] of got) {
    const size = Object.prototype.hasOwnProperty.call(ELEMENT_SIZE, t.dtype) ? ELEMENT_SIZE[t.dtype] : NaN;
    const wellFormed = t.shape.every((d) => Number.isSafeInteger(d) && d >= 0) && numel(t.shape) === t.elements && t.bytes.length === t.elements * size;
    if (!wellFormed) return bad(`tensor '${name}' is malformed: ${t.dtype} [${t.shape}] with ${t.elements} elements`);
    if (!readsFrom(t, e.sources, e.contiguous)) return bad(`tensor '${name}' holds bytes that are not in the file`);
  }
  return { outcome: "valid load", detail: "re-reading" };
}

/** Run the whole corpus: base files, hand-made cases and `count` random mutations. */
export async function runFuzz(opts: FuzzOptions): Promise<FuzzReport> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "d2g-fuzz-"));
  const canary = path.join(dir, "CANARY");
  try {
    const bases = baseFiles(dir, opts.seed);
    const cases = [...handMadeCases(dir, bases, canary), ...randomCases(bases, opts.count, opts.seed)];
    const parallel = opts.parallel ?? Math.max(1, Math.min(2, os.cpus().length));
    const timeoutMs = opts.timeoutMs ?? 10_000;
    const memoryMb = opts.memoryMb ?? 384;
    const results: CaseResult[] = new Array(cases.length);
    let next = 0;
    let done = 0;
    const worker = async () => {
      let proc: LoaderProcess | undefined;
      for (let i = next++; i < cases.length; i = next++) {
        const c = cases[i];
        const file = path.join(dir, `${c.id}.${EXT[c.format]}`);
        fs.writeFileSync(file, c.bytes);
        // a fresh process after a kill or crash, and every FILES_PER_PROCESS files
        if (!proc?.alive || proc.served >= FILES_PER_PROCESS) {
          proc?.close();
          proc = new LoaderProcess(memoryMb);
          if (!(await proc.ready)) throw new Error("lib/io/fuzz.ts: a loader process failed to start");
        }
        const t0 = Date.now();
        const run = await proc.load(c.format, file, timeoutMs);
        const ms = Date.now() - t0;
        let { outcome, detail } = classify(c, file, run, memoryMb);
        if (fs.existsSync(canary)) ({ outcome, detail } = { outcome: "anything else", detail: "a payload ran: the canary file exists" });
        fs.rmSync(file);
        results[i] = { id: c.id, outcome, detail, ms, peakRssMb: run.report?.peakRssMb };
        opts.onResult?.(results[i], ++done, cases.length);
      }
      proc?.close();
    };
    await Promise.all(Array.from({ length: parallel }, worker));
    const counts: Record<Outcome, number> = { "clean error": 0, "valid load": 0, "anything else": 0 };
    for (const r of results) counts[r.outcome]++;
    return { results, counts, canaryRan: fs.existsSync(canary) };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
