// PIL's bicubic and Lanczos resizes (Pillow's libImaging/Resample.c), which the reference evaluation pipelines run
// on the host: clean-fid resizes float channels with bicubic (mode "F"), CLIP's preprocessing (torchvision's Resize
// on a PIL image) resizes 8-bit RGB with bicubic, and GigaGAN's evaluation resizes every image to 256 with Lanczos
// before FID. One separable pass per axis that changes size, horizontal first; when shrinking, the kernel is
// stretched by the scale, which is what makes it antialiased. Images are HWC.

/** The PIL resampling filters implemented here. */
export type PilFilter = "bicubic" | "lanczos";

/** PIL's bicubic kernel (a = -0.5). */
function cubic(x: number): number {
  const a = -0.5;
  x = Math.abs(x);
  if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
  return 0;
}

interface AxisCoeffs {
  /** Output pixel i reads inputs start[i] .. start[i] + count[i] - 1 with weights[i * width ...]. */
  start: Int32Array;
  count: Int32Array;
  weights: Float64Array;
  width: number;
}

function sinc(x: number): number {
  if (x === 0) return 1;
  x *= Math.PI;
  return Math.sin(x) / x;
}

/** PIL's lanczos_filter: sinc(x) sinc(x / 3) on [-3, 3). */
function lanczos(x: number): number {
  return x >= -3 && x < 3 ? sinc(x) * sinc(x / 3) : 0;
}

const FILTERS: Record<PilFilter, { kernel: (x: number) => number; support: number }> = {
  bicubic: { kernel: cubic, support: 2 },
  lanczos: { kernel: lanczos, support: 3 },
};

/** One axis of precompute_coeffs: weights normalised to sum to 1 (in double). */
function axisCoeffs(inSize: number, outSize: number, filter: PilFilter = "bicubic"): AxisCoeffs {
  const f = FILTERS[filter];
  if (!f) throw new Error(`PIL resize: unknown filter ${JSON.stringify(filter)} (expected "bicubic" or "lanczos")`);
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = f.support * filterScale;
  const width = Math.ceil(support) * 2 + 1;
  const start = new Int32Array(outSize);
  const count = new Int32Array(outSize);
  const weights = new Float64Array(outSize * width);
  for (let i = 0; i < outSize; i++) {
    const center = (i + 0.5) * scale;
    // C's (int) truncates toward zero.
    const lo = Math.max(0, Math.trunc(center - support + 0.5));
    const hi = Math.min(inSize, Math.trunc(center + support + 0.5));
    let total = 0;
    for (let x = lo; x < hi; x++) {
      const wgt = f.kernel((x - center + 0.5) / filterScale);
      weights[i * width + x - lo] = wgt;
      total += wgt;
    }
    if (total !== 0) for (let x = 0; x < hi - lo; x++) weights[i * width + x] /= total;
    start[i] = lo;
    count[i] = hi - lo;
  }
  return { start, count, weights, width };
}

/** 8-bit passes use fixed-point weights with this many fraction bits (PRECISION_BITS = 32 - 8 - 2). */
const PRECISION_BITS = 22;

/** normalize_coeffs_8bpc: each weight times 2^22, rounded half away from zero. */
function fixedPoint(c: AxisCoeffs): AxisCoeffs {
  const one = 1 << PRECISION_BITS;
  return { ...c, weights: c.weights.map((w) => (w < 0 ? Math.trunc(-0.5 + w * one) : Math.trunc(0.5 + w * one))) };
}

/** What a pass stores for an accumulated sum: the float itself, or PIL's clip8 of the fixed-point sum. */
type Sum = (acc: number) => number;

/**
 * Resample `lines` independent lines along one axis: input sample t of a line is at line * lineStride + t * step,
 * channel q at + q; output sample o at line * dstLineStride + o * dstStep.
 */
function pass(src: ArrayLike<number>, dst: Float32Array | Uint8Array, c: AxisCoeffs, outSize: number, lines: number, lineStride: number, step: number, ch: number, init: number, finish: Sum, dstLineStride: number, dstStep: number): void {
  for (let line = 0; line < lines; line++) {
    for (let o = 0; o < outSize; o++) {
      const s0 = c.start[o];
      const k = o * c.width;
      for (let q = 0; q < ch; q++) {
        let acc = init;
        for (let t = 0; t < c.count[o]; t++) acc += src[line * lineStride + (s0 + t) * step + q] * c.weights[k + t];
        dst[line * dstLineStride + o * dstStep + q] = finish(acc);
      }
    }
  }
}

function resize<T extends Float32Array | Uint8Array>(src: T, h: number, w: number, c: number, outH: number, outW: number, make: (n: number) => T, coeffs: (i: number, o: number) => AxisCoeffs, init: number, finish: Sum, what: string): T {
  if (src.length !== h * w * c) throw new Error(`${what}: expected ${h}x${w}x${c} values, got ${src.length}`);
  if (!(outH > 0 && outW > 0 && Number.isInteger(outH) && Number.isInteger(outW))) throw new Error(`${what}: output size ${outH}x${outW} must be positive integers`);
  let img: T = src;
  if (outW !== w) {
    // horizontal: each row is a line, pixels c apart
    const mid = make(h * outW * c);
    pass(img, mid, coeffs(w, outW), outW, h, w * c, c, c, init, finish, outW * c, c);
    img = mid;
  }
  if (outH !== h) {
    // vertical: each column is a line, pixels a row apart
    const out = make(outH * outW * c);
    pass(img, out, coeffs(h, outH), outH, outW, c, outW * c, c, init, finish, c, outW * c);
    img = out;
  }
  return img === src ? (src.slice() as T) : img;
}

/** PIL's bicubic resize of a float image (mode "F": sums in double, float32 between the passes, no clipping). */
export function pilResizeFloat(src: Float32Array, h: number, w: number, c: number, outH: number, outW: number): Float32Array {
  return resize(src, h, w, c, outH, outW, (n) => new Float32Array(n), axisCoeffs, 0, (acc) => acc, "pilResizeFloat");
}

/**
 * PIL's resize of an 8-bit image (e.g. RGB): fixed-point weights, each pass rounded and clamped to 0..255, as
 * Image.resize(size, BICUBIC) (or LANCZOS) computes it.
 */
export function pilResizeU8(src: Uint8Array, h: number, w: number, c: number, outH: number, outW: number, filter: PilFilter = "bicubic"): Uint8Array {
  const shift = 2 ** PRECISION_BITS;
  // clip8: (acc >> 22) clamped to 0..255, with 2^21 added first to round
  const finish = (acc: number) => (acc <= 0 ? 0 : acc >= 256 * shift ? 255 : Math.floor(acc / shift));
  return resize(src, h, w, c, outH, outW, (n) => new Uint8Array(n), (i, o) => fixedPoint(axisCoeffs(i, o, filter)), 2 ** (PRECISION_BITS - 1), finish, "pilResizeU8");
}
