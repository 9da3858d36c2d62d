import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as crypto from "crypto";
import * as fs from "fs";
import * as http from "http";
import * as os from "os";
import * as path from "path";
import { execFileSync, spawnSync } from "child_process";
import { AddressInfo } from "net";
import { dataStatus, ensureData, fetchData } from "../lib/data/fetch";
import { loadSources, resolveNames, Sources } from "../lib/data/sources";
import { ChecksumError } from "../lib/data/verified_write";
import { writeZip } from "../lib/io/zip";

const mirror = process.env.D2G_DATA_MIRROR;
const noMirror = mirror ? false : "D2G_DATA_MIRROR not set";
const tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), "d2g-fetch-"));
after(() => fs.rmSync(tmpRoot, { recursive: true, force: true }));

let dirs = 0;
function freshDir(): string {
  const d = path.join(tmpRoot, `d${dirs++}`);
  fs.mkdirSync(d);
  return d;
}

function sha(b: Uint8Array): string {
  return crypto.createHash("sha256").update(b).digest("hex");
}

/** Every file under dir (relative), to check that failures leave nothing behind. */
function listing(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).map((e) => path.relative(dir, path.join(e.parentPath, e.name))).sort();
}

function quietLog(): { lines: string[]; log: (l: string) => void } {
  const lines: string[] = [];
  return { lines, log: (l) => lines.push(l) };
}

test("sources.json is well formed and covers the mirror's MANIFEST", { skip: noMirror }, () => {
  const s = loadSources();
  const manifest = fs.readFileSync(path.join(mirror!, "MANIFEST.md"), "utf8");
  const listed = [...manifest.matchAll(/^\| `([^`]+)` \| (\d+) \| `([0-9a-f]{64})` \|/gm)];
  assert.ok(listed.length >= 48);
  for (const [, p, bytes, hash] of listed) {
    const f = s.files.find((e) => (e.mirror?.path ?? e.path) === p && e.mirror);
    assert.ok(f, `${p} from MANIFEST.md is not in sources.json with a mirror copy`);
    assert.equal(f!.mirror!.sha256 ?? f!.sha256, hash, p);
    assert.equal(f!.mirror!.bytes ?? f!.bytes, Number(bytes), p);
  }
  assert.deepEqual(resolveNames(s, ["cifar10"]).map((f) => f.path).slice(0, 1), ["cifar10/data_batch_1.bin"]);
  assert.equal(resolveNames(s, ["all-mirror"]).length, s.files.filter((f) => f.mirror).length);
});

test("unknown names are refused with the valid ones listed", () => {
  const s = loadSources();
  assert.throws(() => resolveNames(s, ["cifar10", "cifar-11"]), (e: Error) => /unknown data name "cifar-11"/.test(e.message) && /cifar10 \(7\)/.test(e.message) && /weights\/lpips\/v0\.1\/vgg\.pth/.test(e.message));
});

test("fetch from the mirror verifies sha256, skips a verified copy, and re-fetches a corrupted one", { skip: noMirror }, async () => {
  const dir = freshDir();
  const q = quietLog();
  const o = { dataDir: dir, mirror: mirror!, log: q.log };
  const name = "weights/lpips/v0.1/vgg.pth";
  const expected = loadSources().files.find((f) => f.path === name)!.sha256;
  const p = await ensureData(name, o);
  assert.equal(p, path.join(dir, name));
  assert.equal(sha(fs.readFileSync(p)), expected);
  assert.match(q.lines.join("\n"), /copied weights\/lpips\/v0\.1\/vgg\.pth from the mirror \(sha256 verified\)/);

  const [again] = await fetchData([name], o);
  assert.equal(again.action, "present");
  assert.equal(again.state, "ok");

  const bytes = fs.readFileSync(p);
  bytes[100] ^= 0xff;
  fs.writeFileSync(p, bytes);
  q.lines.length = 0;
  await ensureData(name, o);
  assert.match(q.lines.join("\n"), /matches no pinned checksum; fetching it again/);
  assert.equal(sha(fs.readFileSync(p)), expected);
  assert.deepEqual(listing(dir), [".verified.json", name]);
});

test("a wrong checksum in a sources file fails clearly and leaves no partial file", { skip: noMirror }, async () => {
  const dir = freshDir();
  const s = JSON.parse(fs.readFileSync(loadSources().file, "utf8"));
  const entry = s.files.find((f: { path: string }) => f.path === "images/skimage/astronaut.png");
  const real = entry.sha256;
  entry.sha256 = "0".repeat(64);
  const sourcesFile = path.join(dir, "sources.json");
  fs.writeFileSync(sourcesFile, JSON.stringify(s));
  const dataDir = path.join(dir, "data");
  await assert.rejects(ensureData("images/skimage/astronaut.png", { sources: sourcesFile, dataDir, mirror: mirror!, log: () => undefined }), (e: Error) => {
    assert.ok(e instanceof ChecksumError);
    assert.match(e.message, /checksum mismatch for images\/skimage\/astronaut\.png/);
    assert.ok(e.message.includes(`expected sha256 ${"0".repeat(64)}, got ${real}`), e.message);
    return true;
  });
  assert.deepEqual(listing(dataDir), []);
});

test("missing mirror file and mirror-only files without a mirror are clear errors", async () => {
  const dir = freshDir();
  const emptyMirror = freshDir();
  await assert.rejects(ensureData("cifar10/batches.meta.txt", { dataDir: dir, mirror: emptyMirror, log: () => undefined }), /missing mirror file: .*cifar10\/batches\.meta\.txt does not exist/);
  await assert.rejects(ensureData("weights/lpips/v0.1/vgg.json", { dataDir: dir, mirror: null, log: () => undefined }), /only in the offline mirror: set D2G_DATA_MIRROR/);
  await assert.rejects(ensureData("no/such/file", { dataDir: dir, mirror: null }), /unknown data name "no\/such\/file"/);
});

// ---- the network path, against a local server ----

interface Served {
  base: string;
  close: () => void;
}

async function serve(routes: Record<string, Uint8Array>): Promise<Served> {
  const server = http.createServer((req, res) => {
    const url = req.url ?? "";
    if (url === "/drop.bin") {
      // promise 1000 bytes, send 10, then cut the connection
      res.writeHead(200, { "content-length": "1000" });
      res.write(Buffer.alloc(10, 7), () => res.socket?.destroy());
      return;
    }
    const body = routes[url];
    if (!body) {
      res.writeHead(404).end("not found");
      return;
    }
    res.writeHead(200, { "content-length": String(body.length) }).end(Buffer.from(body));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as AddressInfo).port;
  return {
    base: `http://127.0.0.1:${port}`,
    close: () => {
      server.closeAllConnections();
      server.close();
    },
  };
}

