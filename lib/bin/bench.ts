// npm run bench [-- --compare] [-- --cases a,b] [-- --steps N] [-- --warmup N] [-- --profile] [-- --json]
//                [-- --sd15-latent 64[,32] | --no-sd15 | --sd15-only]
// Times a forward pass and a training step of each case on the active engine (lib/backend/engine.ts; D2G_BACKEND
// picks another). With --compare, /usr/bin/python3 runs the same cases in PyTorch (lib/bin/bench_torch.py, with as
// many threads as the engine) and the two take turns, one timed run each, so that a busy machine slows both alike;
// the table gives the medians and their ratio. Warm-up runs are not timed. Then SD1.5's networks once each at their
// real sizes (lib/bin/bench_sd15.ts).
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as readline from "readline";
import { ChildProcessWithoutNullStreams, spawn, spawnSync } from "child_process";
import * as tf from "@tensorflow/tfjs";
import { EngineInfo, formatEngine, initEngine } from "../backend/engine";
import { fromRoot } from "../core/paths";
import { Rng } from "../core/random";
import { edmDenoise } from "../diffusion/edm";
import { edmLoss } from "../diffusion/edm_loss";
import { Conv2d, GroupNorm } from "../nn/layers";
import { Layer, Sequential } from "../nn/module";
import { SongUNet, SongUNetConfig } from "../nn/unet";
import { LatentLpips } from "../perceptual/latent_lpips";
import { Adam, lossAndGrads } from "../train/adam";
import { CIFAR16_TEACHER_NET } from "../experiments/cifar10_teacher";
import { runCli, UsageError } from "./args";
import { benchSd15, sd15Latents } from "./bench_sd15";

/** One case, built: each call runs once and returns what to wait on. */
export interface Runner {
  forward: () => tf.Tensor;
  step: () => tf.Tensor;
  dispose: () => void;
}

export interface BenchCase {
  /** Shared with lib/bin/bench_torch.py. */
  id: string;
  name: string;
  setup(rng: Rng): Runner;
  /** Convolution FLOPs of one training step, to report GFLOP/s. */
  stepFlops?: number;
}

const N = 16, HW = 32, C = 64;
/** One 3x3 conv, C -> C channels, forward: 2 * N*H*W * Cin*Cout * 9; its backward (dx and dW) is twice that. */
const CONV_FLOPS = 2 * N * HW * HW * C * C * 9;

/** mean(y^2) of `net`, then Adam: the usual shape of a training step. */
function convStack(net: Layer, rng: Rng): Runner {
  const x = tf.randomNormal([N, HW, HW, C], 0, 1, "float32", rng.seed()) as tf.Tensor4D;
  const params = net.parameters();
  const adam = new Adam(params, { lr: 1e-4 });
  return {
    forward: () => net.forward(x),
    step: () => {
      const { loss, grads } = lossAndGrads(() => tf.mean(tf.square(net.forward(x))), params);
      adam.apply(grads);
      tf.dispose(grads);
      return tf.scalar(loss);
    },
    dispose: () => {
      tf.dispose(x);
      adam.dispose();
      net.dispose();
    },
  };
}

