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

/** Float to IEEE half bits, rounded to nearest even (as torch's .half()); overflow to infinity. */
export function floatToHalf(x: number): number {
  const f = new Float32Array([x]);
  const u = new Uint32Array(f.buffer)[0];
  const sign = (u >>> 16) & 0x8000;
  const e = (u >>> 23) & 0xff;
  const m = u & 0x7fffff;
  if (e === 0xff) return sign | 0x7c00 | (m ? 0x200 : 0);
  // unbiased exponent rebased to half's bias 15
  const he = e - 127 + 15;
  if (he >= 0x1f) return sign | 0x7c00;
  if (he <= 0) {
    // subnormal half (or zero): the mantissa with its implicit 1, shifted right by 14 - he, rounded to even
    if (he < -10) return sign;
    const full = m | 0x800000;
    const shift = 14 - he;
    const half = full >>> shift;
    const rest = full & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    return sign | (rest > mid || (rest === mid && half & 1) ? half + 1 : half);
  }
  const half = (he << 10) | (m >>> 13);
  const rest = m & 0x1fff;
  // a carry out of the mantissa correctly bumps the exponent
  return sign | (rest > 0x1000 || (rest === 0x1000 && half & 1) ? half + 1 : half);
}

/** float32 host tensors as float16 ones (half the bytes), e.g. for committed weights. */
export function toFloat16(tensors: Record<string, HostTensor>): Record<string, HostTensor> {
  return Object.fromEntries(
    Object.entries(tensors).map(([k, t]) => [k, { dtype: "float16", shape: t.shape, data: Uint16Array.from(toFloat32(t, k), floatToHalf) }]),
  );
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
