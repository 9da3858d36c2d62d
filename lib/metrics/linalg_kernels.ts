// The O(n^3) inner loops of lib/metrics/linalg.ts, kept free of imports so worker threads can load them alone
// (linalg_worker.ts). Row-major Float64Arrays; every innermost loop reads memory contiguously.

/** C (+)= alpha * A B^T on a window of the arrays; see matmulNT. */
export interface MatmulNT {
  /** Rows of A (and of C). */
  m: number;
  /** Rows of B (columns of C). */
  n: number;
  /** Length of the sums: A[i, 0..k) . B[j, 0..k). */
  k: number;
  a: Float64Array;
  lda: number;
  b: Float64Array;
  ldb: number;
  c: Float64Array;
  ldc: number;
  /** Offset of C[0, 0] inside c (a trailing block of a bigger matrix). */
  cOffset?: number;
  alpha?: number;
  /** A is upper trapezoidal (A[i, k] = 0 for k < i, stored as zeros): sums start at the row index. */
  aUpper?: boolean;
  /**
   * Which part of C is wanted: 'lower' (j <= i) or 'upper' (j >= i) halves the work for symmetric results. Tiles
   * straddling the diagonal also write a few entries just across it, which the caller must ignore.
   */
  part?: "all" | "lower" | "upper";
  /** Compute only rows [rowStart, rowEnd) of C (how threads share a product). */
  rowStart?: number;
  rowEnd?: number;
}

// Block sizes: a 128-row panel of B times 256 columns (256 KiB) stays in L2 while all of A streams past it.
const NC = 128;
const KC = 256;

/** C[i, j] += alpha * sum_k A[i, k] B[j, k]: the row-major product with both operands read along rows. */
export function matmulNT(p: MatmulNT): void {
  for (let jc = 0; jc < p.n; jc += NC) {
    const jEnd = Math.min(p.n, jc + NC);
    for (let kc = 0; kc < p.k; kc += KC) ntBlock(p, jc, jEnd, kc, Math.min(p.k, kc + KC));
  }
}

function ntBlock(p: MatmulNT, jc: number, jEnd: number, kc: number, kEnd: number): void {
  const { a, b, c, lda, ldb, ldc } = p;
  const alpha = p.alpha ?? 1;
  const off = p.cOffset ?? 0;
  const part = p.part ?? "all";
  const aUpper = p.aUpper ?? false;
  let iStart = p.rowStart ?? 0;
  let iEnd = Math.min(p.m, p.rowEnd ?? p.m);
  if (aUpper) iEnd = Math.min(iEnd, kEnd);
  if (part === "lower") iStart = Math.max(iStart, jc - 1);
  if (part === "upper") iEnd = Math.min(iEnd, jEnd);
  let i = iStart;
  for (; i + 1 < iEnd; i += 2) {
    const k0 = aUpper ? Math.max(kc, i) : kc;
    const j0 = part === "upper" ? Math.max(jc, i) : jc;
    const j1 = part === "lower" ? Math.min(jEnd, i + 2) : jEnd;
    const a0 = i * lda;
    const a1 = a0 + lda;
    const r0 = off + i * ldc;
    const r1 = r0 + ldc;
    let j = j0;
    for (; j + 3 < j1; j += 4) {
      const b0 = j * ldb;
      const b1 = b0 + ldb;
      const b2 = b1 + ldb;
      const b3 = b2 + ldb;
      let c00 = 0, c01 = 0, c02 = 0, c03 = 0, c10 = 0, c11 = 0, c12 = 0, c13 = 0;
      for (let k = k0; k < kEnd; k++) {
        const x0 = a[a0 + k];
        const x1 = a[a1 + k];
        let y = b[b0 + k];
        c00 += x0 * y;
        c10 += x1 * y;
        y = b[b1 + k];
        c01 += x0 * y;
        c11 += x1 * y;
        y = b[b2 + k];
        c02 += x0 * y;
        c12 += x1 * y;
        y = b[b3 + k];
        c03 += x0 * y;
        c13 += x1 * y;
      }
      c[r0 + j] += alpha * c00;
      c[r0 + j + 1] += alpha * c01;
      c[r0 + j + 2] += alpha * c02;
      c[r0 + j + 3] += alpha * c03;
      c[r1 + j] += alpha * c10;
      c[r1 + j + 1] += alpha * c11;
      c[r1 + j + 2] += alpha * c12;
      c[r1 + j + 3] += alpha * c13;
    }
    for (; j < j1; j++) {
      const bj = j * ldb;
      let c0 = 0, c1 = 0;
      for (let k = k0; k < kEnd; k++) {
        const y = b[bj + k];
        c0 += a[a0 + k] * y;
        c1 += a[a1 + k] * y;
      }
      c[r0 + j] += alpha * c0;
      c[r1 + j] += alpha * c1;
    }
  }
  if (i < iEnd) {
    const k0 = aUpper ? Math.max(kc, i) : kc;
    const j0 = part === "upper" ? Math.max(jc, i) : jc;
    const j1 = part === "lower" ? Math.min(jEnd, i + 1) : jEnd;
    const ai = i * lda;
    for (let j = j0; j < j1; j++) {
      const bj = j * ldb;
      let s = 0;
      for (let k = k0; k < kEnd; k++) s += a[ai + k] * b[bj + k];
      c[off + i * ldc + j] += alpha * s;
    }
  }
}

// Row passes of the reduction: apply the pending update A -= v' w'^T + w' v'^T to rows of the trailing upper
// triangle, then add their share of p = A v (sum_c A[i, c] v[c] to p[i]; A[i, c] v[i] to p[c] for the mirrored
// lower half). Four rows at a time share the loads of v', w', v and p, which more than halves the time per entry.

