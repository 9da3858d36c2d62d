import { HostTensor } from "./host_tensor";

/** IEEE half to float. */
export function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * f * 2 ** -24;
  if (e === 31) return f ? NaN : s * Infinity;
  return s * (1 + f / 1024) * 2 ** (e - 15);
}

/** bfloat16 bits are the top half of a float32. */
export function bf16ToFloat(h: number): number {
  const u = new Uint32Array([h << 16]);
  return new Float32Array(u.buffer)[0];
}

/** Convert any numeric host tensor to float32 values; `what` names the tensor in errors. */
export function toFloat32(t: HostTensor, what: string): Float32Array {
  const d = t.data;
  if (t.dtype === "float32") return d as Float32Array;
  if (t.dtype === "float16" || t.dtype === "bfloat16") {
    const conv = t.dtype === "float16" ? halfToFloat : bf16ToFloat;
    const src = d as Uint16Array;
    const out = new Float32Array(src.length);
    for (let i = 0; i < src.length; i++) out[i] = conv(src[i]);
    return out;
  }
  if (t.dtype === "int64") return Float32Array.from(d as BigInt64Array, (v) => Number(v));
  if (t.dtype === "bool" || t.dtype === "float64" || t.dtype.startsWith("int") || t.dtype === "uint8") {
    return Float32Array.from(d as ArrayLike<number>);
  }
  throw new Error(`${what}: cannot convert dtype ${t.dtype} to float32`);
}