/** EDM loss + Adam (gradient norm clipped at 1, as lib/diffusion/train_edm.ts trains) of a class-conditional SongUNet. */
function edmStep(cfg: SongUNetConfig, batch: number, rng: Rng): Runner {
  const net = new SongUNet(cfg, rng);
  const params = net.parameters();
  const adam = new Adam(params, { lr: 1e-4, clipNorm: 1 });
  const r = cfg.imgResolution;
  const y = tf.mul(tf.randomNormal([batch, r, r, cfg.inChannels], 0, 1, "float32", rng.seed()), 0.5) as tf.Tensor4D;
  const labels = tf.tidy(() => tf.oneHot(tf.tensor1d(Array.from({ length: batch }, (_, i) => i % cfg.labelDim), "int32"), cfg.labelDim).toFloat()) as tf.Tensor2D;
  const sigma = tf.fill([batch], 1) as tf.Tensor1D;
  const noiseRng = new Rng(rng.seed()), dropoutRng = new Rng(rng.seed());
  return {
    forward: () => edmDenoise((x, c, cond) => net.forward(x, c, cond as tf.Tensor2D), y, sigma, labels),
    step: () => {
      const raw = (x: tf.Tensor4D, c: tf.Tensor1D, cond?: tf.Tensor) => net.forward(x, c, cond as tf.Tensor2D, undefined, dropoutRng);
      const { loss, grads } = lossAndGrads(() => edmLoss(raw, y, labels, noiseRng), params);
      adam.apply(grads);
      tf.dispose(grads);
      return tf.scalar(loss);
    },
    dispose: () => {
      tf.dispose([y, labels, sigma]);
      adam.dispose();
      net.dispose();
    },
  };
}

/** LatentLPIPS with the stand-in trunk's shape; the step is the distance and its gradient w.r.t. the first input. */
function latentLpips(rng: Rng): Runner {
  const metric = new LatentLpips({ latentChannels: 32, width: 1 / 8, stem: 64 }, rng);
  const x0 = tf.randomNormal([8, 32, 32, 32], 0, 1, "float32", rng.seed()) as tf.Tensor4D;
  const x1 = tf.randomNormal([8, 32, 32, 32], 0, 1, "float32", rng.seed()) as tf.Tensor4D;
  const grad = tf.grad((x: tf.Tensor) => tf.sum(metric.distance(x as tf.Tensor4D, x1)));
  return {
    forward: () => metric.distance(x0, x1),
    step: () => grad(x0),
    dispose: () => {
      tf.dispose([x0, x1]);
      metric.dispose();
    },
  };
}

export const CASES: BenchCase[] = [
  {
    id: "block4",
    name: `4 x (conv3x3 ${C}->${C}, GroupNorm(32) + SiLU), batch ${N}, ${HW}x${HW}`,
    setup: (rng) => convStack(new Sequential(Array.from({ length: 4 }, () => [new Conv2d(C, C, 3, rng), new GroupNorm(32, C, 1e-5, "silu")]).flat()), rng),
    stepFlops: 4 * 3 * CONV_FLOPS,
  },
  {
    id: "conv2",
    name: `2 x conv3x3 ${C}->${C}, batch ${N}, ${HW}x${HW}`,
    setup: (rng) => convStack(new Sequential([new Conv2d(C, C, 3, rng), new Conv2d(C, C, 3, rng)]), rng),
    // the first conv's input gradient is not needed
    stepFlops: 5 * CONV_FLOPS,
  },
  {
    id: "teacher16",
    name: "EDM loss + Adam, CIFAR16_TEACHER_NET (16x16, 16 ch, mult 1,2,2, 1 block, attention at 8), batch 32",
    setup: (rng) => edmStep(CIFAR16_TEACHER_NET, 32, rng),
  },
  {
    id: "ddpmpp32",
    name: "EDM loss + Adam, DDPM++ 32x32, 32 ch, mult 1,2,2, 2 blocks, attention at 16, batch 32",
    setup: (rng) =>
      edmStep({ ...CIFAR16_TEACHER_NET, imgResolution: 32, modelChannels: 32, numBlocks: 2, attnResolutions: [16] }, 32, rng),
  },
  {
    id: "latent-lpips",
    name: "LatentLPIPS forward + gradient, stand-in trunk shape, 32x32x32 latents, batch 8",
    setup: latentLpips,
  },
];

