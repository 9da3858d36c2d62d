import * as crypto from "crypto";
import * as fs from "fs";
import * as path from "path";
import { Progress } from "../core/progress";

// Every data file reaches the data directory through writeVerified: streamed into a temporary file next to the
// target, hashed on the way, and renamed into place only when it matches, so readers never see a partial or
// wrong file.

export class ChecksumError extends Error {
  constructor(readonly file: string, readonly expected: string, readonly got: string, readonly source: string, sizeNote = "") {
    super(`checksum mismatch for ${file} (from ${source}): expected sha256 ${expected}, got ${got}${sizeNote}`);
    this.name = "ChecksumError";
  }
}

export interface WriteTarget {
  /** Name for messages (the path relative to the data directory). */
  label: string;
  abs: string;
  expected: string | null;
  bytes: number | null;
  /** Where the bytes come from, for messages. */
  source: string;
}

/** Files smaller than this get no progress bar. */
const BAR_MIN_BYTES = 1 << 20;

/** Write the chunks to t.abs if they match the expected sha256 and size (when known); returns their sha256. */
export async function writeVerified(chunks: AsyncIterable<Uint8Array>, t: WriteTarget, totalHint: number | null): Promise<string> {
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

export async function* once(bytes: Uint8Array): AsyncGenerator<Uint8Array> {
  yield bytes;
}
