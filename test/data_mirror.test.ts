import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { ensureData } from "../lib/data/fetch";
import { mirrorBesideCheckout, mirrorDir } from "../lib/data/mirror";
import { defaultSourcesFile } from "../lib/data/sources";

// The offline mirror without any setting: ../shared/data beside the checkout. A fake checkout (D2G_ROOT) with a
// one-file mirror beside it stands in for a fresh clone next to the shared data.
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "d2g-mirror-"));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

function withEnv<T>(env: Record<string, string | undefined>, f: () => T): T {
  const saved = Object.fromEntries(Object.keys(env).map((k) => [k, process.env[k]]));
  for (const [k, v] of Object.entries(env)) if (v === undefined) delete process.env[k]; else process.env[k] = v;
  try {
    return f();
  } finally {
    for (const [k, v] of Object.entries(saved)) if (v === undefined) delete process.env[k]; else process.env[k] = v;
  }
}

test("without D2G_DATA_MIRROR, ../shared/data beside the checkout is the mirror, said once per process", () => {
  const checkout = path.join(tmp, "a", "checkout");
  fs.mkdirSync(checkout, { recursive: true });
  const lines: string[] = [];
  const log = (l: string) => lines.push(l);
  withEnv({ D2G_ROOT: checkout, D2G_DATA_MIRROR: undefined }, () => {
    assert.equal(mirrorDir(undefined, log), null, "no folder there: no mirror");
    fs.mkdirSync(path.join(tmp, "a", "shared", "data"), { recursive: true });
    assert.equal(mirrorBesideCheckout(), path.join(tmp, "a", "shared", "data"));
    assert.equal(mirrorDir(undefined, log), path.join(tmp, "a", "shared", "data"));
    assert.equal(mirrorDir(undefined, log), path.join(tmp, "a", "shared", "data"));
    assert.equal(lines.length, 1, lines.join("\n"));
    assert.match(lines[0], /using the offline mirror beside the checkout, .*a\/shared\/data \(D2G_DATA_MIRROR is not set\)/);
    assert.equal(mirrorDir(null, log), null, "null: never a mirror");
  });
  withEnv({ D2G_ROOT: checkout, D2G_DATA_MIRROR: path.join(tmp, "elsewhere") }, () => {
    assert.equal(mirrorDir(undefined, log), path.join(tmp, "elsewhere"), "the variable wins");
  });
});

test("a loader in a fresh checkout gets its file from the mirror beside it, offline", { skip: process.env.D2G_DATA_MIRROR ? false : "D2G_DATA_MIRROR not set" }, async () => {
  const checkout = path.join(tmp, "b", "checkout");
  const name = "weights/lpips/v0.1/vgg.pth";
  fs.mkdirSync(path.join(tmp, "b", "shared", "data", path.dirname(name)), { recursive: true });
  fs.copyFileSync(path.join(process.env.D2G_DATA_MIRROR!, name), path.join(tmp, "b", "shared", "data", name));
  // sources.json is read from the real checkout; only the mirror's location comes from D2G_ROOT
  const sources = defaultSourcesFile();
  const lines: string[] = [];
  const got = await withEnv({ D2G_ROOT: checkout, D2G_DATA_MIRROR: undefined }, () =>
    ensureData(name, { sources, dataDir: path.join(checkout, "data", "downloads"), log: (l) => lines.push(l) }),
  );
  assert.equal(got, path.join(checkout, "data", "downloads", name));
  assert.match(lines.join("\n"), /beside the checkout[\s\S]*copied weights\/lpips\/v0\.1\/vgg\.pth from the mirror \(sha256 verified\)/);
});
