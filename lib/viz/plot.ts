import * as fs from "fs";
import type { Browser, Page } from "playwright-core";
import { outputPath } from "./files";
import { showPng } from "./notebook";
import { wrapWords } from "./text";

// Plotly figures rendered to PNG and SVG by headless Chromium (the Debian package; playwright-core only drives it,
// it never downloads a browser). One browser serves every figure of a process and is closed when the process ends.
// Inline display is the rendered PNG: it needs no CDN and no trusted notebook, and shows the same pixels as the file.

/** A Plotly figure as plotly.js takes it. */
export interface Figure {
  data: Array<Record<string, unknown>>;
  layout?: Record<string, unknown>;
}

export interface RenderOptions {
  /** CSS pixels; the PNG has width * scale pixels. */
  width?: number;
  height?: number;
  /** PNG pixel density (SVG is resolution free). */
  scale?: number;
}

const CHROMIUM_FLAGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
];

export function chromiumPath(): string {
  return process.env.D2G_CHROMIUM ?? "/usr/bin/chromium";
}

let page: Promise<Page> | null = null;
let browser: Browser | null = null;

async function launch(): Promise<Page> {
  const exe = chromiumPath();
  if (!fs.existsSync(exe)) {
    throw new Error(`figures are rendered by headless Chromium, which is not at ${exe}: run \`npm run setup\` (installs the Debian package chromium) or set D2G_CHROMIUM`);
  }
  const { chromium } = await import("playwright-core");
  // handleSIGINT off: playwright's own SIGINT handler exits the process, and in the tslab kernel SIGINT is the
  // notebook's stop button (lib/core/interrupt.ts), which must stop the running cell, not kill the kernel.
  browser = await chromium.launch({ executablePath: exe, args: CHROMIUM_FLAGS, handleSIGINT: false });
  process.once("beforeExit", () => void closeFigures());
  const p = await browser.newPage();
  await p.addScriptTag({ path: require.resolve("plotly.js-dist") });
  return p;
}

function renderer(): Promise<Page> {
  if (!page) {
    page = launch();
    // A failed launch must not be cached: the next call retries (after `npm run setup`, say).
    page.catch(() => (page = null));
  }
  return page;
}

/** Close the shared browser (also done automatically when the process is about to exit). */
export async function closeFigures(): Promise<void> {
  const b = browser;
  page = null;
  browser = null;
  if (b) await b.close();
}

type Format = "png" | "svg";

async function toImage(fig: Figure, format: Format, o: RenderOptions): Promise<string> {
  const p = await renderer();
  const opts = { format, width: o.width ?? 640, height: o.height ?? 400, scale: format === "png" ? o.scale ?? 2 : 1 };
  // Plotly.toImage accepts a figure object directly and returns a data URL.
  return p.evaluate(
    ([f, io]) => (globalThis as unknown as { Plotly: { toImage(f: unknown, o: unknown): Promise<string> } }).Plotly.toImage(f, io),
    [fig, opts] as const,
  );
}

export async function renderPng(fig: Figure, o: RenderOptions = {}): Promise<Buffer> {
  const url = await toImage(fig, "png", o);
  return Buffer.from(url.slice(url.indexOf(",") + 1), "base64");
}

export async function renderSvg(fig: Figure, o: RenderOptions = {}): Promise<string> {
  const url = await toImage(fig, "svg", o);
  // Plotly returns the SVG percent-encoded: data:image/svg+xml,%3Csvg...
  return decodeURIComponent(url.slice(url.indexOf(",") + 1));
}

export interface SavedFigure {
  png: string;
  svg: string;
}

/** Write `<dir>/<name>.png` and `.svg` (dir defaults to figures/). */
export async function saveFigure(name: string, fig: Figure, o: RenderOptions & { dir?: string } = {}): Promise<SavedFigure & { pngBytes: Buffer }> {
  const png = outputPath(name, "png", o.dir);
  const svg = outputPath(name, "svg", o.dir);
  const pngBytes = await renderPng(fig, o);
  fs.writeFileSync(png, pngBytes);
  fs.writeFileSync(svg, await renderSvg(fig, o));
  return { png, svg, pngBytes };
}

/** Save the figure and show it inline in a notebook (elsewhere, print where it went). */
export async function showFigure(name: string, fig: Figure, o: RenderOptions & { dir?: string } = {}): Promise<void> {
  const { png, svg, pngBytes } = await saveFigure(name, fig, o);
  if (!showPng(pngBytes)) console.log(`figure: ${png} ${svg}`);
}

/** How one curve is drawn; unset fields come from LINE_STYLES by the curve's position. */
export interface LineStyle {
  color?: string;
  dash?: string;
  width?: number;
}

export interface Series {
  name: string;
  y: ArrayLike<number>;
  /** Defaults to 1..n (training steps). */
  x?: ArrayLike<number>;
  style?: LineStyle;
  /** A shaded band around the curve (a spread or an interval), drawn in the curve's colour under the line. */
  band?: { lo: ArrayLike<number>; hi: ArrayLike<number> };
}

