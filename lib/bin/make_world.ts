// The text-to-image world's data (lib/experiments/t2i_world.ts), at the scale of D2G_SCALE (default cpu).
//   npm run world -- encode [--splits scorer,val,test,train] [--budget-min M]
//       encode the scenes with TAEF2 into the latent cache under runs/world/ (resumable: run again to continue)
//   npm run world -- sizes [--n 48]
//       the 64-or-128 px choice: TAEF2 round-trip PSNR and time per image at both sizes, and the cost of a
//       teacher-sized UNet evaluation on 8x8x32 and 16x16x32 latents, each pair measured interleaved in one run;
//       writes figures/world_roundtrip_{64,128}.png
//   npm run world -- preview
//       val scenes with their canonical caption above their TAEF2 round trips (figures/world_scenes.png)
//   npm run world -- clips
//       train the world's two CLIPs (resumable: runs/world_clips/<scale>/) and print their zero-shot retrieval on
//       the test split; weights to data/weights/world_clip_{text,eval}64.safetensors (cpu) and results in
//       runs/world_clips/<scale>/results.json
//   npm run world -- teacher
//       train the latent text-to-image teacher (resumable: runs/t2i_teacher/<scale>/ckpt); EMA weights and loss log
//       to data/weights/world_teacher64.* (cpu)
//   npm run world -- report
//       the teacher per guidance scale (DDIM): attribute accuracy, CLIP score, FID-wCLIP on the test split's captions
//   npm run world -- pairs
//       the teacher's ODE pairs CFG-3 and CFG-8 (resumable, shard by shard) under runs/world_pairs/<scale>/
import * as fs from "fs";
import * as path from "path";
import * as tf from "@tensorflow/tfjs";
import { initEngine } from "../backend/engine";
import { fromRoot } from "../core/paths";
import { Rng } from "../core/random";
import { u8ToUnit } from "../data/images";
import { canonicalCaption } from "../data/scene_captions";
import { Split, SPLITS } from "../data/scenes";
import { taef2Codec } from "../nn/latent_codec";
import { SongUNet } from "../nn/unet";
import { byScale, currentScale } from "../experiments/scale";
import { run as trainWorldClips, WORLD_CLIPS_CONFIGS } from "../experiments/world_clips";
import { codecSizeReport, T2iWorld } from "../experiments/t2i_world";
import { makeWorldPairs, reportRows, teacherReport, trainT2iTeacher, worldPairsDir } from "../experiments/t2i_teacher";
import { tableMarkdown } from "../viz/table";
import { saveImageGrid } from "../viz/image_grid";
import { Parsed, runCli, UsageError } from "./args";

const COMMANDS = ["encode", "sizes", "preview", "clips", "teacher", "report", "pairs"] as const;

const SPEC = {
  command: "npm run world --",
  summary: "The text-to-image world's data at the scale of D2G_SCALE: encode the latent cache, the 64-or-128 px report, or a preview.",
  positionals: { name: "COMMAND", help: COMMANDS.join(" | "), min: 1, max: 1, values: COMMANDS },
  flags: {
    splits: { type: "string", arg: "s,..", help: `encode: the splits to encode (default all: ${SPLITS.join(",")})` },
    "budget-min": { type: "number", min: 0.01, max: 1e6, help: "encode: stop after this many minutes (run again to continue)" },
    n: { type: "int", min: 1, max: 100_000, default: 48, help: "sizes: scenes to round-trip" },
  },
} as const;

type WorldFlags = Parsed<typeof SPEC>["flags"];

async function encode(flags: WorldFlags): Promise<void> {
  const world = await T2iWorld.forScale();
  const splits = flags.splits?.split(",") as Split[] | undefined;
  for (const s of splits ?? []) if (!SPLITS.includes(s)) throw new UsageError(`--splits: unknown split '${s}'; expected ${SPLITS.join(", ")}`);
  const budget = flags["budget-min"];
  console.log(`world ${world.config.name}: ${JSON.stringify(world.config.counts)} scenes at ${world.config.imageSize} px -> ${world.cache.dir}`);
  const codec = await taef2Codec();
  const done = await world.build(codec, { splits, budgetS: budget === undefined ? undefined : 60 * budget });
  for (const [split, r] of Object.entries(done)) {
    console.log(`${split}: ${r.complete ? "complete" : "incomplete"}, ${r.chunksWritten} chunks written in ${r.seconds.toFixed(0)} s`);
  }
  if (Object.values(done).some((r) => !r.complete) || Object.keys(done).length < (splits ?? SPLITS).length) console.log("time budget spent; run encode again to continue");
  codec.dispose();
}

