import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "child_process";
import * as path from "path";
import { formatProgressLine, initialSink, lineSink, progressLinesEvery, ProgressState, silentSink, terminalSink } from "../lib/core/progress";

const state = (step: number, total: number, elapsedS: number, done = false): ProgressState => ({
  label: "train", step, total, elapsedS, rate: elapsedS > 0 ? step / elapsedS : 0, etaS: 10, metrics: { loss: 0.5 }, done,
});

test("a plain progress line has no bar and no control characters", () => {
  const line = formatProgressLine(state(30, 100, 12));
  assert.equal(line, "train: 30/100 2.50 it/s elapsed 12.0s eta 10.0s loss=0.5000");
  assert.equal(formatProgressLine(state(100, 100, 75, true)), "train: 100/100 1.33 it/s done in 1m15s loss=0.5000");
  assert.doesNotMatch(line, /[\r\x1b#[]/);
});

test("the line sink writes a task at most every interval, skips short tasks' interim reports, and always its end", () => {
  const lines: string[] = [];
  const sink = lineSink(5000, (l) => lines.push(l));
  // reports as a Progress sends them: elapsed times of one task that started 30 s ago, one that just started
  sink(state(1, 100, 0.5));
  sink(state(20, 100, 6));
  sink(state(21, 100, 6.5));
  assert.equal(lines.length, 1, lines.join("\n"));
  sink({ ...state(3, 3, 0.3, true), label: "short" });
  assert.deepEqual(lines.slice(1), ["short: 3/3 10.00 it/s done in 0.3s loss=0.5000"]);
  sink(state(100, 100, 30));
  sink(state(100, 100, 30, true));
  assert.equal(lines.length, 3);
  assert.match(lines[2], /^train: 100\/100 .* done in 30\.0s/);
});

test("D2G_PROGRESS_LINES is seconds; the display sink is silent under the test runner and with runner lines", () => {
  assert.equal(progressLinesEvery({}), undefined);
  assert.equal(progressLinesEvery({ D2G_PROGRESS_LINES: "5" }), 5);
  assert.throws(() => progressLinesEvery({ D2G_PROGRESS_LINES: "often" }), /D2G_PROGRESS_LINES="often": expected seconds/);
  assert.equal(initialSink({ NODE_TEST_CONTEXT: "child-v8" }), silentSink);
  assert.equal(initialSink({ D2G_PROGRESS_LINES: "5" }), silentSink);
  assert.equal(initialSink({}), terminalSink);
});

test("with D2G_PROGRESS_LINES a process writes plain lines to stderr, and no bar", () => {
  const script = `const { Progress } = require(${JSON.stringify(path.join(__dirname, "..", "lib", "core", "progress.js"))});
    const p = new Progress("loop", 3, 0); for (let i = 0; i < 3; i++) p.tick(1, { loss: i }); p.finish();`;
  const env: NodeJS.ProcessEnv = { ...process.env, D2G_PROGRESS_LINES: "5" };
  delete env.NODE_TEST_CONTEXT;
  const r = spawnSync(process.execPath, ["-e", script], { encoding: "utf8", env });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr, "  loop: 3/3 " + r.stderr.split("3/3 ")[1]);
  assert.match(r.stderr, /^  loop: 3\/3 [\d.]+ it\/s done in [\d.]+s loss=2\.0000\n$/);
});
