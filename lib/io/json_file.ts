import * as fs from "fs";
import { CheckpointError } from "./checkpoint_error";
import { writeAll, writeAtomic } from "./file_bytes";

// JSON files (configs, shard indexes) read and written with errors that name the file.

export function readJsonFile(file: string): unknown {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (e) {
    throw new CheckpointError(file, `cannot read (${(e as Error).message})`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new CheckpointError(file, `not valid JSON (${(e as Error).message})`);
  }
}

/** Written atomically, indented by 2 and ending in a newline, as diffusers and transformers write their configs. */
export function writeJsonFile(file: string, value: unknown): void {
  const bytes = new TextEncoder().encode(JSON.stringify(value, null, 2) + "\n");
  writeAtomic(file, (fd) => writeAll(fd, bytes));
}
