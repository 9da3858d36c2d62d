// FID-C10 reference points: CIFAR-10 test set against the training set, and the stand-in teacher's samples
// (Heun, 18 levels) against the training set. FID-C10 uses the features of the small CIFAR-10 classifier in
// data/weights/, so it is comparable only with other FID-C10 numbers, never with Inception FID.
//   npm run fid-c10 [-- --samples N]
import * as tf from "@tensorflow/tfjs";
import { initEngine } from "../backend/engine";
import { Rng } from "../core/random";
import { Cifar10, cifar10Floats, loadCifar10 } from "../data/cifar10";
import { classCycledSamples, loadCifarTeacher, teacherSamples } from "../experiments/cifar10_teacher";
import { loadC10Classifier } from "../metrics/cifar_classifier";
import { evaluate, formatResult, ImageDataset } from "../metrics/evaluate";
import { runCli } from "./args";

const SPEC = {
  command: "npm run fid-c10 --",
  summary: "FID-C10 of the CIFAR-10 test set, and of the stand-in teacher's samples, against the training set.",
  flags: { samples: { type: "int", min: 2, max: 1_000_000, default: 2000, help: "teacher samples" } },
} as const;

function dataset(d: Cifar10, split: string): ImageDataset {
  return {
    id: `cifar10-${split}-32px`,
    size: d.n,
    async *batches(b: number) {
      for (let i = 0; i < d.n; i += b) {
        const idx = Int32Array.from({ length: Math.min(b, d.n - i) }, (_, j) => i + j);
        yield tf.tensor4d(cifar10Floats(d, idx), [idx.length, 32, 32, 3]);
      }
    },
  };
}

runCli(SPEC, async ({ flags: { samples: n } }) => {
  await initEngine();
  const { net, metadata } = loadC10Classifier();
  console.log(`feature network: ${net.name} (test accuracy ${metadata.test_acc})`);
  const [train, test] = [await loadCifar10("train"), await loadCifar10("test")];
  console.log(`CIFAR-10 test (10,000) vs train (50,000): ${formatResult(await evaluate(dataset(test, "test"), dataset(train, "train"), { net }))}`);
  const { net: teacher, spec } = loadCifarTeacher("cpu");
  const samples = classCycledSamples(async (z, c) => (await teacherSamples(teacher, z, c)).x, n, spec.resolution, new Rng(2024), 100);
  const r = await evaluate({ stream: samples, count: n }, dataset(train, "train"), { net });
  console.log(`teacher ${spec.weights.split("/").pop()} (Heun, 35 evaluations), ${n} samples vs train: ${formatResult(r)}`);
});
