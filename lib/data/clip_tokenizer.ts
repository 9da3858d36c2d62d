import * as fs from "fs";
import * as zlib from "zlib";
import { DataOptions, ensureData } from "./fetch";

// CLIP's byte-level BPE tokenizer, as transformers' CLIPTokenizer (the slow one that Stable Diffusion pipelines
// load) runs it when the optional `ftfy` package is absent, which is the case in a plain
// `pip install diffusers transformers`:
//   1. BasicTokenizer(strip_accents=False, do_split_on_punc=False): drop NUL, U+FFFD and every character of
//      Unicode category C* except \t \n \r; turn \t \n \r and category Zs into spaces; put spaces around CJK
//      ideographs; NFC; split on whitespace; lower-case each word; join with single spaces.
//   2. The pre-tokenization regex of OpenAI's simple_tokenizer; each piece is UTF-8 encoded and its bytes mapped
//      to printable characters (bytes_to_unicode), then merged by BPE rank with "</w>" on the last symbol.
//   3. <|startoftext|> ids <|endoftext|>, the ids truncated to 75 so that the row fits 77, padded to 77.
// With ftfy installed, transformers (and OpenAI's simple_tokenizer, which always uses it, and also unescapes HTML
// entities) replace step 1 by ftfy.fix_text + whitespace collapse + lower case. The two agree on ASCII text and on
// NFC-composed accented Latin; they differ where ftfy repairs text: curly quotes (ftfy makes ’ “ ” straight),
// mojibake ("cafÃ©" -> "café"), full-width letters, ligatures (ﬁ -> fi), HTML entities (OpenAI only), and where
// step 1 acts: it spaces CJK ideographs (so each becomes its own word), and drops format characters such as the
// zero-width joiner inside emoji sequences and the soft hyphen. ftfy is a heuristic text repairer of several
// thousand lines, not a tokenizer rule, so it is not reproduced here.
// Unicode classes come from the engine's tables: Node 20 (ICU, Unicode 15.1+) and Python's `regex`/unicodedata
// agree on every code point assigned in Unicode 14; characters assigned later may be classed differently.

export const CLIP_BPE_FILE = "text/clip_bpe_simple_vocab_16e6.txt.gz";
export const START_OF_TEXT = "<|startoftext|>";
export const END_OF_TEXT = "<|endoftext|>";
/** Merges the tokenizer uses: 49152 - 256 - 2 (the vocabulary is 256 bytes, 256 bytes + </w>, merges, 2 specials). */
export const CLIP_MERGES = 49152 - 256 - 2;
export const CLIP_CONTEXT_LENGTH = 77;

/**
 * Padding after <|endoftext|>: "endoftext" repeats it (SD1.5's tokenizer_config.json: pad_token "<|endoftext|>",
 * what diffusers' pipelines feed the text encoder); "zero" writes id 0 (the token "!"), as OpenAI's clip.tokenize does.
 */
export type ClipPadding = "endoftext" | "zero";

export interface ClipTokenizeOptions {
  /** Default 77. */
  contextLength?: number;
  /** Default "endoftext" (SD1.5). */
  padding?: ClipPadding;
  /** Cut over-long prompts to contextLength - 2 content tokens (the pipelines' truncation=True; default). Otherwise throw. */
  truncate?: boolean;
}

/** Python's str.isspace() set, and the `regex` module's \s (the same set less \x1c-\x1f). */
const PY_ISSPACE = "\\t\\n\\v\\f\\r\\x1c-\\x20\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";
const PY_REGEX_S = "\\t\\n\\v\\f\\r\\x20\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";

// simple_tokenizer's pattern (compiled there with IGNORECASE; the text is lower case by then, and the only
// non-ASCII character that case-folds into one of its literals is the long s, hence [sſ]). JS's \s differs from
// Python's (it has U+FEFF, lacks U+0085), so the class is spelled out.
const PIECE = new RegExp(
  `<\\|[sſ]tartoftext\\|>|<\\|endoftext\\|>|'[sſ]|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^${PY_REGEX_S}\\p{L}\\p{N}]+`,
  "gu",
);
const SPLIT_WORDS = new RegExp(`[${PY_ISSPACE}]+`, "u");
const SPECIAL = /(<\|startoftext\|>|<\|endoftext\|>)/;
const CONTROL = /\p{C}/u;
const UTF8 = new TextEncoder();
const ZS = /\p{Zs}/u;

/** The CJK Unicode blocks that BasicTokenizer surrounds with spaces. */
function isCjk(cp: number): boolean {
  return (
    (cp >= 0x4e00 && cp <= 0x9fff) ||
    (cp >= 0x3400 && cp <= 0x4dbf) ||
    (cp >= 0x20000 && cp <= 0x2a6df) ||
    (cp >= 0x2a700 && cp <= 0x2b73f) ||
    (cp >= 0x2b740 && cp <= 0x2b81f) ||
    (cp >= 0x2b820 && cp <= 0x2ceaf) ||
    (cp >= 0xf900 && cp <= 0xfaff) ||
    (cp >= 0x2f800 && cp <= 0x2fa1f)
  );
}

