// npm run bench:perceptual [-- --size PX] [-- --batch N] [-- --reps N] [-- --width W | --standins] [-- --preset P]
// The paper's cost claim (PAPER.md "Cost": on an A100, decode + LPIPS 117 ms, E-LatentLPIPS 12.1 ms, 9.7x): time
// one evaluation and one optimisation step (forward + gradient w.r.t. the latent) of each route to a perceptual
// distance between two latents, same batch and image size, on the active engine:
//   latent route: augment both latents, LatentLPIPS network (E-LatentLPIPS)
//   pixel route:  decode the latent with TAEF2, LPIPS against the decoded target (decoded once, outside the timing)
// Timing does not depend on the weights, so by default both trunks have the official shapes (width 1) with random
// weights; --standins times the committed stand-in trunks instead. Our decoder is TAEF2 (a tiny autoencoder), the
// paper's the full SD VAE decoder, so the pixel route here is far cheaper than the paper's.
import * as tf from "@tensorflow/tfjs";
import { formatEngine, initEngine } from "../backend/engine";
import { Rng } from "../core/random";
import { taef2Codec } from "../nn/latent_codec";
import { AUGMENT_OPS, AUGMENT_PRESETS, sampleAugment } from "../perceptual/augment";
import { LatentLpips } from "../perceptual/latent_lpips";
import { Lpips } from "../perceptual/lpips";
import { loadStandinLatentLpips, loadStandinLpips } from "../perceptual/standins";
import { runCli, UsageError } from "./args";

const SPEC = {
  command: "npm run bench:perceptual --",
  summary: "Time E-LatentLPIPS on latents against decode + pixel LPIPS (one evaluation and one optimisation step each).",
  flags: {
    size: { type: "int", min: 32, max: 4096, default: 256, arg: "PX", help: "image side, a multiple of 8 (latents are PX/8, and LatentLPIPS needs 4)" },
    batch: { type: "int", min: 1, max: 1024, default: 1, help: "images per evaluation" },
    reps: { type: "int", min: 1, max: 1000, default: 3, help: "timed repetitions after one warm-up (the median counts)" },
    width: { type: "number", above: 0, max: 4, arg: "W", help: "trunk width multiplier, random weights (default 1, the official shapes)" },
    standins: { type: "bool", help: "time the committed stand-in trunks instead (not with --width)" },
    preset: { type: "enum", values: [...Object.keys(AUGMENT_PRESETS), ...AUGMENT_OPS], default: "bg", arg: "P", help: "E-LatentLPIPS augmentation preset or op" },
  },
} as const;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/** Median wall ms and mean process CPU ms (all threads) of `reps` runs after one warm-up. */
async function time(reps: number, f: () => tf.Tensor | tf.Tensor[]): Promise<{ ms: number; cpuMs: number }> {
  const once = async () => {
    const out = f();
    const list = Array.isArray(out) ? out : [out];
    await Promise.all(list.map((t) => t.data()));
    tf.dispose(list);
  };
  await once();
  const walls: number[] = [];
  const cpu0 = process.cpuUsage();
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    await once();
    walls.push(performance.now() - t0);
  }
  const cpu = process.cpuUsage(cpu0);
  return { ms: median(walls), cpuMs: (cpu.user + cpu.system) / 1000 / reps };
}

runCli(SPEC, async ({ flags }) => {
  if (flags.size % 8 !== 0) throw new UsageError(`--size ${flags.size}: must be a multiple of 8 (TAEF2 downsamples 8x)`);
  if (flags.standins && flags.width !== undefined) throw new UsageError("--standins and --width exclude each other (the stand-ins have their own width)");
  const o = { ...flags, width: flags.width ?? 1 };
  const engine = await initEngine({ quiet: true });
  const codec = await taef2Codec();
  let lpips: Lpips;
  let latent: LatentLpips;
  let trunks: string;
  if (o.standins) {
    const p = loadStandinLpips();
    const l = loadStandinLatentLpips();
    [lpips, latent, trunks] = [p.lpips, l.latentLpips, `${p.trunk} | ${l.trunk}`];
  } else {
    lpips = new Lpips(new Rng(0), { width: o.width });
    latent = new LatentLpips({ latentChannels: codec.channels, width: o.width }, new Rng(1));
    trunks = `VGG16 | latent VGG16-BN, width ${o.width}, random weights (timing only)`;
  }
  const rng = new Rng(2);
  const h = o.size / codec.factor;
  const z = tf.variable(tf.randomNormal([o.batch, h, h, codec.channels], 0, 1, "float32", rng.seed()) as tf.Tensor4D);
  const zt = tf.randomNormal([o.batch, h, h, codec.channels], 0, 1, "float32", rng.seed()) as tf.Tensor4D;
  const xt = codec.decode(zt);
  const zz = z as tf.Tensor as tf.Tensor4D;

  const augmentOnly = () => sampleAugment({ ops: o.preset }, o.batch, rng).apply(zz);
  const eLatent = () => {
    const t = sampleAugment({ ops: o.preset }, o.batch, rng);
    return latent.distance(zz, zt, (a, b) => [t.apply(a), t.apply(b)]);
  };
  const pixel = () => tf.tidy(() => lpips.distance(codec.decode(zz), xt));
  const step = (f: () => tf.Tensor1D) => () => {
    const { value, grads } = tf.variableGrads(() => tf.mean(f()), [z]);
    return [value, ...Object.values(grads)];
  };

  console.log(formatEngine(engine));
  console.log(`batch ${o.batch}, ${o.size}x${o.size} px = ${h}x${h}x${codec.channels} ${codec.name} latents; trunks: ${trunks}; preset ${o.preset}; median of ${o.reps}`);
  const rows: Array<[string, { ms: number; cpuMs: number }]> = [];
  const add = async (name: string, f: () => tf.Tensor | tf.Tensor[]) => {
    const r = await time(o.reps, f);
    rows.push([name, r]);
    console.log(`  ${name.padEnd(44)} ${r.ms.toFixed(1).padStart(9)} ms  (cpu ${r.cpuMs.toFixed(0)} ms)`);
  };
  await add("augment only (one latent)", augmentOnly);
  await add("E-LatentLPIPS evaluation", eLatent);
  await add("decode + LPIPS evaluation", pixel);
  await add("E-LatentLPIPS optimisation step", step(eLatent));
  await add("decode + LPIPS optimisation step", step(pixel));
  const ms = Object.fromEntries(rows.map(([n, r]) => [n, r.ms]));
  const evalRatio = ms["decode + LPIPS evaluation"] / ms["E-LatentLPIPS evaluation"];
  const stepRatio = ms["decode + LPIPS optimisation step"] / ms["E-LatentLPIPS optimisation step"];
  console.log(`ratio decode+LPIPS / E-LatentLPIPS: evaluation ${evalRatio.toFixed(1)}x, optimisation step ${stepRatio.toFixed(1)}x ` +
    `(paper, A100, SD VAE decoder: 117 / 12.1 ms = 9.7x)`);
  tf.dispose([z, zt, xt]);
  codec.dispose();
  lpips.dispose();
  latent.dispose();
});