export function passRow(a: Float64Array, n: number, i: number, vPrev: Float64Array, wPrev: Float64Array, v: Float64Array, p: Float64Array): void {
  const ri = i * n;
  const vi = vPrev[i];
  const wi = wPrev[i];
  const xi = v[i];
  const aii = a[ri + i] - 2 * vi * wi;
  a[ri + i] = aii;
  let acc = aii * xi;
  for (let c = i + 1; c < n; c++) {
    const x = a[ri + c] - vi * wPrev[c] - wi * vPrev[c];
    a[ri + c] = x;
    acc += x * v[c];
    p[c] += x * xi;
  }
  p[i] += acc;
}

export function passRows4(a: Float64Array, n: number, i: number, vPrev: Float64Array, wPrev: Float64Array, v: Float64Array, p: Float64Array): void {
  // The 4x4 corner on and right of the diagonal, row by row.
  for (let r = i; r < i + 4; r++) {
    const rr = r * n;
    const vr = vPrev[r];
    const wr = wPrev[r];
    const xr = v[r];
    const arr = a[rr + r] - 2 * vr * wr;
    a[rr + r] = arr;
    let acc = arr * xr;
    for (let c = r + 1; c < i + 4; c++) {
      const x = a[rr + c] - vr * wPrev[c] - wr * vPrev[c];
      a[rr + c] = x;
      acc += x * v[c];
      p[c] += x * xr;
    }
    p[r] += acc;
  }
  const r0 = i * n;
  const r1 = r0 + n;
  const r2 = r1 + n;
  const r3 = r2 + n;
  const v0 = vPrev[i], w0 = wPrev[i], x0 = v[i];
  const v1 = vPrev[i + 1], w1 = wPrev[i + 1], x1 = v[i + 1];
  const v2 = vPrev[i + 2], w2 = wPrev[i + 2], x2 = v[i + 2];
  const v3 = vPrev[i + 3], w3 = wPrev[i + 3], x3 = v[i + 3];
  let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  for (let c = i + 4; c < n; c++) {
    const wc = wPrev[c];
    const vc = vPrev[c];
    const xc = v[c];
    const y0 = a[r0 + c] - v0 * wc - w0 * vc;
    const y1 = a[r1 + c] - v1 * wc - w1 * vc;
    const y2 = a[r2 + c] - v2 * wc - w2 * vc;
    const y3 = a[r3 + c] - v3 * wc - w3 * vc;
    a[r0 + c] = y0;
    a[r1 + c] = y1;
    a[r2 + c] = y2;
    a[r3 + c] = y3;
    s0 += y0 * xc;
    s1 += y1 * xc;
    s2 += y2 * xc;
    s3 += y3 * xc;
    p[c] += y0 * x0 + y1 * x1 + y2 * x2 + y3 * x3;
  }
  p[i] += s0;
  p[i + 1] += s1;
  p[i + 2] += s2;
  p[i + 3] += s3;
}

/** Rows [i0, i1) of a reduction step, four at a time where possible. */
export function passRows(a: Float64Array, n: number, i0: number, i1: number, vPrev: Float64Array, wPrev: Float64Array, v: Float64Array, p: Float64Array): void {
  let i = i0;
  for (; i + 3 < i1; i += 4) passRows4(a, n, i, vPrev, wPrev, v, p);
  for (; i < i1; i++) passRow(a, n, i, vPrev, wPrev, v, p);
}

// ---- jobs for the thread pool (linalg_pool.ts): parameters travel as one Float64Array row per thread ----------

export const JOB_PARAMS = 16;
export const OP_END = 0;
export const OP_MATMUL = 1;
export const OP_PASS = 2;
const PARTS = ["all", "lower", "upper"] as const;

/** [OP_MATMUL, a, b, c, m, n, k, lda, ldb, ldc, cOffset, alpha, aUpper, part, rowStart, rowEnd]; a, b, c index `arrays`. */
export function encodeMatmul(row: Float64Array, p: MatmulNT, rowStart: number, rowEnd: number): void {
  row.set([OP_MATMUL, 0, 1, 2, p.m, p.n, p.k, p.lda, p.ldb, p.ldc, p.cOffset ?? 0, p.alpha ?? 1, p.aUpper ? 1 : 0, PARTS.indexOf(p.part ?? "all"), rowStart, rowEnd]);
}

/** [OP_PASS, a, n, vPrev, wPrev, v, p, i0, i1, zeroFrom]: rows [i0, i1) into this thread's p, zeroed from zeroFrom. */
export function runJob(row: Float64Array, arrays: Float64Array[]): void {
  // Integers read back from a Float64Array are doubles to the engine; `| 0` turns them into small integers again,
  // without which every index computation in the kernels runs in floating point (4x slower).
  const int = (i: number): number => row[i] | 0;
  const op = int(0);
  if (op === OP_MATMUL) {
    matmulNT({
      a: arrays[int(1)], b: arrays[int(2)], c: arrays[int(3)], m: int(4), n: int(5), k: int(6), lda: int(7), ldb: int(8), ldc: int(9),
      cOffset: int(10), alpha: row[11], aUpper: int(12) === 1, part: PARTS[int(13)], rowStart: int(14), rowEnd: int(15),
    });
  } else if (op === OP_PASS) {
    const p = arrays[int(6)];
    p.fill(0, int(9));
    passRows(arrays[int(1)], int(2), int(7), int(8), arrays[int(3)], arrays[int(4)], arrays[int(5)], p);
  } else {
    throw new Error(`linalg job: unknown op ${op}`);
  }
}
