import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as zlib from "zlib";
import { fromRoot } from "../lib/core/paths";
import { ClipTokenizer, clipBasicClean } from "../lib/data/clip_tokenizer";

// Reference ids: transformers' CLIPTokenizer without ftfy, its BPE stage run by OpenAI's simple_tokenizer
// (test/fixtures/clip/make_clip_tokenizer_fixture.py).
const FIX = JSON.parse(fs.readFileSync(fromRoot("test", "fixtures", "clip", "tokenizer_ids.json"), "utf8")) as {
  prompts: string[];
  ids: number[][];
  rows: { prompts: string[]; endoftext: number[][]; zero: number[][] };
  vocab_size: number;
  vocab_sample: Record<string, number>;
};
const mirror = process.env.D2G_DATA_MIRROR;
const noMirror = mirror ? false : "D2G_DATA_MIRROR not set";
const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "d2g-clip-"));
after(() => fs.rmSync(dataDir, { recursive: true, force: true }));
const o = { dataDir, mirror: mirror ?? null, log: () => undefined };

test("CLIP BPE: the vocabulary built from OpenAI's merges, and every fixture prompt's ids", { skip: noMirror }, async () => {
  const tok = await ClipTokenizer.load(o);
  assert.equal(tok.vocabSize, FIX.vocab_size);
  for (const [t, id] of Object.entries(FIX.vocab_sample)) assert.equal(tok.encoder.get(t), id, t);
  assert.equal(tok.bos, 49406);
  assert.equal(tok.eos, 49407);
  assert.ok(FIX.prompts.length > 300);
  FIX.prompts.forEach((p, i) => assert.deepEqual(tok.encode(p), FIX.ids[i], `prompt ${i}: ${JSON.stringify(p)}`));
});

test("CLIP rows: 77 ids, truncation to 75, <|endoftext|> (SD1.5) or 0 (OpenAI) padding, errors", { skip: noMirror }, async () => {
  const tok = await ClipTokenizer.load(o);
  assert.deepEqual(tok.tokenize(FIX.rows.prompts), FIX.rows.endoftext);
  assert.deepEqual(tok.tokenize(FIX.rows.prompts, { padding: "zero" }), FIX.rows.zero);
  const empty = tok.tokenize("")[0];
  assert.deepEqual(empty.slice(0, 3), [49406, 49407, 49407]);
  assert.equal(empty.length, 77);
  const long = "a very long prompt ".repeat(30);
  assert.throws(() => tok.tokenize(long, { truncate: false }), /120 tokens, more than the 75/);
  assert.throws(() => tok.tokenize("x", { padding: "spaces" as never }), /unknown padding "spaces"/);
  assert.equal(tok.decode(tok.tokenize("A Photo of  a CAT!")[0]), "a photo of a cat !");
  assert.equal(clipBasicClean(" Café\u0301\u200d 中文\u2028x "), "café́ 中 文 x");
});

test("CLIP tokenizer from a diffusers folder's vocab.json + merges.txt gives the same ids; bad files name themselves", { skip: noMirror }, async () => {
  const ref = await ClipTokenizer.load(o);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "d2g-clip-folder-"));
  try {
    // as transformers' save_vocabulary writes them
    const vocab = Object.fromEntries([...ref.encoder].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
    fs.writeFileSync(path.join(dir, "vocab.json"), JSON.stringify(vocab, null, 2) + "\n");
    const gz = path.join(mirror!, "text", "clip_bpe_simple_vocab_16e6.txt.gz");
    const lines = zlib.gunzipSync(fs.readFileSync(gz)).toString("utf8").split("\n").slice(1, 48895);
    fs.writeFileSync(path.join(dir, "merges.txt"), "#version: 0.2\n" + lines.join("\n") + "\n");
    const tok = ClipTokenizer.fromVocabMerges(path.join(dir, "vocab.json"), path.join(dir, "merges.txt"));
    FIX.prompts.forEach((p, i) => assert.deepEqual(tok.encode(p), FIX.ids[i], `prompt ${i}`));

    fs.writeFileSync(path.join(dir, "short.txt"), "#version: 0.2\na b\n");
    assert.throws(() => ClipTokenizer.fromVocabMerges(path.join(dir, "vocab.json"), path.join(dir, "short.txt")), /vocab\.json holds 49408 tokens, but the 1 merges of .*short\.txt make a vocabulary of 515: is one of them truncated\?/);
    assert.throws(() => ClipTokenizer.fromVocabMerges(path.join(dir, "missing.json"), path.join(dir, "merges.txt")), /missing\.json: cannot read the vocabulary JSON/);
    fs.writeFileSync(path.join(dir, "cut.gz"), fs.readFileSync(gz).subarray(0, 5000));
    assert.throws(() => ClipTokenizer.fromBpeGz(path.join(dir, "cut.gz")), /cut\.gz: cannot read the gzip BPE merges/);
    fs.writeFileSync(path.join(dir, "nospecial.json"), JSON.stringify({ a: 0 }));
    assert.throws(() => ClipTokenizer.fromVocabMerges(path.join(dir, "nospecial.json"), path.join(dir, "merges.txt")), /has no <\|startoftext\|>/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
