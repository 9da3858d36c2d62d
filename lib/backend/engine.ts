import * as tf from "@tensorflow/tfjs";
import * as os from "os";
import { silenceNodeBackendAdvice } from "./node_advice";
import { nvidiaGpu } from "./nvidia";
import { formatInference, InferenceInfo, inferenceInfo } from "./onnx_runtime";
import { registerWasmTrainingKernels } from "./wasm_kernels";
import { MAX_WASM_THREADS, startWasm } from "./wasm_threads";

// One call picks the compute engine for the whole process and says which it is. Without D2G_BACKEND the
// first that works wins, fastest first: tfjs-node-gpu (needs a visible GPU and CUDA 11.2 + cuDNN 8.1),
// tfjs-node (libtensorflow on the CPU), wasm (XNNPACK, SIMD, threads), the plain JavaScript cpu backend.
// Frozen networks (teachers inside samplers, feature extractors) run on the inference engine of onnx_runtime.ts,
// onnxruntime-node unless D2G_INFER=tfjs; the line names both.

export const ENGINES = ["tfjs-node-gpu", "tfjs-node", "wasm", "cpu"] as const;
export type EngineName = (typeof ENGINES)[number];

export interface EngineInfo {
  engine: EngineName;
  /** tfjs-core version. */
  version: string;
  threads: number;
  simd?: boolean;
  gpu?: string;
  /** The engine of frozen networks (onnx_runtime.ts); initEngine fills it in. */
  inference?: InferenceInfo;
}

export interface EngineOptions {
  /** Overrides D2G_BACKEND. */
  backend?: string;
  /** Do not print the engine line. */
  quiet?: boolean;
  /** wasm threads; default D2G_WASM_THREADS, else every core (at most 8). */
  threads?: number;
}

let started: Promise<EngineInfo> | undefined;
let printed = false;

export function formatEngine(info: EngineInfo): string {
  const parts = [`tfjs ${info.version}`, `${info.threads} thread${info.threads === 1 ? "" : "s"}`];
  if (info.simd !== undefined) parts.push(info.simd ? "SIMD" : "no SIMD");
  if (info.gpu) parts.push(`GPU ${info.gpu}`);
  const inference = info.inference ? `; inference: ${formatInference(info.inference)}` : "";
  return `engine: ${info.engine} (${parts.join(", ")})${inference}`;
}

function parseEngine(value: string, source: string): EngineName {
  if ((ENGINES as readonly string[]).includes(value)) return value as EngineName;
  throw new Error(`${source}="${value}" is not an engine; valid engines: ${ENGINES.join(", ")}`);
}

function wasmThreads(opts: EngineOptions): number {
  if (opts.threads !== undefined) return opts.threads;
  const env = process.env.D2G_WASM_THREADS;
  if (env === undefined || env === "") return Math.min(os.availableParallelism(), MAX_WASM_THREADS);
  const n = Number(env);
  if (!Number.isInteger(n) || n < 1) throw new Error(`D2G_WASM_THREADS="${env}": expected a positive integer`);
  return n;
}

/** Loads a tfjs-node package (an optional dependency whose native binding may be absent) and selects it. */
async function startNode(pkg: string): Promise<void> {
  try {
    require(pkg);
  } catch (e) {
    throw new Error(`${pkg} does not load: ${(e as Error).message.split("\n")[0]}`);
  }
  if (!(await tf.setBackend("tensorflow"))) throw new Error(`${pkg} loaded but its 'tensorflow' backend did not start`);
}

async function start(engine: EngineName, opts: EngineOptions): Promise<EngineInfo> {
  return { ...(await startTraining(engine, opts)), inference: inferenceInfo() };
}

async function startTraining(engine: EngineName, opts: EngineOptions): Promise<EngineInfo> {
  const version = tf.version_core;
  switch (engine) {
    case "tfjs-node-gpu": {
      const gpu = nvidiaGpu();
      await startNode("@tensorflow/tfjs-node-gpu");
      // libtensorflow sizes its thread pools to the machine's cores.
      return { engine, version, threads: os.availableParallelism(), gpu };
    }
    case "tfjs-node":
      await startNode("@tensorflow/tfjs-node");
      return { engine, version, threads: os.availableParallelism() };
    case "wasm": {
      registerWasmTrainingKernels();
      const threads = await startWasm(wasmThreads(opts));
      return { engine, version, threads, simd: await tf.env().getAsync("WASM_HAS_SIMD_SUPPORT") as boolean };
    }
    case "cpu":
      if (!(await tf.setBackend("cpu"))) throw new Error("the cpu backend did not start");
      return { engine, version, threads: 1 };
  }
}

async function select(wanted: EngineName | undefined, source: string, opts: EngineOptions): Promise<EngineInfo> {
  if (wanted) {
    try {
      return await start(wanted, opts);
    } catch (e) {
      throw new Error(`${source}=${wanted}: ${(e as Error).message}`);
    }
  }
  const skipped: string[] = [];
  for (const engine of ENGINES) {
    // Without a GPU, tfjs-node-gpu would register its backend and then run on the CPU; leave that to tfjs-node.
    if (engine === "tfjs-node-gpu" && nvidiaGpu() === undefined) continue;
    try {
      return await start(engine, opts);
    } catch (e) {
      skipped.push(`${engine}: ${(e as Error).message}`);
    }
  }
  throw new Error(`no engine starts:\n  ${skipped.join("\n  ")}`);
}

/**
 * Selects the engine (D2G_BACKEND or opts.backend, else the fastest that works) and prints one line
 * naming it. Later calls return the same info; asking a started process for a different engine is an error.
 */
export async function initEngine(opts: EngineOptions = {}): Promise<EngineInfo> {
  const raw = opts.backend ?? process.env.D2G_BACKEND;
  const source = opts.backend !== undefined ? "initEngine backend" : "D2G_BACKEND";
  const wanted = raw === undefined || raw === "" ? undefined : parseEngine(raw, source);
  if (!started) {
    started = select(wanted, source, opts).then((info) => {
      silenceNodeBackendAdvice();
      return info;
    });
    started.catch(() => (started = undefined));
  }
  const info = await started;
  if (wanted && wanted !== info.engine) {
    throw new Error(`engine already started as ${info.engine}; ${wanted} was asked for (choose the engine before the first initEngine call)`);
  }
  if (!opts.quiet && !printed) {
    printed = true;
    console.log(formatEngine(info));
  }
  return info;
}
