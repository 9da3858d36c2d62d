import { GaussianStats } from "./stats";
import { eigvalsh, matmulNTParallel, pivotedCholesky, sharedF64, symmetrize } from "./linalg";

// Fréchet distance between two Gaussians fitted to features (Heusel et al. 2017):
//   FID = |mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)).
// pytorch-fid takes scipy's sqrtm of the non-symmetric product S1 S2; here the trace of the square root comes from a
// symmetric positive semi-definite matrix with the same eigenvalues, which is both faster and better conditioned.

/**
 * tr((S1 S2)^(1/2)) for symmetric PSD S1, S2 (n x n). With P^T S1 P = U^T U (pivoted Cholesky, U of size r x n),
 * S1 S2 = P U^T U P^T S2 has the nonzero eigenvalues of M = U (P^T S2 P) U^T, which is symmetric PSD, so
 * tr((S1 S2)^(1/2)) = sum_i sqrt(max(lambda_i(M), 0)). (The same holds for A S2 A with A = S1^(1/2); the
 * Cholesky factor avoids computing S1's eigenvectors.) Cost: ~n^3/3 (factor) + n^3 (M) + 4n^3/3 (eigenvalues).
 * Zero eigenvalues of S1 drop out exactly (rank r < n); those of S2 come back as roundoff of size eps |M|, which the
 * square root enlarges to ~sqrt(eps |M|): pass the covariance of lower rank first.
 */
export function traceSqrtProduct(s1: Float64Array, s2: Float64Array, n: number): number {
  if (s1.length !== n * n || s2.length !== n * n) throw new Error(`traceSqrtProduct: expected two ${n}x${n} matrices`);
  const { u, rank: r, perm } = pivotedCholesky(s1, n);
  if (r === 0) return 0;
  const s2p = sharedF64(n * n);
  for (let i = 0; i < n; i++) {
    const src = perm[i] * n;
    for (let j = 0; j < n; j++) s2p[i * n + j] = s2[src + perm[j]];
  }
  // X = U S2' (r x n); S2' is symmetric, so its rows serve as the columns the product needs. M below reads X[j, k]
  // only for k >= j (U[i, k] = 0 for k < i and j <= i), so only X's upper part is formed: n^3 in all, not 4n^3/3.
  const x = sharedF64(r * n);
  matmulNTParallel({ m: r, n, k: n, a: u, lda: n, b: s2p, ldb: n, c: x, ldc: n, aUpper: true, part: "upper" });
  // M = U X^T (r x r), lower triangle, then mirrored.
  const m = sharedF64(r * r);
  matmulNTParallel({ m: r, n: r, k: n, a: u, lda: n, b: x, ldb: n, c: m, ldc: r, aUpper: true, part: "lower" });
  symmetrize(m, r, "lower");
  let sum = 0;
  for (const lambda of eigvalsh(m, r)) sum += Math.sqrt(Math.max(lambda, 0));
  return sum;
}

export interface FidTerms {
  fid: number;
  /** |mu1 - mu2|^2 */
  meanTerm: number;
  /** tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2)) */
  covTerm: number;
}

export function frechetDistance(a: GaussianStats, b: GaussianStats): FidTerms {
  const n = a.mu.length;
  if (b.mu.length !== n) throw new Error(`frechetDistance: feature dims differ (${n} vs ${b.mu.length})`);
  if (a.sigma.length !== n * n || b.sigma.length !== n * n) throw new Error(`frechetDistance: sigma must be ${n}x${n}`);
  let meanTerm = 0;
  for (let i = 0; i < n; i++) meanTerm += (a.mu[i] - b.mu[i]) ** 2;
  let traces = 0;
  for (let i = 0; i < n; i++) traces += a.sigma[i * n + i] + b.sigma[i * n + i];
  // The factored covariance should be the one of lower rank: the product then has no zero eigenvalues that
  // roundoff would turn into sqrt(eps)-sized terms. A sample covariance has rank at most count - 1.
  const [s1, s2] = b.count < a.count ? [b.sigma, a.sigma] : [a.sigma, b.sigma];
  // FID = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2))
  const covTerm = traces - 2 * traceSqrtProduct(s1, s2, n);
  return { fid: meanTerm + covTerm, meanTerm, covTerm };
}
