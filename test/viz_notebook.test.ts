import { test } from "node:test";
import assert from "node:assert/strict";
import { inNotebook, progressHtml, tslab, useNotebookProgress } from "../lib/viz/notebook";

test("outside a tslab kernel there is no notebook and the terminal progress stays", () => {
  assert.equal(tslab(), undefined);
  assert.equal(inNotebook(), false);
  assert.equal(useNotebookProgress(), false);
});

test("the progress bar is HTML with the state and escaped text", () => {
  const html = progressHtml({ label: "train <G>", step: 3, total: 10, elapsedS: 1.5, rate: 2, etaS: 3.5, metrics: { loss: 0.123456 }, done: false });
  assert.match(html, /<progress value="3" max="10"/);
  assert.ok(html.includes("train &lt;G&gt; 3/10"), html);
  assert.ok(html.includes("loss=0.1235") && html.includes("eta 3.5s"), html);
});
