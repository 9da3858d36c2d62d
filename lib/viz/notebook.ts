import type * as Tslab from "tslab";
import { ProgressState, setProgressSink } from "../core/progress";

// Rich output inside a tslab kernel, plain behaviour everywhere else. The library is compiled JS that plain node
// scripts load too, so tslab is never imported at the top level: the kernel announces itself through the global
// `__tslab__` it installs for its cells, and its own `require` hands back the tslab instance whose display is wired
// to the running cell (a separately resolved copy of the package would answer "Not ready").

type Kernel = { require(id: string): unknown };

/** The kernel's tslab module, or undefined outside a tslab kernel. */
export function tslab(): typeof Tslab | undefined {
  const kernel = (globalThis as { __tslab__?: Kernel }).__tslab__;
  return kernel ? (kernel.require("tslab") as typeof Tslab) : undefined;
}

export function inNotebook(): boolean {
  return tslab() !== undefined;
}

/** Show a PNG inline; false outside a notebook (the caller has already written the file). */
export function showPng(png: Uint8Array): boolean {
  const t = tslab();
  t?.display.png(png);
  return t !== undefined;
}

/** Show markdown inline, or print it to stdout outside a notebook. */
export function showMarkdown(md: string): void {
  const t = tslab();
  if (t) t.display.markdown(md);
  else process.stdout.write(md.endsWith("\n") ? md : md + "\n");
}

function escapeHtml(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

function seconds(s: number): string {
  if (!isFinite(s)) return "?";
  return s >= 60 ? `${Math.floor(s / 60)}m${Math.round(s % 60).toString().padStart(2, "0")}s` : `${s.toFixed(1)}s`;
}

export function progressHtml(s: ProgressState): string {
  const metrics = Object.entries(s.metrics).map(([k, v]) => `${k}=${Number(v.toPrecision(4))}`).join(" ");
  const timing = s.done ? `done in ${seconds(s.elapsedS)}` : `elapsed ${seconds(s.elapsedS)}, eta ${seconds(s.etaS)}`;
  const text = `${s.label} ${s.step}/${s.total} · ${s.rate.toFixed(2)} it/s · ${timing} ${metrics}`;
  return `<div style="font-family:monospace"><progress value="${s.step}" max="${s.total}" style="width:20em"></progress> ${escapeHtml(text.trimEnd())}</div>`;
}

/**
 * Inside tslab, route lib/core/progress reports to a live HTML bar per running task (one display each, updated in
 * place); outside, leave the terminal sink. Returns whether the notebook sink is active.
 */
export function useNotebookProgress(): boolean {
  const t = tslab();
  if (!t) return false;
  const live = new Map<string, Tslab.Display>();
  setProgressSink((s) => {
    let d = live.get(s.label);
    if (!d) live.set(s.label, (d = t.newDisplay()));
    d.html(progressHtml(s));
    // A later task with the same label gets a fresh bar instead of rewriting this finished one.
    if (s.done) live.delete(s.label);
  });
  return true;
}
