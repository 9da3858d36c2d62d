import * as fs from "fs";
import type { Browser, Page } from "playwright-core";
import { outputPath } from "./files";
import { showPng } from "./notebook";

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
  browser = await chromium.launch({ executablePath: exe, args: CHROMIUM_FLAGS });
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

export interface Series {
  name: string;
  y: ArrayLike<number>;
  /** Defaults to 1..n (training steps). */
  x?: ArrayLike<number>;
}

/** Line chart of one or more series, the shape of every loss and metric curve in the notebooks. */
export function lineFigure(title: string, series: Series[], axes: { x: string; y: string; logX?: boolean; logY?: boolean; markers?: boolean }): Figure {
  return {
    data: series.map((s) => ({
      type: "scatter",
      mode: axes.markers ? "lines+markers" : "lines",
      name: s.name,
      x: s.x ? Array.from(s.x) : Array.from(s.y, (_, i) => i + 1),
      y: Array.from(s.y),
    })),
    layout: {
      title: { text: title },
      xaxis: { title: { text: axes.x }, type: axes.logX ? "log" : "linear" },
      yaxis: { title: { text: axes.y }, type: axes.logY ? "log" : "linear" },
      showlegend: series.length > 1,
      margin: { l: 60, r: 20, t: 50, b: 50 },
    },
  };
}
