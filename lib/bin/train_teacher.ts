// Train a stand-in CIFAR-10 teacher (16x16, class-conditional DDPM++ at reduced width) on the active engine,
// resumably (checkpoints in runs/teacher/<name>/), then write its EMA weights, training log, loss curve and samples.
//   npm run train:teacher -- [--teacher long|short] [--steps N] [--out DIR] [--figures DIR]
// Everything goes under runs/teacher/out/ unless --out says otherwise: a committed teacher is written only on
// request (--out data/weights --figures figures; notebook 02 at cpu scale then uses the long teacher).
import * as fs from "fs";
import * as path from "path";
import { initEngine } from "../backend/engine";
import { stopOnCtrlC } from "../core/interrupt";
import { fromRoot } from "../core/paths";
import { loadCifar10 } from "../data/cifar10";
import { CIFAR10_CLASS_NAMES, CifarTeacherName, fixedNoise, loadCifarTeacher, standinTeacherWeights, TEACHER_TRAININGS, teacherSamples, trainCifarTeacher } from "../experiments/cifar10_teacher";
import { COSTS } from "../experiments/plan";
import { saveImageGrid } from "../viz/image_grid";
import { closeFigures, lineFigure, saveFigure } from "../viz/plot";
import { runCli } from "./args";

const SPEC = {
  command: "npm run train:teacher --",
  summary: "Train a CIFAR-10 16x16 stand-in teacher (resumable; checkpoints in runs/teacher/<name>/), then write its EMA weights, log, loss curve and samples.",
  flags: {
    teacher: { type: "enum", values: Object.keys(TEACHER_TRAININGS), help: "which training of lib/experiments/cifar10_teacher.ts TEACHER_TRAININGS (default long)" },
    steps: { type: "int", min: 1, max: 10_000_000, help: "training steps (default: the training's own)" },
    out: { type: "string", arg: "DIR", help: "folder for the weights and their .log.csv (default runs/teacher/out; data/weights writes the committed teacher)" },
    figures: { type: "string", arg: "DIR", help: "folder for the loss curve and samples, teacher[_NAME]_loss and _samples (default: the --out folder)" },
  },
} as const;

runCli(SPEC, async ({ flags }) => {
  const out = flags.out !== undefined ? path.resolve(flags.out) : fromRoot("runs", "teacher", "out");
  const figures = flags.figures !== undefined ? path.resolve(flags.figures) : out;
  const name = (flags.teacher ?? "long") as CifarTeacherName;
  const weights = path.join(out, path.basename(standinTeacherWeights(name)));
  const stem = name === "short" ? "teacher" : `teacher_${name}`;
  stopOnCtrlC();
  const engine = await initEngine();
  const cfg = { ...TEACHER_TRAININGS[name], steps: flags.steps ?? TEACHER_TRAININGS[name].steps };
  console.log(`teacher '${name}': ${cfg.steps} steps of ${cfg.batch}, about ${Math.round((cfg.steps * COSTS.cifarTeacherStepS * (cfg.batch / 32)) / 60)} minutes on the 2-core machine (less when resuming)`);
  const data = await loadCifar10("train");
  const result = await trainCifarTeacher(data, name, cfg, weights);
  const log = ["step,loss,gradNorm,lr", ...result.history.map((h) => `${h.step},${h.loss},${h.gradNorm},${h.lr}`)].join("\n");
  fs.writeFileSync(weights.replace(/\.safetensors$/, ".log.csv"), log + "\n");
  const what = `batch ${cfg.batch}, ${cfg.steps} steps, engine ${engine.engine}`;
  const history = { name: "EDM loss", x: result.history.map((h) => h.step), y: result.history.map((h) => h.loss) };
  await saveFigure(`${stem}_loss`, lineFigure(`CIFAR-10 16x16 stand-in teacher '${name}' (DDPM++): EDM training loss`, [history], { x: "training step", y: "EDM loss (log scale)", logY: true, subtitle: what }), { dir: figures });
  const { net } = loadCifarTeacher("cpu", weights);
  const { z, labels } = fixedNoise(8, 16);
  const { x, nfe } = await teacherSamples(net, z, labels);
  await saveImageGrid(`${stem}_samples`, x, { cols: 10, dir: figures, columnLabels: CIFAR10_CLASS_NAMES, fontSize: 10, title: `CIFAR-10 16x16 stand-in teacher '${name}': samples, Heun ${nfe} evaluations, 8 per class (${what})` });
  console.log(`teacher: ${cfg.steps} steps (${result.history.length - result.resumedFrom} in this session, ${result.secondsPerStep.toFixed(3)} s/step on ${engine.engine}), Heun ${nfe} evaluations per sample; wrote ${weights}`);
  await closeFigures();
});
