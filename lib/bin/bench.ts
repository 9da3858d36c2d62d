// npm run bench [-- --json] [-- --steps N] [-- --warmup N] [-- --profile]
// Times training steps on the active engine (see lib/backend/engine.ts; D2G_BACKEND picks another), so engines
// and machines compare on one number. Each case is warmed up, then timed over several steps; the median counts.
import * as tf from "@tensorflow/tfjs";
import { EngineInfo, formatEngine, initEngine } from "../backend/engine";
import { Rng } from "../core/random";
import { Conv2d, GroupNorm, SiLU } from "../nn/layers";
import { Layer, Sequential } from "../nn/module";
import { runCli } from "./args";

const SPEC = {
  command: "npm run bench --",
  summary: "Time training steps of the reference blocks on the active engine (D2G_BACKEND picks another).",
  flags: {
    steps: { type: "int", min: 1, max: 10_000, default: 5, help: "timed steps per case (the median counts)" },
    warmup: { type: "int", min: 0, max: 10_000, default: 2, help: "untimed steps first" },
    json: { type: "bool", help: "print the results as JSON" },
    profile: { type: "bool", help: "also time each kernel over one step" },
  },
} as const;

interface BenchCase {
  name: string;
  /** Builds the network and its input; step() runs once per timed step and returns a scalar to wait on. */
  setup(rng: Rng): { step: () => tf.Scalar; dispose: () => void };
  /** Convolution FLOPs of one step, to report GFLOP/s. */
  flops: number;
  /** A reference time for the same work elsewhere, shown next to ours. */
  reference?: string;
}

interface BenchResult {
  name: string;
  medianMs: number;
  stepsMs: number[];
  /** Process CPU time per timed step, all threads: steadier than wall time on a shared machine. */
  cpuMs: number;
  gflops: number;
  reference?: string;
  kernels?: Array<{ name: string; ms: number }>;
}

const N = 16, HW = 32, C = 64;
/** One 3x3 conv, C -> C channels, forward: 2 * N*H*W * Cin*Cout * 9; its backward (dx and dW) is twice that. */
const CONV_STEP_FLOPS = 3 * (2 * N * HW * HW * C * C * 9);

/** forward + backward + Adam on mean(y^2) of `net`, the usual shape of a training step. */
function trainStep(net: Layer, rng: Rng): { step: () => tf.Scalar; dispose: () => void } {
  const x = tf.randomNormal([N, HW, HW, C], 0, 1, "float32", rng.seed()) as tf.Tensor4D;
  const opt = tf.train.adam(1e-4);
  const params = net.parameters();
  return {
    step: () => opt.minimize(() => tf.mean(tf.square(net.forward(x))), true, params) as tf.Scalar,
    dispose: () => {
      x.dispose();
      opt.dispose();
      net.dispose();
    },
  };
}

const BENCHES: BenchCase[] = [
  {
    name: `train step, 4 x (conv3x3 ${C}->${C}, GroupNorm(32) + SiLU), batch ${N}, ${HW}x${HW}`,
    setup: (rng) => trainStep(new Sequential(Array.from({ length: 4 }, () => [new Conv2d(C, C, 3, rng), new GroupNorm(32, C), new SiLU()]).flat()), rng),
    flops: 4 * CONV_STEP_FLOPS,
  },
  {
    name: `train step, 2 x conv3x3 ${C}->${C}, batch ${N}, ${HW}x${HW}`,
    setup: (rng) => trainStep(new Sequential([new Conv2d(C, C, 3, rng), new Conv2d(C, C, 3, rng)]), rng),
    flops: 2 * CONV_STEP_FLOPS,
    reference: "PyTorch 1.13 CPU, 2 threads: 74 ms (ENVIRONMENT.md)",
  },
  // A LatentLPIPS-sized forward pass (lib/perceptual/latent_lpips.ts at its training resolution) belongs
  // here as the next BenchCase, with the FLOPs of its convolutions.
];

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

async function timeStep(step: () => tf.Scalar): Promise<number> {
  const t0 = performance.now();
  const loss = step();
  await loss.data(); // waits for asynchronous engines (tfjs-node-gpu) to finish the step
  const ms = performance.now() - t0;
  loss.dispose();
  return ms;
}

/** Time per kernel name over one step, largest first (tf.profile). */
async function kernelTimes(step: () => tf.Scalar): Promise<Array<{ name: string; ms: number }>> {
  const profile = await tf.profile(() => step());
  const byName = new Map<string, number>();
  for (const k of profile.kernels) byName.set(k.name, (byName.get(k.name) ?? 0) + (k.kernelTimeMs as number));
  return [...byName].map(([name, ms]) => ({ name, ms })).sort((a, b) => b.ms - a.ms);
}

async function run(c: BenchCase, steps: number, warmup: number, profile: boolean): Promise<BenchResult> {
  const { step, dispose } = c.setup(new Rng(7));
  for (let i = 0; i < warmup; i++) await timeStep(step);
  const stepsMs: number[] = [];
  const cpu0 = process.cpuUsage();
  for (let i = 0; i < steps; i++) stepsMs.push(await timeStep(step));
  const cpu = process.cpuUsage(cpu0);
  const cpuMs = (cpu.user + cpu.system) / 1e3 / steps;
  const kernels = profile ? await kernelTimes(step) : undefined;
  dispose();
  const medianMs = median(stepsMs);
  return { name: c.name, medianMs, stepsMs, cpuMs, gflops: c.flops / 1e9 / (medianMs / 1e3), reference: c.reference, kernels };
}

runCli(SPEC, async ({ flags: { json, profile, steps, warmup } }) => {
  const engine: EngineInfo = await initEngine({ quiet: true });
  if (!json) console.log(formatEngine(engine));
  const results: BenchResult[] = [];
  for (const c of BENCHES) {
    const r = await run(c, steps, warmup, profile);
    results.push(r);
    if (json) continue;
    console.log(`${r.name}: ${r.medianMs.toFixed(1)} ms (median of ${steps}; CPU ${r.cpuMs.toFixed(0)} ms), ${r.gflops.toFixed(1)} GFLOP/s in convs${r.reference ? `; ${r.reference}` : ""}`);
    if (r.kernels) console.log("  time by kernel over one step (a kernel built from other kernels includes their time):");
    for (const k of r.kernels?.slice(0, 12) ?? []) console.log(`    ${k.name.padEnd(36)} ${k.ms.toFixed(1).padStart(8)} ms`);
  }
  if (json) console.log(JSON.stringify({ engine, steps, warmup, results }, null, 2));
});