const MODES = ["forward", "step"] as const;
type Mode = (typeof MODES)[number];

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/** Wall and process CPU ms (all threads) of one run. */
async function timeOnce(f: () => tf.Tensor): Promise<{ ms: number; cpu: number }> {
  const t0 = performance.now(), c0 = process.cpuUsage();
  const out = f();
  await out.data(); // waits for asynchronous engines (tfjs-node-gpu) to finish
  const ms = performance.now() - t0, c = process.cpuUsage(c0);
  out.dispose();
  return { ms, cpu: (c.user + c.system) / 1e3 };
}

/** Time per kernel name over one run, largest first (tf.profile; a kernel built from other kernels includes their time). */
async function kernelTimes(f: () => tf.Tensor): Promise<Array<{ name: string; ms: number; calls: number }>> {
  const profile = await tf.profile(() => f());
  const byName = new Map<string, { ms: number; calls: number }>();
  for (const k of profile.kernels) {
    const e = byName.get(k.name) ?? { ms: 0, calls: 0 };
    e.ms += k.kernelTimeMs as number;
    e.calls += 1;
    byName.set(k.name, e);
  }
  profile.result instanceof tf.Tensor && profile.result.dispose();
  return [...byName].map(([name, e]) => ({ name, ...e })).sort((a, b) => b.ms - a.ms);
}

/** The PyTorch side: lib/bin/bench_torch.py --serve, one JSON request and one JSON answer per line. */
class TorchServer {
  private readonly lines: AsyncIterableIterator<string>;
  private constructor(private readonly proc: ChildProcessWithoutNullStreams, readonly version: string) {
    this.lines = readline.createInterface({ input: proc.stdout })[Symbol.asyncIterator]();
  }

  static async start(python: string, threads: number): Promise<TorchServer> {
    const script = fromRoot("lib", "bin", "bench_torch.py");
    const proc = spawn(python, [script, "--serve", "--threads", String(threads)], { stdio: ["pipe", "pipe", "pipe"] });
    let stderr = "";
    proc.stderr.on("data", (d) => (stderr += d));
    const server = new TorchServer(proc, "");
    const first = await server.lines.next();
    if (first.done) throw new Error(`${python} ${script} exited before answering: ${stderr.trim().split("\n").pop()}`);
    const hello = JSON.parse(first.value) as { torch: string; threads: number };
    return Object.assign(server, { version: `PyTorch ${hello.torch}, ${hello.threads} threads` });
  }

  async time(id: string, mode: Mode | "drop", reps = 1): Promise<{ ms: number[]; cpu: number[] }> {
    this.proc.stdin.write(JSON.stringify({ case: id, mode, reps }) + "\n");
    const answer = await this.lines.next();
    if (answer.done) throw new Error("bench_torch.py exited");
    const r = JSON.parse(answer.value) as { ms?: number[]; cpu?: number[]; error?: string };
    if (r.error) throw new Error(`bench_torch.py, case ${id} ${mode}: ${r.error}`);
    return { ms: r.ms!, cpu: r.cpu! };
  }

  close(): void {
    this.proc.stdin.end();
  }
}

/** /usr/bin/python3 when it imports torch (Debian's python3-torch), else undefined. */
function torchPython(): string | undefined {
  const python = "/usr/bin/python3";
  if (!fs.existsSync(python)) return undefined;
  return spawnSync(python, ["-c", "import torch"], { stdio: "ignore" }).status === 0 ? python : undefined;
}

/**
 * Hook for an "ONNX Runtime forward" column: an optional module lib/backend/onnx_runtime.ts that exports
 * `benchOnnxForward(forward, reps)` (export the forward pass, run it `reps` times in onnxruntime-node, return the
 * ms of each). Without that module the column is left out.
 */
type OnnxForward = (forward: () => tf.Tensor, reps: number) => Promise<number[]>;
function onnxForwardHook(): OnnxForward | undefined {
  const file = path.join(__dirname, "..", "backend", "onnx_runtime.js");
  if (!fs.existsSync(file)) return undefined;
  return (require(file) as { benchOnnxForward?: OnnxForward }).benchOnnxForward;
}

