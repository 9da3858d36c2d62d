import * as fs from "fs";
import * as path from "path";
import { fromRoot } from "../core/paths";
import { SourceFile } from "./sources";

// The offline mirror: a folder laid out like the data directory whose files are copied (and checked) instead of
// downloaded. D2G_DATA_MIRROR names it; without it, ../shared/data beside the checkout is used when it exists,
// so a fresh clone next to the shared data works offline in every entry point (npm scripts, Jupyter, reproduce)
// without any setting.

/** ../shared/data relative to the checkout. */
export function mirrorBesideCheckout(): string {
  return fromRoot("..", "shared", "data");
}

const announced = new Set<string>();

/**
 * The mirror folder: `mirror` when given (null: never use one), else D2G_DATA_MIRROR, else ../shared/data beside
 * the checkout if it exists, which is said once per process through `log`.
 */
export function mirrorDir(mirror?: string | null, log: (line: string) => void = (l) => process.stderr.write(l + "\n")): string | null {
  if (mirror !== undefined) return mirror === null ? null : path.resolve(mirror);
  const env = process.env.D2G_DATA_MIRROR;
  if (env) return path.resolve(env);
  const beside = mirrorBesideCheckout();
  if (!fs.existsSync(beside)) return null;
  if (!announced.has(beside)) {
    announced.add(beside);
    log(`data: using the offline mirror beside the checkout, ${beside} (D2G_DATA_MIRROR is not set)`);
  }
  return beside;
}

/** The mirror's copy of f; a listed copy that is absent means the folder is not the mirror's root. */
export function mirrorSource(f: SourceFile, mirror: string): string {
  const src = path.join(mirror, f.mirror?.path ?? f.path);
  if (!fs.existsSync(src)) {
    throw new Error(`missing mirror file: ${src} does not exist, but sources.json says the offline mirror holds ${f.path} (mirror ${mirror}); check that D2G_DATA_MIRROR names the mirror's root folder`);
  }
  return src;
}

/** Ends a network failure message: why the mirror did not serve the file, or how to use one. */
export function notInMirrorHint(f: SourceFile, mirror: string | null): string {
  return mirror ? ` (${f.path} is not in the offline mirror ${mirror})` : ` (offline? set D2G_DATA_MIRROR to a mirror folder, or put one at ${mirrorBesideCheckout()})`;
}
