import * as fs from "fs";
import * as path from "path";
import { fromRoot } from "../core/paths";

// Figures and tables of a run land in runs/<scale>/figures/ (D2G_SCALE, default cpu, as lib/experiments/scale.ts
// reads and checks it), so running a notebook never dirties the checkout. The committed figures/ change only when
// D2G_FIGURES points there, which `npm run reproduce -- --update-figures` does.

export function figuresDir(): string {
  if (process.env.D2G_FIGURES) return path.resolve(process.env.D2G_FIGURES);
  return fromRoot("runs", process.env.D2G_SCALE || "cpu", "figures");
}

/** `<dir>/<name>.<ext>`, creating the folder; names are plain file stems so a typo cannot write outside it. */
export function outputPath(name: string, ext: string, dir: string = figuresDir()): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(name)) {
    throw new Error(`output name ${JSON.stringify(name)}: expected letters, digits, '_', '-' or '.', no folders`);
  }
  fs.mkdirSync(dir, { recursive: true });
  return path.join(dir, `${name}.${ext}`);
}
