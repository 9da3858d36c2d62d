import * as fs from "fs";
import * as aq from "arquero";
import { outputPath } from "./files";
import { showMarkdown } from "./notebook";

// Result tables: rows of plain values, kept as CSV next to the figures (for diffs and other tools) and shown as
// markdown in the notebook.

export type Cell = string | number | boolean | null;
export type Row = Record<string, Cell>;

export function tableMarkdown(rows: Row[], maxdigits = 4): string {
  if (rows.length === 0) throw new Error("table: no rows");
  return aq.from(rows).toMarkdown({ maxdigits });
}

/** Write `<dir>/<name>.csv` (dir defaults to figures/); returns the path. */
export function saveTable(name: string, rows: Row[], o: { dir?: string } = {}): string {
  if (rows.length === 0) throw new Error(`table ${name}: no rows`);
  const file = outputPath(name, "csv", o.dir);
  fs.writeFileSync(file, aq.from(rows).toCSV());
  return file;
}

export function readTable(file: string): Row[] {
  return aq.fromCSV(fs.readFileSync(file, "utf8")).objects() as Row[];
}

/** Save the CSV and show the table as markdown (printed outside a notebook). */
export function showTable(name: string, rows: Row[], o: { dir?: string; maxdigits?: number } = {}): void {
  saveTable(name, rows, o);
  showMarkdown(tableMarkdown(rows, o.maxdigits));
}