/** Wall ms of each timed run, and process CPU ms (all threads) of each. */
interface Runs {
  ms: number[];
  cpu: number[];
}

interface Timings {
  ours: Record<Mode, Runs>;
  torch?: Record<Mode, Runs>;
  onnx?: number[];
}

interface Options {
  compare: boolean;
  json: boolean;
  profile: boolean;
  steps: number;
  warmup: number;
  cases: BenchCase[];
  /** Latent sizes of the SD1.5 UNet evaluations; empty: none. */
  sd15: number[];
}

const SPEC = {
  command: "npm run bench --",
  summary: "Time a forward pass and a training step of each case on the active engine (D2G_BACKEND picks another); with --compare, beside PyTorch.",
  flags: {
    compare: { type: "bool", help: "run the same cases in PyTorch (/usr/bin/python3 with torch), taking turns, and print the ratios" },
    cases: { type: "string", arg: "A,B", help: `cases to run (default all: ${CASES.map((c) => c.id).join(",")})` },
    steps: { type: "int", min: 1, max: 10_000, default: 5, help: "timed runs per case (the median counts)" },
    warmup: { type: "int", min: 0, max: 10_000, default: 2, help: "untimed runs first" },
    json: { type: "bool", help: "print the results as JSON" },
    profile: { type: "bool", help: "also time each kernel over one step" },
    "sd15-latent": { type: "string", arg: "64[,32]", default: "64", help: "latent sizes of the SD1.5 UNet evaluation after the cases" },
    "no-sd15": { type: "bool", help: "skip the SD1.5 networks" },
    "sd15-only": { type: "bool", help: "time only the SD1.5 networks" },
  },
} as const;

function pickCases(list: string | undefined): BenchCase[] {
  if (list === undefined) return CASES;
  return list.split(",").map((id) => {
    const c = CASES.find((k) => k.id === id);
    if (!c) throw new UsageError(`--cases: unknown case "${id}" (cases: ${CASES.map((k) => k.id).join(", ")})`);
    return c;
  });
}

async function runCase(c: BenchCase, o: Options, torch: TorchServer | undefined, onnx: OnnxForward | undefined): Promise<Timings> {
  const runner = c.setup(new Rng(7));
  const fn = (m: Mode) => (m === "forward" ? runner.forward : runner.step);
  for (const m of MODES) {
    for (let i = 0; i < o.warmup; i++) await timeOnce(fn(m));
    if (torch && o.warmup > 0) await torch.time(c.id, m, o.warmup);
  }
  const runs = (): Record<Mode, Runs> => ({ forward: { ms: [], cpu: [] }, step: { ms: [], cpu: [] } });
  const t: Timings = { ours: runs(), torch: torch ? runs() : undefined };
  for (let i = 0; i < o.steps; i++) {
    for (const m of MODES) {
      const ours = await timeOnce(fn(m));
      t.ours[m].ms.push(ours.ms);
      t.ours[m].cpu.push(ours.cpu);
      if (torch) {
        const r = await torch.time(c.id, m);
        t.torch![m].ms.push(...r.ms);
        t.torch![m].cpu.push(...r.cpu);
      }
    }
  }
  if (onnx) t.onnx = await onnx(runner.forward, o.steps);
  if (torch) await torch.time(c.id, "drop");
  if (o.profile) {
    for (const m of MODES) {
      console.log(`  ${c.id} ${m}: time by kernel over one run (a kernel built from other kernels includes their time)`);
      for (const k of (await kernelTimes(fn(m))).slice(0, 15)) console.log(`    ${k.name.padEnd(36)} ${k.ms.toFixed(1).padStart(8)} ms ${String(k.calls).padStart(6)} calls`);
    }
  }
  runner.dispose();
  return t;
}

function fmt(ms: number | undefined): string {
  return ms === undefined ? "" : ms >= 100 ? ms.toFixed(0) : ms.toFixed(1);
}

