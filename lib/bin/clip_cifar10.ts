// Validate the contrastive CLIP training on CIFAR-10 with class captions (lib/experiments/clip_cifar10.ts):
// train the configured CLIPs at the scale D2G_SCALE chooses (resumable: checkpoints in runs/clip_cifar10/<scale>/),
// then print each one's zero-shot accuracy and its curve and write them to runs/clip_cifar10/<scale>/results.json.
//   npm run clip-cifar10 [-- --scale cpu]
import * as fs from "fs";
import { initEngine } from "../backend/engine";
import { fromRoot } from "../core/paths";
import { CLASS_WORDS, clipCifarConfig, run } from "../experiments/clip_cifar10";
import { currentScale, SCALES } from "../experiments/scale";
import { runCli } from "./args";

const SPEC = {
  command: "npm run clip-cifar10 --",
  summary: "Train tiny CLIPs contrastively on CIFAR-10 with class captions (resumable) and report their zero-shot accuracy.",
  flags: {
    scale: { type: "enum", values: SCALES, help: "experiment scale (default: D2G_SCALE, else cpu)" },
  },
} as const;

runCli(SPEC, async ({ flags }) => {
  const scale = flags.scale ?? currentScale();
  const engine = await initEngine();
  const cfg = clipCifarConfig(scale);
  const results = await run(cfg, { ckptRoot: fromRoot("runs", "clip_cifar10", scale) });
  for (const r of results) {
    const curve = r.history.filter((h) => h.zeroShot !== undefined).map((h) => `step ${h.step}: loss ${h.loss.toFixed(3)}, zero-shot ${(100 * h.zeroShot).toFixed(1)}%`);
    console.log(`CLIP ${r.name}: ${r.parameters.toLocaleString("en")} parameters, ${cfg.steps} steps of ${cfg.batch} (${r.secondsPerStep.toFixed(2)} s/step on ${engine.engine}); zero-shot top-1 ${(100 * r.zeroShot).toFixed(1)}% on ${cfg.testImages} test images (chance 10%)`);
    console.log(`  ${curve.join("\n  ")}`);
    console.log(`  per class: ${r.perClass.map((a, c) => `${CLASS_WORDS[c][0]} ${(100 * a).toFixed(0)}%`).join(", ")}`);
  }
  const out = fromRoot("runs", "clip_cifar10", scale, "results.json");
  fs.mkdirSync(fromRoot("runs", "clip_cifar10", scale), { recursive: true });
  fs.writeFileSync(out, JSON.stringify({ engine: engine.engine, config: cfg, results }, null, 1));
  console.log(`wrote ${out}`);
});
