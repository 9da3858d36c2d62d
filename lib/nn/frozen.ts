import * as crypto from "crypto";
import * as fs from "fs";
import * as path from "path";
import * as tf from "@tensorflow/tfjs";
import type * as Ort from "onnxruntime-node";
import { ExportSpec, traceOnnx } from "../backend/onnx_export";
import { InferenceEngineName, inferenceInfo, loadOrt, sessionOptions } from "../backend/onnx_runtime";
import { fromRoot } from "../core/paths";
import { writeOnnx } from "../io/onnx_file";

// A frozen network's forward on the inference engine: exported to ONNX once per input shape (onnx_export.ts),
// cached on disk, run by onnxruntime (lib/backend/onnx_runtime.ts); on tfjs when D2G_INFER=tfjs.

let libraryHash: string | undefined;

/** A hash of the compiled library: an exported model is only reused by the code that exported it. */
function libraryVersion(): string {
  if (libraryHash) return libraryHash;
  const h = crypto.createHash("sha256");
  const walk = (dir: string): void => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith(".js")) h.update(e.name).update(fs.readFileSync(p));
    }
  };
  walk(path.join(__dirname, ".."));
  h.update(`tfjs ${tf.version_core}`);
  return (libraryHash = h.digest("hex"));
}

/**
 * Where exported models are cached: D2G_ONNX_CACHE, else runs/onnx (git-ignored). A file is named by the
 * function, the library version and a hash of the weights and input shapes, so a second run loads what the
 * first exported; exporting removes the function's files left by other library versions.
 */
function onnxCacheDir(): string {
  return process.env.D2G_ONNX_CACHE || fromRoot("runs", "onnx");
}

export interface FrozenSpec extends Omit<ExportSpec, "inputs"> {
  /** Names of the graph inputs, in the order `run` takes them. */
  inputs: string[];
  /** Run at most this many samples per call of the exported model (axis 0 of every input and output is the batch). */
  maxBatch?: number;
}

export interface FrozenTimings {
  /** Milliseconds spent tracing and writing models (0 when every model came from the cache). */
  exportMs: number;
  /** Milliseconds spent creating onnxruntime sessions. */
  sessionMs: number;
}

const ORT_DTYPES = { float32: Float32Array, int32: Int32Array, bool: Uint8Array } as const;

/**
 * A frozen network's forward as a function of tensors: `run` gives what `spec.fn` would, computed by onnxruntime
 * when it is the inference engine (one exported model and session per distinct input shape), by tfjs otherwise.
 * The variables must not change while it is in use: if one is reassigned, the next run exports again.
 */
export class FrozenForward {
  readonly engine: InferenceEngineName;
  readonly timings: FrozenTimings = { exportMs: 0, sessionMs: 0 };
  private readonly sessions = new Map<string, Promise<Ort.InferenceSession>>();
  private weights?: { hash: string; ids: object[] };

  constructor(readonly spec: FrozenSpec) {
    this.engine = inferenceInfo().engine;
  }

  /** The outputs for these inputs, new tensors the caller disposes. */
  async run(inputs: tf.Tensor[]): Promise<tf.Tensor[]> {
    if (inputs.length !== this.spec.inputs.length) {
      throw new Error(`${this.spec.name}: expected ${this.spec.inputs.length} inputs (${this.spec.inputs.join(", ")}), got ${inputs.length}`);
    }
    if (this.engine === "tfjs") {
      return tf.tidy(() => {
        const y = this.spec.fn(...inputs);
        return Array.isArray(y) ? y : [y];
      });
    }
    const n = inputs[0].shape[0];
    const max = this.spec.maxBatch ?? Infinity;
    if (n <= max) return this.runOrt(inputs);
    // chunks of maxBatch; the last is padded with copies of its final sample, and the padding dropped again
    const parts: tf.Tensor[][] = [];
    for (let at = 0; at < n; at += max) {
      const m = Math.min(max, n - at);
      const chunk = inputs.map((x) => tf.tidy(() => {
        const c = tf.slice(x, at, m);
        return m === max ? c : tf.concat([c, tf.tile(tf.slice(x, n - 1, 1), [max - m, ...x.shape.slice(1).map(() => 1)])]);
      }));
      const out = await this.runOrt(chunk);
      tf.dispose(chunk);
      parts.push(m === max ? out : out.map((y) => tf.tidy(() => tf.slice(y, 0, m))));
      if (m !== max) tf.dispose(out);
    }
    const joined = parts[0].map((_, k) => tf.concat(parts.map((p) => p[k])));
    tf.dispose(parts.flat());
    return joined;
  }