function ratio(a: number | undefined, b: number | undefined): string {
  return a === undefined || b === undefined ? "" : `${(a / b).toFixed(1)}x`;
}

async function main(o: Options): Promise<void> {
  const engine: EngineInfo = await initEngine({ quiet: true });
  let torch: TorchServer | undefined;
  if (o.compare) {
    const python = torchPython();
    if (python) torch = await TorchServer.start(python, engine.threads);
    else console.warn("bench --compare: /usr/bin/python3 cannot import torch (Debian: apt-get install python3-torch); PyTorch columns left out");
  }
  const onnx = onnxForwardHook();
  if (!o.json) {
    console.log(formatEngine(engine) + (torch ? `; ${torch.version}` : ""));
    console.log(`median of ${o.steps} timed runs after ${o.warmup} warm-up; load average ${os.loadavg().map((l) => l.toFixed(2)).join(" ")}`);
  }
  const rows: Array<{ id: string; name: string; timings: Timings; medians: Record<string, number | undefined>; gflops?: number }> = [];
  for (const c of o.cases) {
    const timings = await runCase(c, o, torch, onnx);
    const med = (xs?: number[]) => (xs && xs.length ? median(xs) : undefined);
    const medians = {
      forward: med(timings.ours.forward.ms), step: med(timings.ours.step.ms), stepCpu: med(timings.ours.step.cpu),
      torchForward: med(timings.torch?.forward.ms), torchStep: med(timings.torch?.step.ms), torchStepCpu: med(timings.torch?.step.cpu),
      onnxForward: med(timings.onnx),
    };
    const gflops = c.stepFlops ? c.stepFlops / 1e9 / (medians.step! / 1e3) : undefined;
    rows.push({ id: c.id, name: c.name, timings, medians, gflops });
    if (!o.json) console.log(`${c.id}: ${c.name}`);
  }
  torch?.close();
  if (!o.json && rows.length) printTable(rows, torch !== undefined, onnx !== undefined);
  const sd15 = o.sd15.length ? await benchSd15(o.sd15, engine, o.profile, o.json ? () => undefined : (l) => console.log(l)) : undefined;
  if (o.json) console.log(JSON.stringify({ engine, torch: torch?.version, steps: o.steps, warmup: o.warmup, loadavg: os.loadavg(), rows, sd15 }, null, 2));
}

function printTable(rows: Array<{ id: string; medians: Record<string, number | undefined>; gflops?: number }>, torch: boolean, onnx: boolean): void {
  const head = ["case", "forward (ms)", "train step (ms)"];
  if (torch) head.push("PyTorch forward", "PyTorch step", "ratio forward", "ratio step", "step CPU ms, ours / PyTorch");
  if (onnx) head.push("ONNX Runtime forward", "ratio ONNX / PyTorch");
  const lines = [`| ${head.join(" | ")} |`, `|${head.map(() => "---").join("|")}|`];
  for (const r of rows) {
    const m = r.medians;
    const cells = [r.id, fmt(m.forward), fmt(m.step) + (r.gflops ? ` (${r.gflops.toFixed(1)} GFLOP/s)` : "")];
    if (torch) cells.push(fmt(m.torchForward), fmt(m.torchStep), ratio(m.forward, m.torchForward), ratio(m.step, m.torchStep), `${fmt(m.stepCpu)} / ${fmt(m.torchStepCpu)}`);
    if (onnx) cells.push(fmt(m.onnxForward), ratio(m.onnxForward, m.torchForward));
    lines.push(`| ${cells.join(" | ")} |`);
  }
  console.log(lines.join("\n"));
}

if (require.main === module) {
  runCli(SPEC, ({ flags }) => main({
    ...flags,
    cases: flags["sd15-only"] ? [] : pickCases(flags.cases),
    sd15: flags["no-sd15"] ? [] : sd15Latents(flags["sd15-latent"]),
  }));
}
