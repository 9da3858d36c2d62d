// Train the stand-in CIFAR-10 teacher (16x16, class-conditional DDPM++ at reduced width) on the active engine,
// resumably (checkpoints in runs/teacher/), then write its EMA weights, training log, loss curve and samples.
//   npm run train:teacher [-- --steps N]
import * as fs from "fs";
import { initEngine } from "../backend/engine";
import { stopOnCtrlC } from "../core/interrupt";
import { fromRoot } from "../core/paths";
import { loadCifar10 } from "../data/cifar10";
import { CIFAR10_CLASS_NAMES, fixedNoise, loadCifarTeacher, TEACHER_TRAINING, teacherSamples, trainCifarTeacher } from "../experiments/cifar10_teacher";
import { saveImageGrid } from "../viz/image_grid";
import { closeFigures, lineFigure, saveFigure } from "../viz/plot";

async function main(): Promise<void> {
  stopOnCtrlC();
  const engine = await initEngine();
  const i = process.argv.indexOf("--steps");
  const cfg = { ...TEACHER_TRAINING, steps: i > 0 ? Number(process.argv[i + 1]) : TEACHER_TRAINING.steps };
  const data = await loadCifar10("train");
  const result = await trainCifarTeacher(data, cfg);
  const log = ["step,loss,gradNorm,lr", ...result.history.map((h) => `${h.step},${h.loss},${h.gradNorm},${h.lr}`)].join("\n");
  fs.writeFileSync(fromRoot("data", "weights", "edm_cifar16_teacher.log.csv"), log + "\n");
  const what = `batch ${cfg.batch}, ${cfg.steps} steps, engine ${engine.engine}`;
  const history = { name: "EDM loss", x: result.history.map((h) => h.step), y: result.history.map((h) => h.loss) };
  await saveFigure("teacher_loss", lineFigure("CIFAR-10 16x16 stand-in teacher (DDPM++): EDM training loss", [history], { x: "training step", y: "EDM loss (log scale)", logY: true, subtitle: what }));
  const { net } = loadCifarTeacher("cpu");
  const { z, labels } = fixedNoise(8, 16);
  const { x, nfe } = teacherSamples(net, z, labels);
  await saveImageGrid("teacher_samples", x, { cols: 10, columnLabels: CIFAR10_CLASS_NAMES, fontSize: 10, title: `CIFAR-10 16x16 stand-in teacher: samples, Heun ${nfe} evaluations, 8 per class (${what})` });
  console.log(`teacher: ${cfg.steps} steps (${result.history.length - result.resumedFrom} in this session, ${result.secondsPerStep.toFixed(3)} s/step on ${engine.engine}), Heun ${nfe} evaluations per sample`);
  await closeFigures();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
