import { test } from "node:test";
import assert from "node:assert/strict";
import { loadSources, resolveNames } from "../lib/data/sources";
import { CONFIGS, OFFICIAL_FILES } from "../lib/experiments/cifar10_convergence";

test("the paper scale of the CIFAR-10 comparison asks for official networks that data/sources.json lists with a checksum", () => {
  assert.equal(CONFIGS.paper.official, true);
  assert.equal(CONFIGS.cpu.official, false);
  const files = resolveNames(loadSources(), Object.values(OFFICIAL_FILES));
  assert.deepEqual(files.map((f) => f.path), Object.values(OFFICIAL_FILES));
  for (const f of files) assert.match(f.sha256 ?? "", /^[0-9a-f]{64}$/, `${f.path}: no sha256 in sources.json`);
});
