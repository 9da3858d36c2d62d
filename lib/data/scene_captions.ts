import { Rng } from "../core/random";
import {
  Axis, Colour, COLOURS, GroupSpec, Region, REGIONS, Scene, sceneRng, SceneSpec, Shape, SHAPES, Size, SIZES, Texture, TEXTURES, Tone, TONES,
} from "./scenes";

// Captions of the text-to-image world: a small grammar with synonyms and varied phrasing that states every
// attribute of a SceneSpec ("two small red triangles above a blue ring on a striped grey background", "a dotted
// slate background with a blue ring under a pair of little red triangles"), and its parser, which reads any caption
// the grammar can write back into the SceneSpec (tests check the round trip; the attribute scorer uses the parser
// to score an image against a prompt). Medium is the unmarked size: "a blue ring" is a medium one.

/** Phrases per value; the first is the canonical one (canonicalCaption). */
const COUNT_WORDS: Record<number, string[]> = { 1: ["a", "one", "a single"], 2: ["two", "a pair of"], 3: ["three", "a group of three"] };
const SIZE_WORDS: Record<Size, string[]> = { small: ["small", "little", "tiny"], medium: ["", "medium-sized"], large: ["large", "big", "huge"] };
const COLOUR_WORDS: Record<Colour, string[]> = {
  red: ["red"], orange: ["orange"], yellow: ["yellow"], green: ["green"], blue: ["blue"], purple: ["purple", "violet"], pink: ["pink"], white: ["white"],
};
/** [singular, plural] per synonym. */
const SHAPE_WORDS: Record<Shape, Array<[string, string]>> = {
  circle: [["circle", "circles"], ["disc", "discs"]],
  square: [["square", "squares"]],
  triangle: [["triangle", "triangles"]],
  ring: [["ring", "rings"], ["donut", "donuts"]],
  star: [["star", "stars"]],
  cross: [["cross", "crosses"], ["plus sign", "plus signs"]],
  heart: [["heart", "hearts"]],
  diamond: [["diamond", "diamonds"]],
};
/** The relation seen from the caption's subject: group 0 is left of / above group 1. */
const RELATION_WORDS: Record<Axis, { first: string[]; second: string[] }> = {
  horizontal: { first: ["to the left of", "left of", "on the left of"], second: ["to the right of", "right of", "on the right of"] },
  vertical: { first: ["above", "over", "on top of"], second: ["below", "under", "beneath", "underneath"] },
};
const REGION_WORDS: Record<Region, string[]> = {
  "top left": ["in the top left corner", "at the top left", "in the upper left"],
  top: ["at the top", "near the top", "in the upper middle"],
  "top right": ["in the top right corner", "at the top right", "in the upper right"],
  left: ["on the left", "on the left side", "at the left"],
  centre: ["in the centre", "in the center", "in the middle"],
  right: ["on the right", "on the right side", "at the right"],
  "bottom left": ["in the bottom left corner", "at the bottom left", "in the lower left"],
  bottom: ["at the bottom", "near the bottom", "in the lower middle"],
  "bottom right": ["in the bottom right corner", "at the bottom right", "in the lower right"],
};
/** Plain is the unmarked texture: "a grey background" is a plain one. */
const TEXTURE_WORDS: Record<Texture, string[]> = { plain: ["", "plain"], striped: ["striped"], checkered: ["checkered", "chequered"], dotted: ["dotted", "polka-dot"] };
const TONE_WORDS: Record<Tone, string[]> = { grey: ["grey", "gray"], brown: ["brown"], slate: ["slate"], olive: ["olive"] };
const LEADS = ["a picture of", "an image of", "a drawing of"];

/** Captions written per scene. */
export const CAPTIONS_PER_SCENE = 4;

function pick<T>(rng: Rng, items: readonly T[]): T {
  return items[rng.int(items.length)];
}

const join = (...parts: string[]) => parts.filter((p) => p.length > 0).join(" ");
const article = (next: string) => (/^[aeiou]/.test(next) ? "an" : "a");

/** Which synonym: the canonical one, or a random one. */
type Chooser = <T>(items: readonly T[]) => T;

function nounPhrase(g: GroupSpec, choose: Chooser): string {
  const [sing, plural] = choose(SHAPE_WORDS[g.shape]);
  const rest = join(choose(SIZE_WORDS[g.size]), choose(COLOUR_WORDS[g.colour]), g.count === 1 ? sing : plural);
  const count = choose(COUNT_WORDS[g.count]);
  return join(count === "a" ? article(rest) : count, rest);
}

