import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { readTable, saveTable, tableMarkdown } from "../lib/viz/table";

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "d2g-table-"));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

const rows = [
  { method: "Diffusion2GAN, LPIPS", fid: 3.42, steps: 1, ok: true },
  { method: 'teacher "ODE", 50 steps', fid: 2.1234567, steps: 50, ok: false },
  { method: "x|y", fid: -2.5e-7, steps: 0, ok: true },
];

test("a table CSV round-trips", () => {
  const file = saveTable("results", rows, { dir });
  assert.equal(file, path.join(dir, "results.csv"));
  assert.deepEqual(readTable(file), rows);
});

test("markdown has a header, one line per row, rounded numbers and escaped pipes", () => {
  const md = tableMarkdown(rows, 3).trim().split("\n");
  assert.equal(md.length, 2 + rows.length);
  assert.equal(md[0], "|method|fid|steps|ok|");
  assert.ok(md[3].startsWith("|teacher \"ODE\", 50 steps|2.123|"), md[3]);
  assert.ok(md[4].startsWith("|x\\|y|"), md[4]);
});

test("an empty table is an error", () => {
  assert.throws(() => saveTable("empty", [], { dir }), /no rows/);
});
