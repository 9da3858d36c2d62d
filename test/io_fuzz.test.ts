import { test } from "node:test";
import assert from "node:assert/strict";
import { runFuzz } from "../lib/io/fuzz";

// Hostile and mutated checkpoints, each loaded in its own process (lib/io/fuzz.ts): every outcome must be the
// project's CheckpointError naming the file or a load the case allows; nothing may hang, exceed the memory bound
// or run a payload. `npm run fuzz -- --count N` runs more.
const COUNT = Number(process.env.D2G_FUZZ_COUNT ?? 150);

test(`loader fuzz: hand-made hostile files and ${COUNT} random mutations`, async () => {
  const report = await runFuzz({ count: COUNT, seed: 12 });
  const other = report.results.filter((r) => r.outcome === "anything else");
  assert.deepEqual(other.map((r) => `${r.id}: ${r.detail}`), [], "every outcome is a clean error or a valid load");
  assert.equal(report.canaryRan, false, "no payload ran");
  // the corpus must exercise both: loads that should succeed do, and hostile files are refused
  assert.ok(report.counts["valid load"] > 10 && report.counts["clean error"] > 50, JSON.stringify(report.counts));
});
