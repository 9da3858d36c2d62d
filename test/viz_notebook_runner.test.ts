import { test, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { parsePercent, toNotebook } from "../lib/bin/make_notebook";

// Runs the real runner (Jupyter + the tslab kernel; `npm run setup` installs them) on two tiny notebooks.
// Without Jupyter the runner fails with the setup instruction, and so do these tests.

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "d2g-nb-"));
const out = path.join(dir, "out");
after(() => fs.rmSync(dir, { recursive: true, force: true }));

function write(name: string, percent: string): void {
  fs.writeFileSync(path.join(dir, name), JSON.stringify(toNotebook(parsePercent(percent, name))));
}

write("a_good.ipynb", "// %% [markdown]\n// # fine\n// %%\nconst x: number = 20 + 22;\nconsole.log(`answer ${x} at ${process.env.D2G_SCALE}`);\n");
write("b_bad.ipynb", "// %%\nconsole.log('before');\n// %%\nthrow new Error('deliberate failure 42');\n// %%\nconsole.log('never printed');\n");

function runner(...args: string[]) {
  const script = path.join(__dirname, "..", "lib", "bin", "reproduce.js");
  const r = spawnSync(process.execPath, [script, "--dir", dir, "--out", out, ...args], { encoding: "utf8", env: { ...process.env, D2G_SCALE: "smoke" } });
  return { status: r.status, log: r.stdout + r.stderr };
}

test("a good notebook runs; its executed copy holds the outputs, the source stays clean", () => {
  const r = runner("good");
  assert.equal(r.status, 0, r.log);
  assert.match(r.log, /\[1\/1\] a_good\.ipynb ok in [\d.]+s/);
  const executed = JSON.parse(fs.readFileSync(path.join(out, "a_good.ipynb"), "utf8"));
  assert.deepEqual(executed.cells[1].outputs.map((o: { text: string[] | string }) => [o.text].flat().join("")), ["answer 42 at smoke\n"]);
  const source = JSON.parse(fs.readFileSync(path.join(dir, "a_good.ipynb"), "utf8"));
  assert.deepEqual(source.cells[1].outputs, []);
});

test("a throwing cell fails the run, with the error message in the log", () => {
  const r = runner("bad");
  assert.equal(r.status, 1, r.log);
  assert.match(r.log, /cell 2\/3 of .*b_bad\.ipynb failed/);
  assert.match(r.log, /Error: deliberate failure 42/);
  assert.match(r.log, /b_bad\.ipynb FAILED/);
  assert.ok(!r.log.includes("never printed"));
  assert.ok(!fs.existsSync(path.join(out, "b_bad.ipynb")), "no executed copy for a failed notebook");
  assert.ok(fs.existsSync(path.join(out, "b_bad.failed.ipynb")), "the partly executed notebook is kept");
});

test("a filter that matches no notebook is an error that lists the notebooks", () => {
  const r = runner("nothing-matches");
  assert.equal(r.status, 2);
  assert.match(r.log, /no notebook matches "nothing-matches"; the notebooks in .* are:\n  a_good\n  b_bad\n/);
});
