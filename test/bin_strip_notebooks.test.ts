import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { fromRoot } from "../lib/core/paths";
import { NOTEBOOK_METADATA } from "../lib/bin/make_notebook";
import { outputsIn, stripOutputs } from "../lib/bin/strip_notebooks";

/** The source notebooks as committed: git's index in a git checkout (what a commit takes), else the files. */
function committedNotebooks(): Array<{ name: string; text: string }> {
  const git = spawnSync("git", ["-C", fromRoot(), "ls-files", "--", "notebooks/*.ipynb"], { encoding: "utf8" });
  const names = git.status === 0 ? git.stdout.split("\n").filter((n) => /^notebooks\/[^/]+\.ipynb$/.test(n)) : [];
  if (names.length) return names.map((name) => ({ name, text: spawnSync("git", ["-C", fromRoot(), "show", `:${name}`], { encoding: "utf8" }).stdout }));
  return fs.readdirSync(fromRoot("notebooks")).filter((f) => f.endsWith(".ipynb")).map((f) => ({ name: `notebooks/${f}`, text: fs.readFileSync(fromRoot("notebooks", f), "utf8") }));
}

test("committed source notebooks hold no outputs or execution counts, and stripping changes nothing", () => {
  const nbs = committedNotebooks();
  assert.ok(nbs.length >= 4);
  for (const { name, text } of nbs) {
    assert.deepEqual(outputsIn(text, name), [], `${name}: run \`npm run strip\` (or \`npm run setup\` for the git filter) before committing`);
    assert.equal(stripOutputs(text, name), text, `${name} is not in Jupyter's format: the git filter would rewrite it`);
  }
});

const executed = {
  cells: [
    { cell_type: "markdown", id: "m", metadata: {}, source: ["# title"] },
    {
      cell_type: "code", execution_count: 3, id: "c", metadata: { execution: { "iopub.status.busy": "2026" }, tags: ["keep"] }, source: ["console.log(1)"],
      outputs: [{ name: "stdout", output_type: "stream", text: ["1\n"] }],
    },
  ],
  metadata: { kernelspec: { display_name: "TypeScript (another checkout)", name: "tslab" }, language_info: { name: "typescript", version: "3.7.2" }, widgets: {} },
  nbformat: 4,
  nbformat_minor: 5,
};

test("stripping removes outputs, counts and timings, restores the kernel metadata, keeps the rest, in Jupyter's key order", () => {
  const text = JSON.stringify(executed);
  assert.deepEqual(outputsIn(text, "x.ipynb"), ["cell 2: 1 output", "cell 2: execution count 3", "cell 2: execution timings"]);
  const clean = stripOutputs(text, "x.ipynb");
  assert.deepEqual(outputsIn(clean, "x.ipynb"), []);
  const nb = JSON.parse(clean);
  assert.deepEqual(nb.cells[1], { cell_type: "code", execution_count: null, id: "c", metadata: { tags: ["keep"] }, outputs: [], source: ["console.log(1)"] });
  assert.deepEqual(nb.cells[0], executed.cells[0]);
  // the kernel metadata a Jupyter session rewrites goes back to the project's; other metadata stays
  assert.deepEqual(nb.metadata, { ...NOTEBOOK_METADATA, widgets: {} });
  assert.ok(clean.startsWith('{\n "cells": [\n  {\n   "cell_type": "markdown",') && clean.endsWith("}\n"), clean);
  assert.equal(stripOutputs(clean, "x.ipynb"), clean);
  assert.throws(() => stripOutputs("{", "bad.ipynb"), /bad\.ipynb: not a notebook \(invalid JSON/);
});

test("as a git clean filter it strips stdin, and passes anything else through unchanged", () => {
  const script = path.join(__dirname, "..", "lib", "bin", "strip_notebooks.js");
  const r = spawnSync(process.execPath, [script, "--filter"], { input: JSON.stringify(executed), encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(outputsIn(r.stdout, "stdout"), []);
  const odd = spawnSync(process.execPath, [script, "--filter"], { input: "not json", encoding: "utf8" });
  assert.equal(odd.status, 0);
  assert.equal(odd.stdout, "not json");
  assert.match(odd.stderr, /committing it unchanged/);
  assert.equal(spawnSync(process.execPath, [script, "--bogus"], { encoding: "utf8" }).status, 2);
});
