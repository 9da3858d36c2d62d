import * as fs from "fs";
import { HostTensor } from "../io/host_tensor";
import { readNpz, writeNpz } from "../io/npy";
import { matmulNTParallel, sharedF64, symmetrize } from "./linalg";

// Mean and covariance of feature vectors, accumulated batch by batch in float64 without keeping the features.

/** A Gaussian fitted to features: what FID compares, and what pytorch-fid / clean-fid store as .npz (mu, sigma). */
export interface GaussianStats {
  mu: Float64Array;
  /** dim x dim row-major, symmetric: the unbiased sample covariance (np.cov's default). */
  sigma: Float64Array;
  /** Samples behind the estimate; NaN when a file did not record it. */
  count: number;
}

export class RunningStats {
  count = 0;
  readonly mean: Float64Array;
  /** Sum of outer products of deviations from the mean; only the upper triangle is kept up to date. */
  private readonly scatter: Float64Array;
  constructor(readonly dim: number) {
    this.mean = new Float64Array(dim);
    this.scatter = sharedF64(dim * dim);
  }

  /** Add `rows` feature vectors stored row-major (rows x dim). */
  add(features: ArrayLike<number>, rows: number): void {
    const d = this.dim;
    if (features.length !== rows * d) throw new Error(`RunningStats.add: expected ${rows}x${d} = ${rows * d} values, got ${features.length}`);
    if (rows === 0) return;
    const batchMean = new Float64Array(d);
    for (let r = 0; r < rows; r++) for (let i = 0; i < d; i++) batchMean[i] += features[r * d + i];
    for (let i = 0; i < d; i++) batchMean[i] /= rows;
    // Deviations from the batch's own mean, transposed (dim x rows) so the scatter is a product of rows.
    const dev = sharedF64(d * rows);
    for (let r = 0; r < rows; r++) for (let i = 0; i < d; i++) dev[i * rows + r] = features[r * d + i] - batchMean[i];
    matmulNTParallel({ m: d, n: d, k: rows, a: dev, lda: rows, b: dev, ldb: rows, c: this.scatter, ldc: d, part: "upper" });
    // Chan et al.'s merge of two groups: M2 = M2_a + M2_b + delta delta^T n_a n_b / n, mean = mean_a + delta n_b / n.
    const na = this.count;
    const n = na + rows;
    const delta = batchMean.map((m, i) => m - this.mean[i]);
    const f = (na * rows) / n;
    for (let i = 0; i < d; i++) {
      const di = delta[i] * f;
      for (let j = i; j < d; j++) this.scatter[i * d + j] += di * delta[j];
    }
    for (let i = 0; i < d; i++) this.mean[i] += (delta[i] * rows) / n;
    this.count = n;
  }

  stats(): GaussianStats {
    if (this.count < 2) throw new Error(`RunningStats: a covariance needs at least 2 samples, have ${this.count}`);
    const d = this.dim;
    const sigma = new Float64Array(d * d);
    for (let i = 0; i < d; i++) for (let j = i; j < d; j++) sigma[i * d + j] = this.scatter[i * d + j] / (this.count - 1);
    symmetrize(sigma, d, "upper");
    return { mu: this.mean.slice(), sigma, count: this.count };
  }
}

/** Save as pytorch-fid / clean-fid do (mu [d], sigma [d, d], float64), plus the sample count. */
export function saveStats(file: string, s: GaussianStats, extra: Record<string, HostTensor> = {}): void {
  const d = s.mu.length;
  writeNpz(file, {
    mu: { dtype: "float64", shape: [d], data: s.mu },
    sigma: { dtype: "float64", shape: [d, d], data: s.sigma },
    count: { dtype: "float64", shape: [], data: new Float64Array([s.count]) },
    ...extra,
  });
}

/** Read an .npz with `mu` and `sigma` (any float dtype); files from pytorch-fid or clean-fid load as they are. */
export function loadStats(file: string): GaussianStats {
  if (!fs.existsSync(file)) throw new Error(`${file}: no such statistics file`);
  const z = readNpz(file);
  const mu = z.mu;
  const sigma = z.sigma;
  if (!mu || !sigma) throw new Error(`${file}: expected arrays 'mu' and 'sigma', found ${Object.keys(z).join(", ") || "none"}`);
  const d = mu.shape[0];
  if (mu.shape.length !== 1 || sigma.shape.length !== 2 || sigma.shape[0] !== d || sigma.shape[1] !== d) {
    throw new Error(`${file}: expected mu [d] and sigma [d, d], got mu [${mu.shape}] and sigma [${sigma.shape}]`);
  }
  const asF64 = (t: HostTensor, name: string): Float64Array => {
    if (t.dtype === "float64") return Float64Array.from(t.data as Float64Array);
    if (t.dtype === "float32") return Float64Array.from(t.data as Float32Array);
    throw new Error(`${file}: '${name}' has dtype ${t.dtype}, expected float64 or float32`);
  };
  const count = z.count ? Number((z.count.data as Float64Array)[0]) : NaN;
  return { mu: asF64(mu, "mu"), sigma: asF64(sigma, "sigma"), count };
}
