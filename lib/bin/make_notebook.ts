// node node_modules/d2g/lib/bin/make_notebook.js SOURCE.ts OUT.ipynb
// Writes a tslab notebook from a script in the "percent" format (as jupytext reads it): a line `// %%` starts a
// code cell, `// %% [markdown]` a markdown cell whose lines drop their leading `// `. Outputs start empty; cell ids
// derive from the position and source so regenerating an unchanged notebook changes nothing.

import { createHash } from "crypto";
import * as fs from "fs";
import { runCli, UsageError } from "./args";

interface Cell {
  kind: "code" | "markdown";
  lines: string[];
}

export function parsePercent(text: string, file: string): Cell[] {
  const cells: Cell[] = [];
  for (const line of text.split(/\r?\n/)) {
    const marker = /^\/\/ %%(.*)$/.exec(line);
    if (marker) {
      cells.push({ kind: marker[1].trim() === "[markdown]" ? "markdown" : "code", lines: [] });
    } else if (cells.length === 0) {
      if (line.trim() !== "") throw new Error(`${file}: text before the first "// %%" cell marker: ${JSON.stringify(line)}`);
    } else {
      const cell = cells[cells.length - 1];
      cell.lines.push(cell.kind === "markdown" ? line.replace(/^\/\/ ?/, "") : line);
    }
  }
  return cells;
}

/** Jupyter stores a cell's source as lines that keep their newline, except the last. */
function sourceLines(lines: string[]): string[] {
  while (lines.length > 0 && lines[lines.length - 1].trim() === "") lines = lines.slice(0, -1);
  return lines.map((l, i) => (i < lines.length - 1 ? l + "\n" : l));
}

/**
 * The notebook-level metadata of every source notebook: the tslab kernel, and TypeScript 5.0.4, the compiler tslab
 * runs cells with (its kernel_info says 3.7.2, which Jupyter would write back on every save).
 */
export const NOTEBOOK_METADATA = {
  kernelspec: { display_name: "TypeScript", language: "typescript", name: "tslab" },
  language_info: { codemirror_mode: { mode: "typescript", name: "javascript", typescript: true }, file_extension: ".ts", mimetype: "text/typescript", name: "typescript", version: "5.0.4" },
};

export function toNotebook(cells: Cell[]): object {
  return {
    cells: cells.map((c, i) => {
      const source = sourceLines(c.lines);
      const id = createHash("sha1").update(`${i}\n${source.join("")}`).digest("hex").slice(0, 8);
      return c.kind === "code"
        ? { cell_type: "code", execution_count: null, id, metadata: {}, outputs: [], source }
        : { cell_type: "markdown", id, metadata: {}, source };
    }),
    metadata: NOTEBOOK_METADATA,
    nbformat: 4,
    nbformat_minor: 5,
  };
}

if (require.main === module) {
  const spec = {
    command: "node node_modules/d2g/lib/bin/make_notebook.js",
    summary: "Write a tslab notebook OUT.ipynb from a script SOURCE.ts in the percent format (// %% cells).",
    positionals: { name: "SOURCE.ts OUT.ipynb", help: "the script, then the notebook to write", min: 2, max: 2 },
    flags: {},
  } as const;
  runCli(spec, ({ positionals: [src, out] }) => {
    if (!fs.existsSync(src)) throw new UsageError(`${src}: no such file`);
    fs.writeFileSync(out, JSON.stringify(toNotebook(parsePercent(fs.readFileSync(src, "utf8"), src)), null, 1) + "\n");
    console.log(`wrote ${out}`);
  });
}
