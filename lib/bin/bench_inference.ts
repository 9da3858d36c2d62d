// npm run bench:inference [-- --reps N] [-- --rounds N] [-- --only block4|teacher-heun] [-- --no-tfjs] [-- --no-torch]
// Frozen-network inference side by side: tfjs on the training engine, onnxruntime-node (the inference engine,
// lib/backend/onnx_runtime.ts), and PyTorch CPU (lib/bin/bench_inference.py, when /usr/bin/python3 has torch)
// with as many threads as onnxruntime. Rounds interleave the three so that load from elsewhere hits them alike;
// the load average is printed with the table, and each cell also gives the process CPU time per run, which
// load from other processes inflates less than wall time. Cases: the bench's 4-block network forward, and a teacher sampling
// run (EDM Heun, 18 levels, 35 evaluations) of the CIFAR-10 16x16 teacher at the ODE-pair batch of 64.
import { spawn, spawnSync } from "child_process";
import * as fs from "fs";
import * as readline from "readline";
import * as tf from "@tensorflow/tfjs";
import { formatEngine, initEngine } from "../backend/engine";
import { inferenceInfo } from "../backend/onnx_runtime";
import { fromRoot } from "../core/paths";
import { Rng } from "../core/random";
import { edmDenoiser, edmSigmas } from "../diffusion/edm";
import { runCli } from "./args";
import { FrozenEdmDenoiser } from "../diffusion/frozen_denoiser";
import { sampleOde, SolverDenoiser } from "../diffusion/samplers";
import { rawNetOf } from "../diffusion/train_edm";
import { CIFAR16_TEACHER_NET } from "../experiments/cifar10_teacher";
import { FrozenForward } from "../nn/frozen";
import { Conv2d, GroupNorm, SiLU } from "../nn/layers";
import { Sequential } from "../nn/module";
import { SongUNet } from "../nn/unet";

/** One case: a tfjs run and an onnxruntime run (each returns when its result is on the host); id names the PyTorch case. */
interface Case {
  id: string;
  name: string;
  tfjs: () => Promise<void>;
  ort: () => Promise<void>;
  dispose: () => Promise<void>;
}

async function block4(): Promise<Case> {
  const rng = new Rng(7);
  const C = 64;
  const net = new Sequential(Array.from({ length: 4 }, () => [new Conv2d(C, C, 3, rng), new GroupNorm(32, C), new SiLU()]).flat());
  const x = tf.randomNormal([16, 32, 32, C], 0, 1, "float32", rng.seed()) as tf.Tensor4D;
  const frozen = new FrozenForward({ name: "bench-block4", variables: net.namedVariables(), inputs: ["x"], outputs: ["y"], fn: (a) => net.forward(a as tf.Tensor4D) });
  return {
    id: "block4",
    name: `forward, 4 x (conv3x3 ${C}->${C}, GroupNorm(32) + SiLU), batch 16, 32x32`,
    tfjs: async () => {
      const y = net.forward(x);
      await y.data();
      y.dispose();
    },
    ort: async () => {
      const [y] = await frozen.run([x]);
      await y.data();
      y.dispose();
    },
    dispose: async () => {
      await frozen.dispose();
      x.dispose();
      net.dispose();
    },
  };
}

async function teacherHeun(): Promise<Case> {
  const batch = 64;
  const net = new SongUNet(CIFAR16_TEACHER_NET, new Rng(0));
  const r = CIFAR16_TEACHER_NET.imgResolution;
  const sig = edmSigmas(18);
  const x0 = tf.tidy(() => tf.mul(tf.randomNormal([batch, r, r, 3], 0, 1, "float32", 1), sig[0])) as tf.Tensor4D;
  const labels = tf.tidy(() => tf.oneHot(tf.tensor1d(Array.from({ length: batch }, (_, i) => i % 10), "int32"), 10).toFloat()) as tf.Tensor2D;
  const frozen = new FrozenEdmDenoiser("bench-teacher", net.namedVariables(), rawNetOf(net));
  const sample = async (D: SolverDenoiser) => {
    const out = await sampleOde(D, x0, { sigmas: sig, method: "heun", cond: labels });
    await out.x.data();
    out.x.dispose();
  };
  return {
    id: "teacher-heun",
    name: `teacher sampling, Heun 18 levels (35 evaluations), CIFAR-10 16x16 teacher, batch ${batch}`,
    tfjs: () => sample(edmDenoiser(rawNetOf(net))),
    ort: () => sample(frozen.D),
    dispose: async () => {
      await frozen.dispose();
      tf.dispose([x0, labels]);
      net.dispose();
    },
  };
}

