import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "child_process";
import { createHash } from "crypto";
import * as fs from "fs";
import * as path from "path";
import { fromRoot } from "../lib/core/paths";
import { parseArgs, usage, UsageError } from "../lib/bin/args";

// The shared command-line parser (lib/bin/args.ts) and every entry point built on it: bad arguments print the
// problem and the usage and exit 2 before any work starts; --help exits 0; nothing overwrites tracked files.

const SPEC = {
  command: "tool",
  summary: "A tool.",
  positionals: { name: "NAME", help: "names", min: 0, max: 2, values: ["a", "b"] },
  flags: {
    steps: { type: "int", min: 1, max: 100, default: 10, help: "steps" },
    lr: { type: "number", above: 0, help: "learning rate" },
    out: { type: "string", arg: "DIR", help: "output folder" },
    fast: { type: "bool", help: "go fast" },
    mode: { type: "enum", values: ["x", "y"], default: "x", help: "mode" },
  },
} as const;

const parse = (argv: string[]) => parseArgs(SPEC, argv);
const refuses = (argv: string[], message: RegExp) => assert.throws(() => parse(argv), (e: Error) => e instanceof UsageError && message.test(e.message), argv.join(" "));

test("parseArgs: typed values, defaults, --flag=value, positionals", () => {
  assert.deepEqual(parse([]), { flags: { steps: 10, lr: undefined, out: undefined, fast: false, mode: "x" }, positionals: [] });
  assert.deepEqual(parse(["a", "--steps", "3", "--lr=1e-3", "--out", "o", "--fast", "--mode", "y", "b"]), {
    flags: { steps: 3, lr: 0.001, out: "o", fast: true, mode: "y" },
    positionals: ["a", "b"],
  });
  assert.deepEqual(parse(["--", "a"]).valueOf(), { flags: { steps: 10, lr: undefined, out: undefined, fast: false, mode: "x" }, positionals: ["a"] });
  assert.equal(parse(["--steps", "abc", "--help"]), "help");
  assert.equal(parse(["-h"]), "help");
});

test("parseArgs: unknown flags, missing values, wrong types and ranges, stray arguments are usage errors", () => {
  refuses(["--stpes", "3"], /unknown option --stpes/);
  refuses(["-x"], /unknown option -x/);
  refuses(["--steps"], /--steps needs a value \(an integer in 1\.\.100\)/);
  refuses(["--steps", "--fast"], /--steps needs a value/);
  refuses(["--steps", "abc"], /--steps "abc": expected an integer in 1\.\.100/);
  refuses(["--steps", "2.5"], /expected an integer/);
  refuses(["--steps", "1e2"], /expected an integer/);
  refuses(["--steps", "0"], /expected an integer in 1\.\.100/);
  refuses(["--steps", "101"], /expected an integer in 1\.\.100/);
  refuses(["--steps", "-5"], /expected an integer in 1\.\.100/);
  refuses(["--lr", "0"], /--lr "0": expected a number > 0/);
  refuses(["--lr", "NaN"], /expected a number > 0/);
  refuses(["--lr", ""], /expected a number > 0/);
  refuses(["--mode", "z"], /--mode "z": expected one of x, y/);
  refuses(["--out", ""], /--out "": expected a string/);
  refuses(["--fast=yes"], /--fast takes no value/);
  refuses(["--steps", "3", "--steps", "4"], /--steps is given twice/);
  refuses(["c"], /NAME "c": expected one of a, b/);
  refuses(["a", "b", "a"], /expected 0 to 2 arguments \(NAME\), got "a" "b" "a"/);
  refuses(["--constructor"], /unknown option --constructor/);
});

test("usage lists every flag with its type, range and default", () => {
  const text = usage(SPEC);
  assert.match(text, /^usage: tool \[NAME\] \[--steps N\] \[--lr N\] \[--out DIR\] \[--fast\] \[--mode x\|y\]/);
  assert.match(text, /--steps N +steps \(an integer in 1\.\.100; default 10\)/);
  assert.match(text, /--mode x\|y +mode \(one of x, y; default x\)/);
  assert.match(text, /--help +print this help and exit/);
});

const BIN = fromRoot("node_modules", "d2g", "lib", "bin");
const CLIS = ["bench", "bench_perceptual", "codec_report", "fetch", "fid_bench", "fid_c10_report", "fuzz", "make_notebook", "make_pairs", "train_standins", "train_teacher"];
const run = (args: string[]) => spawnSync(process.execPath, args, { encoding: "utf8", timeout: 60_000 });

test("every entry point in lib/bin refuses an unknown flag with its usage (exit 2) and answers --help (exit 0)", () => {
  for (const cli of CLIS) {
    const file = path.join(BIN, `${cli}.js`);
    const bad = run([file, "--no-such-flag"]);
    assert.equal(bad.status, 2, `${cli}: ${bad.stderr}`);
    assert.match(bad.stderr, /unknown option --no-such-flag\n\nusage: /, cli);
    assert.equal(bad.stdout, "", cli);
    const help = run([file, "--help"]);
    assert.equal(help.status, 0, `${cli}: ${help.stderr}`);
    assert.match(help.stdout, /^usage: /, cli);
  }
  const setup = spawnSync("bash", [path.join(fromRoot("lib", "bin"), "setup.sh"), "--no-such-flag"], { encoding: "utf8" });
  assert.equal(setup.status, 2, setup.stderr);
  assert.match(setup.stderr, /unexpected argument: --no-such-flag\n\nusage: npm run setup/);
});

test("train:teacher --steps abc exits 2 and leaves the committed teacher and its log alone", () => {
  const files = ["edm_cifar16_teacher.safetensors", "edm_cifar16_teacher.log.csv"].map((f) => fromRoot("data", "weights", f));
  const digest = () => files.map((f) => (fs.existsSync(f) ? createHash("sha256").update(fs.readFileSync(f)).digest("hex") + fs.statSync(f).mtimeMs : "missing"));
  const before = digest();
  for (const args of [["--steps", "abc"], ["--steps", "0"], ["--steps", "1.5"], ["--step", "10"]]) {
    const r = run([path.join(BIN, "train_teacher.js"), ...args]);
    assert.equal(r.status, 2, `${args.join(" ")}: ${r.stderr}`);
    assert.match(r.stderr, /usage: npm run train:teacher -- \[--teacher short\|long\] \[--steps N\] \[--out DIR\] \[--figures DIR\]/);
  }
  assert.deepEqual(digest(), before);
});