  private async runOrt(inputs: tf.Tensor[]): Promise<tf.Tensor[]> {
    const session = await this.session(inputs);
    const feeds: Record<string, Ort.Tensor> = {};
    for (let k = 0; k < inputs.length; k++) {
      const x = inputs[k];
      const data = await x.data();
      const dtype = x.dtype as keyof typeof ORT_DTYPES;
      if (!(dtype in ORT_DTYPES)) throw new Error(`${this.spec.name}: input '${this.spec.inputs[k]}' has dtype ${x.dtype}`);
      feeds[this.spec.inputs[k]] = new (loadOrt().Tensor)(dtype, data as InstanceType<(typeof ORT_DTYPES)[typeof dtype]>, x.shape);
    }
    const out = await session.run(feeds);
    return this.spec.outputs.map((name) => {
      const y = out[name];
      return tf.tensor(y.data as Float32Array | Int32Array | Uint8Array, y.dims as number[], y.type === "bool" ? "bool" : (y.type as "float32" | "int32"));
    });
  }

  /** Hash of the variables (names, shapes, values), remembered with the data ids it was computed for. */
  private weightsHash(): string {
    const ids = this.spec.variables.map(([, v]) => v.dataId);
    if (this.weights && this.weights.ids.every((id, i) => id === ids[i])) return this.weights.hash;
    if (this.weights) {
      void release([...this.sessions.values()]);
      this.sessions.clear();
    }
    const h = crypto.createHash("sha256");
    for (const [name, v] of this.spec.variables) {
      const data = v.dataSync();
      h.update(`${name}:${v.dtype}:${v.shape}`).update(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    }
    this.weights = { hash: h.digest("hex"), ids };
    return this.weights.hash;
  }

  private session(inputs: tf.Tensor[]): Promise<Ort.InferenceSession> {
    const shapes = inputs.map((x, k) => `${this.spec.inputs[k]}:${x.dtype}[${x.shape}]`).join(";");
    const weights = this.weightsHash();
    const key = crypto.createHash("sha256").update(`${libraryVersion()}|${this.spec.name}|${this.spec.outputs}|${weights}|${shapes}`).digest("hex");
    let s = this.sessions.get(key);
    if (!s) {
      s = this.createSession(key, inputs);
      this.sessions.set(key, s);
      s.catch(() => this.sessions.delete(key));
    }
    return s;
  }

  private async createSession(key: string, inputs: tf.Tensor[]): Promise<Ort.InferenceSession> {
    const dir = onnxCacheDir();
    const prefix = `${this.spec.name.replace(/[^A-Za-z0-9._-]+/g, "_")}-`;
    const code = libraryVersion().slice(0, 8);
    const file = path.join(dir, `${prefix}${code}-${key.slice(0, 16)}.onnx`);
    if (!fs.existsSync(file)) {
      const t0 = performance.now();
      const graph = traceOnnx({ ...this.spec, inputs: this.spec.inputs.map((name, k) => [name, inputs[k]]) });
      writeOnnx(file, graph);
      // models of this function exported by other versions of the library are never loaded again
      for (const f of fs.readdirSync(dir)) {
        const m = f.startsWith(prefix) ? /^([0-9a-f]{8})-[0-9a-f]{16}\.onnx(\.data)?$/.exec(f.slice(prefix.length)) : null;
        if (m && m[1] !== code) fs.rmSync(path.join(dir, f), { force: true });
      }
      this.timings.exportMs += performance.now() - t0;
    }
    const t1 = performance.now();
    try {
      return await loadOrt().InferenceSession.create(file, sessionOptions(inferenceInfo()));
    } catch (e) {
      throw new Error(`${file}: onnxruntime cannot load the exported '${this.spec.name}': ${(e as Error).message}`);
    } finally {
      this.timings.sessionMs += performance.now() - t1;
    }
  }

  /** Releases the onnxruntime sessions (native memory); the next run creates them again. */
  async dispose(): Promise<void> {
    await release([...this.sessions.values()]);
    this.sessions.clear();
  }
}

/** Release sessions, including those still being created; one that failed to start has nothing to release. */
async function release(sessions: Array<Promise<Ort.InferenceSession>>): Promise<void> {
  for (const s of sessions) {
    const session = await s.catch(() => undefined);
    await session?.release();
  }
}

