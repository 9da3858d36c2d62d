import * as fs from "fs";
import { Rng } from "../core/random";
import { DataOptions, ensureData } from "./fetch";

// COCO captions: the official 2017 val annotations (the COCO2017-5k evaluation) and the COCO2014 val 30k-prompt
// list used for FID-30k. Images are not part of this project's data; only the captions are prompts.

export const COCO_FILES = {
  captions2017: "coco/captions_val2017.json",
  prompts30k: "coco/MS-COCO_val2014_30k_captions.csv",
} as const;

export interface CocoImage {
  id: number;
  fileName: string;
  width: number;
  height: number;
}

export interface CocoCaption {
  id: number;
  imageId: number;
  caption: string;
}

export interface CocoCaptions {
  images: CocoImage[];
  captions: CocoCaption[];
}

/** Parse an official captions_*.json; every caption must point at a listed image. */
export function parseCocoCaptions(text: string, file: string): CocoCaptions {
  let raw: { images?: { id: number; file_name: string; width: number; height: number }[]; annotations?: { id: number; image_id: number; caption: string }[] };
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new Error(`${file}: not valid JSON: ${(e as Error).message}`);
  }
  if (!Array.isArray(raw.images) || !Array.isArray(raw.annotations)) throw new Error(`${file}: expected COCO annotations with "images" and "annotations" arrays`);
  const images = raw.images.map((i) => ({ id: i.id, fileName: i.file_name, width: i.width, height: i.height }));
  const ids = new Set(images.map((i) => i.id));
  const captions = raw.annotations.map((a) => {
    if (typeof a.caption !== "string" || !ids.has(a.image_id)) throw new Error(`${file}: annotation ${a.id} has no caption or an unknown image_id ${a.image_id}`);
    return { id: a.id, imageId: a.image_id, caption: a.caption };
  });
  return { images, captions };
}

export async function loadCocoCaptions2017(o: DataOptions = {}): Promise<CocoCaptions> {
  const file = await ensureData(COCO_FILES.captions2017, o);
  return parseCocoCaptions(fs.readFileSync(file, "utf8"), file);
}

/** The first caption (in annotation order) of each image, in image order: one prompt per image. */
export function firstCaptionPerImage(c: CocoCaptions): CocoCaption[] {
  const first = new Map<number, CocoCaption>();
  for (const a of c.captions) if (!first.has(a.imageId)) first.set(a.imageId, a);
  return c.images.filter((i) => first.has(i.id)).map((i) => first.get(i.id)!);
}

/**
 * RFC 4180 CSV: fields separated by commas, records by CRLF or LF; a quoted field may hold commas, newlines and
 * doubled quotes. A leading UTF-8 BOM is dropped.
 */
export function parseCsv(text: string, file = "CSV"): string[][] {
  const lineAt = (pos: number) => text.slice(0, pos).split("\n").length;
  const delim = /[,\r\n]/g;
  const rows: string[][] = [];
  let row: string[] = [];
  let i = text.charCodeAt(0) === 0xfeff ? 1 : 0;
  while (i < text.length) {
    let field = "";
    if (text[i] === '"') {
      // quoted: copy up to each quote; a doubled quote is a literal one
      const open = i;
      for (let j = i + 1; ; ) {
        const q = text.indexOf('"', j);
        if (q < 0) throw new Error(`${file}:${lineAt(open)}: quoted field is never closed`);
        field += text.slice(j, q);
        if (text[q + 1] === '"') {
          field += '"';
          j = q + 2;
        } else {
          i = q + 1;
          break;
        }
      }
      if (i < text.length && !",\r\n".includes(text[i])) throw new Error(`${file}:${lineAt(i)}: text after a closing quote`);
    } else {
      delim.lastIndex = i;
      const m = delim.exec(text);
      const end = m ? m.index : text.length;
      field = text.slice(i, end);
      if (field.includes('"')) throw new Error(`${file}:${lineAt(i)}: quote inside an unquoted field`);
      i = end;
    }
    row.push(field);
    if (text[i] === ",") {
      i++;
      if (i === text.length) row.push("");
      continue;
    }
    if (text[i] === "\r" && text[i + 1] === "\n") i++;
    i++;
    rows.push(row);
    row = [];
  }
  if (row.length) rows.push(row);
  return rows;
}

export interface Prompt {
  imageId: number;
  text: string;
}

/** The 30k list: header image_id,text, then one caption per distinct COCO2014 val image. */
export function parseCoco30k(text: string, file: string): Prompt[] {
  const rows = parseCsv(text, file);
  const header = rows.shift();
  if (!header || header.join(",") !== "image_id,text") throw new Error(`${file}: expected the header "image_id,text", got ${JSON.stringify(header?.join(","))}`);
  return rows.map((r, k) => {
    const id = Number(r[0]);
    if (r.length !== 2 || !Number.isInteger(id)) throw new Error(`${file}: data row ${k + 1} is not "image_id,text": ${JSON.stringify(r)}`);
    return { imageId: id, text: r[1] };
  });
}

export async function loadCoco30k(o: DataOptions = {}): Promise<Prompt[]> {
  const file = await ensureData(COCO_FILES.prompts30k, o);
  return parseCoco30k(fs.readFileSync(file, "utf8"), file);
}

/** n items drawn without replacement, in draw order; the same seed always gives the same subset. */
export function subset<T>(items: readonly T[], n: number, seed: number): T[] {
  if (!Number.isInteger(n) || n < 0 || n > items.length) throw new Error(`subset: cannot draw ${n} of ${items.length} items`);
  const perm = new Rng(seed).permutation(items.length);
  return Array.from(perm.subarray(0, n), (i) => items[i]);
}
