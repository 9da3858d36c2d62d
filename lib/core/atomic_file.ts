import * as fs from "fs";
import * as path from "path";

// Writing files so that a reader or a crash never sees half of one. Every layer that writes results
// (file formats, checkpoints, exported models) goes through here.

/** fs.writeSync moves at most ~2 GiB per call. */
const MAX_WRITE = 1 << 30;

/**
 * Write a file atomically: `write(fd)` fills a temporary file next to the target, which is then renamed over it,
 * so readers never see a half-written file and a failure leaves any old file untouched.
 */
export function writeAtomic(file: string, write: (fd: number) => void): void {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.${Date.now()}.tmp`);
  const fd = fs.openSync(tmp, "w");
  try {
    write(fd);
    fs.fsyncSync(fd);
  } catch (e) {
    fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    throw e;
  }
  fs.closeSync(fd);
  fs.renameSync(tmp, file);
}

/** Write all of `bytes`; fs.writeSync may write less than asked. */
export function writeAll(fd: number, bytes: Uint8Array): void {
  let done = 0;
  while (done < bytes.length) done += fs.writeSync(fd, bytes, done, Math.min(bytes.length - done, MAX_WRITE));
}
