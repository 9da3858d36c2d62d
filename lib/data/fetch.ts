import * as fs from "fs";
import * as path from "path";
import { fromRoot } from "../core/paths";
import { withZip } from "../io/zip";
import { download } from "./download";
import { mirrorDir, mirrorSource, notInMirrorHint } from "./mirror";
import { loadSources, resolveNames, SourceFile, Sources } from "./sources";
import { extractTarGz } from "./tar";
import { checkFile, currentHash, FileStatus, readStamps, stamp, Stamps, Verification, writeStamps } from "./verify";
import { once, writeVerified, WriteTarget } from "./verified_write";

// Makes listed data files present and verified under the data directory (D2G_DATA_DIR, default data/downloads):
// from the offline mirror when it holds them (./mirror.ts), else from the official URL or archive. What a file
// is and where it comes from: ./sources.ts; checks and their record: ./verify.ts; the atomic write:
// ./verified_write.ts.

export interface DataOptions {
  /** A sources file or already-loaded sources (default data/sources.json). */
  sources?: Sources | string;
  /** Default: D2G_DATA_DIR, else <repo>/data/downloads. */
  dataDir?: string;
  /** Offline mirror folder. Default: D2G_DATA_MIRROR, else ../shared/data beside the checkout; null means never use a mirror. */
  mirror?: string | null;
  /** Fetch again even when a verified copy is present. */
  force?: boolean;
  /** Hash files again instead of trusting the record of an earlier check. */
  rehash?: boolean;
  /** Where one-line reports go (default stderr). */
  log?: (line: string) => void;
}

export interface FetchResult extends FileStatus {
  /** What this call did: found it in place, or copied/downloaded/extracted it. */
  action?: "present" | "mirror" | "download" | "extract";
  error?: Error;
}

export function dataDir(o: DataOptions = {}): string {
  return path.resolve(o.dataDir ?? process.env.D2G_DATA_DIR ?? fromRoot("data", "downloads"));
}

interface Ctx {
  sources: Sources;
  dir: string;
  mirror: string | null;
  stamps: Stamps;
  /** The stamps as read, so an unchanged record is not rewritten. */
  stampsRead: string;
  o: DataOptions;
  log: (line: string) => void;
}

function target(f: SourceFile, ctx: Ctx, source: string, fromMirror: boolean): WriteTarget {
  return {
    label: f.path,
    abs: path.join(ctx.dir, f.path),
    expected: fromMirror ? (f.mirror?.sha256 ?? f.sha256) : f.sha256,
    bytes: fromMirror ? (f.mirror?.bytes ?? f.bytes) : f.bytes,
    source,
  };
}

/** Make sure an archive is present and matches its sha256, downloading it if not. */
async function ensureArchive(key: string, ctx: Ctx, forMember: SourceFile): Promise<string> {
  const a = ctx.sources.archives[key];
  const abs = path.join(ctx.dir, a.path);
  const have = await currentHash(a.path, abs, ctx.stamps, ctx.o.rehash ?? false);
  if (have === a.sha256) return abs;
  if (have !== null) ctx.log(`${a.path}: sha256 ${have} is not the pinned ${a.sha256}; downloading it again`);
  const t: WriteTarget = { label: a.path, abs, expected: a.sha256, bytes: a.bytes, source: a.url };
  const sha = await download(a.url, t, notInMirrorHint(forMember, ctx.mirror));
  stamp(ctx.stamps, a.path, abs, sha, "sha256");
  ctx.log(`downloaded ${a.path} from ${a.url} (sha256 verified)`);
  return abs;
}

function finish(f: SourceFile, ctx: Ctx, sha: string, action: FetchResult["action"], how: Verification, from: string): FetchResult {
  const abs = path.join(ctx.dir, f.path);
  stamp(ctx.stamps, f.path, abs, sha, how);
  const said = how === "sha256" ? "sha256 verified" : how === "archive" ? "trusted through the verified archive" : "NOT verified: no sha256 is pinned for it";
  ctx.log(`${action === "mirror" ? "copied" : action === "extract" ? "extracted" : "downloaded"} ${f.path} from ${from} (${said})`);
  return { path: f.path, abs, state: how === "unpinned" ? "unverified" : "ok", how, sha256: sha, action };
}

/** Fetch one file from the mirror or its URL (archive members are handled in batches by fetchData). */
async function fetchDirect(f: SourceFile, ctx: Ctx): Promise<FetchResult> {
  if (ctx.mirror && f.mirror) {
    const src = mirrorSource(f, ctx.mirror);
    const t = target(f, ctx, src, true);
    const sha = await writeVerified(fs.createReadStream(src), t, fs.statSync(src).size);
    return finish(f, ctx, sha, "mirror", t.expected ? "sha256" : "unpinned", "the mirror");
  }
  if (f.url) {
    const t = target(f, ctx, f.url, false);
    const sha = await download(f.url, t, notInMirrorHint(f, ctx.mirror));
    return finish(f, ctx, sha, "download", t.expected ? "sha256" : "unpinned", f.url);
  }
  throw new Error(`${f.path} has no official download (${f.note ?? "see data/README.md"}); it is only in the offline mirror: set D2G_DATA_MIRROR to the mirror folder`);
}

