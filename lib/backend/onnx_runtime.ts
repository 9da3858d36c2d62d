import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as tf from "@tensorflow/tfjs";
import type * as Ort from "onnxruntime-node";
import { nvidiaGpu } from "./nvidia";
import { encodeOnnx, traceOnnx } from "./onnx_export";

// onnxruntime-node, the engine of frozen networks: a network that runs many times without changing (the teacher
// inside an ODE solver, the feature extractor of FID, the latent decoder of an evaluation) is exported from its
// own forward (onnx_export.ts) and run by onnxruntime next to tfjs in the same process (lib/nn/frozen.ts).
// D2G_INFER=tfjs keeps everything on tfjs; onnxruntime-node is a regular dependency, so otherwise it is used
// whenever it loads.

export const INFERENCE_ENGINES = ["onnxruntime", "tfjs"] as const;
export type InferenceEngineName = (typeof INFERENCE_ENGINES)[number];

export interface InferenceInfo {
  engine: InferenceEngineName;
  /** onnxruntime-node's version. */
  version?: string;
  /** onnxruntime's execution provider: "cpu", or "cuda" where its CUDA provider is installed and a GPU is seen. */
  provider?: "cpu" | "cuda";
  /** onnxruntime's intra-op threads. */
  threads?: number;
  /** Why tfjs runs inference (D2G_INFER=tfjs, or onnxruntime-node does not load). */
  reason?: string;
}

let ort: typeof Ort | undefined;
/** The answer of inferenceInfo, for the environment it was given in. */
let info: { env: string; info: InferenceInfo } | undefined;

function ortThreads(): number {
  const env = process.env.D2G_ORT_THREADS;
  if (env === undefined || env === "") return os.availableParallelism();
  const n = Number(env);
  if (!Number.isInteger(n) || n < 1) throw new Error(`D2G_ORT_THREADS="${env}": expected a positive integer`);
  return n;
}

/** The CUDA provider is not in onnxruntime-node's package: its install script adds it on request (environment.md). */
function cudaProviderInstalled(): boolean {
  const dir = path.join(path.dirname(require.resolve("onnxruntime-node/package.json")), "bin", "napi-v6", process.platform, process.arch);
  return fs.existsSync(path.join(dir, "libonnxruntime_providers_cuda.so"));
}

/**
 * Which engine runs frozen networks: D2G_INFER (onnxruntime or tfjs; onnxruntime fails loudly when it does not
 * load), else onnxruntime when onnxruntime-node loads. D2G_ORT_PROVIDER=cpu keeps onnxruntime off the GPU.
 */
export function inferenceInfo(): InferenceInfo {
  const env = ["D2G_INFER", "D2G_ORT_PROVIDER", "D2G_ORT_THREADS"].map((k) => process.env[k] ?? "").join("|");
  if (info?.env !== env) info = { env, info: detect() };
  return info.info;
}

function detect(): InferenceInfo {
  const want = process.env.D2G_INFER ?? "";
  if (want !== "" && !(INFERENCE_ENGINES as readonly string[]).includes(want)) {
    throw new Error(`D2G_INFER="${want}" is not an inference engine; valid: ${INFERENCE_ENGINES.join(", ")}`);
  }
  if (want === "tfjs") return { engine: "tfjs", reason: "D2G_INFER=tfjs" };
  try {
    loadOrt();
  } catch (e) {
    const why = `onnxruntime-node does not load: ${(e as Error).message.split("\n")[0]}`;
    if (want === "onnxruntime") throw new Error(`D2G_INFER=onnxruntime: ${why}`);
    return { engine: "tfjs", reason: why };
  }
  const provider = process.env.D2G_ORT_PROVIDER;
  if (provider !== undefined && provider !== "" && provider !== "cpu" && provider !== "cuda") {
    throw new Error(`D2G_ORT_PROVIDER="${provider}": expected cpu or cuda`);
  }
  const cuda = provider === "cuda" || (provider !== "cpu" && nvidiaGpu() !== undefined && cudaProviderInstalled());
  return { engine: "onnxruntime", version: loadOrt().env.versions.node, provider: cuda ? "cuda" : "cpu", threads: ortThreads() };
}

/** onnxruntime-node, loaded on first use. */
export function loadOrt(): typeof Ort {
  return (ort ??= require("onnxruntime-node") as typeof Ort);
}

/** "onnxruntime-node 1.30.0 (cpu, 2 threads)" or "tfjs (D2G_INFER=tfjs)". */
export function formatInference(i: InferenceInfo): string {
  if (i.engine === "tfjs") return `tfjs${i.reason ? ` (${i.reason})` : ""}`;
  return `onnxruntime-node ${i.version} (${i.provider}, ${i.threads} thread${i.threads === 1 ? "" : "s"})`;
}

/** Options of every session: all graph optimisations, the threads of `i`, and the settings below. */
export function sessionOptions(i: InferenceInfo): Ort.InferenceSession.SessionOptions {
  return {
    executionProviders: i.provider === "cuda" ? ["cuda", "cpu"] : ["cpu"],
    intraOpNumThreads: i.threads,
    interOpNumThreads: 1,
    graphOptimizationLevel: "all",
    executionMode: "sequential",
    extra: {
      // idle onnxruntime threads would otherwise spin for a while after each run, on the cores tfjs is about to use
      session: { intra_op: { allow_spinning: "0" } },
      // onnxruntime 1.30's FastGeluFusion, run after its common-subexpression elimination, deletes a node that
      // another still reads when one tensor goes through both GELU forms: the model then fails to load
      optimization: { disable_specified_optimizers: "FastGeluFusion" },
    },
  };
}

/**
 * The bench's "ONNX Runtime forward" column (lib/bin/bench.ts): export `forward` (a closure over its network and
 * input, which become initializers), run it `reps` times in onnxruntime after two warm-up runs, and return the
 * milliseconds of each run. onnxruntime-node must load, whatever D2G_INFER says.
 */
export async function benchOnnxForward(forward: () => tf.Tensor, reps: number): Promise<number[]> {
  const variables = Object.entries(tf.engine().state.registeredVariables);
  const graph = traceOnnx({ name: "bench-forward", variables, inputs: [], outputs: ["y"], fn: () => forward() });
  // Left as constants, the captured input would let onnxruntime fold the whole network at load time. Listed as
  // graph inputs too, initializers become defaults a run may override, and are computed with at every run.
  for (const t of graph.initializers) if (t.name.startsWith("captured_")) graph.inputs.push({ name: t.name, dtype: t.dtype, shape: t.shape });
  const ortInfo: InferenceInfo = { engine: "onnxruntime", provider: "cpu", threads: ortThreads() };
  const session = await loadOrt().InferenceSession.create(encodeOnnx(graph), sessionOptions(ortInfo));
  const ms: number[] = [];
  for (let i = 0; i < reps + 2; i++) {
    const t0 = performance.now();
    await session.run({});
    if (i >= 2) ms.push(performance.now() - t0);
  }
  await session.release();
  return ms;
}
