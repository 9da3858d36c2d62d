// Progress of long work (training, fetching, sampling). Lower layers only report; where the report goes
// (a terminal bar, a live notebook display) is chosen once by whoever runs the work.

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

function fmtTime(s: number): string {
  if (!isFinite(s)) return "?";
  const m = Math.floor(s / 60);
  return m > 0 ? `${m}m${Math.round(s % 60).toString().padStart(2, "0")}s` : `${s.toFixed(1)}s`;
}

export function formatProgress(s: ProgressState, width = 24): string {
  const frac = s.total > 0 ? Math.min(1, s.step / s.total) : 0;
  const fill = Math.round(frac * width);
  const bar = "#".repeat(fill) + ".".repeat(width - fill);
  const metrics = Object.entries(s.metrics)
    .map(([k, v]) => `${k}=${Math.abs(v) >= 1e3 || (Math.abs(v) < 1e-3 && v !== 0) ? v.toExponential(3) : v.toFixed(4)}`)
    .join(" ");
  return `${s.label} [${bar}] ${s.step}/${s.total} ${s.rate.toFixed(2)} it/s elapsed ${fmtTime(s.elapsedS)} eta ${fmtTime(s.etaS)} ${metrics}`.trimEnd();
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

let activeSink: ProgressSink = terminalSink;

/** Route all progress reports (e.g. to a notebook display); returns the previous sink. */
export function setProgressSink(sink: ProgressSink): ProgressSink {
  const prev = activeSink;
  activeSink = sink;
  return prev;
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
      activeSink(this.state(false));
    }
  }

  finish(metrics?: Record<string, number>): ProgressState {
    if (metrics) Object.assign(this.metrics, metrics);
    const s = this.state(true);
    activeSink(s);
    return s;
  }
}
