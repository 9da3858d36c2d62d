import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { firstCaptionPerImage, loadCoco30k, loadCocoCaptions2017, parseCoco30k, parseCsv, subset } from "../lib/data/coco";

const mirror = process.env.D2G_DATA_MIRROR;
const noMirror = mirror ? false : "D2G_DATA_MIRROR not set";
const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "d2g-coco-"));
after(() => fs.rmSync(dataDir, { recursive: true, force: true }));
const o = { dataDir, mirror: mirror ?? null, log: () => undefined };

test("COCO 2017 val captions: 5,000 images, 25,014 captions, one prompt per image", { skip: noMirror }, async () => {
  const c = await loadCocoCaptions2017(o);
  assert.equal(c.images.length, 5000);
  assert.equal(c.captions.length, 25014);
  assert.equal(new Set(c.images.map((i) => i.id)).size, 5000);
  const first = firstCaptionPerImage(c);
  assert.equal(first.length, 5000);
  assert.equal(first[0].imageId, c.images[0].id);
  assert.ok(first.every((a) => typeof a.caption === "string" && a.caption.length > 0));
});

test("COCO 30k CSV: 30,000 rows of distinct images, multiline captions kept whole", { skip: noMirror }, async () => {
  const rows = await loadCoco30k(o);
  assert.equal(rows.length, 30000);
  assert.equal(new Set(rows.map((r) => r.imageId)).size, 30000);
  const multiline = rows.filter((r) => r.text.includes("\n"));
  assert.equal(multiline.length, 97);
  assert.equal(multiline[0].text, "That is a picture of an outside locale. \n");
  // no caption swallowed the next row, and doubled quotes came out single
  assert.ok(rows.every((r) => r.text.length > 0 && !/\n\d+,/.test(r.text)));
  assert.equal(rows.find((r) => r.imageId === 42534)!.text, '"Head shot" of a zebra against a stark background.');
  const raw = fs.readFileSync(path.join(mirror!, "coco/MS-COCO_val2014_30k_captions.csv"), "utf8");
  assert.ok(raw.split("\n").length > 30001);
});

test("CSV parsing: quotes, doubled quotes, CRLF, embedded newlines, BOM, and errors", () => {
  assert.deepEqual(parseCsv('\ufeffa,b\r\n"x,""y""\nz",2\n,\n'), [["a", "b"], ['x,"y"\nz', "2"], ["", ""]]);
  assert.deepEqual(parseCsv("a,b"), [["a", "b"]]);
  assert.throws(() => parseCsv('a\n"open\n', "f.csv"), /f\.csv:2: quoted field is never closed/);
  assert.throws(() => parseCoco30k("id,caption\n1,x\n", "p.csv"), /p\.csv: expected the header "image_id,text"/);
  assert.throws(() => parseCoco30k("image_id,text\nabc,x\n", "p.csv"), /p\.csv: data row 1 is not "image_id,text"/);
});

test("subset is deterministic per seed, without repeats", () => {
  const items = Array.from({ length: 1000 }, (_, i) => i);
  const a = subset(items, 50, 1);
  assert.deepEqual(subset(items, 50, 1), a);
  assert.notDeepEqual(subset(items, 50, 2), a);
  assert.equal(new Set(a).size, 50);
  assert.deepEqual(subset(items, 1000, 3).sort((x, y) => x - y), items);
  assert.throws(() => subset(items, 1001, 1), /cannot draw 1001 of 1000/);
});
