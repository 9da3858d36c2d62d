import * as crypto from "crypto";
import * as fs from "fs";
import * as path from "path";
import * as zlib from "zlib";
import { fromRoot } from "../core/paths";
import { Progress } from "../core/progress";
import { withZip } from "../io/zip";

// Every data file and weight the project reads is listed in data/sources.json with its official source (a URL,
// or a member of an official archive) and, where one is known, its sha256. Files land under the data directory
// (D2G_DATA_DIR, default data/downloads), written atomically and checked before use. With D2G_DATA_MIRROR set,
// files the offline mirror holds are copied from it instead of the network.

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

export interface DataOptions {
  /** A sources file or already-loaded sources (default data/sources.json). */
  sources?: Sources | string;
  /** Default: D2G_DATA_DIR, else <repo>/data/downloads. */
  dataDir?: string;
  /** Offline mirror folder. Default: D2G_DATA_MIRROR; null means never use a mirror. */
  mirror?: string | null;
  /** Fetch again even when a verified copy is present. */
  force?: boolean;
  /** Hash files again instead of trusting the record of an earlier check. */
  rehash?: boolean;
  /** Where one-line reports go (default stderr). */
  log?: (line: string) => void;
}

/** How a present file was checked: against a pinned sha256, through a verified archive, or not at all (no pin). */
export type Verification = "sha256" | "archive" | "unpinned";
export type DataState = "ok" | "missing" | "corrupt" | "unverified";

export interface FileStatus {
  path: string;
  abs: string;
  state: DataState;
  how?: Verification;
  sha256?: string;
}

export interface FetchResult extends FileStatus {
  /** What this call did: found it in place, or copied/downloaded/extracted it. */
  action?: "present" | "mirror" | "download" | "extract";
  error?: Error;
}

export class ChecksumError extends Error {
  constructor(readonly file: string, readonly expected: string, readonly got: string, readonly source: string, sizeNote = "") {
    super(`checksum mismatch for ${file} (from ${source}): expected sha256 ${expected}, got ${got}${sizeNote}`);
    this.name = "ChecksumError";
  }
}

const SHA256_RE = /^[0-9a-f]{64}$/;
const STAMP_FILE = ".verified.json";
/** Files smaller than this get no progress bar. */
const BAR_MIN_BYTES = 1 << 20;

export function defaultSourcesFile(): string {
  return fromRoot("data", "sources.json");
}

export function dataDir(o: DataOptions = {}): string {
  return path.resolve(o.dataDir ?? process.env.D2G_DATA_DIR ?? fromRoot("data", "downloads"));
}

