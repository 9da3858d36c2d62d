import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { Rng } from "../lib/core/random";
import { fromRoot } from "../lib/core/paths";
import { readNpz, writeNpz } from "../lib/io/npy";
import { frechetDistance, traceSqrtProduct } from "../lib/metrics/fid";
import { eigh, eigvalsh, matmulNT, pivotedCholesky, symmetrize } from "../lib/metrics/linalg";
import { GaussianStats, RunningStats, loadStats, saveStats } from "../lib/metrics/stats";

const FIX = fromRoot("test", "fixtures", "inception");

function randomSymmetric(n: number, rng: Rng): Float64Array {
  const a = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j <= i; j++) a[i * n + j] = a[j * n + i] = rng.normal();
  return a;
}

/** G G^T / k for a random n x k G: PSD of rank min(n, k). */
function randomPsd(n: number, k: number, rng: Rng): Float64Array {
  const g = new Float64Array(n * k).map(() => rng.normal());
  const s = new Float64Array(n * n);
  matmulNT({ m: n, n, k, a: g, lda: k, b: g, ldb: k, c: s, ldc: n, alpha: 1 / k });
  return s;
}

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

/** V^T diag(values) V with V's rows the eigenvectors. */
function reconstruct(values: Float64Array, v: Float64Array, n: number): Float64Array {
  const out = new Float64Array(n * n);
  for (let k = 0; k < n; k++) for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) out[i * n + j] += v[k * n + i] * values[k] * v[k * n + j];
  return out;
}

/** A dense orthogonal matrix, cheaply: the product of `count` random Householder reflections. */
function householderProduct(n: number, count: number, rng: Rng): Float64Array {
  const q = new Float64Array(n * n);
  for (let i = 0; i < n; i++) q[i * n + i] = 1;
  for (let r = 0; r < count; r++) {
    const u = new Float64Array(n).map(() => rng.normal());
    const norm = Math.hypot(...u);
    u.forEach((x, i) => (u[i] = x / norm));
    // Q <- Q (I - 2 u u^T), row by row.
    for (let i = 0; i < n; i++) {
      let dot = 0;
      for (let j = 0; j < n; j++) dot += q[i * n + j] * u[j];
      for (let j = 0; j < n; j++) q[i * n + j] -= 2 * dot * u[j];
    }
  }
  return q;
}

/** V^T diag(lambda) V by a blocked product: (V^T diag(sqrt lambda)) (V^T diag(sqrt lambda))^T for lambda > 0. */
function withEigenvaluesFast(lambda: number[], v: Float64Array, n: number): Float64Array {
  const w = new Float64Array(n * n);
  for (let k = 0; k < n; k++) for (let i = 0; i < n; i++) w[i * n + k] = v[k * n + i] * Math.sqrt(lambda[k]);
  const out = new Float64Array(n * n);
  matmulNT({ m: n, n, k: n, a: w, lda: n, b: w, ldb: n, c: out, ldc: n });
  return out;
}

/** Q diag(lambda) Q^T for a random orthogonal Q (eigenvectors of a random symmetric matrix). */
function withEigenvalues(lambda: number[], q: Float64Array): Float64Array {
  return reconstruct(Float64Array.from(lambda), q, lambda.length);
}

test("eigh reconstructs random symmetric matrices with orthonormal eigenvectors", () => {
  const rng = new Rng(1);
  for (const n of [1, 2, 3, 7, 64, 150]) {
    const a = randomSymmetric(n, rng);
    const { values, vectors } = eigh(a, n);
    const scale = maxAbs(a);
    const back = reconstruct(values, vectors, n);
    assert.ok(maxAbs(back.map((x, i) => x - a[i])) < 1e-12 * n * scale, `n=${n}: V^T diag V differs from A`);
    const gram = new Float64Array(n * n);
    matmulNT({ m: n, n, k: n, a: vectors, lda: n, b: vectors, ldb: n, c: gram, ldc: n });
    for (let i = 0; i < n; i++) gram[i * n + i] -= 1;
    assert.ok(maxAbs(gram) < 1e-12 * n, `n=${n}: eigenvectors not orthonormal`);
    for (let i = 1; i < n; i++) assert.ok(values[i - 1] <= values[i], "eigenvalues ascending");
    const only = eigvalsh(a, n);
    assert.ok(maxAbs(only.map((x, i) => x - values[i])) < 1e-12 * n * scale, `n=${n}: eigvalsh differs from eigh`);
  }
});

