// Dense float64 linear algebra for the Fréchet distance, in plain TypeScript: pivoted Cholesky, Householder
// tridiagonalisation and implicit QL. Matrices are row-major Float64Arrays; a symmetric matrix stores both
// triangles. The O(n^3) loops (linalg_kernels.ts) read memory along rows and are shared among threads
// (linalg_pool.ts) when the machine has more than one core.

import { passRows } from "./linalg_kernels";
import { matmulNTParallel, passTeam, poolSize, sharedF64 } from "./linalg_pool";

export { matmulNT, MatmulNT } from "./linalg_kernels";
export { matmulNTParallel, sharedF64 } from "./linalg_pool";

const EPS = 2 ** -52;

/** Fill the lower triangle of a square matrix from its upper one (or the reverse). */
export function symmetrize(a: Float64Array, n: number, from: "upper" | "lower"): void {
  for (let i = 0; i < n; i++) {
    for (let j = i + 1; j < n; j++) {
      if (from === "upper") a[j * n + i] = a[i * n + j];
      else a[i * n + j] = a[j * n + i];
    }
  }
}

export interface PivotedCholesky {
  n: number;
  /** Numerical rank: pivots at or below the tolerance end the factorisation. */
  rank: number;
  /** rank x n row-major, upper trapezoidal (zeros stored below the diagonal). */
  u: Float64Array;
  /** S[perm[i], perm[j]] = (U^T U)[i, j]. */
  perm: Int32Array;
}

/**
 * Cholesky factorisation with symmetric pivoting of a symmetric positive semi-definite matrix, as LAPACK's
 * dpstrf: P^T S P = U^T U with the largest remaining diagonal as each pivot, stopping once it falls to `tol`
 * (default n * eps * max diag). A rank-deficient covariance (fewer samples than dimensions) factors exactly.
 * Rows are computed a panel of 128 at a time; the trailing update is one blocked product per panel.
 */
export function pivotedCholesky(s: Float64Array, n: number, tol?: number): PivotedCholesky {
  if (s.length !== n * n) throw new Error(`pivotedCholesky: expected ${n}x${n} values, got ${s.length}`);
  const a = sharedF64(n * n);
  a.set(s);
  const perm = new Int32Array(n);
  for (let i = 0; i < n; i++) perm[i] = i;
  let maxDiag = 0;
  for (let i = 0; i < n; i++) maxDiag = Math.max(maxDiag, a[i * n + i]);
  const limit = tol ?? n * EPS * maxDiag;
  // Sum over the current panel of U[k, i]^2: the current diagonal is the (not yet updated) trailing one minus this.
  const work = new Float64Array(n);
  const NB = 128;
  let rank = n;
  outer: for (let k0 = 0; k0 < n; k0 += NB) {
    const k1 = Math.min(n, k0 + NB);
    work.fill(0);
    for (let j = k0; j < k1; j++) {
      let q = j;
      let best = a[j * n + j] - work[j];
      for (let i = j + 1; i < n; i++) {
        const v = a[i * n + i] - work[i];
        if (v > best) {
          best = v;
          q = i;
        }
      }
      if (!(best > limit)) {
        rank = j;
        break outer;
      }
      if (q !== j) swapSymmetric(a, n, j, q, work, perm);
      const rj = j * n;
      const ujj = Math.sqrt(best);
      a[rj + j] = ujj;
      for (let k = k0; k < j; k++) {
        const f = a[k * n + j];
        if (f === 0) continue;
        const rk = k * n;
        for (let c = j + 1; c < n; c++) a[rj + c] -= f * a[rk + c];
      }
      const inv = 1 / ujj;
      for (let c = j + 1; c < n; c++) {
        const v = a[rj + c] * inv;
        a[rj + c] = v;
        work[c] += v * v;
      }
    }
    const m = n - k1;
    if (m === 0) break;
    // S22 -= U12^T U12 over this panel's rows, upper triangle only.
    const nb = k1 - k0;
    const pt = sharedF64(m * nb);
    for (let k = k0; k < k1; k++) {
      const rk = k * n;
      for (let x = 0; x < m; x++) pt[x * nb + (k - k0)] = a[rk + k1 + x];
    }
    matmulNTParallel({ m, n: m, k: nb, a: pt, lda: nb, b: pt, ldb: nb, c: a, ldc: n, cOffset: k1 * n + k1, alpha: -1, part: "upper" });
  }
  const u = sharedF64(rank * n);
  for (let r = 0; r < rank; r++) u.set(a.subarray(r * n + r, r * n + n), r * n + r);
  return { n, rank, u, perm };
}

