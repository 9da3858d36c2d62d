import * as fs from "fs";

// Progress of long work (training, fetching, sampling). Lower layers only report; where the report goes
// (a terminal bar, a live notebook display, nothing) is chosen once by whoever runs the work.

export interface ProgressState {
  label: string;
  step: number;
  total: number;
  elapsedS: number;
  /** Steps per second over the whole run so far. */
  rate: number;
  etaS: number;
  metrics: Record<string, number>;
  done: boolean;
}

export type ProgressSink = (s: ProgressState) => void;

/** "42.4s", "3m05s", "1h02m"; "?" when unknown (an ETA before the first step). */
export function formatDuration(s: number): string {
  if (!isFinite(s)) return "?";
  if (s < 60) return `${s.toFixed(1)}s`;
  const r = Math.round(s);
  if (r >= 3600) return `${Math.floor(r / 3600)}h${String(Math.round((r % 3600) / 60)).padStart(2, "0")}m`;
  return `${Math.floor(r / 60)}m${String(r % 60).padStart(2, "0")}s`;
}

function fmtMetrics(metrics: Record<string, number>): string {
  return Object.entries(metrics)
    .map(([k, v]) => `${k}=${Math.abs(v) >= 1e3 || (Math.abs(v) < 1e-3 && v !== 0) ? v.toExponential(3) : v.toFixed(4)}`)
    .join(" ");
}

export function formatProgress(s: ProgressState, width = 24): string {
  const frac = s.total > 0 ? Math.min(1, s.step / s.total) : 0;
  const fill = Math.round(frac * width);
  const bar = "#".repeat(fill) + ".".repeat(width - fill);
  return `${s.label} [${bar}] ${s.step}/${s.total} ${s.rate.toFixed(2)} it/s elapsed ${formatDuration(s.elapsedS)} eta ${formatDuration(s.etaS)} ${fmtMetrics(s.metrics)}`.trimEnd();
}

/** One plain line, no bar and no control characters: for logs that other programs relay (a runner, TAP). */
export function formatProgressLine(s: ProgressState): string {
  const timing = s.done ? `done in ${formatDuration(s.elapsedS)}` : `elapsed ${formatDuration(s.elapsedS)} eta ${formatDuration(s.etaS)}`;
  return `${s.label}: ${s.step}/${s.total} ${s.rate.toFixed(2)} it/s ${timing} ${fmtMetrics(s.metrics)}`.trimEnd();
}

/** Redraws one line on a terminal; on a pipe (CI logs) prints a line at most every 10% so logs stay short. */
export const terminalSink: ProgressSink = (() => {
  let lastDecile = -1;
  return (s: ProgressState) => {
    const line = formatProgress(s);
    if (process.stderr.isTTY) {
      process.stderr.write(`\r${line}\x1b[K${s.done ? "\n" : ""}`);
      return;
    }
    const decile = s.total > 0 ? Math.floor((10 * s.step) / s.total) : 0;
    if (s.done || decile !== lastDecile || s.step === 1) process.stderr.write(line + "\n");
    lastDecile = s.done ? -1 : decile;
  };
})();

export const silentSink: ProgressSink = () => undefined;

/**
 * Plain lines through `write`, per task at most one every `everyMs` and one when it finishes; a task that finishes
 * within `everyMs` of its start or last line gets only its final line.
 */
export function lineSink(everyMs: number, write: (line: string) => void = (l) => process.stderr.write(l + "\n")): ProgressSink {
  // per task: its elapsed time at its last line (0 = its start)
  const last = new Map<string, number>();
  return (s: ProgressState) => {
    if (s.done) {
      last.delete(s.label);
      write(formatProgressLine(s));
    } else if (s.step < s.total && 1000 * (s.elapsedS - (last.get(s.label) ?? 0)) >= everyMs) {
      last.set(s.label, s.elapsedS);
      write(formatProgressLine(s));
    }
  };
}

/**
 * D2G_PROGRESS_LINES=<seconds>: every report, whatever the display sink, is also written to the process's stderr
 * as a plain line at most that often per task. The notebook runner sets it for its kernels, whose stderr reaches
 * the terminal while the cell's own display goes into the notebook.
 */
export function progressLinesEvery(env: Record<string, string | undefined> = process.env): number | undefined {
  const v = env.D2G_PROGRESS_LINES;
  if (v === undefined || v === "") return undefined;
  const s = Number(v);
  if (!(s > 0)) throw new Error(`D2G_PROGRESS_LINES=${JSON.stringify(v)}: expected seconds between progress lines (a positive number)`);
  return s;
}

/**
 * The display sink a process starts with: nothing under node's test runner (it relays stderr into TAP comments,
 * where a bar is only escaped noise) or when the runner's plain lines are on; a terminal bar otherwise.
 */
export function initialSink(env: Record<string, string | undefined> = process.env): ProgressSink {
  return env.NODE_TEST_CONTEXT || progressLinesEvery(env) !== undefined ? silentSink : terminalSink;
}

let activeSink: ProgressSink = initialSink();
const linesEvery = progressLinesEvery();
/** Straight to file descriptor 2: inside tslab, process.stderr.write is replaced by a stream into the running
 * cell's output. A full pipe (EAGAIN) drops the line rather than the work. */
function writeFd2(line: string): void {
  try {
    fs.writeSync(2, `  ${line}\n`);
  } catch {
    // progress lines are best effort
  }
}
const runnerLines: ProgressSink = linesEvery === undefined ? silentSink : lineSink(linesEvery * 1000, writeFd2);

/** Route all progress reports (e.g. to a notebook display); returns the previous sink. */
export function setProgressSink(sink: ProgressSink): ProgressSink {
  const prev = activeSink;
  activeSink = sink;
  return prev;
}

function report(s: ProgressState): void {
  activeSink(s);
  runnerLines(s);
}

export class Progress {
  private readonly start = Date.now();
  private last = 0;
  step = 0;
  metrics: Record<string, number> = {};
  constructor(readonly label: string, readonly total: number, private readonly minIntervalMs = 1000) {}

  private state(done: boolean): ProgressState {
    const elapsedS = (Date.now() - this.start) / 1000;
    const rate = elapsedS > 0 ? this.step / elapsedS : 0;
    const etaS = rate > 0 ? (this.total - this.step) / rate : Infinity;
    return { label: this.label, step: this.step, total: this.total, elapsedS, rate, etaS, metrics: { ...this.metrics }, done };
  }

  /**
   * Advance by n steps; reports are throttled (default once a second) so a fast loop does not spend its time
   * drawing, and a notebook kernel is not flooded with display messages.
   */
  tick(n = 1, metrics?: Record<string, number>): void {
    this.step += n;
    if (metrics) Object.assign(this.metrics, metrics);
    const now = Date.now();
    if (now - this.last >= this.minIntervalMs || this.step === 1) {
      this.last = now;
      report(this.state(false));
    }
  }

  finish(metrics?: Record<string, number>): ProgressState {
    if (metrics) Object.assign(this.metrics, metrics);
    const s = this.state(true);
    report(s);
    return s;
  }
}
