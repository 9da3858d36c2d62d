// npm run data -- [names or groups] [--force] [--rehash]
// With no names: list every file in data/sources.json and its state. With names: fetch them (from the offline
// mirror when there is one (D2G_DATA_MIRROR, else ../shared/data beside the checkout), else from the official
// URLs), verify, and report.

import { dataDir, dataStatus, fetchData, ListedFile } from "../data/fetch";
import { mirrorDir } from "../data/mirror";
import { loadSources, resolveNames } from "../data/sources";
import { runCli, UsageError } from "./args";

const SPEC = {
  command: "npm run data --",
  summary: "With no names: list every file of data/sources.json, its state (ok / missing / corrupt / unverified) and where a fetch would get it. With names: fetch, verify and report them.",
  positionals: { name: "NAME|GROUP", help: "files (their path in sources.json) or groups to fetch", min: 0, max: Infinity },
  flags: {
    force: { type: "bool", help: "fetch again even if a verified copy is present" },
    rehash: { type: "bool", help: "hash present files again instead of trusting the record of an earlier check" },
  },
  notes: "env: D2G_DATA_DIR (default <repo>/data/downloads), D2G_DATA_MIRROR (offline mirror folder; default ../shared/data beside the checkout when it exists)",
} as const;

function fmtBytes(n: number | null | undefined): string {
  if (n === null || n === undefined) return "?";
  return n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(1)} MiB` : n >= 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${n} B`;
}

function listLine(f: ListedFile): string {
  const pinned = f.entry.sha256 || f.entry.mirror?.sha256 ? "" : "  [no sha256 pinned]";
  const state = f.state === "ok" && f.how === "archive" ? "ok*" : f.state;
  return `${state.padEnd(10)} ${fmtBytes(f.entry.bytes ?? f.entry.mirror?.bytes).padStart(10)}  ${f.from.padEnd(7)} ${f.path}${pinned}`;
}

runCli(SPEC, async ({ flags: { force, rehash }, positionals: names }) => {
  if (names.length > 0) {
    try {
      resolveNames(loadSources(), names);
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
  }
  const mirror = mirrorDir();
  console.log(`data dir: ${dataDir()}\nmirror:   ${mirror ?? "(none; set D2G_DATA_MIRROR to use one, or put it at ../shared/data beside the checkout)"}`);

  if (names.length === 0) {
    const sources = loadSources();
    const rows = await dataStatus({ rehash });
    console.log(`\n${"state".padEnd(10)} ${"size".padStart(10)}  ${"from".padEnd(7)} path`);
    for (const r of rows) console.log(listLine(r));
    console.log(`\nok* = extracted from an archive whose sha256 was verified; "from" = where a fetch would get it now.`);
    console.log(`groups: ${Object.entries(sources.groups).map(([g, m]) => `${g} (${m.length})`).join(", ")}`);
    return 0;
  }

  const results = await fetchData(names, { force, rehash });
  const failed = results.filter((r) => r.error);
  const unverified = results.filter((r) => !r.error && r.state === "unverified");
  for (const r of failed) console.error(`FAILED ${r.path}: ${r.error!.message}`);
  console.log(`\n${results.length - failed.length}/${results.length} files present` + (unverified.length ? `; ${unverified.length} could not be verified (no sha256 pinned): ${unverified.map((r) => r.path).join(", ")}` : ""));
  return failed.length ? 1 : 0;
});
