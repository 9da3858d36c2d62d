import * as fs from "fs";
import { fromRoot } from "../core/paths";
import { showMarkdown } from "../viz/notebook";
import { readTable, Row, tableMarkdown } from "../viz/table";

// The Result section every notebook ends with: each claim of the paper beside our number for it, read from the
// committed cpu-scale tables (figures/*.csv, written by the notebooks at D2G_SCALE=cpu), and whether it held. Reading
// the committed tables rather than the run in memory makes the section the same for every reader, whatever scale
// they just ran.

/** "undecided": the experiment ran, but its spread reaches both sides of the claim's bound. */
export type Verdict = "held" | "did not hold" | "undecided" | "not tested";

export interface Claim {
  claim: string;
  /** The paper's number or statement, citing PAPER.md. */
  paper: string;
  ours: string;
  verdict: Verdict;
  /** Why, where it did not hold or was not tested. */
  why?: string;
}

/** figures/<name>.csv of the checkout, or undefined when it was never committed. */
export function committedTableIfAny(name: string): Row[] | undefined {
  const file = fromRoot("figures", `${name}.csv`);
  return fs.existsSync(file) ? readTable(file) : undefined;
}

/** figures/<name>.csv of the checkout; a missing one names the notebook that writes it. */
export function committedTable(name: string, notebook: string): Row[] {
  const rows = committedTableIfAny(name);
  if (!rows) throw new Error(`${fromRoot("figures", `${name}.csv`)}: no committed cpu-scale table; notebook ${notebook} writes it at D2G_SCALE=cpu`);
  return rows;
}

/** The column `col` of a committed table's row as a number, with an error naming the table when it is not one. */
export function numberIn(row: Row, col: string, table: string): number {
  const v = row[col];
  if (typeof v !== "number" || !Number.isFinite(v)) throw new Error(`figures/${table}.csv: column "${col}" holds ${JSON.stringify(v)}, expected a number`);
  return v;
}

/** The claims as a markdown table (printed outside a notebook). */
export function showClaims(claims: Claim[]): void {
  const rows: Row[] = claims.map((c) => ({ claim: c.claim, "paper (PAPER.md)": c.paper, "ours, cpu scale": c.ours, verdict: c.verdict, why: c.why ?? "" }));
  showMarkdown(tableMarkdown(rows));
}
