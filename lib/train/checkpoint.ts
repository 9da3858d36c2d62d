import * as fs from "fs";
import * as path from "path";
import * as tf from "@tensorflow/tfjs";
import { readSafetensors, writeSafetensors } from "../io/safetensors";
import { writeAtomic } from "../io/file_bytes";
import { HostTensor } from "../io/host_tensor";

// A checkpoint is one safetensors file: every variable of the run by name, plus a JSON metadata entry holding
// the step, the RNG states and the metric history. Files are written atomically (temp file + rename), so a run
// killed at any moment leaves the previous checkpoint intact, and the newest complete file is where it resumes.

export interface CheckpointMeta {
  step: number;
  rngs: Record<string, number>;
  history: Array<Record<string, number>>;
  [key: string]: unknown;
}

const NAME = /^ckpt-(\d{8})\.safetensors$/;

export function checkpointPath(dir: string, step: number): string {
  return path.join(dir, `ckpt-${String(step).padStart(8, "0")}.safetensors`);
}

/** The newest checkpoint in `dir`, or undefined if there is none (or no dir). */
export function latestCheckpoint(dir: string): string | undefined {
  if (!fs.existsSync(dir)) return undefined;
  const files = fs.readdirSync(dir).filter((f) => NAME.test(f)).sort();
  return files.length ? path.join(dir, files[files.length - 1]) : undefined;
}

export async function saveCheckpoint(dir: string, vars: Record<string, tf.Tensor>, meta: CheckpointMeta, keep = 2): Promise<string> {
  fs.mkdirSync(dir, { recursive: true });
  const tensors: Record<string, HostTensor> = {};
  for (const [name, v] of Object.entries(vars)) tensors[name] = { dtype: "float32", shape: v.shape, data: (await v.data()) as Float32Array };
  const file = checkpointPath(dir, meta.step);
  writeSafetensors(file, tensors, { d2g: JSON.stringify(meta) });
  const old = fs.readdirSync(dir).filter((f) => NAME.test(f)).sort().slice(0, -keep);
  for (const f of old) fs.rmSync(path.join(dir, f));
  return file;
}

/** Restore `vars` in place from a checkpoint; every variable must be present with its shape. */
export function loadCheckpoint(file: string, vars: Record<string, tf.Variable>): CheckpointMeta {
  const { tensors, metadata } = readSafetensors(file);
  if (!metadata.d2g) throw new Error(`${file}: not a d2g training checkpoint (no 'd2g' metadata entry)`);
  for (const [name, v] of Object.entries(vars)) {
    const t = tensors[name];
    if (!t) throw new Error(`${file}: checkpoint lacks variable '${name}'`);
    if (t.shape.join(",") !== v.shape.join(",")) throw new Error(`${file}: variable '${name}' has shape [${t.shape}], the run expects [${v.shape}]`);
    // assign shares the new tensor's data; the tensor itself must still be disposed (each resume leaked one per variable)
    const value = tf.tensor(t.data as Float32Array, t.shape, "float32");
    v.assign(value);
    value.dispose();
  }
  return JSON.parse(metadata.d2g) as CheckpointMeta;
}

/**
 * A result that is slow to compute and small to keep (an evaluation, a yardstick), as JSON in `file`: read back when
 * the file exists, otherwise computed and written atomically, so a rerun does not pay for it again.
 */
export async function cachedResult<T>(file: string, compute: () => Promise<T>): Promise<T> {
  if (fs.existsSync(file)) {
    try {
      return JSON.parse(fs.readFileSync(file, "utf8")) as T;
    } catch (e) {
      throw new Error(`${file}: cached result is not valid JSON (${(e as Error).message}); delete it to recompute`);
    }
  }
  const value = await compute();
  fs.mkdirSync(path.dirname(file), { recursive: true });
  writeAtomic(file, (fd) => fs.writeSync(fd, JSON.stringify(value)));
  return value;
}
