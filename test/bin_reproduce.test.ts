import { test, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { fromRoot } from "../lib/core/paths";
import { chooseNotebooks, parseArgs, planLines, resumeCommand } from "../lib/bin/reproduce";
import { formatDuration } from "../lib/core/progress";
import { parsePercent, toNotebook } from "../lib/bin/make_notebook";

const script = path.join(__dirname, "..", "lib", "bin", "reproduce.js");
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "d2g-reproduce-"));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

function write(name: string, percent: string): void {
  fs.writeFileSync(path.join(dir, name), JSON.stringify(toNotebook(parsePercent(percent, name))));
}

test("arguments: filters, options, and clear errors", () => {
  const a = parseArgs(["01", "--update-figures", "--out", "x", "05"], {});
  assert.deepEqual([a.filters, a.updateFigures, a.planOnly, a.out, a.dir, a.dirGiven], [["01", "05"], true, false, path.resolve("x"), fromRoot("notebooks"), false]);
  assert.equal(parseArgs(["--dir", "d"], {}).dirGiven, true);
  assert.equal(parseArgs([], { D2G_NOTEBOOKS_DIR: "/nb" }).dir, "/nb");
  assert.throws(() => parseArgs(["--fast"], {}), /unknown option --fast/);
  assert.throws(() => parseArgs(["--out"], {}), /--out needs a folder/);
  assert.throws(() => parseArgs(["--dir", "--plan"], {}), /--dir needs a folder/);
});

test("notebooks are chosen by name; a filter that matches none lists them", () => {
  assert.deepEqual(chooseNotebooks(fromRoot("notebooks"), ["01", "05"]), ["01_latent_lpips_reconstruction.ipynb", "05_augmentation_ablation.ipynb"]);
  assert.throws(() => chooseNotebooks(fromRoot("notebooks"), ["01", "zzz"]), /no notebook matches "zzz"; the notebooks in .* are:\n  00_environment\n  01_latent_lpips_reconstruction\n/);
});

test("the plan names every notebook with its estimate and a total; a stop names the command that resumes", () => {
  const lines = planLines(["00_environment.ipynb", "01_latent_lpips_reconstruction.ipynb", "zz_new.ipynb"], "cpu");
  assert.match(lines[0], /^  00_environment +~[\d.]+s  tiny convnet: 300 steps, batch 32$/);
  assert.match(lines[1], /^  01_latent_lpips_reconstruction +~\d+m\d\ds  5 losses x 1500 steps at 128 px/);
  assert.match(lines[2], /zz_new +\?  \(no estimate/);
  assert.match(lines[3], /^  total +~\d+m\d\ds  \(\+ 1 without an estimate\)$/);
  assert.deepEqual([formatDuration(42.44), formatDuration(185), formatDuration(3725)], ["42.4s", "3m05s", "1h02m"]);
  const all = ["00_environment.ipynb", "01_latent_lpips_reconstruction.ipynb", "02_cifar10_convergence.ipynb"];
  assert.equal(resumeCommand("cpu", parseArgs([], {}), all.slice(1), all), "npm run reproduce -- 01 02");
  assert.equal(resumeCommand("smoke", parseArgs(["--update-figures"], {}), all.slice(2), all), "D2G_SCALE=smoke npm run reproduce -- --update-figures 02");
});

function run(args: string[], env: NodeJS.ProcessEnv = {}) {
  const r = spawnSync(process.execPath, [script, ...args], { encoding: "utf8", env: { ...process.env, D2G_SCALE: "smoke", ...env } });
  return { status: r.status, out: r.stdout, err: r.stderr };
}

test("a bad scale is one line and exit 2; --plan runs nothing; --update-figures only at cpu scale", () => {
  const bad = run(["--plan"], { D2G_SCALE: "huge" });
  assert.equal(bad.status, 2);
  assert.equal(bad.err, 'reproduce: D2G_SCALE="huge" is not a scale; expected one of smoke, cpu, paper\n');
  assert.equal(bad.out, "");
  const plan = run(["--plan", "00"]);
  assert.equal(plan.status, 0, plan.err);
  assert.match(plan.out, /1 notebook at scale smoke/);
  assert.match(plan.out, /executed notebooks: .*runs\/smoke\/notebooks\nfigures and tables: .*runs\/smoke\/figures\n/);
  const figures = run(["--plan", "--update-figures"]);
  assert.equal(figures.status, 2);
  assert.match(figures.err, /--update-figures writes the committed figures\/.*D2G_SCALE is smoke/);
});

test("Ctrl-C stops a notebook mid-cell: one line, exit 130, the partial notebook kept, the kernel shut down", async () => {
  // at cpu scale with --update-figures, which also copies each finished notebook into executed/ beside the sources
  write("a_quick.ipynb", "// %%\nconsole.log(process.env.D2G_FIGURES);\n");
  write("b_long.ipynb", "// %%\nconsole.log('start');\n// %%\nfor (let i = 0; i < 600; i++) await new Promise((r) => setTimeout(r, 100));\n// %%\nconsole.log('never');\n");
  const out = path.join(dir, "out");
  const child = spawn(process.execPath, [script, "--dir", dir, "--out", out, "--update-figures"], { env: { ...process.env, D2G_SCALE: "cpu" }, detached: true });
  let log = "";
  let err = "";
  child.stdout.on("data", (d) => (log += d));
  child.stderr.on("data", (d) => (err += d));
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  // SIGINT to the whole process group, as a terminal's Ctrl-C, once the long cell is running
  const deadline = Date.now() + 120_000;
  while (!/b_long\.ipynb running\n  cell 1\/3 ok/.test(log) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
  assert.match(log, /cell 1\/3 ok/, log + err);
  await new Promise((r) => setTimeout(r, 1000));
  process.kill(-child.pid!, "SIGINT");
  assert.equal(await exited, 130, log + err);
  assert.doesNotMatch(log + err, /Traceback|Error/);
  const lines = err.trim().split("\n");
  assert.equal(lines.length, 1, err);
  assert.match(lines[0], /^reproduce: stopped during b_long after [\d.]+s; kept finished a_quick \(.*\), the partly executed .*b_long\.stopped\.ipynb, the run state in .*runs; resume with: npm run reproduce -- --update-figures --dir .* --out .* b$/);
  const partial = JSON.parse(fs.readFileSync(path.join(out, "b_long.stopped.ipynb"), "utf8"));
  assert.deepEqual(partial.cells[0].outputs.map((o: { text: string[] }) => o.text.join("")), ["start\n"]);
  assert.deepEqual(partial.cells[2].outputs, []);
  assert.ok(!fs.existsSync(path.join(out, "b_long.ipynb")));
  const copy = JSON.parse(fs.readFileSync(path.join(dir, "executed", "a_quick.ipynb"), "utf8"));
  assert.deepEqual(copy.cells[0].outputs.map((o: { text: string[] }) => o.text.join("")), [`${fromRoot("figures")}\n`]);
  assert.deepEqual(fs.readdirSync(path.join(dir, "executed")), ["a_quick.ipynb"]);
  // the kernel ran in the notebooks' folder: no process is left there
  const left = fs.existsSync("/proc") ? fs.readdirSync("/proc").filter((p) => /^\d+$/.test(p) && cwdOf(p) === dir) : [];
  assert.deepEqual(left, [], "a kernel outlived the run");
});

function cwdOf(pid: string): string | undefined {
  try {
    return fs.readlinkSync(`/proc/${pid}/cwd`);
  } catch {
    return undefined;
  }
}

