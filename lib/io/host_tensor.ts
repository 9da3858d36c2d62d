// A tensor on the host, as file formats produce and consume it: no engine involved, so io/ can be used
// (and tested) without choosing a tfjs backend.

export type DType = "float32" | "float64" | "float16" | "bfloat16" | "int64" | "int32" | "int16" | "int8" | "uint8" | "bool";

export type HostData = Float32Array | Float64Array | Int32Array | Int16Array | Int8Array | Uint8Array | BigInt64Array | Uint16Array;

export interface HostTensor {
  /** dtype as stored; float16/bfloat16 keep their raw bits in a Uint16Array. */
  dtype: DType;
  shape: number[];
  data: HostData;
}

/** Typed arrays joined end to end (a batch gathered in parts); float32 unless `make` says otherwise. */
export function concatHost<T extends Float32Array | Uint8Array | Int32Array = Float32Array>(parts: readonly T[], make: (n: number) => T = (n) => new Float32Array(n) as T): T {
  const out = make(parts.reduce((n, p) => n + p.length, 0));
  parts.reduce((at, p) => (out.set(p, at), at + p.length), 0);
  return out;
}

export function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

export function shapeStr(shape: readonly number[]): string {
  return `[${shape.join(",")}]`;
}
