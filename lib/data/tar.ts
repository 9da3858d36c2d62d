import * as fs from "fs";
import * as zlib from "zlib";
import { writeVerified, WriteTarget } from "./verified_write";

// Members of a .tar.gz (CIFAR-10's official archive) are extracted by streaming the archive once: the dataset
// is 160 MB and only a few members are wanted, so nothing is unpacked to disk beyond them.

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
export async function extractTarGz(archive: string, wanted: Map<string, WriteTarget>): Promise<Map<string, string>> {
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
