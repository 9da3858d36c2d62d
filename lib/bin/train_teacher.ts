// Train the stand-in CIFAR-10 teacher (16x16, class-conditional DDPM++ at reduced width) on the active engine,
// resumably (checkpoints in runs/teacher/), then write its EMA weights, training log, loss curve and samples.
//   npm run train:teacher [-- --steps N]
import * as fs from "fs";
import { initEngine } from "../backend/engine";
import { fromRoot } from "../core/paths";
import { loadCifar10 } from "../data/cifar10";
import { fixedNoise, loadCifarTeacher, TEACHER_TRAINING, teacherSamples, trainCifarTeacher } from "../experiments/cifar10_teacher";
import { saveImageGrid } from "../viz/image_grid";
import { closeFigures, lineFigure, saveFigure } from "../viz/plot";

async function main(): Promise<void> {
  const engine = await initEngine();
  const i = process.argv.indexOf("--steps");
  const cfg = { ...TEACHER_TRAINING, steps: i > 0 ? Number(process.argv[i + 1]) : TEACHER_TRAINING.steps };
  const data = await loadCifar10("train");
  const result = await trainCifarTeacher(data, cfg);
  const log = ["step,loss,gradNorm,lr", ...result.history.map((h) => `${h.step},${h.loss},${h.gradNorm},${h.lr}`)].join("\n");
  fs.writeFileSync(fromRoot("data", "weights", "edm_cifar16_teacher.log.csv"), log + "\n");
  await saveFigure("teacher_loss", lineFigure(`CIFAR-10 16x16 teacher: EDM loss (${engine.engine})`, [{ name: "EDM loss", x: result.history.map((h) => h.step), y: result.history.map((h) => h.loss) }], { x: "step", y: "loss", logY: true }));
  const { net } = loadCifarTeacher("cpu");
  const { z, labels } = fixedNoise(8, 16);
  const { x, nfe } = await teacherSamples(net, z, labels);
  await saveImageGrid("teacher_samples", x, { cols: 10 });
  console.log(`teacher: ${cfg.steps} steps (${result.history.length - result.resumedFrom} in this session, ${result.secondsPerStep.toFixed(3)} s/step on ${engine.engine}), Heun ${nfe} evaluations per sample`);
  await closeFigures();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
