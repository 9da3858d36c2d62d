import * as fs from "fs";
import * as zlib from "zlib";
import { fileSize, openForRead, readAt, writeAll, writeAtomic } from "./file_bytes";

// A minimal zip reader and writer (PKWARE APPNOTE 6.3): enough for torch.save archives and numpy .npz files.
// The reader trusts the central directory, reads an entry's bytes only when asked, and understands zip64.

const SIG_LOCAL = 0x04034b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_EOCD = 0x06054b50;
const SIG_EOCD64 = 0x06064b50;
const SIG_EOCD64_LOCATOR = 0x07064b50;
const METHOD_STORED = 0;
const METHOD_DEFLATED = 8;
const ZIP64_EXTRA = 0x0001;
/** A 32-bit size or offset of all ones means "look in the zip64 extra field". */
const MAX32 = 0xffffffff;

export interface ZipEntry {
  name: string;
  method: number;
  crc32: number;
  compressedSize: number;
  size: number;
  localHeaderOffset: number;
}

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

export function crc32Table(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

// zlib.crc32 (Node >= 20.15) is native and ~8x faster than the table, which matters for GB-sized storages.
const nativeCrc32 = (zlib as { crc32?: (data: Uint8Array) => number }).crc32;

export function crc32(bytes: Uint8Array): number {
  return nativeCrc32 ? nativeCrc32(bytes) : crc32Table(bytes);
}

function view(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

/** Read a u64 that must fit a JS number (2^53 bytes is far beyond any file here). */
function u64(v: DataView, at: number, file: string): number {
  const x = v.getBigUint64(at, true);
  if (x > BigInt(Number.MAX_SAFE_INTEGER)) throw new Error(`${file}: zip64 value ${x} is too large`);
  return Number(x);
}

export class ZipReader {
  readonly entries = new Map<string, ZipEntry>();
  private fd: number;

  constructor(readonly file: string) {
    this.fd = openForRead(file);
    try {
      this.readCentralDirectory();
    } catch (e) {
      fs.closeSync(this.fd);
      throw e;
    }
  }

  /** The end-of-central-directory record sits in the last 22 + up to 65535 (comment) bytes. */
  private readCentralDirectory(): void {
    const size = fileSize(this.fd);
    const tailLen = Math.min(size, 22 + 0xffff);
    const tail = readAt(this.fd, size - tailLen, tailLen, this.file, "zip end record");
    const tv = view(tail);
    let eocd = -1;
    for (let i = tailLen - 22; i >= 0; i--) {
      if (tv.getUint32(i, true) === SIG_EOCD) {
        eocd = i;
        break;
      }
    }
    if (eocd < 0) throw new Error(`${this.file}: not a zip archive or truncated file (no end-of-central-directory record)`);
    let count = tv.getUint16(eocd + 10, true);
    let cdSize = tv.getUint32(eocd + 12, true);
    let cdOffset = tv.getUint32(eocd + 16, true);
    const eocdPos = size - tailLen + eocd;
    if (count === 0xffff || cdSize === MAX32 || cdOffset === MAX32) {
      if (eocdPos < 20) throw new Error(`${this.file}: zip64 archive without a zip64 locator`);
      const loc = view(readAt(this.fd, eocdPos - 20, 20, this.file, "zip64 locator"));
      if (loc.getUint32(0, true) !== SIG_EOCD64_LOCATOR) throw new Error(`${this.file}: zip64 archive without a zip64 locator`);
      const rec = view(readAt(this.fd, u64(loc, 8, this.file), 56, this.file, "zip64 end record"));
      if (rec.getUint32(0, true) !== SIG_EOCD64) throw new Error(`${this.file}: bad zip64 end-of-central-directory record`);
      count = u64(rec, 32, this.file);
      cdSize = u64(rec, 40, this.file);
      cdOffset = u64(rec, 48, this.file);
    }
    const cd = readAt(this.fd, cdOffset, cdSize, this.file, "zip central directory");
    const cv = view(cd);
    const decoder = new TextDecoder();
    let p = 0;
    for (let n = 0; n < count; n++) {
      if (p + 46 > cd.length || cv.getUint32(p, true) !== SIG_CENTRAL) throw new Error(`${this.file}: corrupt zip central directory at entry ${n}`);
      const nameLen = cv.getUint16(p + 28, true);
      const extraLen = cv.getUint16(p + 30, true);
      const commentLen = cv.getUint16(p + 32, true);
      const name = decoder.decode(cd.subarray(p + 46, p + 46 + nameLen));
      const e: ZipEntry = {
        name,
        method: cv.getUint16(p + 10, true),
        crc32: cv.getUint32(p + 16, true),
        compressedSize: cv.getUint32(p + 20, true),
        size: cv.getUint32(p + 24, true),
        localHeaderOffset: cv.getUint32(p + 42, true),
      };
      this.applyZip64Extra(e, cd.subarray(p + 46 + nameLen, p + 46 + nameLen + extraLen));
      this.entries.set(name, e);
      p += 46 + nameLen + extraLen + commentLen;
    }
  }

  /** The zip64 extra field holds, in this order, only those of the three fields that were saturated. */
  private applyZip64Extra(e: ZipEntry, extra: Uint8Array): void {
    const ev = view(extra);
    for (let q = 0; q + 4 <= extra.length; ) {
      const id = ev.getUint16(q, true);
      const len = ev.getUint16(q + 2, true);
      if (id === ZIP64_EXTRA) {
        let r = q + 4;
        for (const key of ["size", "compressedSize", "localHeaderOffset"] as const) {
          if (e[key] === MAX32 && r + 8 <= q + 4 + len) {
            e[key] = u64(ev, r, this.file);
            r += 8;
          }
        }
      }
      q += 4 + len;
    }
  }

  has(name: string): boolean {
    return this.entries.has(name);
  }

  /** The entry's uncompressed bytes, checked against its CRC-32. */
  read(name: string): Uint8Array {
    const e = this.entries.get(name);
    if (!e) throw new Error(`${this.file}: zip archive has no entry '${name}'`);
    const local = view(readAt(this.fd, e.localHeaderOffset, 30, this.file, `zip local header of '${name}'`));
    if (local.getUint32(0, true) !== SIG_LOCAL) throw new Error(`${this.file}: bad zip local header for '${name}'`);
    // The local header's own name/extra lengths decide where the data starts (torch pads the extra field to align data).
    const dataStart = e.localHeaderOffset + 30 + local.getUint16(26, true) + local.getUint16(28, true);
    const raw = readAt(this.fd, dataStart, e.compressedSize, this.file, `zip entry '${name}'`);
    let data: Uint8Array;
    if (e.method === METHOD_STORED) data = raw;
    else if (e.method === METHOD_DEFLATED) {
      const out = zlib.inflateRawSync(raw);
      data = new Uint8Array(out.buffer, out.byteOffset, out.length);
    }
    else throw new Error(`${this.file}: zip entry '${name}' uses compression method ${e.method} (only stored and deflated are supported)`);
    if (data.length !== e.size) throw new Error(`${this.file}: zip entry '${name}' has ${data.length} bytes, expected ${e.size}`);
    if (crc32(data) !== e.crc32) throw new Error(`${this.file}: zip entry '${name}' fails its CRC-32 check (corrupt file)`);
    return data;
  }

  close(): void {
    fs.closeSync(this.fd);
  }
}

/** Open a zip, hand it to `use`, and close it whatever happens. */
export function withZip<T>(file: string, use: (zip: ZipReader) => T): T {
  const zip = new ZipReader(file);
  try {
    return use(zip);
  } finally {
    zip.close();
  }
}

export interface ZipInput {
  name: string;
  data: Uint8Array;
  /** Deflate this entry (default: stored). */
  deflate?: boolean;
}

/** DOS date 1980-01-01 00:00, so the same inputs always give the same bytes. */
const DOS_DATE = (0 << 9) | (1 << 5) | 1;
/** General-purpose flag bit 11: names are UTF-8. */
const FLAG_UTF8 = 0x0800;

/** Write a zip archive atomically. Entries and the archive must stay under 4 GiB (no zip64 writing). */
export function writeZip(file: string, inputs: ZipInput[]): void {
  if (inputs.length >= 0xffff) throw new Error(`${file}: ${inputs.length} zip entries is too many for a non-zip64 archive`);
  const encoder = new TextEncoder();
  writeAtomic(file, (fd) => {
    const central: Uint8Array[] = [];
    let offset = 0;
    for (const input of inputs) {
      const name = encoder.encode(input.name);
      const body = input.deflate ? zlib.deflateRawSync(input.data) : input.data;
      if (input.data.length >= MAX32 || offset + body.length >= MAX32) throw new Error(`${file}: zip entry '${input.name}' would need zip64, which writeZip does not write`);
      const crc = crc32(input.data);
      const method = input.deflate ? METHOD_DEFLATED : METHOD_STORED;
      const local = new Uint8Array(30 + name.length);
      const lv = view(local);
      lv.setUint32(0, SIG_LOCAL, true);
      lv.setUint16(4, 20, true);
      lv.setUint16(6, FLAG_UTF8, true);
      lv.setUint16(8, method, true);
      lv.setUint16(12, DOS_DATE, true);
      lv.setUint32(14, crc, true);
      lv.setUint32(18, body.length, true);
      lv.setUint32(22, input.data.length, true);
      lv.setUint16(26, name.length, true);
      local.set(name, 30);
      const cen = new Uint8Array(46 + name.length);
      const cv = view(cen);
      cv.setUint32(0, SIG_CENTRAL, true);
      cv.setUint16(4, 20, true);
      cv.setUint16(6, 20, true);
      cv.setUint16(8, FLAG_UTF8, true);
      cv.setUint16(10, method, true);
      cv.setUint16(14, DOS_DATE, true);
      cv.setUint32(16, crc, true);
      cv.setUint32(20, body.length, true);
      cv.setUint32(24, input.data.length, true);
      cv.setUint16(28, name.length, true);
      cv.setUint32(42, offset, true);
      cen.set(name, 46);
      central.push(cen);
      writeAll(fd, local);
      writeAll(fd, body);
      offset += local.length + body.length;
    }
    const cdSize = central.reduce((a, c) => a + c.length, 0);
    if (offset + cdSize >= MAX32) throw new Error(`${file}: zip archive would need zip64, which writeZip does not write`);
    for (const c of central) writeAll(fd, c);
    const end = new Uint8Array(22);
    const ev = view(end);
    ev.setUint32(0, SIG_EOCD, true);
    ev.setUint16(8, inputs.length, true);
    ev.setUint16(10, inputs.length, true);
    ev.setUint32(12, cdSize, true);
    ev.setUint32(16, offset, true);
    writeAll(fd, end);
  });
}
