import { CheckpointError } from "./checkpoint_error";
import { numel, shapeStr } from "./host_tensor";
import { toFloat32 } from "./dtype";
import type { TensorSource } from "./tensor_source";

// PyTorch stores conv kernels OIHW and linear weights [out, in]; tfjs wants HWIO and [in, out].
export type TorchLayout = "plain" | "conv" | "linear";

export interface ExpectedWeight {
  name: string;
  /** Shape in the tfjs layout. */
  shape: number[];
  layout: TorchLayout;
}

/** Permute a float32 OIHW kernel to HWIO. */
export function oihwToHwio(data: Float32Array, [o, i, h, w]: number[]): Float32Array {
  const out = new Float32Array(data.length);
  for (let a = 0; a < o; a++)
    for (let b = 0; b < i; b++)
      for (let y = 0; y < h; y++)
        for (let x = 0; x < w; x++) out[((y * w + x) * i + b) * o + a] = data[((a * i + b) * h + y) * w + x];
  return out;
}

/** Transpose a row-major [r, c] matrix. */
export function transpose2d(data: Float32Array, [r, c]: number[]): Float32Array {
  const out = new Float32Array(data.length);
  for (let y = 0; y < r; y++) for (let x = 0; x < c; x++) out[x * r + y] = data[y * c + x];
  return out;
}

/** The shape PyTorch stores a weight in. */
export function torchShape(e: ExpectedWeight): number[] {
  if (e.layout === "conv") {
    const [h, w, i, o] = e.shape;
    return [o, i, h, w];
  }
  if (e.layout === "linear") return [e.shape[1], e.shape[0]];
  return e.shape;
}

export interface WeightOptions {
  /** Rename a file key to the model's key (return undefined to drop it), e.g. strip a `module.` prefix. */
  rename?: (key: string) => string | undefined;
  /** Keys in the file that the model does not use are an error unless allowed. */
  allowUnused?: boolean;
}

export interface MapOptions extends WeightOptions {
  /** Where the tensors came from, for error messages. */
  source: string;
}

/** At most this many names of each kind of problem in an error message. */
const LIST_MAX = 8;

function listed(items: string[]): string {
  return items.slice(0, LIST_MAX).join(", ") + (items.length > LIST_MAX ? `, ... (${items.length - LIST_MAX} more)` : "");
}

/**
 * Stream a source's tensors into a model: every expected key present and of the expected shape (in the torch
 * layout), checked from the source's headers before any data is read, then each tensor read, converted to float32
 * and the tfjs layout, and handed to `put` one at a time. Every missing, misshapen and (unless allowed) unused key
 * is named in one error, with the expected and found shapes.
 */
export function streamWeights(src: TensorSource, expected: ExpectedWeight[], opts: WeightOptions, put: (e: ExpectedWeight, data: Float32Array) => void): void {
  const fileKey = new Map<string, string>();
  for (const k of src.names()) {
    const name = opts.rename ? opts.rename(k) : k;
    if (name === undefined) continue;
    if (fileKey.has(name)) throw new CheckpointError(src.source, `keys '${fileKey.get(name)}' and '${k}' both map to weight '${name}'`);
    fileKey.set(name, k);
  }
  const missing: string[] = [];
  const misshapen: string[] = [];
  for (const e of expected) {
    const k = fileKey.get(e.name);
    const want = torchShape(e);
    if (k === undefined) {
      missing.push(`'${e.name}' (expected shape ${shapeStr(want)})`);
      continue;
    }
    const have = src.info(k).shape;
    if (have.length !== want.length || have.some((d, i) => d !== want[i])) misshapen.push(`'${e.name}' has shape ${shapeStr(have)}, expected ${shapeStr(want)}`);
  }
  const wanted = new Set(expected.map((e) => e.name));
  const unused = opts.allowUnused ? [] : [...fileKey].filter(([name]) => !wanted.has(name)).map(([, k]) => `'${k}'`);
  const problems = [
    ...(missing.length ? [`missing weight ${listed(missing)}`] : []),
    ...(misshapen.length ? [`weight ${listed(misshapen)}`] : []),
    ...(unused.length ? [`${unused.length} weight(s) not used by the model: ${listed(unused)}`] : []),
  ];
  if (problems.length) throw new CheckpointError(src.source, problems.join("; "));
  for (const e of expected) {
    const k = fileKey.get(e.name)!;
    const t = src.get(k);
    const want = torchShape(e);
    let data = toFloat32(t, `${src.source}: weight '${k}'`);
    if (numel(want) !== data.length) throw new CheckpointError(src.source, `weight '${k}' holds ${data.length} values for shape ${shapeStr(want)}`);
    if (e.layout === "conv") data = oihwToHwio(data, want);
    else if (e.layout === "linear") data = transpose2d(data, want);
    put(e, data);
  }
}
