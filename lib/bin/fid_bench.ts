// Times one Fréchet distance between two random full-rank 2048-d Gaussians, as FID on InceptionV3 pool features
// needs; with --kid, one KID instead (100 subsets of 1,000 from 5,000 random features a side, the clean-fid and
// torch-fidelity protocol, Gram products on the active engine). Usage: npm run fid-bench -- [--dim D] [--kid]
import { initEngine } from "../backend/engine";
import { Rng } from "../core/random";
import { frechetDistance } from "../metrics/fid";
import { FeatureMatrix, kernelInceptionDistance } from "../metrics/kid";
import { matmulNT, symmetrize } from "../metrics/linalg";
import { GaussianStats } from "../metrics/stats";
import { runCli } from "./args";

const SPEC = {
  command: "npm run fid-bench --",
  summary: "Time one Fréchet distance between two random full-rank Gaussians (FID on InceptionV3 features is 2048-d), or one KID.",
  flags: {
    dim: { type: "int", min: 2, max: 8192, default: 2048, arg: "D", help: "dimension" },
    kid: { type: "bool", help: "time a KID (100 subsets of 1,000 from 5,000 features a side) instead" },
  },
} as const;

/** S = B B^T / k + diag(0.1..1.1): dense and full rank, cheap to build (k = 256 random columns). */
function randomGaussian(d: number, rng: Rng): GaussianStats {
  const k = 256;
  const b = new Float64Array(d * k).map(() => rng.normal());
  const sigma = new Float64Array(d * d);
  matmulNT({ m: d, n: d, k, a: b, lda: k, b, ldb: k, c: sigma, ldc: d, alpha: 1 / k, part: "upper" });
  symmetrize(sigma, d, "upper");
  for (let i = 0; i < d; i++) sigma[i * d + i] += 0.1 + rng.uniform();
  return { mu: new Float64Array(d).map(() => rng.normal()), sigma, count: NaN };
}

function randomFeatures(rows: number, dim: number, shift: number, rng: Rng): FeatureMatrix {
  return { data: new Float32Array(rows * dim).map(() => shift + rng.normal()), rows, dim };
}

/** Wall and CPU seconds of `f`. */
async function timed<T>(f: () => T | Promise<T>): Promise<{ value: T; line: string }> {
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  const value = await f();
  const wall = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = process.cpuUsage(cpu0);
  return { value, line: `${wall.toFixed(2)} s wall, ${((cpu.user + cpu.system) / 1e6).toFixed(2)} s cpu` };
}

runCli(SPEC, async ({ flags: { dim, kid } }) => {
  const rng = new Rng(0);
  if (kid) {
    await initEngine();
    const x = randomFeatures(5000, dim, 0, rng), y = randomFeatures(5000, dim, 0.05, rng);
    const { value, line } = await timed(() => kernelInceptionDistance(x, y, { subsets: 100, subsetSize: 1000 }));
    console.log(`KID of two random ${dim}-d feature sets (100 subsets of 1,000) = ${value.mean.toExponential(4)} ± ${value.std.toExponential(2)}: ${line}`);
    return;
  }
  const a = randomGaussian(dim, rng);
  const b = randomGaussian(dim, rng);
  const { value, line } = await timed(() => frechetDistance(a, b));
  console.log(`FID of two random ${dim}-d Gaussians = ${value.fid.toFixed(6)}: ${line}`);
});