/**
 * Time per sample of a teacher-sized UNet (SongUNet, 64 channels, 1-2-2, attention below full size) on latents of
 * each side: forward at batch 64, a training step at batch 32; the sides alternate round by round.
 */
async function unetCost(sides: number[], rounds = 3): Promise<Array<{ side: number; params: number; forwardMs: number; stepMs: number }>> {
  const runs = sides.map((res) => {
    const net = new SongUNet({
      imgResolution: res, inChannels: 32, outChannels: 32, labelDim: 0, augmentDim: 0,
      modelChannels: 64, channelMult: [1, 2, 2], channelMultEmb: 4, numBlocks: 1, attnResolutions: [res / 2, res / 4], dropout: 0,
    }, new Rng(0));
    const x = tf.randomNormal([64, res, res, 32], 0, 1, "float32", 1) as tf.Tensor4D;
    const t = tf.ones([64]) as tf.Tensor1D;
    const [xb, tb] = [x.slice(0, 32), t.slice(0, 32)];
    const forward = async () => {
      const y = net.forward(x, t);
      await y.data();
      y.dispose();
    };
    const step = () => {
      const { value, grads } = tf.variableGrads(() => tf.mean(tf.square(net.forward(xb, tb))) as tf.Scalar, net.parameters());
      value.dataSync();
      tf.dispose([value, ...Object.values(grads)]);
    };
    return { res, net, tensors: [x, t, xb, tb], forward, step, forwardMs: 0, stepMs: 0 };
  });
  for (const r of runs) {
    await r.forward();
    r.step();
  }
  for (let k = 0; k < rounds; k++) {
    for (const r of runs) {
      let t0 = Date.now();
      await r.forward();
      r.forwardMs += (Date.now() - t0) / rounds / 64;
      t0 = Date.now();
      r.step();
      r.stepMs += (Date.now() - t0) / rounds;
    }
  }
  return runs.map((r) => {
    const params = r.net.numParameters();
    tf.dispose(r.tensors);
    r.net.dispose();
    return { side: r.res, params, forwardMs: r.forwardMs, stepMs: r.stepMs };
  });
}

async function sizes(flags: WorldFlags): Promise<void> {
  const n = flags.n;
  console.log(`load average at the start: ${fs.readFileSync("/proc/loadavg", "utf8").trim()}`);
  const codec = await taef2Codec();
  const { rows, images } = await codecSizeReport(codec, 0, n, [64, 128]);
  console.log(`TAEF2 round trip of ${n} val scenes (batch 16):`);
  console.log("| size | latents | PSNR mean (dB) | PSNR min (dB) | encode ms/img (CPU) | decode ms/img (CPU) |\n|---|---|---|---|---|---|");
  for (const r of rows) {
    console.log(`| ${r.size} | ${r.latentShape.join("x")} | ${r.psnrMean.toFixed(2)} | ${r.psnrMin.toFixed(2)} | ${r.encodeMs.toFixed(0)} (${r.encodeCpuMs.toFixed(0)}) | ${r.decodeMs.toFixed(0)} (${r.decodeCpuMs.toFixed(0)}) |`);
    const { real, roundTrip } = images[r.size];
    const k = Math.min(16, n);
    const both = tf.tidy(() => tf.concat([real.slice(0, k), roundTrip.slice(0, k)]) as tf.Tensor4D);
    const saved = await saveImageGrid(`world_roundtrip_${r.size}`, both, { cols: 8, zoom: 128 / r.size });
    console.log(`  ${saved.path}: rows 1-2 rendered, rows 3-4 their TAEF2 round trips`);
    tf.dispose([real, roundTrip, both]);
  }
  console.log("teacher-sized UNet (SongUNet 64 ch, mult 1,2,2, 1 block, attention at 1/2 and 1/4) on TAEF2 latents:");
  console.log("| latents | parameters | forward ms/sample (batch 64) | train step ms (batch 32) |\n|---|---|---|---|");
  for (const c of await unetCost([8, 16])) console.log(`| ${c.side}x${c.side}x32 | ${c.params} | ${c.forwardMs.toFixed(1)} | ${c.stepMs.toFixed(0)} |`);
  console.log(`load average at the end: ${fs.readFileSync("/proc/loadavg", "utf8").trim()}`);
  codec.dispose();
}