test("the threaded paths (large products, long reduction passes) give the same answers as the closed form", () => {
  // n = 800 is past the sizes at which matmulNTParallel and the reduction's passes use the thread pool.
  const rng = new Rng(9);
  const n = 800;
  const q = householderProduct(n, 3, rng);
  const a = Array.from({ length: n }, () => rng.range(0.01, 4));
  const b = Array.from({ length: n }, () => rng.range(0.01, 4));
  const s1 = withEigenvaluesFast(a, q, n);
  const s2 = withEigenvaluesFast(b, q, n);
  let want = 0;
  for (let i = 0; i < n; i++) want += (Math.sqrt(a[i]) - Math.sqrt(b[i])) ** 2;
  const got = frechetDistance({ mu: new Float64Array(n), sigma: s1, count: NaN }, { mu: new Float64Array(n), sigma: s2, count: NaN }).fid;
  assert.ok(Math.abs(got - want) < 1e-6 * want, `${got} vs ${want}`);
  const values = eigvalsh(s1, n);
  const sorted = [...a].sort((x, y) => x - y);
  assert.ok(maxAbs(values.map((x, i) => x - sorted[i])) < 1e-11 * n);
});

test("eigh handles repeated eigenvalues and an already diagonal matrix", () => {
  const rng = new Rng(2);
  const n = 40;
  const q = eigh(randomSymmetric(n, rng), n).vectors;
  const lambda = Array.from({ length: n }, (_, i) => (i < 20 ? 3 : i < 30 ? -1 : 0));
  const a = withEigenvalues(lambda, q);
  const got = eigvalsh(a, n);
  const want = [...lambda].sort((x, y) => x - y);
  assert.ok(maxAbs(got.map((x, i) => x - want[i])) < 1e-12 * n);
  const diag = new Float64Array(n * n);
  for (let i = 0; i < n; i++) diag[i * n + i] = n - i;
  assert.deepEqual(Array.from(eigvalsh(diag, n)), Array.from({ length: n }, (_, i) => i + 1));
});

test("pivoted Cholesky factors full-rank and rank-deficient PSD matrices", () => {
  const rng = new Rng(3);
  for (const [n, k] of [[50, 80], [70, 20], [130, 129]]) {
    const s = randomPsd(n, k, rng);
    const { u, rank, perm } = pivotedCholesky(s, n);
    assert.equal(rank, Math.min(n, k));
    const back = new Float64Array(n * n);
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) for (let r = 0; r < rank; r++) back[i * n + j] += u[r * n + i] * u[r * n + j];
    let err = 0;
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) err = Math.max(err, Math.abs(back[i * n + j] - s[perm[i] * n + perm[j]]));
    assert.ok(err < 1e-12 * maxAbs(s) * n, `n=${n} k=${k}: U^T U differs from P^T S P by ${err}`);
    for (let r = 0; r < rank; r++) for (let c = 0; c < r; c++) assert.equal(u[r * n + c], 0, "U is upper trapezoidal");
  }
});

function statsOf(features: Float64Array, n: number, d: number): GaussianStats {
  const s = new RunningStats(d);
  s.add(features, n);
  return s.stats();
}

test("the FID of a set against itself is 0, also for a rank-deficient covariance", () => {
  const rng = new Rng(4);
  for (const [n, d] of [[500, 64], [30, 64]]) {
    const f = new Float64Array(n * d).map(() => rng.normal() * 2 + 1);
    const s = statsOf(f, n, d);
    const { fid } = frechetDistance(s, s);
    assert.ok(Math.abs(fid) < 1e-6, `n=${n} d=${d}: FID(x, x) = ${fid}`);
  }
});

test("FID equals the closed form for diagonal and for commuting covariances", () => {
  const rng = new Rng(5);
  const d = 96;
  const a = Array.from({ length: d }, () => rng.range(0.01, 4));
  const b = Array.from({ length: d }, () => rng.range(0.01, 4));
  const mu1 = new Float64Array(d).map(() => rng.normal());
  const mu2 = new Float64Array(d).map(() => rng.normal());
  // Commuting S1, S2 share eigenvectors: FID = |mu1 - mu2|^2 + sum_i (sqrt(a_i) - sqrt(b_i))^2.
  let want = 0;
  for (let i = 0; i < d; i++) want += (mu1[i] - mu2[i]) ** 2 + (Math.sqrt(a[i]) - Math.sqrt(b[i])) ** 2;
  const diag = (v: number[]): Float64Array => {
    const m = new Float64Array(d * d);
    v.forEach((x, i) => (m[i * d + i] = x));
    return m;
  };
  const fidDiag = frechetDistance({ mu: mu1, sigma: diag(a), count: NaN }, { mu: mu2, sigma: diag(b), count: NaN }).fid;
  assert.ok(Math.abs(fidDiag - want) < 1e-6 * want, `diagonal: ${fidDiag} vs ${want}`);
  const q = eigh(randomSymmetric(d, rng), d).vectors;
  const fidRot = frechetDistance({ mu: mu1, sigma: withEigenvalues(a, q), count: NaN }, { mu: mu2, sigma: withEigenvalues(b, q), count: NaN }).fid;
  assert.ok(Math.abs(fidRot - want) < 1e-6 * want, `commuting: ${fidRot} vs ${want}`);
});