async function fetchFromArchive(key: string, members: SourceFile[], ctx: Ctx): Promise<FetchResult[]> {
  const a = ctx.sources.archives[key];
  const abs = await ensureArchive(key, ctx, members[0]);
  const how = (f: SourceFile): Verification => (f.sha256 ? "sha256" : "archive");
  if (a.format === "zip") {
    const out: FetchResult[] = [];
    for (const f of members) {
      const bytes = withZip(abs, (z) => z.read(f.member!));
      const sha = await writeVerified(once(bytes), target(f, ctx, `${abs}:${f.member}`, false), bytes.length);
      out.push(finish(f, ctx, sha, "extract", how(f), a.path));
    }
    return out;
  }
  const wanted = new Map(members.map((f) => [f.member!, target(f, ctx, `${abs}:${f.member}`, false)]));
  const shas = await extractTarGz(abs, wanted);
  return members.map((f) => finish(f, ctx, shas.get(f.member!)!, "extract", how(f), a.path));
}

function context(o: DataOptions): Ctx {
  const dir = dataDir(o);
  const stamps = readStamps(dir);
  const log = o.log ?? ((l: string) => process.stderr.write(l + "\n"));
  const sources = typeof o.sources === "object" ? o.sources : loadSources(o.sources);
  return { sources, dir, mirror: mirrorDir(o.mirror, log), stamps, stampsRead: JSON.stringify(stamps), o, log };
}

/**
 * Make the named files (or groups) present and verified. Failures are reported per file in `error` rather than
 * thrown, so one unreachable file does not hide the state of the others.
 */
export async function fetchData(names: readonly string[], o: DataOptions = {}): Promise<FetchResult[]> {
  const ctx = context(o);
  const entries = resolveNames(ctx.sources, names);
  const results = new Map<string, FetchResult>();
  const byArchive = new Map<string, SourceFile[]>();
  try {
    for (const f of entries) {
      const abs = path.join(ctx.dir, f.path);
      try {
        const s = o.force ? ({ path: f.path, abs, state: "missing" } as FileStatus) : await checkFile(f, ctx.dir, ctx.stamps, o.rehash ?? false);
        if (s.state === "ok" || s.state === "unverified") {
          if (s.state === "unverified") ctx.log(`${f.path}: present but NOT verified (no sha256 is pinned for it)`);
          results.set(f.path, { ...s, action: "present" });
          continue;
        }
        if (s.state === "corrupt") ctx.log(`${f.path}: sha256 ${s.sha256} matches no pinned checksum; fetching it again`);
        if (!(ctx.mirror && f.mirror) && !f.url && f.archive) {
          byArchive.set(f.archive, [...(byArchive.get(f.archive) ?? []), f]);
          continue;
        }
        results.set(f.path, await fetchDirect(f, ctx));
      } catch (e) {
        results.set(f.path, { path: f.path, abs, state: "missing", error: e as Error });
      }
    }
    for (const [key, members] of byArchive) {
      try {
        for (const r of await fetchFromArchive(key, members, ctx)) results.set(r.path, r);
      } catch (e) {
        for (const f of members) if (!results.has(f.path)) results.set(f.path, { path: f.path, abs: path.join(ctx.dir, f.path), state: "missing", error: e as Error });
      }
    }
  } finally {
    writeStamps(ctx.dir, ctx.stamps, ctx.stampsRead);
  }
  return entries.map((f) => results.get(f.path)!);
}

/** Local paths of the named files or groups, fetching what is missing; throws if any of them could not be had. */
export async function ensureDataAll(names: readonly string[], o: DataOptions = {}): Promise<string[]> {
  const results = await fetchData(names, o);
  const failed = results.filter((r) => r.error);
  if (failed.length === 1) throw failed[0].error;
  if (failed.length) throw new Error(`could not fetch ${failed.length} files:\n${failed.map((r) => `  ${r.error!.message}`).join("\n")}`);
  return results.map((r) => r.abs);
}

/** Local path of one listed file, fetching (from the mirror or the network) and verifying it if needed. */
export async function ensureData(name: string, o: DataOptions = {}): Promise<string> {
  const [p] = await ensureDataAll([name], o);
  return p;
}

export interface ListedFile extends FileStatus {
  entry: SourceFile;
  /** Where a fetch would take it from now. */
  from: "mirror" | "url" | "archive" | "none";
}

/** State of every listed file, without fetching anything. */
export async function dataStatus(o: DataOptions = {}): Promise<ListedFile[]> {
  const ctx = context(o);
  const out: ListedFile[] = [];
  try {
    for (const f of ctx.sources.files) {
      const s = await checkFile(f, ctx.dir, ctx.stamps, o.rehash ?? false);
      const from = ctx.mirror && f.mirror ? "mirror" : f.url ? "url" : f.archive ? "archive" : "none";
      out.push({ ...s, entry: f, from });
    }
  } finally {
    writeStamps(ctx.dir, ctx.stamps, ctx.stampsRead);
  }
  return out;
}
