import * as fs from "fs";
import * as path from "path";
import { fromRoot } from "../core/paths";

// Every data file and weight the project reads is listed in data/sources.json with its official source (a URL,
// or a member of an official archive) and, where one is known, its sha256. This file reads and checks that list.

export interface MirrorCopy {
  /** Path inside the mirror when it differs from the file's own path. */
  path?: string;
  /** Given only where the mirror's copy is not known to be byte-identical to the official file. */
  sha256?: string;
  bytes?: number;
}

export interface SourceFile {
  /** Where the file is saved, relative to the data directory; also the name commands and loaders use. */
  path: string;
  url?: string | null;
  /** Key into Sources.archives when the official file is a member of an archive. */
  archive?: string;
  member?: string;
  /** Of the official file; null where no checksum could be confirmed. */
  sha256: string | null;
  bytes: number | null;
  license: string;
  mirror?: MirrorCopy;
  note?: string;
}

export interface SourceArchive {
  path: string;
  url: string;
  format: "tar.gz" | "zip";
  sha256: string;
  bytes: number;
  md5?: string;
  license: string;
  note?: string;
}

export interface Sources {
  /** The JSON file these came from (for error messages). */
  file: string;
  archives: Record<string, SourceArchive>;
  files: SourceFile[];
  groups: Record<string, string[]>;
}

const SHA256_RE = /^[0-9a-f]{64}$/;

export function defaultSourcesFile(): string {
  return fromRoot("data", "sources.json");
}

function safeRelative(p: unknown, file: string, what: string): string {
  if (typeof p !== "string" || p === "" || path.isAbsolute(p) || p.split(/[\\/]/).includes("..")) {
    throw new Error(`${file}: ${what} must be a relative path inside the data directory, got ${JSON.stringify(p)}`);
  }
  return p;
}

function checkSha(v: unknown, file: string, what: string, nullable: boolean): void {
  if (v === null && nullable) return;
  if (typeof v !== "string" || !SHA256_RE.test(v)) throw new Error(`${file}: ${what} must be 64 lowercase hex digits${nullable ? " or null" : ""}, got ${JSON.stringify(v)}`);
}

/** Read and check a sources file: every path safe and unique, every archive and group reference resolvable. */
export function loadSources(file: string = defaultSourcesFile()): Sources {
  let raw: { archives?: Record<string, SourceArchive>; files?: SourceFile[]; groups?: Record<string, string[]> };
  try {
    raw = JSON.parse(fs.readFileSync(file, "utf8"));
  } catch (e) {
    throw new Error(`cannot read the data sources file ${file}: ${(e as Error).message}`);
  }
  const archives = raw.archives ?? {};
  const files = raw.files;
  const groups = raw.groups ?? {};
  if (!Array.isArray(files)) throw new Error(`${file}: expected a "files" array`);
  for (const [k, a] of Object.entries(archives)) {
    safeRelative(a.path, file, `archives.${k}.path`);
    checkSha(a.sha256, file, `archives.${k}.sha256`, false);
    if (a.format !== "tar.gz" && a.format !== "zip") throw new Error(`${file}: archives.${k}.format must be "tar.gz" or "zip"`);
  }
  const seen = new Set<string>();
  for (const f of files) {
    const p = safeRelative(f.path, file, "files[].path");
    if (seen.has(p)) throw new Error(`${file}: ${p} is listed twice`);
    seen.add(p);
    checkSha(f.sha256, file, `sha256 of ${p}`, true);
    if (f.mirror?.sha256 !== undefined) checkSha(f.mirror.sha256, file, `mirror.sha256 of ${p}`, false);
    if (f.mirror?.path !== undefined) safeRelative(f.mirror.path, file, `mirror.path of ${p}`);
    if (f.archive !== undefined && (!archives[f.archive] || !f.member)) {
      throw new Error(`${file}: ${p} names archive ${JSON.stringify(f.archive)}, which needs an entry in "archives" and a "member"`);
    }
  }
  for (const [g, members] of Object.entries(groups)) {
    if (seen.has(g)) throw new Error(`${file}: group ${g} has the same name as a file`);
    for (const m of members) if (!seen.has(m)) throw new Error(`${file}: group ${g} lists ${m}, which is not in "files"`);
  }
  return { file, archives, files, groups };
}

/** Expand file names and group names, in order, without repeats; an unknown name lists the valid ones. */
export function resolveNames(sources: Sources, names: readonly string[]): SourceFile[] {
  const byPath = new Map(sources.files.map((f) => [f.path, f]));
  const out = new Map<string, SourceFile>();
  const unknown: string[] = [];
  for (const n of names) {
    const members = Object.prototype.hasOwnProperty.call(sources.groups, n) ? sources.groups[n] : byPath.has(n) ? [n] : null;
    if (!members) unknown.push(n);
    else for (const m of members) out.set(m, byPath.get(m)!);
  }
  if (unknown.length) {
    const groups = Object.entries(sources.groups).map(([g, m]) => `${g} (${m.length})`);
    throw new Error(
      `unknown data name${unknown.length > 1 ? "s" : ""} ${unknown.map((u) => JSON.stringify(u)).join(", ")} (sources: ${sources.file}).\n` +
        `Groups: ${groups.join(", ")}\nFiles:\n  ${sources.files.map((f) => f.path).join("\n  ")}`,
    );
  }
  return [...out.values()];
}