/**
 * Ten line styles whose colours and dash patterns both differ, so that curves stay apart on screen, for readers
 * who do not tell the colours apart, and in greyscale print.
 */
export const LINE_STYLES: ReadonlyArray<Required<Pick<LineStyle, "color" | "dash">>> = [
  { color: "#1f77b4", dash: "solid" },
  { color: "#d62728", dash: "dash" },
  { color: "#2ca02c", dash: "dot" },
  { color: "#ff7f0e", dash: "dashdot" },
  { color: "#9467bd", dash: "longdash" },
  { color: "#8c564b", dash: "longdashdot" },
  { color: "#17becf", dash: "2px,5px" },
  { color: "#e377c2", dash: "12px,3px,2px,3px,2px,3px" },
  { color: "#7f7f7f", dash: "20px,5px" },
  { color: "#bcbd22", dash: "6px,2px" },
];

export interface AxesOptions {
  x: string;
  y: string;
  logX?: boolean;
  logY?: boolean;
  markers?: boolean;
  /** Shown under the title in smaller type: scale, networks, data. */
  subtitle?: string;
}

/** The title, and the subtitle under it in smaller type, broken into lines that fit a default-width figure. */
function titleText(title: string, subtitle?: string): string {
  if (!subtitle) return title;
  return `${title}<br>${wrapWords(subtitle, SUBTITLE_CHARS).map((l) => `<sup>${l}</sup>`).join("<br>")}`;
}

/** Characters of a subtitle line: what fits the default 640 px width at plotly's <sup> size. */
const SUBTITLE_CHARS = 100;

/** Top margin that leaves room for the title and its subtitle lines. */
function topMargin(title: string, subtitle?: string): number {
  return 50 + 22 * (titleText(title, subtitle).split("<br>").length - 1);
}

/** "#rrggbb" at the given opacity, for bands. */
function translucent(hex: string, alpha: number): string {
  const v = parseInt(hex.slice(1), 16);
  return `rgba(${(v >> 16) & 255},${(v >> 8) & 255},${v & 255},${alpha})`;
}

/** The plotly traces of one series: its band (lower edge, then upper edge filled down to it) and its line. */
function traces(s: Series, k: number, markers?: boolean): Array<Record<string, unknown>> {
  const base = LINE_STYLES[k % LINE_STYLES.length];
  const color = s.style?.color ?? base.color;
  const x = s.x ? Array.from(s.x) : Array.from(s.y, (_, i) => i + 1);
  const band = s.band
    ? [
        { type: "scatter", mode: "lines", x, y: Array.from(s.band.lo), line: { width: 0, color }, hoverinfo: "skip", showlegend: false, legendgroup: s.name },
        { type: "scatter", mode: "lines", x, y: Array.from(s.band.hi), line: { width: 0, color }, fill: "tonexty", fillcolor: translucent(color, 0.15), hoverinfo: "skip", showlegend: false, legendgroup: s.name },
      ]
    : [];
  return [
    ...band,
    {
      type: "scatter",
      mode: markers ? "lines+markers" : "lines",
      name: s.name,
      legendgroup: s.name,
      x,
      y: Array.from(s.y),
      line: { color, dash: s.style?.dash ?? base.dash, width: s.style?.width ?? 2 },
      marker: { color },
    },
  ];
}

/**
 * A plotly axis, with a range in data units also on a log axis; log axes label their ticks as powers of ten
 * (plotly's default SI prefixes read "100μ, 10n").
 */
function axis(title: string, log?: boolean, range?: [number, number]): Record<string, unknown> {
  const a: Record<string, unknown> = { title: { text: title }, type: log ? "log" : "linear" };
  if (log) a.exponentformat = "power";
  if (range) a.range = log ? range.map(Math.log10) : range;
  return a;
}

/** Line chart of one or more series, the shape of every loss and metric curve in the notebooks. */
export function lineFigure(title: string, series: Series[], axes: AxesOptions): Figure {
  return {
    data: series.flatMap((s, k) => traces(s, k, axes.markers)),
    layout: {
      title: { text: titleText(title, axes.subtitle) },
      xaxis: axis(axes.x, axes.logX),
      yaxis: axis(axes.y, axes.logY),
      showlegend: series.length > 1,
      margin: { l: 70, r: 20, t: topMargin(title, axes.subtitle), b: 50 },
    },
  };
}

export interface Panel {
  title: string;
  series: Series[];
}

/**
 * Small multiples: one line chart per panel on a grid, each with its own axes and, when it holds more than one
 * curve, its own legend inside its lower right corner. For curves in different units, or too many for one chart.
 */