test("FID matches scipy (sqrtm) and numpy (eigh) on general covariances", () => {
  const z = readNpz(path.join(FIX, "fid_reference.npz"));
  const v = (k: string) => Float64Array.from(z[k].data as Float64Array);
  const num = (k: string) => (z[k].data as Float64Array)[0];
  for (const name of ["general", "singular"]) {
    const got = frechetDistance({ mu: v(`${name}_mu1`), sigma: v(`${name}_sigma1`), count: NaN }, { mu: v(`${name}_mu2`), sigma: v(`${name}_sigma2`), count: NaN }).fid;
    const want = num(`${name}_fid_eigh`);
    assert.ok(Math.abs(got - want) < 1e-6 * want, `${name}: ${got} vs numpy ${want}`);
    if (`${name}_fid_scipy` in z) {
      const sp = num(`${name}_fid_scipy`);
      assert.ok(Math.abs(got - sp) < 1e-6 * sp, `${name}: ${got} vs scipy ${sp}`);
    }
  }
});

test("tr((S1 S2)^(1/2)) is symmetric in its arguments and scales as sqrt", () => {
  const rng = new Rng(6);
  const d = 40;
  const s1 = randomPsd(d, 60, rng);
  const s2 = randomPsd(d, 45, rng);
  const t12 = traceSqrtProduct(s1, s2, d);
  const t21 = traceSqrtProduct(s2, s1, d);
  assert.ok(Math.abs(t12 - t21) < 1e-10 * t12, `${t12} vs ${t21}`);
  // With a rank-deficient S2 first, its zero eigenvalues drop out exactly and the order still does not matter.
  const low = randomPsd(d, 25, rng);
  const tLow = traceSqrtProduct(low, s1, d);
  const a = { mu: new Float64Array(d), sigma: s1, count: 61 };
  const b = { mu: new Float64Array(d), sigma: low, count: 26 };
  const fab = frechetDistance(a, b).fid;
  const fba = frechetDistance(b, a).fid;
  assert.equal(fab, fba);
  let traces = 0;
  for (let i = 0; i < d; i++) traces += s1[i * d + i] + low[i * d + i];
  assert.ok(Math.abs(fab - (traces - 2 * tLow)) < 1e-12 * traces);
  const t4 = traceSqrtProduct(s1.map((x) => 4 * x), s2, d);
  assert.ok(Math.abs(t4 - 2 * t12) < 1e-10 * t12);
});

test("RunningStats over uneven batches equals the two-pass mean and np.cov-style covariance", () => {
  const rng = new Rng(7);
  const n = 203;
  const d = 17;
  const f = new Float64Array(n * d).map((_, i) => 1000 + rng.normal() * (1 + (i % d)));
  const s = new RunningStats(d);
  let at = 0;
  for (const rows of [1, 50, 2, 100, 50]) {
    s.add(f.subarray(at * d, (at + rows) * d), rows);
    at += rows;
  }
  const got = s.stats();
  assert.equal(got.count, n);
  const mu = new Float64Array(d);
  for (let r = 0; r < n; r++) for (let i = 0; i < d; i++) mu[i] += f[r * d + i] / n;
  const cov = new Float64Array(d * d);
  for (let r = 0; r < n; r++) for (let i = 0; i < d; i++) for (let j = 0; j < d; j++) cov[i * d + j] += ((f[r * d + i] - mu[i]) * (f[r * d + j] - mu[j])) / (n - 1);
  assert.ok(maxAbs(got.mu.map((x, i) => x - mu[i])) < 1e-10);
  assert.ok(maxAbs(got.sigma.map((x, i) => x - cov[i])) < 1e-10 * maxAbs(cov));
  for (let i = 0; i < d; i++) for (let j = 0; j < d; j++) assert.equal(got.sigma[i * d + j], got.sigma[j * d + i]);
});

test("statistics round-trip through .npz and load from float32 pytorch-fid-style files", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "d2g-stats-"));
  try {
    const rng = new Rng(8);
    const d = 12;
    const sigma = randomPsd(d, 30, rng);
    symmetrize(sigma, d, "upper");
    const s: GaussianStats = { mu: new Float64Array(d).map(() => rng.normal()), sigma, count: 30 };
    const file = path.join(dir, "ref.npz");
    saveStats(file, s);
    const back = loadStats(file);
    assert.deepEqual(Array.from(back.mu), Array.from(s.mu));
    assert.deepEqual(Array.from(back.sigma), Array.from(s.sigma));
    assert.equal(back.count, 30);
    const f32 = path.join(dir, "f32.npz");
    writeNpz(f32, { mu: { dtype: "float32", shape: [d], data: Float32Array.from(s.mu) }, sigma: { dtype: "float32", shape: [d, d], data: Float32Array.from(s.sigma) } });
    const loaded = loadStats(f32);
    assert.ok(Number.isNaN(loaded.count));
    assert.ok(maxAbs(loaded.mu.map((x, i) => x - s.mu[i])) < 1e-6);
    const bad = path.join(dir, "bad.npz");
    writeNpz(bad, { mean: { dtype: "float64", shape: [d], data: s.mu } });
    assert.throws(() => loadStats(bad), /expected arrays 'mu' and 'sigma'/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