export function mirrorDir(o: DataOptions = {}): string | null {
  if (o.mirror !== undefined) return o.mirror === null ? null : path.resolve(o.mirror);
  const env = process.env.D2G_DATA_MIRROR;
  return env ? path.resolve(env) : null;
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

function sourcesOf(o: DataOptions): Sources {
  return typeof o.sources === "object" ? o.sources : loadSources(o.sources);
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

function knownHashes(f: SourceFile): string[] {
  return [f.sha256, f.mirror?.sha256].filter((h): h is string => typeof h === "string");
}

export async function sha256File(file: string): Promise<string> {
  const hash = crypto.createHash("sha256");
  for await (const chunk of fs.createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

// ---- record of earlier checks: hashing 200 MB on every loader call would dominate small runs ----

interface Stamp {
  size: number;
  mtimeMs: number;
  ino: number;
  sha256: string;
  how: Verification;
}
type Stamps = Record<string, Stamp>;

function readStamps(dir: string): Stamps {
  try {
    return JSON.parse(fs.readFileSync(path.join(dir, STAMP_FILE), "utf8"));
  } catch {
    return {};
  }
}

function writeStamps(dir: string, stamps: Stamps, before: string): void {
  if (JSON.stringify(stamps) === before) return;
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, STAMP_FILE);
  const tmp = `${file}.${process.pid}.${crypto.randomBytes(4).toString("hex")}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(stamps, null, 1));
  fs.renameSync(tmp, file);
}

function stamp(stamps: Stamps, rel: string, abs: string, sha256: string, how: Verification): void {
  const st = fs.statSync(abs);
  stamps[rel] = { size: st.size, mtimeMs: st.mtimeMs, ino: st.ino, sha256, how };
}

/** sha256 of a present file, trusting the stamp while size, mtime and inode are unchanged. */
async function currentHash(rel: string, abs: string, stamps: Stamps, rehash: boolean): Promise<string | null> {
  let st: fs.Stats;
  try {
    st = fs.statSync(abs);
  } catch {
    return null;
  }
  const s = stamps[rel];
  if (!rehash && s && s.size === st.size && s.mtimeMs === st.mtimeMs && s.ino === st.ino) return s.sha256;
  return sha256File(abs);
}

async function checkFile(f: SourceFile, dir: string, stamps: Stamps, rehash: boolean): Promise<FileStatus> {
  const abs = path.join(dir, f.path);
  const sha256 = await currentHash(f.path, abs, stamps, rehash);
  if (sha256 === null) return { path: f.path, abs, state: "missing" };
  const known = knownHashes(f);
  if (known.includes(sha256)) {
    stamp(stamps, f.path, abs, sha256, "sha256");
    return { path: f.path, abs, state: "ok", how: "sha256", sha256 };
  }
  // No pin matches, but this very file was extracted from a verified archive (or downloaded from an unpinned URL) earlier.
  const s = stamps[f.path];
  if (s && s.sha256 === sha256 && s.how !== "sha256") return { path: f.path, abs, state: s.how === "archive" ? "ok" : "unverified", how: s.how, sha256 };
  return { path: f.path, abs, state: known.length ? "corrupt" : "unverified", how: known.length ? undefined : "unpinned", sha256 };
}

// ---- atomic, verified writes ----

interface WriteTarget {
  /** Name for messages (the path relative to the data directory). */
  label: string;
  abs: string;
  expected: string | null;
  bytes: number | null;
  /** Where the bytes come from, for messages. */
  source: string;
}

/**
 * Stream chunks into a temporary file next to the target, hashing as they arrive; only bytes that match the
 * expected sha256 (when there is one) are renamed into place, so readers never see a partial or wrong file.
 */
async function writeVerified(chunks: AsyncIterable<Uint8Array>, t: WriteTarget, totalHint: number | null): Promise<string> {
  fs.mkdirSync(path.dirname(t.abs), { recursive: true });
  const tmp = `${t.abs}.${process.pid}.${crypto.randomBytes(4).toString("hex")}.tmp`;
  const hash = crypto.createHash("sha256");
  const total = totalHint ?? t.bytes ?? 0;
  const bar = total >= BAR_MIN_BYTES ? new Progress(`${t.label} KiB`, Math.ceil(total / 1024)) : null;
  const fh = await fs.promises.open(tmp, "w");
  let closed = false;
  let n = 0;
  let kib = 0;
  try {
    for await (const chunk of chunks) {
      hash.update(chunk);
      await fh.write(chunk);
      n += chunk.length;
      const k = Math.ceil(n / 1024);
      if (bar && k > kib) bar.tick(k - kib);
      kib = k;
    }
    // No fsync: a file cut short by a crash fails its next check (size or hash) and is fetched again.
    await fh.close();
    closed = true;
    bar?.finish();
    const got = hash.digest("hex");
    const sizeNote = t.bytes !== null && n !== t.bytes ? ` (${n} bytes, expected ${t.bytes})` : "";
    if (t.expected && got !== t.expected) throw new ChecksumError(t.label, t.expected, got, t.source, sizeNote);
    if (sizeNote) throw new Error(`size mismatch for ${t.label} (from ${t.source}):${sizeNote}`);
    fs.renameSync(tmp, t.abs);
    return got;
  } catch (e) {
    if (!closed) await fh.close().catch(() => undefined);
    fs.rmSync(tmp, { force: true });
    throw e;
  }
}

async function* once(bytes: Uint8Array): AsyncGenerator<Uint8Array> {
  yield bytes;
}

// ---- network ----

function describeCause(e: unknown): string {
  const err = e as { message?: string; cause?: { code?: string; message?: string } };
  const c = err.cause;
  if (!c) return String(err.message ?? e);
  return c.message && c.code && !c.message.includes(c.code) ? `${c.code} ${c.message}` : (c.message ?? c.code ?? String(err.message));
}

async function* bodyChunks(body: ReadableStream<Uint8Array>, url: string): AsyncGenerator<Uint8Array> {
  const reader = body.getReader();
  try {
    for (;;) {
      let r: ReadableStreamReadResult<Uint8Array>;
      try {
        r = await reader.read();
      } catch (e) {
        throw new Error(`network failure while reading ${url}: ${describeCause(e)}`);
      }
      if (r.done) return;
      yield r.value;
    }
  } finally {
    reader.releaseLock();
  }
}

async function download(url: string, t: WriteTarget, hint: string): Promise<string> {
  let res: Response;
  try {
    res = await fetch(url, { redirect: "follow" });
  } catch (e) {
    throw new Error(`network failure fetching ${t.label} from ${url}: ${describeCause(e)}${hint}`);
  }
  if (!res.ok || !res.body) {
    await res.body?.cancel().catch(() => undefined);
    throw new Error(`network failure fetching ${t.label}: GET ${url} answered HTTP ${res.status} ${res.statusText}${hint}`);
  }
  const length = Number(res.headers.get("content-length"));
  return writeVerified(bodyChunks(res.body, url), t, length > 0 ? length : null);
}

// ---- archives ----

/** Pulls exact byte counts out of a stream of chunks (tar records straddle gunzip's chunk boundaries). */
class ChunkReader {
  private buf: Buffer = Buffer.alloc(0);
  constructor(private readonly it: AsyncIterator<Buffer>, private readonly file: string) {}
  private async more(): Promise<boolean> {
    const r = await this.it.next();
    if (r.done) return false;
    this.buf = this.buf.length ? Buffer.concat([this.buf, r.value]) : r.value;
    return true;
  }
  /** Exactly n bytes, or null at a clean end of stream. */
  async exact(n: number): Promise<Buffer | null> {
    while (this.buf.length < n) {
      if (!(await this.more())) {
        if (this.buf.length === 0) return null;
        throw new Error(`${this.file}: archive is truncated`);
      }
    }
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return out;
  }
  async *take(n: number): AsyncGenerator<Buffer> {
    while (n > 0) {
      if (this.buf.length === 0 && !(await this.more())) throw new Error(`${this.file}: archive is truncated`);
      const k = Math.min(n, this.buf.length);
      yield this.buf.subarray(0, k);
      this.buf = this.buf.subarray(k);
      n -= k;
    }
  }
  async skip(n: number): Promise<void> {
    for await (const _ of this.take(n));
  }
}

function tarString(h: Buffer, at: number, len: number): string {
  const end = h.indexOf(0, at);
  return h.toString("utf8", at, end >= 0 && end < at + len ? end : at + len);
}

/** Stream a .tar.gz once, writing the wanted members (keyed by member path) through writeVerified. */
async function extractTarGz(archive: string, wanted: Map<string, WriteTarget>): Promise<Map<string, string>> {
  const gz = fs.createReadStream(archive).pipe(zlib.createGunzip());
  const r = new ChunkReader(gz[Symbol.asyncIterator](), archive);
  const done = new Map<string, string>();
  let longName: string | null = null;
  try {
    while (done.size < wanted.size) {
      const h = await r.exact(512);
      if (!h || h.every((b) => b === 0)) break;
      const sizeField = tarString(h, 124, 12).trim();
      if (!/^[0-7]+$/.test(sizeField)) throw new Error(`${archive}: tar header has a size field ${JSON.stringify(sizeField)} this reader does not understand`);
      const size = parseInt(sizeField, 8);
      const padded = Math.ceil(size / 512) * 512;
      const type = String.fromCharCode(h[156]);
      const prefix = tarString(h, 345, 155);
      const name = (longName ?? (prefix ? `${prefix}/${tarString(h, 0, 100)}` : tarString(h, 0, 100))).replace(/^\.\//, "");
      longName = null;
      if (type === "L" || type === "x") {
        // GNU long name, or a pax header that may carry path=...
        const body = (await r.exact(padded)) ?? Buffer.alloc(0);
        const text = body.toString("utf8", 0, size);
        longName = type === "L" ? text.replace(/\0.*$/s, "") : (/(?:^|\n)\d+ path=([^\n]*)\n/.exec(text)?.[1] ?? null);
        continue;
      }
      const target = wanted.get(name);
      if (target && (type === "0" || type === "\0")) {
        done.set(name, await writeVerified(r.take(size), target, size));
        await r.skip(padded - size);
      } else {
        await r.skip(padded);
      }
    }
  } finally {
    gz.destroy();
  }
  const missing = [...wanted.keys()].filter((m) => !done.has(m));
  if (missing.length) throw new Error(`${archive}: archive has no member ${missing.join(", ")}`);
  return done;
}

// ---- fetching ----

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

function mirrorSource(f: SourceFile, mirror: string): string {
  const src = path.join(mirror, f.mirror?.path ?? f.path);
  if (!fs.existsSync(src)) {
    throw new Error(`missing mirror file: ${src} does not exist, but sources.json says the offline mirror holds ${f.path} (D2G_DATA_MIRROR=${mirror}); check that the variable names the mirror's root folder`);
  }
  return src;
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

function notInMirrorHint(f: SourceFile, ctx: Ctx): string {
  return ctx.mirror ? ` (${f.path} is not in the offline mirror ${ctx.mirror})` : " (offline? set D2G_DATA_MIRROR to a mirror folder)";
}

/** Make sure an archive is present and matches its sha256, downloading it if not. */
async function ensureArchive(key: string, ctx: Ctx, forMember: SourceFile): Promise<string> {
  const a = ctx.sources.archives[key];
  const abs = path.join(ctx.dir, a.path);
  const have = await currentHash(a.path, abs, ctx.stamps, ctx.o.rehash ?? false);
  if (have === a.sha256) return abs;
  if (have !== null) ctx.log(`${a.path}: sha256 ${have} is not the pinned ${a.sha256}; downloading it again`);
  const t: WriteTarget = { label: a.path, abs, expected: a.sha256, bytes: a.bytes, source: a.url };
  const sha = await download(a.url, t, notInMirrorHint(forMember, ctx));
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
    const sha = await download(f.url, t, notInMirrorHint(f, ctx));
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
  return { sources: sourcesOf(o), dir, mirror: mirrorDir(o), stamps, stampsRead: JSON.stringify(stamps), o, log: o.log ?? ((l) => process.stderr.write(l + "\n")) };
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
