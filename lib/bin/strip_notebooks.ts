// npm run strip [-- --check | --filter]
// The source notebooks (notebooks/*.ipynb) are committed without outputs; executed copies live in runs/ and
// notebooks/executed/. Jupyter's autosave writes outputs into the sources, so:
//   (no option)  strip outputs, execution counts and execution timings from notebooks/*.ipynb in place, and put
//                back the kernel metadata a Jupyter session rewrites (make_notebook.ts NOTEBOOK_METADATA)
//   --check      list the notebooks that hold any, exit 1 if one does
//   --filter     stdin to stdout: the git clean filter `npm run setup` registers (.gitattributes), so a commit
//                never carries outputs whatever the working copy holds
// The JSON is written as Jupyter writes it (keys sorted, one-space indent), so a stripped notebook saved by
// Jupyter and one written here are byte-identical and the filter changes nothing on a clean notebook.

import * as fs from "fs";
import * as path from "path";
import { fromRoot } from "../core/paths";
import { NOTEBOOK_METADATA } from "./make_notebook";

interface Cell {
  cell_type: string;
  outputs?: unknown[];
  execution_count?: number | null;
  metadata?: Record<string, unknown>;
}

interface Notebook {
  cells: Cell[];
  metadata?: Record<string, unknown>;
}

function sortKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (v === null || typeof v !== "object") return v;
  return Object.fromEntries(Object.keys(v).sort().map((k) => [k, sortKeys((v as Record<string, unknown>)[k])]));
}

/** Jupyter's on-disk form: json.dumps(nb, sort_keys=True, indent=1, ensure_ascii=False) + "\n". */
export function formatNotebook(nb: unknown): string {
  return JSON.stringify(sortKeys(nb), null, 1) + "\n";
}

function parse(text: string, file: string): Notebook {
  let nb: Notebook;
  try {
    nb = JSON.parse(text);
  } catch (e) {
    throw new Error(`${file}: not a notebook (invalid JSON: ${(e as Error).message})`);
  }
  if (!nb || !Array.isArray(nb.cells)) throw new Error(`${file}: not a notebook (no "cells" list)`);
  return nb;
}

/** What a notebook holds that a committed source must not: "cell 3: 2 outputs", "cell 3: execution count 7". */
export function outputsIn(text: string, file: string): string[] {
  const found: string[] = [];
  parse(text, file).cells.forEach((c, i) => {
    if (c.cell_type !== "code") return;
    if (c.outputs?.length) found.push(`cell ${i + 1}: ${c.outputs.length} output${c.outputs.length === 1 ? "" : "s"}`);
    if (c.execution_count !== null && c.execution_count !== undefined) found.push(`cell ${i + 1}: execution count ${c.execution_count}`);
    if (c.metadata?.execution !== undefined) found.push(`cell ${i + 1}: execution timings`);
  });
  return found;
}

/** The notebook without outputs, execution counts and execution timings, with the project's kernel metadata, in
 * Jupyter's format. */
export function stripOutputs(text: string, file: string): string {
  const nb = parse(text, file);
  nb.metadata = { ...nb.metadata, ...NOTEBOOK_METADATA };
  for (const c of nb.cells) {
    if (c.cell_type !== "code") continue;
    c.outputs = [];
    c.execution_count = null;
    if (c.metadata) delete c.metadata.execution;
  }
  return formatNotebook(nb);
}

function sources(): string[] {
  const dir = fromRoot("notebooks");
  return fs.readdirSync(dir).filter((f) => f.endsWith(".ipynb")).sort().map((f) => path.join(dir, f));
}

function main(argv: string[]): number {
  const mode = argv[0];
  if (argv.length > 1 || (mode !== undefined && mode !== "--check" && mode !== "--filter")) {
    console.error("usage: npm run strip [-- --check | --filter]");
    return 2;
  }
  if (mode === "--filter") {
    const text = fs.readFileSync(0, "utf8");
    try {
      process.stdout.write(stripOutputs(text, "<stdin>"));
    } catch (e) {
      // not a notebook: git gets it unchanged, and the reason
      console.error(`strip-notebook-outputs: ${(e as Error).message}; committing it unchanged`);
      process.stdout.write(text);
    }
    return 0;
  }
  let dirty = 0;
  for (const file of sources()) {
    const text = fs.readFileSync(file, "utf8");
    const found = outputsIn(text, file);
    if (mode === "--check") {
      if (found.length) console.log(`${path.relative(fromRoot(), file)}: ${found.join(", ")}`);
    } else {
      const clean = stripOutputs(text, file);
      if (clean !== text) {
        fs.writeFileSync(file, clean);
        console.log(`stripped ${path.relative(fromRoot(), file)}${found.length ? ` (${found.join(", ")})` : " (reformatted)"}`);
      }
    }
    if (found.length) dirty++;
  }
  if (mode === "--check") return dirty ? 1 : 0;
  if (dirty === 0) console.log("notebooks/*.ipynb hold no outputs");
  return 0;
}

if (require.main === module) process.exitCode = main(process.argv.slice(2));
