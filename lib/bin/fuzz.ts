// npm run fuzz -- [--count N] [--seed S]
// The loader fuzz run (lib/io/fuzz.ts) at any size: the hand-made hostile files plus N random mutations of valid
// files of every format, each loaded in its own process under a time and a memory limit. Prints the count per
// outcome and every case that was neither a clean error nor a valid load; exit status 1 if there was one.
import { runCli } from "./args";
import { runFuzz } from "../io/fuzz";

const SPEC = {
  command: "npm run fuzz --",
  summary: "Load mutated and hostile checkpoints (safetensors, .npy, .npz, zip and legacy .pth), each in its own process; count the outcomes.",
  flags: {
    count: { type: "int", min: 0, max: 1_000_000, default: 1000, help: "random mutations on top of the hand-made cases" },
    seed: { type: "int", min: 0, max: 2 ** 32 - 1, default: 1, help: "seed of the corpus and the mutations" },
    parallel: { type: "int", min: 1, max: 64, default: 2, help: "loader processes at once" },
    "timeout-ms": { type: "int", min: 100, max: 600_000, default: 10_000, arg: "MS", help: "wall-clock limit per file" },
    "memory-mb": { type: "int", min: 64, max: 65_536, default: 384, arg: "MB", help: "resident memory limit per loader process" },
  },
} as const;

runCli(SPEC, async ({ flags }) => {
  const t0 = Date.now();
  const report = await runFuzz({
    count: flags.count, seed: flags.seed, parallel: flags.parallel, timeoutMs: flags["timeout-ms"], memoryMb: flags["memory-mb"],
    onResult: (r, done, total) => {
      if (r.outcome === "anything else") console.log(`ANYTHING ELSE ${r.id}: ${r.detail}`);
      if (done % 100 === 0 || done === total) process.stderr.write(`fuzz: ${done}/${total} files\n`);
    },
  });
  const { counts, results } = report;
  const slowest = results.reduce((a, b) => (b.ms > a.ms ? b : a));
  const peak = results.reduce((a, b) => ((b.peakRssMb ?? 0) > (a.peakRssMb ?? 0) ? b : a));
  console.log(`${results.length} files (seed ${flags.seed}: ${results.length - flags.count} hand-made, ${flags.count} random) in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  const kinds = new Map<string, number>();
  for (const r of results) if (r.outcome === "valid load") kinds.set(r.detail, (kinds.get(r.detail) ?? 0) + 1);
  const valid = [...kinds].map(([k, n]) => `${k} ${n}`).join(", ");
  console.log(`clean error: ${counts["clean error"]}\nvalid load: ${counts["valid load"]} (${valid})\nanything else: ${counts["anything else"]}`);
  console.log(`slowest file ${slowest.id} ${slowest.ms} ms; highest peak memory ${peak.id} ${peak.peakRssMb?.toFixed(0)} MB; payload ran: ${report.canaryRan ? "YES" : "no"}`);
  return counts["anything else"] > 0 || report.canaryRan ? 1 : 0;
});