/** Swap index j < q of the trailing upper triangle (rows >= j) and columns j, q of the finished rows above. */
function swapSymmetric(a: Float64Array, n: number, j: number, q: number, work: Float64Array, perm: Int32Array): void {
  const swap = (x: number, y: number): void => {
    const t = a[x];
    a[x] = a[y];
    a[y] = t;
  };
  for (let r = 0; r < j; r++) swap(r * n + j, r * n + q);
  swap(j * n + j, q * n + q);
  for (let c = j + 1; c < q; c++) swap(j * n + c, c * n + q);
  for (let c = q + 1; c < n; c++) swap(j * n + c, q * n + c);
  const w = work[j];
  work[j] = work[q];
  work[q] = w;
  const p = perm[j];
  perm[j] = perm[q];
  perm[q] = p;
}

export interface Tridiagonal {
  n: number;
  /** Diagonal of T. */
  d: Float64Array;
  /** e[i] = T[i, i+1]; length n, e[n-1] = 0. */
  e: Float64Array;
  /**
   * The reflectors H_k = I - tau[k] v v^T with A = Q T Q^T, Q = H_0 ... H_{n-3}: v[k+1] = 1 and v[c] = a[k*n + c]
   * for c > k+1, in the input array, which the reduction overwrites.
   */
  tau: Float64Array;
  a: Float64Array;
}

/**
 * Householder reduction of a symmetric matrix to tridiagonal form (upper triangle read, array overwritten).
 * Step k reflects row k onto its first off-diagonal entry and updates the trailing block,
 * A22 <- H A22 H = A22 - v w^T - w v^T with p = tau A22 v, w = p - (tau/2)(p.v) v.
 * That update is deferred and fused with the next step's product A22 v, so each step passes over the trailing
 * triangle once instead of twice; the pass is shared among threads.
 */
export function tridiagonalize(a: Float64Array, n: number): Tridiagonal {
  if (a.length !== n * n) throw new Error(`tridiagonalize: expected ${n}x${n} values, got ${a.length}`);
  const d = new Float64Array(n);
  const e = new Float64Array(n);
  const tau = new Float64Array(n);
  // arrays = [a, four vector slots, one p per thread]; slots hold v and w of the pending update and of this step.
  const threads = poolSize();
  const arrays = [a, ...Array.from({ length: 4 + threads }, () => sharedF64(n))];
  const P = 5;
  const reduce = (pass: (k: number, vPrev: number, wPrev: number, v: number) => void): void => {
    let vPrev = 1;
    const wPrev = 2;
    let v = 3;
    const p = arrays[P];
    for (let k = 0; k < n; k++) {
      const rk = k * n;
      {
        const vp = arrays[vPrev];
        const wp = arrays[wPrev];
        const vi = vp[k];
        const wi = wp[k];
        for (let c = k; c < n; c++) a[rk + c] -= vi * wp[c] + wi * vp[c];
      }
      d[k] = a[rk + k];
      if (k === n - 1) break;
      // Reflector (as LAPACK dlarfg): H x = beta e1 for x = A[k, k+1..n).
      const vv = arrays[v];
      const alpha = a[rk + k + 1];
      let xnorm2 = 0;
      for (let c = k + 2; c < n; c++) xnorm2 += a[rk + c] * a[rk + c];
      let t = 0;
      vv.fill(0, k + 1);
      if (xnorm2 === 0) {
        e[k] = alpha;
      } else {
        const beta = -Math.sign(alpha || 1) * Math.sqrt(alpha * alpha + xnorm2);
        t = (beta - alpha) / beta;
        const scale = 1 / (alpha - beta);
        vv[k + 1] = 1;
        for (let c = k + 2; c < n; c++) {
          const x = a[rk + c] * scale;
          a[rk + c] = x;
          vv[c] = x;
        }
        e[k] = beta;
      }
      tau[k] = t;
      // One pass: apply the pending rank-2 update to rows k+1.. and accumulate p = A22 v (into arrays[P]).
      pass(k, vPrev, wPrev, v);
      let pv = 0;
      for (let c = k + 1; c < n; c++) {
        p[c] *= t;
        pv += p[c] * vv[c];
      }
      const half = -0.5 * t * pv;
      // This step's (v, w) become the pending update: w overwrites the applied one, v's slot swaps with vPrev's.
      const w = arrays[wPrev];
      for (let c = k + 1; c < n; c++) w[c] = p[c] + half * vv[c];
      [vPrev, v] = [v, vPrev];
    }
  };
  const localPass = (k: number, vPrev: number, wPrev: number, v: number): void => {
    arrays[P].fill(0, k + 1);
    passRows(a, n, k + 1, n, arrays[vPrev], arrays[wPrev], arrays[v], arrays[P]);
  };
  if (passTeam(n, arrays, reduce) === null) reduce(localPass);
  return { n, d, e, tau, a };
}

