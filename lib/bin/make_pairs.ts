// Make the ODE pairs of the CIFAR-10 experiment, optionally as one share of a split across processes/machines:
//   npm run pairs -- [--scale cpu] [--shard i/n]
// Each share writes its shards; run once more without --shard (or with 0/1) to verify and merge them.
import { initEngine } from "../backend/engine";
import { CONFIGS, makeCifarPairs } from "../experiments/cifar10_convergence";
import { loadCifarTeacher } from "../experiments/cifar10_teacher";
import { currentScale, SCALES, Scale } from "../experiments/scale";

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : undefined;
}

async function main(): Promise<void> {
  await initEngine();
  const scale = (arg("--scale") ?? currentScale()) as Scale;
  if (!SCALES.includes(scale)) throw new Error(`--scale ${scale}: expected one of ${SCALES.join(", ")}`);
  const s = arg("--shard");
  const m = s ? /^(\d+)\/(\d+)$/.exec(s) : null;
  if (s && !m) throw new Error(`--shard ${s}: expected i/n, e.g. 0/4`);
  const shard = m ? { index: Number(m[1]), of: Number(m[2]) } : undefined;
  const { net, spec } = loadCifarTeacher(scale);
  const { dir, manifest } = await makeCifarPairs(CONFIGS[scale], scale, net, spec, shard);
  console.log(manifest ? `${dir}: ${manifest.count} pairs in ${manifest.shards.length} shards, ${manifest.teacherEvals} teacher evaluations` : `${dir}: share ${s} done`);
}

main().catch((e) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