async function preview(): Promise<void> {
  const world = await T2iWorld.forScale();
  const [n, cols, s] = [8, 4, world.config.imageSize];
  const real = tf.tensor4d(u8ToUnit(await world.cache.images("val", 0, n)), [n, s, s, 3]);
  const codec = await taef2Codec();
  const roundTrip = tf.tidy(() => tf.clipByValue(codec.decode(codec.encode(real)), -1, 1) as tf.Tensor4D);
  // rows of rendered scenes, each followed by a row of their round trips
  const order = Array.from({ length: 2 * n }, (_, k) => {
    const [row, col] = [Math.floor(k / cols), k % cols];
    return { i: Math.floor(row / 2) * cols + col, rt: row % 2 === 1 };
  });
  const cells = tf.tidy(() => tf.stack(order.map(({ i, rt }) => (rt ? roundTrip : real).slice(i, 1).squeeze([0]))) as tf.Tensor4D);
  const captions = order.map(({ i, rt }) => (rt ? "TAEF2 round trip" : canonicalCaption(world.scene("val", i).spec)));
  const saved = await saveImageGrid("world_scenes", cells, { cols, zoom: 4, captions, fontSize: 7 });
  console.log(`${saved.path}: val scenes 0-${n - 1} (rows 1 and 3) and their TAEF2 round trips (rows 2 and 4); their captions:`);
  for (let i = 0; i < n; i++) console.log(`${i}: ${world.captions("val", i).join(" | ")}`);
  tf.dispose([real, roundTrip, cells]);
  codec.dispose();
}

async function clips(): Promise<void> {
  const cfg = byScale(WORLD_CLIPS_CONFIGS);
  const results = await trainWorldClips(cfg);
  for (const r of results) {
    console.log(`CLIP ${r.name}: ${r.parameters.toLocaleString("en")} parameters, ${r.steps} steps of ${cfg.batch} in ${(r.seconds / 60).toFixed(1)} min (${(r.seconds / r.steps).toFixed(2)} s/step, evaluations included); test-split retrieval top-1 in groups of ${cfg.group}: ${(100 * r.retrieval).toFixed(1)}% (chance ${(100 * r.chance).toFixed(1)}%)`);
  }
  const out = fromRoot("runs", "world_clips", currentScale(), "results.json");
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(out, JSON.stringify({ config: cfg, results }, null, 1));
  console.log(`wrote ${out}`);
}

async function teacher(): Promise<void> {
  const t = await trainT2iTeacher();
  console.log(`world teacher: ${t.parameters.toLocaleString("en")} parameters, ${t.steps} steps in ${(t.seconds / 60).toFixed(1)} min (${t.msPerStep.toFixed(0)} ms/step), loss over the last 100 steps ${t.finalLoss.toFixed(4)}`);
}

async function report(): Promise<void> {
  console.log(tableMarkdown(reportRows(await teacherReport())));
}

async function pairs(): Promise<void> {
  for (const m of await makeWorldPairs()) {
    console.log(`${worldPairsDir(m.guidance)}: ${m.count} pairs, DDIM ${m.steps} at guidance ${m.guidance}, ${m.teacherEvals.toLocaleString("en")} teacher evaluations`);
  }
}

runCli(SPEC, async ({ flags, positionals }) => {
  const cmds: Record<(typeof COMMANDS)[number], (f: WorldFlags) => Promise<void>> = { encode, sizes, preview, clips, teacher, report, pairs };
  await initEngine();
  console.log(`scale ${currentScale()}`);
  await cmds[positionals[0] as (typeof COMMANDS)[number]](flags);
});