/**
 * Eigenvalues (and, given z, eigenvectors) of a symmetric tridiagonal matrix by the implicit QL algorithm with
 * Wilkinson's shift. d and e are overwritten (d with the unsorted eigenvalues). z, if given, is n x n row-major
 * with rows as vectors: each plane rotation combines two rows, so z = I yields T's eigenvectors as rows.
 */
export function tridiagonalQL(d: Float64Array, e: Float64Array, z?: Float64Array): void {
  const n = d.length;
  if (e.length !== n) throw new Error(`tridiagonalQL: e must have length n = ${n} (e[n-1] = 0), got ${e.length}`);
  e[n - 1] = 0;
  for (let l = 0; l < n; l++) {
    for (let iter = 0; ; iter++) {
      let m = l;
      for (; m < n - 1; m++) {
        const dd = Math.abs(d[m]) + Math.abs(d[m + 1]);
        if (Math.abs(e[m]) <= EPS * dd) break;
      }
      if (m === l) break;
      if (iter >= 60) throw new Error(`tridiagonalQL: eigenvalue ${l} did not converge in 60 iterations`);
      // Wilkinson shift: the eigenvalue of the leading 2x2 block closer to d[l].
      let g = (d[l + 1] - d[l]) / (2 * e[l]);
      let r = Math.hypot(g, 1);
      g = d[m] - d[l] + e[l] / (g + (g >= 0 ? r : -r));
      let s = 1;
      let c = 1;
      let p = 0;
      let i = m - 1;
      for (; i >= l; i--) {
        const f = s * e[i];
        const b = c * e[i];
        r = Math.hypot(f, g);
        e[i + 1] = r;
        if (r === 0) {
          // Underflow: the matrix split; deflate and start again.
          d[i + 1] -= p;
          e[m] = 0;
          break;
        }
        s = f / r;
        c = g / r;
        g = d[i + 1] - p;
        r = (d[i] - g) * s + 2 * c * b;
        p = s * r;
        d[i + 1] = g + p;
        g = c * r - b;
        if (z) {
          const zi = i * n;
          const zj = zi + n;
          for (let k = 0; k < n; k++) {
            const t = z[zj + k];
            z[zj + k] = s * z[zi + k] + c * t;
            z[zi + k] = c * z[zi + k] - s * t;
          }
        }
      }
      if (r === 0 && i >= l) continue;
      d[l] -= p;
      e[l] = g;
      e[m] = 0;
    }
  }
}

function sharedCopy(s: Float64Array): Float64Array {
  const out = sharedF64(s.length);
  out.set(s);
  return out;
}

/** Eigenvalues of a symmetric matrix, ascending. The input is left untouched. */
export function eigvalsh(s: Float64Array, n: number): Float64Array {
  const t = tridiagonalize(sharedCopy(s), n);
  tridiagonalQL(t.d, t.e);
  return t.d.sort();
}

export interface SymmetricEigen {
  /** Ascending. */
  values: Float64Array;
  /** n x n row-major; row i is the unit eigenvector of values[i]. */
  vectors: Float64Array;
}

/** Eigenvalues and eigenvectors of a symmetric matrix: S = V^T diag(values) V with V = vectors. */
export function eigh(s: Float64Array, n: number): SymmetricEigen {
  const t = tridiagonalize(sharedCopy(s), n);
  const z = new Float64Array(n * n);
  for (let i = 0; i < n; i++) z[i * n + i] = 1;
  tridiagonalQL(t.d, t.e, z);
  // Back to S's basis: x = Q y = H_0 (H_1 (... H_{n-3} y)) for every eigenvector y of T.
  for (let k = n - 3; k >= 0; k--) {
    const tk = t.tau[k];
    if (tk === 0) continue;
    const rk = k * n;
    for (let r = 0; r < n; r++) {
      const zr = r * n;
      let dot = z[zr + k + 1];
      for (let c = k + 2; c < n; c++) dot += t.a[rk + c] * z[zr + c];
      dot *= tk;
      z[zr + k + 1] -= dot;
      for (let c = k + 2; c < n; c++) z[zr + c] -= dot * t.a[rk + c];
    }
  }
  const order = Array.from(t.d.keys()).sort((x, y) => t.d[x] - t.d[y]);
  const values = new Float64Array(n);
  const vectors = new Float64Array(n * n);
  order.forEach((src, dst) => {
    values[dst] = t.d[src];
    vectors.set(z.subarray(src * n, src * n + n), dst * n);
  });
  return { values, vectors };
}