export function panelFigure(title: string, panels: Panel[], axes: AxesOptions & { columns: number; sharedY?: boolean }): Figure {
  const cols = Math.min(axes.columns, panels.length);
  const rows = Math.ceil(panels.length / cols);
  const gapX = 0.07;
  const gapY = 0.16;
  const data: Array<Record<string, unknown>> = [];
  const layout: Record<string, unknown> = {
    title: { text: titleText(title, axes.subtitle) },
    margin: { l: 70, r: 20, t: topMargin(title, axes.subtitle) + 25, b: 50 },
    annotations: [],
  };
  const annotations = layout.annotations as Array<Record<string, unknown>>;
  // one y range for all panels when their curves are to be compared across panels (same quantity, same units)
  let yRange: [number, number] | undefined;
  if (axes.sharedY) {
    const ys = panels.flatMap((p) => p.series.flatMap((s) => [s.y, s.band?.lo ?? [], s.band?.hi ?? []].flatMap((v) => Array.from(v)))).filter(Number.isFinite);
    const [lo, hi] = axes.logY ? [Math.min(...ys) / 1.2, Math.max(...ys) * 1.2] : [Math.min(...ys), Math.max(...ys)];
    const pad = axes.logY ? 0 : 0.05 * (hi - lo);
    yRange = [lo - pad, hi + pad];
  }
  panels.forEach((p, k) => {
    const [col, row] = [k % cols, Math.floor(k / cols)];
    const id = k === 0 ? "" : String(k + 1);
    const x0 = col / cols + (col > 0 ? gapX / 2 : 0);
    const x1 = (col + 1) / cols - (col < cols - 1 ? gapX / 2 : 0);
    const y1 = 1 - row / rows - (row > 0 ? gapY / 2 : 0);
    const y0 = 1 - (row + 1) / rows + (row < rows - 1 ? gapY / 2 : 0);
    layout[`xaxis${id}`] = { ...axis(row === rows - 1 || k + cols >= panels.length ? axes.x : "", axes.logX), domain: [x0, x1], anchor: `y${id}` };
    layout[`yaxis${id}`] = { ...axis(col === 0 ? axes.y : "", axes.logY, yRange), domain: [y0, y1], anchor: `x${id}` };
    const legend = p.series.length > 1 ? `legend${id}` : undefined;
    if (legend) layout[legend] = { x: x1, y: y0 + 0.01, xanchor: "right", yanchor: "bottom", bgcolor: "rgba(255,255,255,0.8)", font: { size: 10 } };
    p.series.forEach((s, j) => {
      for (const t of traces(s, j, axes.markers)) data.push({ ...t, xaxis: `x${id}`, yaxis: `y${id}`, legend, showlegend: t.showlegend ?? legend !== undefined });
    });
    annotations.push({ text: `<b>${p.title}</b>`, xref: "paper", yref: "paper", x: (x0 + x1) / 2, y: y1, xanchor: "center", yanchor: "bottom", showarrow: false });
  });
  return { data, layout };
}

/** An estimate with its interval, one line of an interval plot. */
export interface Interval {
  label: string;
  mean: number;
  lo: number;
  hi: number;
}

/**
 * Interval ("forest") plot: one panel per comparison, a row per label (top to bottom in the order given), the
 * estimate as a dot with its interval as a horizontal bar, and a vertical line at zero (no difference).
 */
export function intervalFigure(title: string, panels: Array<{ title: string; items: Interval[] }>, axes: { x: string; subtitle?: string }): Figure {
  const cols = panels.length;
  const gapX = 0.12;
  const data: Array<Record<string, unknown>> = [];
  const layout: Record<string, unknown> = {
    title: { text: titleText(title, axes.subtitle) },
    margin: { l: 90, r: 20, t: topMargin(title, axes.subtitle) + 25, b: 50 },
    showlegend: false,
    annotations: [],
    shapes: [],
  };
  panels.forEach((p, k) => {
    const id = k === 0 ? "" : String(k + 1);
    const x0 = k / cols + (k > 0 ? gapX / 2 : 0);
    const x1 = (k + 1) / cols - (k < cols - 1 ? gapX / 2 : 0);
    const labels = p.items.map((i) => i.label);
    layout[`xaxis${id}`] = { ...axis(axes.x), domain: [x0, x1], anchor: `y${id}`, zeroline: false };
    layout[`yaxis${id}`] = { type: "category", categoryorder: "array", categoryarray: [...labels].reverse(), domain: [0, 1], anchor: `x${id}`, automargin: true };
    const { color } = LINE_STYLES[k % LINE_STYLES.length];
    data.push({
      type: "scatter",
      mode: "markers",
      x: p.items.map((i) => i.mean),
      y: labels,
      xaxis: `x${id}`,
      yaxis: `y${id}`,
      marker: { color, size: 9 },
      error_x: { type: "data", symmetric: false, array: p.items.map((i) => i.hi - i.mean), arrayminus: p.items.map((i) => i.mean - i.lo), color, thickness: 2, width: 5 },
    });
    (layout.shapes as unknown[]).push({ type: "line", xref: `x${id}`, yref: `y${id} domain`, x0: 0, x1: 0, y0: 0, y1: 1, line: { color: "#555", dash: "dot", width: 1 } });
    (layout.annotations as unknown[]).push({ text: `<b>${p.title}</b>`, xref: "paper", yref: "paper", x: (x0 + x1) / 2, y: 1, xanchor: "center", yanchor: "bottom", showarrow: false });
  });
  return { data, layout };
}
