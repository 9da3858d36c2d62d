import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "fs";
import * as path from "path";
import { fromRoot } from "../lib/core/paths";

// lib/ is layered; a module may import only from its own layer or lower ones.
const LAYERS = ["core", "backend", "io", "data", "nn", "train", "perceptual", "diffusion", "distill", "metrics", "viz", "experiments", "bin"];

function tsFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? tsFiles(p) : e.name.endsWith(".ts") ? [p] : [];
  });
}

test("lib/ layers import only their own or lower layers", () => {
  const lib = fromRoot("lib");
  const violations: string[] = [];
  for (const file of tsFiles(lib)) {
    const layer = path.relative(lib, file).split(path.sep)[0];
    const rank = LAYERS.indexOf(layer);
    assert.ok(rank >= 0, `${file} is in lib/${layer}, which is not a known layer (${LAYERS.join(", ")})`);
    const src = fs.readFileSync(file, "utf8");
    for (const m of src.matchAll(/(?:from\s+|require\(|import\()\s*["']([^"']+)["']/g)) {
      if (!m[1].startsWith(".")) continue;
      const target = path.relative(lib, path.resolve(path.dirname(file), m[1])).split(path.sep)[0];
      const tr = LAYERS.indexOf(target);
      if (tr > rank) violations.push(`${path.relative(lib, file)} imports ${m[1]} (layer ${target} is above ${layer})`);
    }
  }
  assert.deepEqual(violations, []);
});

test("the top level of the checkout is exactly the designed layout", () => {
  const expected = [".ci", ".gitattributes", ".npmrc", "README.md", "data", "environment.md", "figures", "lib", "notebooks", "package-lock.json", "package.json", "test", "tsconfig.json"];
  // .jupyter/ is this checkout's kernel spec, written by `npm run setup`
  const tracked = fs.readdirSync(fromRoot()).filter((n) => ![".git", ".gitignore", ".jupyter", "node_modules", "runs", "scratch"].includes(n));
  assert.deepEqual(tracked.sort(), expected.sort());
});