function makeSources(files: Sources["files"], archives: Sources["archives"] = {}): Sources {
  return { file: "(test sources)", archives, files, groups: {} };
}

test("download over HTTP: verified, unpinned, wrong checksum, cut connection, 404 and refused connection", async () => {
  const good = crypto.randomBytes((1 << 20) + 4096);
  const srv = await serve({ "/good.bin": good, "/other.bin": good });
  try {
    const dir = freshDir();
    const q = quietLog();
    const file = (p: string, url: string, sha256: string | null) => ({ path: p, url, sha256, bytes: null, license: "test" });
    const sources = makeSources([
      file("good.bin", `${srv.base}/good.bin`, sha(good)),
      file("unpinned.bin", `${srv.base}/other.bin`, null),
      file("wrong.bin", `${srv.base}/good.bin`, "f".repeat(64)),
      file("drop.bin", `${srv.base}/drop.bin`, null),
      file("gone.bin", `${srv.base}/gone.bin`, null),
    ]);
    const o = { sources, dataDir: dir, mirror: null, log: q.log };
    const [r] = await fetchData(["good.bin"], o);
    assert.equal(r.action, "download");
    assert.equal(r.state, "ok");
    assert.deepEqual(fs.readFileSync(r.abs), good);
    assert.equal((await fetchData(["good.bin"], o))[0].action, "present");

    const [u] = await fetchData(["unpinned.bin"], o);
    assert.equal(u.state, "unverified");
    assert.match(q.lines.join("\n"), /downloaded unpinned\.bin from .* \(NOT verified: no sha256 is pinned for it\)/);

    await assert.rejects(ensureData("wrong.bin", o), (e: Error) => e instanceof ChecksumError && e.message.includes(`expected sha256 ${"f".repeat(64)}, got ${sha(good)}`));
    await assert.rejects(ensureData("drop.bin", o), /network failure/);
    await assert.rejects(ensureData("gone.bin", o), /network failure fetching gone\.bin: GET .*\/gone\.bin answered HTTP 404/);
    assert.deepEqual(listing(dir), [".verified.json", "good.bin", "unpinned.bin"]);
  } finally {
    srv.close();
  }
  const refused = makeSources([{ path: "x.bin", url: srv.base + "/good.bin", sha256: null, bytes: null, license: "test" }]);
  await assert.rejects(ensureData("x.bin", { sources: refused, dataDir: freshDir(), mirror: null }), /network failure fetching x\.bin from http:\/\/127\.0\.0\.1:\d+\/good\.bin: .*ECONNREFUSED/);
});

