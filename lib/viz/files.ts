import * as fs from "fs";
import * as path from "path";
import { fromRoot } from "../core/paths";

// Figures and tables land in figures/ (committed, referenced by the README). The notebook runner points
// D2G_FIGURES elsewhere for smoke runs so that CI never overwrites the committed results.

export function figuresDir(): string {
  return process.env.D2G_FIGURES ? path.resolve(process.env.D2G_FIGURES) : fromRoot("figures");
}

/** `<dir>/<name>.<ext>`, creating the folder; names are plain file stems so a typo cannot write outside it. */
export function outputPath(name: string, ext: string, dir: string = figuresDir()): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(name)) {
    throw new Error(`output name ${JSON.stringify(name)}: expected letters, digits, '_', '-' or '.', no folders`);
  }
  fs.mkdirSync(dir, { recursive: true });
  return path.join(dir, `${name}.${ext}`);
}
