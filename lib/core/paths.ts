import { createHash } from "crypto";
import * as fs from "fs";
import * as path from "path";

// The compiled library lives in node_modules/d2g/, so source-relative paths do not reach the checkout;
// walk up to the package.json that names this project instead.
export function repoRoot(): string {
  if (process.env.D2G_ROOT) return path.resolve(process.env.D2G_ROOT);
  let dir = __dirname;
  for (;;) {
    const pkg = path.join(dir, "package.json");
    if (fs.existsSync(pkg) && JSON.parse(fs.readFileSync(pkg, "utf8")).name === "d2g-notebooks") return dir;
    const up = path.dirname(dir);
    if (up === dir) throw new Error(`cannot find the d2g-notebooks checkout above ${__dirname}; set D2G_ROOT`);
    dir = up;
  }
}

/** Path inside the checkout, e.g. fromRoot("figures", "loss.png"). */
export function fromRoot(...parts: string[]): string {
  return path.join(repoRoot(), ...parts);
}

/**
 * The folder of an experiment's resumable work at a scale, runs/<scale>/<experiment>/...: checkpoints and cached
 * results live here, never in the tracked checkout.
 */
export function runDir(scale: string, experiment: string, ...parts: string[]): string {
  return fromRoot("runs", scale, experiment, ...parts);
}

/** A short stable name for a settings object, to key run folders: a changed setting never resumes old work. */
export function settingsKey(settings: unknown): string {
  return createHash("sha256").update(JSON.stringify(settings)).digest("hex").slice(0, 10);
}