/** The PyTorch side as a long-lived process answering "case reps" with the ms of each run. */
function torchSide(threads: number): { run: (id: string, reps: number) => Promise<Times>; close: () => void } | undefined {
  const python = "/usr/bin/python3";
  if (!fs.existsSync(python) || spawnSync(python, ["-c", "import torch"], { stdio: "ignore" }).status !== 0) return undefined;
  const child = spawn(python, [fromRoot("lib", "bin", "bench_inference.py"), String(threads)], { stdio: ["pipe", "pipe", "inherit"] });
  const lines = readline.createInterface({ input: child.stdout });
  const waiting: Array<(line: string) => void> = [];
  lines.on("line", (line) => waiting.shift()?.(line));
  return {
    run: (id, reps) =>
      new Promise((resolve) => {
        waiting.push((line) => {
          const r = JSON.parse(line) as { ms: number[]; cpu_ms: number[] };
          resolve({ wall: r.ms, cpu: r.cpu_ms });
        });
        child.stdin.write(`${id} ${reps}\n`);
      }),
    close: () => child.stdin.end(),
  };
}

/** Wall and process CPU milliseconds of each run. */
interface Times {
  wall: number[];
  cpu: number[];
}

async function timed(fn: () => Promise<void>, reps: number): Promise<Times> {
  const t: Times = { wall: [], cpu: [] };
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    const c0 = process.cpuUsage();
    await fn();
    const c = process.cpuUsage(c0);
    t.wall.push(performance.now() - t0);
    t.cpu.push((c.user + c.system) / 1000);
  }
  return t;
}

function add(to: Times, t: Times): void {
  to.wall.push(...t.wall);
  to.cpu.push(...t.cpu);
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};


const CASES = ["block4", "teacher-heun"] as const;

const SPEC = {
  command: "npm run bench:inference --",
  summary: "Frozen-network inference side by side: tfjs, onnxruntime-node and PyTorch CPU.",
  flags: {
    reps: { type: "int", min: 1, max: 10_000, default: 3, help: "timed runs per round" },
    rounds: { type: "int", min: 1, max: 10_000, default: 3, help: "interleaved rounds" },
    only: { type: "enum", values: CASES, help: "run one case" },
    "no-tfjs": { type: "bool", help: "leave out the tfjs column" },
    "no-torch": { type: "bool", help: "leave out the PyTorch column" },
  },
} as const;

runCli(SPEC, async ({ flags }) => {
  const { reps, rounds, only } = flags;
  const engine = await initEngine({ quiet: true });
  console.log(formatEngine(engine));
  const inference = inferenceInfo();
  if (inference.engine !== "onnxruntime") throw new Error(`bench:inference needs onnxruntime-node: ${inference.reason}`);
  const torch = flags["no-torch"] ? undefined : torchSide(inference.threads!);
  console.log(`load average before: ${fs.readFileSync("/proc/loadavg", "utf8").trim()}`);
  const withTfjs = !flags["no-tfjs"];
  const cases = [{ id: "block4", make: block4 }, { id: "teacher-heun", make: teacherHeun }].filter((c) => only === undefined || c.id === only);
  const cell = (t: Times) => (t.wall.length ? `${median(t.wall).toFixed(1)} (${median(t.cpu).toFixed(0)})` : "");
  const ratio = (a: Times, b: Times) => (a.wall.length && b.wall.length ? `${(median(a.wall) / median(b.wall)).toFixed(2)}x (${(median(a.cpu) / median(b.cpu)).toFixed(2)}x)` : "");
  const rows: string[][] = [];
  for (const { make } of cases) {
    const c = await make();
    // warm-up: exports (or loads) the models and creates the sessions
    if (withTfjs) await c.tfjs();
    await c.ort();
    const t: Record<"tfjs" | "ort" | "torch", Times> = { tfjs: { wall: [], cpu: [] }, ort: { wall: [], cpu: [] }, torch: { wall: [], cpu: [] } };
    for (let k = 0; k < rounds; k++) {
      if (withTfjs) add(t.tfjs, await timed(c.tfjs, reps));
      add(t.ort, await timed(c.ort, reps));
      if (torch) add(t.torch, await torch.run(c.id, reps));
    }
    await c.dispose();
    rows.push([c.name, cell(t.tfjs), cell(t.ort), cell(t.torch), ratio(t.ort, t.torch), ratio(t.tfjs, t.torch)]);
  }
  torch?.close();
  console.log(`load average after: ${fs.readFileSync("/proc/loadavg", "utf8").trim()}`);
  console.log(`\nmedian ms of ${rounds * reps} runs each (${rounds} interleaved rounds of ${reps}), process CPU ms in brackets\n`);
  console.log("| work | tfjs (training engine) | onnxruntime-node | PyTorch CPU | onnxruntime / PyTorch | tfjs / PyTorch |");
  console.log("|---|---|---|---|---|---|");
  for (const r of rows) console.log(`| ${r.join(" | ")} |`);
});