/** transformers' BasicTokenizer(strip_accents=False, do_split_on_punc=False) followed by " ".join. */
export function clipBasicClean(text: string): string {
  let out = "";
  for (const ch of text) {
    const cp = ch.codePointAt(0)!;
    if (cp === 0 || cp === 0xfffd) continue;
    const ws = ch === " " || ch === "\t" || ch === "\n" || ch === "\r" || ZS.test(ch);
    if (!ws && CONTROL.test(ch)) continue;
    if (ws) out += " ";
    else if (isCjk(cp)) out += ` ${ch} `;
    else out += ch;
  }
  return out
    .normalize("NFC")
    .split(SPLIT_WORDS)
    .filter((w) => w !== "")
    .map((w) => w.toLowerCase())
    .join(" ");
}

/** OpenAI's bytes_to_unicode: printable bytes map to themselves, the other 68 to U+0100 onwards. */
function byteToUnicode(): string[] {
  const table: string[] = new Array(256);
  let n = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    table[b] = String.fromCodePoint(printable ? b : 256 + n++);
  }
  return table;
}

/** The vocabulary that OpenAI's SimpleTokenizer builds from the merges (what vocab.json of HF repos holds). */
export function clipVocabFromMerges(merges: Array<[string, string]>): string[] {
  const bytes = byteToUnicode();
  // byte order here is bs order in the reference: the printable ranges first, then the remapped bytes
  const order = [...bytes.keys()].sort((a, b) => bytes[a].codePointAt(0)! - bytes[b].codePointAt(0)!);
  const base = order.map((b) => bytes[b]);
  return [...base, ...base.map((s) => s + "</w>"), ...merges.map(([a, b]) => a + b), START_OF_TEXT, END_OF_TEXT];
}

/** The merges after the version line, at most CLIP_MERGES of them; fewer make a smaller vocabulary, as in the reference. */
function parseMerges(text: string, file: string): Array<[string, string]> {
  const lines = text.replace(/\s+$/, "").split("\n");
  return lines.slice(1, CLIP_MERGES + 1).map((l, i) => {
    const parts = l.split(" ").filter((p) => p !== "");
    if (parts.length !== 2) throw new Error(`${file}:${i + 2}: expected a merge "a b", got ${JSON.stringify(l)}`);
    return [parts[0], parts[1]];
  });
}

export class ClipTokenizer {
  private readonly ranks = new Map<string, number>();
  private readonly decoder = new Map<number, string>();
  private readonly byteEncoder = byteToUnicode();
  private readonly byteDecoder = new Map(this.byteEncoder.map((c, b) => [c, b]));
  private readonly cache = new Map<string, string[]>();
  readonly bos: number;
  readonly eos: number;

  constructor(readonly encoder: Map<string, number>, merges: Array<[string, string]>, readonly source = "CLIP tokenizer") {
    merges.forEach(([a, b], i) => this.ranks.set(`${a} ${b}`, i));
    for (const [tok, id] of encoder) this.decoder.set(id, tok);
    const id = (t: string) => {
      const v = encoder.get(t);
      if (v === undefined) throw new Error(`${source}: the vocabulary has no ${t}`);
      return v;
    };
    this.bos = id(START_OF_TEXT);
    this.eos = id(END_OF_TEXT);
  }

  /** From OpenAI's bpe_simple_vocab_16e6.txt.gz (the vocabulary is derived from the merges). */
  static fromBpeGz(file: string): ClipTokenizer {
    let text: string;
    try {
      text = zlib.gunzipSync(fs.readFileSync(file)).toString("utf8");
    } catch (e) {
      throw new Error(`${file}: cannot read the gzip BPE merges: ${(e as Error).message}`);
    }
    const merges = parseMerges(text, file);
    const vocab = clipVocabFromMerges(merges);
    return new ClipTokenizer(new Map(vocab.map((t, i) => [t, i])), merges, file);
  }