function backgroundPhrase(spec: SceneSpec, choose: Chooser): string {
  const words = join(choose(TEXTURE_WORDS[spec.texture]), choose(TONE_WORDS[spec.tone]), "background");
  return join(article(words), words);
}

function body(spec: SceneSpec, choose: Chooser, flip: boolean, copula: boolean): string {
  const [g0, g1] = spec.groups;
  if (spec.relation === null || g1 === undefined) {
    const np = nounPhrase(g0, choose);
    return spec.region ? join(np, choose(REGION_WORDS[spec.region])) : np;
  }
  const words = RELATION_WORDS[spec.relation];
  const [subject, rel, object] = flip ? [g1, choose(words.second), g0] : [g0, choose(words.first), g1];
  return join(nounPhrase(subject, choose), copula ? (subject.count === 1 ? "is" : "are") : "", rel, nounPhrase(object, choose));
}

/** The caption with every first synonym, no lead-in and the background last: one fixed string per spec. */
export function canonicalCaption(spec: SceneSpec): string {
  const first: Chooser = (items) => items[0];
  return join(body(spec, first, false, false), "on", backgroundPhrase(spec, first));
}

/** One caption of a spec in a random phrasing. */
export function randomCaption(spec: SceneSpec, rng: Rng): string {
  const choose: Chooser = (items) => pick(rng, items);
  const flip = spec.relation !== null && rng.uniform() < 0.5;
  const form = rng.int(4);
  if (form === 0) return join(backgroundPhrase(spec, choose), "with", body(spec, choose, flip, false));
  const bg = join(pick(rng, ["on", "against"]), backgroundPhrase(spec, choose));
  if (form === 1) return join(pick(rng, LEADS), body(spec, choose, flip, false), bg);
  if (form === 2 && spec.relation !== null) return join(body(spec, choose, flip, true), bg);
  const b = body(spec, choose, flip, false);
  // "there is a pair of ...", "there are two ...": the verb agrees with the first word
  const lead = rng.uniform() < 0.5 ? "" : /^(a|an|one) /.test(b) ? "there is" : "there are";
  return join(lead, b, bg);
}

/** The scene's CAPTIONS_PER_SCENE captions: distinct phrasings from the scene's own caption stream. */
export function sceneCaptions(scene: Scene, n = CAPTIONS_PER_SCENE): string[] {
  const rng = sceneRng(scene.seed, scene.split, scene.index, "captions");
  const out: string[] = [];
  for (let t = 0; out.length < n && t < 50 * n; t++) {
    const c = randomCaption(scene.spec, rng);
    if (!out.includes(c)) out.push(c);
  }
  // a lone plain object has few phrasings; repeats are fine once the distinct ones run out
  while (out.length < n) out.push(randomCaption(scene.spec, rng));
  return out;
}

// ---- parsing -------------------------------------------------------------------------------------------------

type Token =
  | { kind: "count"; value: number }
  | { kind: "size"; value: Size }
  | { kind: "colour"; value: Colour }
  | { kind: "shape"; value: Shape; plural: boolean }
  | { kind: "relation"; axis: Axis; first: boolean }
  | { kind: "region"; value: Region }
  | { kind: "texture"; value: Texture }
  | { kind: "tone"; value: Tone }
  | { kind: "filler" };

