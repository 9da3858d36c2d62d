// Make the ODE pairs of the CIFAR-10 experiment, optionally as one share of a split across processes/machines:
//   npm run pairs -- [--scale cpu] [--shard i/n]
// Each share writes its shards; run once more without --shard (or with 0/1) to verify and merge them.
import { initEngine } from "../backend/engine";
import { stopOnCtrlC } from "../core/interrupt";
import { CONFIGS, makeCifarPairs } from "../experiments/cifar10_convergence";
import { loadCifarTeacher } from "../experiments/cifar10_teacher";
import { currentScale, SCALES } from "../experiments/scale";
import { runCli, UsageError } from "./args";

const SPEC = {
  command: "npm run pairs --",
  summary: "Make the CIFAR-10 ODE pairs (under runs/cifar10_pairs/), or one share of them; without --shard, verify and merge the shares.",
  flags: {
    scale: { type: "enum", values: SCALES, help: "experiment scale (default: D2G_SCALE, else cpu)" },
    shard: { type: "string", arg: "i/n", help: "make only share i of n (0 <= i < n)" },
  },
} as const;

runCli(SPEC, async ({ flags }) => {
  let shard: { index: number; of: number } | undefined;
  if (flags.shard !== undefined) {
    const m = /^(\d+)\/(\d+)$/.exec(flags.shard);
    if (!m || Number(m[2]) < 1 || Number(m[1]) >= Number(m[2])) throw new UsageError(`--shard ${JSON.stringify(flags.shard)}: expected i/n with 0 <= i < n, e.g. 0/4`);
    shard = { index: Number(m[1]), of: Number(m[2]) };
  }
  const scale = flags.scale ?? currentScale();
  stopOnCtrlC();
  await initEngine();
  const { net, spec } = loadCifarTeacher(scale);
  const { dir, manifest } = await makeCifarPairs(CONFIGS[scale], scale, net, spec, shard);
  console.log(manifest ? `${dir}: ${manifest.count} pairs in ${manifest.shards.length} shards, ${manifest.teacherEvals} teacher evaluations` : `${dir}: share ${flags.shard} done`);
});