  /** From a diffusers/transformers tokenizer folder's vocab.json and merges.txt. */
  static fromVocabMerges(vocabFile: string, mergesFile: string): ClipTokenizer {
    let vocab: Record<string, number>;
    try {
      vocab = JSON.parse(fs.readFileSync(vocabFile, "utf8"));
    } catch (e) {
      throw new Error(`${vocabFile}: cannot read the vocabulary JSON: ${(e as Error).message}`);
    }
    if (typeof vocab !== "object" || vocab === null || Array.isArray(vocab)) throw new Error(`${vocabFile}: expected an object {token: id}`);
    const encoder = new Map<string, number>();
    for (const [t, id] of Object.entries(vocab)) {
      if (!Number.isInteger(id) || id < 0) throw new Error(`${vocabFile}: token ${JSON.stringify(t)} has id ${JSON.stringify(id)}, expected a non-negative integer`);
      encoder.set(t, id);
    }
    let merges: string;
    try {
      merges = fs.readFileSync(mergesFile, "utf8");
    } catch (e) {
      throw new Error(`${mergesFile}: cannot read the BPE merges: ${(e as Error).message}`);
    }
    const pairs = parseMerges(merges, mergesFile);
    const tok = new ClipTokenizer(encoder, pairs, `${vocabFile} + ${mergesFile}`);
    // CLIP's vocabulary is the 256 bytes, the same with </w>, one token per merge and the two special tokens
    const implied = 2 * 256 + pairs.length + 2;
    if (encoder.size !== implied) {
      throw new Error(`${vocabFile} holds ${encoder.size} tokens, but the ${pairs.length} merges of ${mergesFile} make a vocabulary of ${implied}: is one of them truncated?`);
    }
    return tok;
  }

  /** OpenAI's merges through the data registry (data/sources.json, group clip-bpe). */
  static async load(o: DataOptions = {}): Promise<ClipTokenizer> {
    return ClipTokenizer.fromBpeGz(await ensureData(CLIP_BPE_FILE, o));
  }

  get vocabSize(): number {
    return this.encoder.size;
  }

  private bpe(token: string): string[] {
    const hit = this.cache.get(token);
    if (hit) return hit;
    const chars = [...token];
    let word = [...chars.slice(0, -1), chars[chars.length - 1] + "</w>"];
    // repeatedly merge the adjacent pair of lowest rank, every occurrence of it left to right
    while (word.length > 1) {
      let best = -1;
      let bestRank = Infinity;
      for (let i = 0; i + 1 < word.length; i++) {
        const r = this.ranks.get(`${word[i]} ${word[i + 1]}`);
        if (r !== undefined && r < bestRank) {
          bestRank = r;
          best = i;
        }
      }
      if (best < 0) break;
      const [a, b] = [word[best], word[best + 1]];
      const next: string[] = [];
      for (let i = 0; i < word.length; ) {
        if (i + 1 < word.length && word[i] === a && word[i + 1] === b) {
          next.push(a + b);
          i += 2;
        } else next.push(word[i++]);
      }
      word = next;
    }
    this.cache.set(token, word);
    return word;
  }

  /** Content ids of one text: no start/end tokens, no truncation. */
  encode(text: string): number[] {
    const ids: number[] = [];
    // transformers splits the special tokens out before cleaning the pieces between them
    for (const part of text.split(SPECIAL)) {
      if (part === START_OF_TEXT || part === END_OF_TEXT) {
        ids.push(part === START_OF_TEXT ? this.bos : this.eos);
        continue;
      }
      for (const [piece] of clipBasicClean(part).matchAll(PIECE)) {
        if (piece === START_OF_TEXT || piece === END_OF_TEXT) {
          ids.push(piece === START_OF_TEXT ? this.bos : this.eos);
          continue;
        }
        const mapped = Array.from(UTF8.encode(piece), (b) => this.byteEncoder[b]).join("");
        for (const t of this.bpe(mapped)) ids.push(this.encoder.get(t) ?? this.eos); // unknown -> unk_token <|endoftext|>
      }
    }
    return ids;
  }

  /** One row per text: <|startoftext|> ids <|endoftext|> padding, length contextLength (77). */
  tokenize(texts: string | string[], o: ClipTokenizeOptions = {}): number[][] {
    const len = o.contextLength ?? CLIP_CONTEXT_LENGTH;
    const pad = (o.padding ?? "endoftext") === "endoftext" ? this.eos : 0;
    if (o.padding !== undefined && o.padding !== "endoftext" && o.padding !== "zero") throw new Error(`CLIP tokenizer: unknown padding ${JSON.stringify(o.padding)} (expected "endoftext" or "zero")`);
    return (Array.isArray(texts) ? texts : [texts]).map((text) => {
      let ids = this.encode(text);
      if (ids.length > len - 2) {
        if (o.truncate === false) throw new Error(`CLIP tokenizer: ${JSON.stringify(text)} has ${ids.length} tokens, more than the ${len - 2} that fit a context of ${len}`);
        ids = ids.slice(0, len - 2);
      }
      const row = [this.bos, ...ids, this.eos];
      while (row.length < len) row.push(pad);
      return row;
    });
  }

  /** Text of ids (special tokens dropped), "</w>" read as a space, as the reference decoders do. */
  decode(ids: number[]): string {
    const text = ids
      .filter((i) => i !== this.bos && i !== this.eos)
      .map((i) => {
        const t = this.decoder.get(i);
        if (t === undefined) throw new Error(`${this.source}: no token has id ${i}`);
        return t;
      })
      .join("");
    const bytes = Uint8Array.from([...text.replace(/<\/w>/g, " ")], (c) => (c === " " ? 0x20 : this.byteDecoder.get(c)!));
    return new TextDecoder().decode(bytes).trim();
  }
}
