// Validate the contrastive CLIP training on CIFAR-10 with class captions (lib/experiments/clip_cifar10.ts):
// train the configured CLIPs at the scale D2G_SCALE chooses (resumable: checkpoints in runs/clip_cifar10/<scale>/),
// then print each one's zero-shot accuracy and its curve and write them to runs/clip_cifar10/<scale>/results.json.
//   D2G_SCALE=cpu npm run clip-cifar10
import * as fs from "fs";
import { initEngine } from "../backend/engine";
import { fromRoot } from "../core/paths";
import { CLASS_WORDS, clipCifarConfig, run } from "../experiments/clip_cifar10";
import { currentScale } from "../experiments/scale";

async function main(): Promise<void> {
  const engine = await initEngine();
  const cfg = clipCifarConfig();
  const results = await run(cfg);
  for (const r of results) {
    const curve = r.history.filter((h) => h.zeroShot !== undefined).map((h) => `step ${h.step}: loss ${h.loss.toFixed(3)}, zero-shot ${(100 * h.zeroShot).toFixed(1)}%`);
    console.log(`CLIP ${r.name}: ${r.parameters.toLocaleString("en")} parameters, ${cfg.steps} steps of ${cfg.batch} (${r.secondsPerStep.toFixed(2)} s/step on ${engine.engine}); zero-shot top-1 ${(100 * r.zeroShot).toFixed(1)}% on ${cfg.testImages} test images (chance 10%)`);
    console.log(`  ${curve.join("\n  ")}`);
    console.log(`  per class: ${r.perClass.map((a, c) => `${CLASS_WORDS[c][0]} ${(100 * a).toFixed(0)}%`).join(", ")}`);
  }
  const out = fromRoot("runs", "clip_cifar10", currentScale(), "results.json");
  fs.mkdirSync(fromRoot("runs", "clip_cifar10", currentScale()), { recursive: true });
  fs.writeFileSync(out, JSON.stringify({ engine: engine.engine, config: cfg, results }, null, 1));
  console.log(`wrote ${out}`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