/** Every phrase of the grammar as word lists, longest first, so "on the left of" wins over "on the left". */
const LEXICON: Array<[string[], Token]> = (() => {
  const out: Array<[string, Token]> = [];
  for (const [n, ws] of Object.entries(COUNT_WORDS)) for (const w of ws) out.push([w, { kind: "count", value: Number(n) }]);
  out.push(["an", { kind: "count", value: 1 }]);
  for (const s of SIZES) for (const w of SIZE_WORDS[s]) if (w) out.push([w, { kind: "size", value: s }]);
  for (const c of COLOURS) for (const w of COLOUR_WORDS[c]) out.push([w, { kind: "colour", value: c }]);
  for (const s of SHAPES) for (const [one, many] of SHAPE_WORDS[s]) out.push([one, { kind: "shape", value: s, plural: false }], [many, { kind: "shape", value: s, plural: true }]);
  for (const a of ["horizontal", "vertical"] as const) {
    for (const w of RELATION_WORDS[a].first) out.push([w, { kind: "relation", axis: a, first: true }]);
    for (const w of RELATION_WORDS[a].second) out.push([w, { kind: "relation", axis: a, first: false }]);
  }
  for (const r of REGIONS) for (const w of REGION_WORDS[r]) out.push([w, { kind: "region", value: r }]);
  for (const t of TEXTURES) for (const w of TEXTURE_WORDS[t]) if (w) out.push([w, { kind: "texture", value: t }]);
  for (const t of TONES) for (const w of TONE_WORDS[t]) out.push([w, { kind: "tone", value: t }]);
  for (const w of [...LEADS, "there is", "there are", "is", "are", "on", "against", "with", "background"]) out.push([w, { kind: "filler" }]);
  return out.map(([w, t]) => [w.split(" "), t] as [string[], Token]).sort((a, b) => b[0].length - a[0].length);
})();

function tokenize(caption: string): Token[] {
  const words = caption.toLowerCase().replace(/[.,!]/g, " ").split(/\s+/).filter((w) => w.length > 0);
  const out: Token[] = [];
  for (let i = 0; i < words.length;) {
    const hit = LEXICON.find(([ws]) => ws.every((w, k) => words[i + k] === w));
    if (!hit) throw new Error(`caption "${caption}": unknown word '${words[i]}' at word ${i + 1}`);
    out.push(hit[1]);
    i += hit[0].length;
  }
  return out;
}

/**
 * The SceneSpec a caption states; throws, naming the caption, when it is not a sentence of the grammar.
 * Background: "on/against a [texture] tone background" at the end or "a [texture] tone background with" first.
 * Objects: a noun phrase (count, size, colour, shape), then a region, or a relation and a second noun phrase.
 */
export function parseCaption(caption: string): SceneSpec {
  const fail = (why: string): never => {
    throw new Error(`caption "${caption}": ${why}`);
  };
  const tokens = tokenize(caption);
  // at most one of each per caption
  const once: { texture?: Texture; tone?: Tone; region?: Region } = {};
  const groups: GroupSpec[] = [];
  let relation: { axis: Axis; first: boolean } | undefined;
  let np: Partial<GroupSpec> | undefined;
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i];
    const next = tokens[i + 1];
    // an article or count right before a background's texture or tone starts the background phrase
    if (t.kind === "count" && t.value === 1 && (next?.kind === "texture" || next?.kind === "tone")) continue;
    switch (t.kind) {
      case "texture":
      case "tone":
      case "region":
        if (once[t.kind]) fail(`two ${t.kind}s`);
        once[t.kind] = t.value as never;
        break;
      case "count":
        if (np) fail("a count inside a noun phrase");
        np = { count: t.value };
        break;
      case "size":
      case "colour":
        if (!np) fail(`'${t.value}' outside a noun phrase`);
        if (np![t.kind]) fail(`two ${t.kind}s in one noun phrase`);
        np![t.kind] = t.value as never;
        break;
      case "shape": {
        if (!np || !np.colour) fail(`the ${t.value} has no count or no colour`);
        if (t.plural !== np!.count! > 1) fail(`'${t.value}' does not agree with its count ${np!.count}`);
        groups.push({ count: np!.count!, shape: t.value, colour: np!.colour!, size: np!.size ?? "medium" });
        np = undefined;
        break;
      }
      case "relation":
        if (relation || groups.length !== 1) fail("a relation must stand between two noun phrases");
        relation = { axis: t.axis, first: t.first };
        break;
      case "filler":
        break;
    }
  }
  const { texture, tone, region } = once;
  if (np) fail("a noun phrase without a shape");
  if (!tone) fail("no background (expected '... on a [texture] <tone> background')");
  if (groups.length === 0 || groups.length > 2) fail(`expected one or two noun phrases, found ${groups.length}`);
  if ((groups.length === 2) !== (relation !== undefined)) fail("two noun phrases need a relation between them, and one noun phrase none");
  if (region && (groups.length !== 1 || groups[0].count !== 1)) fail("a region is given only for a scene of one object");
  const ordered = relation && !relation.first ? [groups[1], groups[0]] : groups;
  return { groups: ordered, relation: relation?.axis ?? null, region: region ?? null, texture: texture ?? "plain", tone: tone! };
}