test("archive members: tar.gz and zip are downloaded, verified by sha256, and extracted", async () => {
  const src = freshDir();
  const a = crypto.randomBytes(5000);
  const b = Buffer.from("airplane\nautomobile\n");
  fs.mkdirSync(path.join(src, "batches"));
  fs.writeFileSync(path.join(src, "batches", "a.bin"), a);
  fs.writeFileSync(path.join(src, "batches", "b.txt"), b);
  fs.writeFileSync(path.join(src, "batches", "skip.html"), "<p>not wanted</p>");
  // a name over tar's 100 characters takes an extra GNU long-name record
  const longName = `${"n".repeat(120)}.bin`;
  fs.writeFileSync(path.join(src, "batches", longName), a.subarray(0, 700));
  const tgz = path.join(src, "set.tar.gz");
  execFileSync("tar", ["czf", tgz, "-C", src, "batches"]);
  const zip = path.join(src, "set.zip");
  writeZip(zip, [
    { name: "annotations/other.json", data: Buffer.from("{}"), deflate: true },
    { name: "annotations/c.json", data: b, deflate: true },
  ]);
  const tgzBytes = fs.readFileSync(tgz);
  const zipBytes = fs.readFileSync(zip);
  const srv = await serve({ "/set.tar.gz": tgzBytes, "/set.zip": zipBytes });
  try {
    const archive = (p: string, format: "tar.gz" | "zip", bytes: Buffer) => ({ path: p, url: `${srv.base}/${path.basename(p)}`, format, sha256: sha(bytes), bytes: bytes.length, license: "test" });
    const member = (p: string, arch: string, m: string, sha256: string | null) => ({ path: p, archive: arch, member: m, sha256, bytes: null, license: "test" });
    const sources = makeSources(
      [
        member("set/a.bin", "tgz", "batches/a.bin", sha(a)),
        member("set/b.txt", "tgz", "batches/b.txt", null),
        member("set/long.bin", "tgz", `batches/${longName}`, sha(a.subarray(0, 700))),
        member("ann/c.json", "zip", "annotations/c.json", null),
      ],
      { tgz: archive("archives/set.tar.gz", "tar.gz", tgzBytes), zip: archive("archives/set.zip", "zip", zipBytes) },
    );
    sources.groups = { all: ["set/a.bin", "set/b.txt", "set/long.bin", "ann/c.json"] };
    const dir = freshDir();
    const o = { sources, dataDir: dir, mirror: null, log: () => undefined };
    const results = await fetchData(["all"], o);
    assert.deepEqual(results.map((r) => [r.path, r.state, r.how, r.action, r.error?.message]), [
      ["set/a.bin", "ok", "sha256", "extract", undefined],
      ["set/b.txt", "ok", "archive", "extract", undefined],
      ["set/long.bin", "ok", "sha256", "extract", undefined],
      ["ann/c.json", "ok", "archive", "extract", undefined],
    ]);
    assert.deepEqual(fs.readFileSync(path.join(dir, "set/a.bin")), a);
    assert.deepEqual(fs.readFileSync(path.join(dir, "set/b.txt")), b);
    assert.deepEqual(fs.readFileSync(path.join(dir, "ann/c.json")), b);
    // the archive-trusted files stay "ok" on a later check, through the record of how they were obtained
    const status = await dataStatus(o);
    assert.deepEqual(status.map((s) => s.state), ["ok", "ok", "ok", "ok"]);

    // a corrupted archive is replaced by a fresh download before extraction
    fs.writeFileSync(path.join(dir, "archives/set.tar.gz"), "junk");
    fs.rmSync(path.join(dir, "set/a.bin"));
    assert.equal((await fetchData(["set/a.bin"], o))[0].state, "ok");
    assert.deepEqual(fs.readFileSync(path.join(dir, "archives/set.tar.gz")), tgzBytes);

    const missing = makeSources([member("set/z.bin", "tgz", "batches/z.bin", null)], sources.archives);
    await assert.rejects(ensureData("set/z.bin", { ...o, sources: missing }), /archive has no member batches\/z\.bin/);
  } finally {
    srv.close();
  }
});

test("npm run data: lists states with no names, fails on an unknown name", () => {
  const script = path.join(__dirname, "..", "lib", "bin", "fetch.js");
  const env = { ...process.env, D2G_DATA_DIR: freshDir() };
  const list = spawnSync(process.execPath, [script], { env, encoding: "utf8" });
  assert.equal(list.status, 0, list.stderr);
  assert.match(list.stdout, /missing .* cifar10\/data_batch_1\.bin/);
  assert.match(list.stdout, /groups: .*all-mirror/);
  const bad = spawnSync(process.execPath, [script, "not-a-dataset"], { env, encoding: "utf8" });
  assert.equal(bad.status, 2, "a bad argument is a usage error");
  assert.match(bad.stderr, /unknown data name "not-a-dataset"[^]*usage: npm run data/);
});
