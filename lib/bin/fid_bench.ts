// Times one Fréchet distance between two random full-rank 2048-d Gaussians, as FID on InceptionV3 pool features
// needs. Usage: npm run fid-bench -- [--dim D]
import { Rng } from "../core/random";
import { frechetDistance } from "../metrics/fid";
import { matmulNT, symmetrize } from "../metrics/linalg";
import { GaussianStats } from "../metrics/stats";
import { runCli } from "./args";

const SPEC = {
  command: "npm run fid-bench --",
  summary: "Time one Fréchet distance between two random full-rank Gaussians (FID on InceptionV3 features is 2048-d).",
  flags: { dim: { type: "int", min: 2, max: 8192, default: 2048, arg: "D", help: "dimension" } },
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

runCli(SPEC, ({ flags: { dim } }) => {
  const rng = new Rng(0);
  const a = randomGaussian(dim, rng);
  const b = randomGaussian(dim, rng);
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  const { fid } = frechetDistance(a, b);
  const wall = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = process.cpuUsage(cpu0);
  console.log(`FID of two random ${dim}-d Gaussians = ${fid.toFixed(6)}: ${wall.toFixed(2)} s wall, ${((cpu.user + cpu.system) / 1e6).toFixed(2)} s cpu`);
});
