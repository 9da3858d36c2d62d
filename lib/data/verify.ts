import * as crypto from "crypto";
import * as fs from "fs";
import * as path from "path";
import { SourceFile } from "./sources";

// Is a present data file the one sources.json pins? Hashing 200 MB on every loader call would dominate small
// runs, so each check is recorded (.verified.json in the data directory) and trusted while the file's size,
// mtime and inode are unchanged.

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

interface Stamp {
  size: number;
  mtimeMs: number;
  ino: number;
  sha256: string;
  how: Verification;
}
export type Stamps = Record<string, Stamp>;

const STAMP_FILE = ".verified.json";

export async function sha256File(file: string): Promise<string> {
  const hash = crypto.createHash("sha256");
  for await (const chunk of fs.createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

export function readStamps(dir: string): Stamps {
  try {
    return JSON.parse(fs.readFileSync(path.join(dir, STAMP_FILE), "utf8"));
  } catch {
    return {};
  }
}

/** Write the record unless it is unchanged from `before` (its JSON as read). */
export function writeStamps(dir: string, stamps: Stamps, before: string): void {
  if (JSON.stringify(stamps) === before) return;
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, STAMP_FILE);
  const tmp = `${file}.${process.pid}.${crypto.randomBytes(4).toString("hex")}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(stamps, null, 1));
  fs.renameSync(tmp, file);
}

export function stamp(stamps: Stamps, rel: string, abs: string, sha256: string, how: Verification): void {
  const st = fs.statSync(abs);
  stamps[rel] = { size: st.size, mtimeMs: st.mtimeMs, ino: st.ino, sha256, how };
}

/** sha256 of a present file, trusting the stamp while size, mtime and inode are unchanged. */
export async function currentHash(rel: string, abs: string, stamps: Stamps, rehash: boolean): Promise<string | null> {
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

function knownHashes(f: SourceFile): string[] {
  return [f.sha256, f.mirror?.sha256].filter((h): h is string => typeof h === "string");
}

export async function checkFile(f: SourceFile, dir: string, stamps: Stamps, rehash: boolean): Promise<FileStatus> {
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
