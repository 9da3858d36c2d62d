import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import sharp from "sharp";
import { closeFigures, intervalFigure, LINE_STYLES, lineFigure, panelFigure, saveFigure } from "../lib/viz/plot";

// Needs Debian's chromium (npm run setup); without it these tests fail with that instruction, they never skip.

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "d2g-plot-"));
after(async () => {
  await closeFigures();
  fs.rmSync(dir, { recursive: true, force: true });
});

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

test("a missing Chromium is an error that says to run npm run setup", async () => {
  process.env.D2G_CHROMIUM = path.join(dir, "no-such-chromium");
  try {
    await assert.rejects(saveFigure("never", lineFigure("t", [{ name: "a", y: [1, 2] }], { x: "x", y: "y" }), { dir }), /npm run setup/);
  } finally {
    delete process.env.D2G_CHROMIUM;
  }
  assert.equal(fs.existsSync(path.join(dir, "never.png")), false);
});

test("a figure is written as a PNG of the requested size and as an SVG", async () => {
  const fig = lineFigure("loss", [{ name: "train", y: [2.3, 1.9, 1.2, 0.8] }, { name: "eval", x: [2, 4], y: [2.0, 1.1] }], { x: "step", y: "loss", logY: true });
  const saved = await saveFigure("curve", fig, { dir, width: 320, height: 200, scale: 2 });
  assert.equal(saved.png, path.join(dir, "curve.png"));
  const png = fs.readFileSync(saved.png);
  assert.ok(png.subarray(0, 8).equals(PNG_SIGNATURE), "PNG signature");
  const meta = await sharp(png).metadata();
  assert.equal(meta.width, 640);
  assert.equal(meta.height, 400);
  // Not a blank canvas: a rendered plot has many distinct colours.
  const stats = await sharp(png).stats();
  assert.ok(stats.channels[0].stdev > 5, `PNG looks blank (stdev ${stats.channels[0].stdev})`);
  const svg = fs.readFileSync(saved.svg, "utf8");
  assert.match(svg, /^<svg[\s>]/);
  assert.ok(svg.includes("loss") && svg.includes("train"), "SVG carries the title and legend text");
});

test("the shared browser renders further figures, and a closed one is reopened on demand", async () => {
  for (const k of [1, 2]) {
    const saved = await saveFigure(`bar${k}`, { data: [{ type: "bar", x: ["a", "b"], y: [k, 2 * k] }] }, { dir, width: 100, height: 80, scale: 1 });
    assert.equal((await sharp(saved.png).metadata()).width, 100);
    if (k === 1) await closeFigures();
  }
});

test("figure names cannot leave the output folder", async () => {
  await assert.rejects(saveFigure("../escape", { data: [] }, { dir }), /no folders/);
});

test("curves differ in colour and in dash, so they stay apart in greyscale print; log axes read as powers of ten", () => {
  assert.equal(new Set(LINE_STYLES.map((s) => s.color)).size, LINE_STYLES.length);
  assert.equal(new Set(LINE_STYLES.map((s) => s.dash)).size, LINE_STYLES.length);
  const fig = lineFigure("t", LINE_STYLES.map((_, k) => ({ name: `c${k}`, y: [k, k + 1] })), { x: "step", y: "loss", logY: true, subtitle: "cpu scale" });
  const lines = fig.data.map((d) => JSON.stringify(d.line));
  assert.equal(new Set(lines).size, LINE_STYLES.length);
  const layout = fig.layout as { yaxis: Record<string, unknown>; title: { text: string } };
  assert.equal(layout.yaxis.exponentformat, "power");
  assert.match(layout.title.text, /^t<br><sup>cpu scale<\/sup>$/);
});

test("small multiples: each panel its own axes, a legend per panel with several curves, a shared y range on request", () => {
  const panels = [
    { title: "a", series: [{ name: "x", y: [1, 2] }, { name: "y", y: [3, 4] }] },
    { title: "b", series: [{ name: "z", y: [10, 20] }] },
  ];
  const fig = panelFigure("t", panels, { x: "step", y: "v", columns: 2, sharedY: true });
  const layout = fig.layout as Record<string, { range?: number[]; domain?: number[] }>;
  assert.deepEqual(fig.data.map((d) => [d.xaxis, d.yaxis, d.legend ?? null]), [["x", "y", "legend"], ["x", "y", "legend"], ["x2", "y2", null]]);
  assert.ok(layout.legend && !layout.legend2, "only the panel with two curves has a legend");
  assert.deepEqual(layout.yaxis.range, layout.yaxis2.range);
  assert.ok(layout.xaxis.domain![1] < layout.xaxis2.domain![0], "panels do not overlap");
});

test("a band is drawn under its curve in the curve's colour, off the legend, and counts for a shared y range", () => {
  const panels = [
    { title: "a", series: [{ name: "m", y: [1, 2], band: { lo: [0.5, 1.5], hi: [1.5, 9] } }, { name: "n", y: [2, 3] }] },
    { title: "b", series: [{ name: "z", y: [2, 2] }] },
  ];
  const fig = panelFigure("t", panels, { x: "step", y: "v", columns: 2, sharedY: true });
  const [lo, hi, line] = fig.data;
  assert.deepEqual([lo.y, hi.y, line.y], [[0.5, 1.5], [1.5, 9], [1, 2]]);
  assert.equal(hi.fill, "tonexty");
  assert.equal(hi.fillcolor, "rgba(31,119,180,0.15)", "the band is the first style's colour, translucent");
  assert.deepEqual([lo.showlegend, hi.showlegend, line.showlegend], [false, false, true]);
  const range = (fig.layout as Record<string, { range: number[] }>).yaxis.range;
  assert.ok(range[1] >= 9, `the band's top is inside the shared range ${range}`);
});

test("an interval plot: a dot and an asymmetric bar per label, top to bottom in the given order, a zero line per panel", async () => {
  const items = [{ label: "bg", mean: 2, lo: 1, hi: 4 }, { label: "c", mean: -0.5, lo: -1, hi: 0.5 }];
  const fig = intervalFigure("differences", [{ title: "vs none", items }, { title: "vs bg", items: items.slice(1) }], { x: "dB" });
  const err = fig.data[0].error_x as { array: number[]; arrayminus: number[] };
  assert.deepEqual([fig.data[0].x, fig.data[0].y, err.array, err.arrayminus], [[2, -0.5], ["bg", "c"], [2, 1], [1, 0.5]]);
  const layout = fig.layout as Record<string, unknown>;
  assert.deepEqual((layout.yaxis as { categoryarray: string[] }).categoryarray, ["c", "bg"], "plotly draws categories bottom-up");
  assert.equal((layout.shapes as unknown[]).length, 2);
  const saved = await saveFigure("intervals", fig, { dir, width: 400, height: 200, scale: 1 });
  assert.ok((await sharp(saved.png).stats()).channels[0].stdev > 5, "renders");
});
