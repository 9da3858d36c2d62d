import { CheckpointError } from "./checkpoint_error";
import { HostTensor, numel, shapeStr } from "./host_tensor";
import { toFloat32 } from "./dtype";

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

function torchShape(e: ExpectedWeight): number[] {
  if (e.layout === "conv") {
    const [h, w, i, o] = e.shape;
    return [o, i, h, w];
  }
  if (e.layout === "linear") return [e.shape[1], e.shape[0]];
  return e.shape;
}

export interface MapOptions {
  /** Where the tensors came from, for error messages. */
  source: string;
  /** Rename a file key to the model's key (return undefined to drop it), e.g. strip a `module.` prefix. */
  rename?: (key: string) => string | undefined;
  /** Keys in the file that the model does not use are an error unless allowed. */
  allowUnused?: boolean;
}

/**
 * Match a state dict to the weights a model expects: every expected key present, every shape equal (in the
 * torch layout), converted to the tfjs layout. Throws on the first problem, naming the key and the file.
 */
export function mapWeights(tensors: Record<string, HostTensor>, expected: ExpectedWeight[], opts: MapOptions): Map<string, Float32Array> {
  const renamed = new Map<string, HostTensor>();
  for (const [k, t] of Object.entries(tensors)) {
    const name = opts.rename ? opts.rename(k) : k;
    if (name !== undefined) renamed.set(name, t);
  }
  const out = new Map<string, Float32Array>();
  for (const e of expected) {
    const t = renamed.get(e.name);
    if (!t) throw new CheckpointError(opts.source, `missing weight '${e.name}' (expected shape ${shapeStr(torchShape(e))})`);
    const want = torchShape(e);
    if (t.shape.length !== want.length || t.shape.some((d, i) => d !== want[i])) {
      throw new CheckpointError(opts.source, `weight '${e.name}' has shape ${shapeStr(t.shape)}, expected ${shapeStr(want)}`);
    }
    let data = toFloat32(t, `${opts.source}: weight '${e.name}'`);
    if (numel(t.shape) !== data.length) throw new CheckpointError(opts.source, `weight '${e.name}' holds ${data.length} values for shape ${shapeStr(t.shape)}`);
    if (e.layout === "conv") data = oihwToHwio(data, want);
    else if (e.layout === "linear") data = transpose2d(data, want);
    out.set(e.name, data);
    renamed.delete(e.name);
  }
  if (!opts.allowUnused && renamed.size > 0) {
    const extra = [...renamed.keys()];
    throw new CheckpointError(opts.source, `${extra.length} weight(s) not used by the model, first '${extra[0]}'`);
  }
  return out;
}
