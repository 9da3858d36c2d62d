import sharp from "sharp";
import { Rng } from "../core/random";

// The text-to-image world's scenes: one to three flat shapes on a textured background, each scene a pure function
// of (seed, split, index), so any shard can be made in any order and every number in the world is reproducible.
//
// A scene is one or two *groups*; a group is 1-3 identical objects (shape, colour, size). Two groups stand in a
// spatial relation (group 0 left of / above group 1); a lone object sits in one of nine regions. The SceneSpec is
// exactly what a caption says (scene_captions.ts writes and parses it); the objects add what a caption does not
// fix (exact centre, diameter, rotation, colour jitter) as ground truth for the attribute scorer.
//
// Rendering: an SVG rasterised by sharp (librsvg), then seeded pixel noise. Flat vector shapes are exact at any
// size, cost about a millisecond each, and their every attribute is known by construction; CIFAR-10 composites
// would bring photographic texture but no control over colour, size or shape.
//
// The compositional split: HELD_OUT lists (shape, colour) pairs and (shape, relation role) pairs that never occur in
// train or val; every test scene contains at least one of them, while each shape, colour and role alone is common
// in training. The scorer split draws from the whole distribution (the attribute scorer must read held-out
// combinations too) from its own index stream, so no scorer image is a train, val or test image.

export const SHAPES = ["circle", "square", "triangle", "ring", "star", "cross", "heart", "diamond"] as const;
export const COLOURS = ["red", "orange", "yellow", "green", "blue", "purple", "pink", "white"] as const;
export const SIZES = ["small", "medium", "large"] as const;
export const TEXTURES = ["plain", "striped", "checkered", "dotted"] as const;
export const TONES = ["grey", "brown", "slate", "olive"] as const;
/** A lone object's place: the cell of a 3x3 grid its centre lies in. */
export const REGIONS = ["top left", "top", "top right", "left", "centre", "right", "bottom left", "bottom", "bottom right"] as const;
export const AXES = ["horizontal", "vertical"] as const;
export const SPLITS = ["train", "val", "test", "scorer"] as const;

export type Shape = (typeof SHAPES)[number];
export type Colour = (typeof COLOURS)[number];
export type Size = (typeof SIZES)[number];
export type Texture = (typeof TEXTURES)[number];
export type Tone = (typeof TONES)[number];
export type Region = (typeof REGIONS)[number];
export type Axis = (typeof AXES)[number];
export type Split = (typeof SPLITS)[number];
export type Rgb = [number, number, number];

export interface GroupSpec {
  count: number;
  shape: Shape;
  colour: Colour;
  size: Size;
}

/** What a caption states. Two groups: group 0 is left of (horizontal) or above (vertical) group 1. */
export interface SceneSpec {
  groups: GroupSpec[];
  relation: Axis | null;
  /** Only for a scene of one object. */
  region: Region | null;
  texture: Texture;
  tone: Tone;
}

export interface SceneObject {
  group: number;
  shape: Shape;
  colour: Colour;
  size: Size;
  /** Centre, as fractions of the image side (x right, y down). */
  x: number;
  y: number;
  /** Diameter of the circle the shape is drawn in, as a fraction of the image side. */
  diameter: number;
  /** Degrees, clockwise. */
  rotation: number;
  rgb: Rgb;
}

export interface BackgroundParams {
  base: Rgb;
  /** The texture's second colour. */
  alt: Rgb;
  /** Pattern period as a fraction of the side, its rotation (degrees) and offset. */
  period: number;
  angle: number;
  phase: [number, number];
  /** A soft light falloff across the image: direction (degrees) and strength (0..1). */
  lightAngle: number;
  light: number;
}

export interface Scene {
  seed: number;
  split: Split;
  index: number;
  spec: SceneSpec;
  objects: SceneObject[];
  background: BackgroundParams;
}

/** Diameter of each size class as a fraction of the image side (12.8, 18.6 and 25.6 px at 64 px), jittered by +-6%. */
export const SIZE_DIAMETER: Record<Size, number> = { small: 0.2, medium: 0.29, large: 0.4 };
const SIZE_JITTER = 0.06;
/** Gap kept between objects' circles, and the edge margin, as fractions of the side. */
const OBJECT_GAP = 0.04;
const EDGE_MARGIN = 0.02;
/** Along the relation's axis every object of group 0 precedes every object of group 1 by this much. */
const RELATION_SEPARATION = 0.04;
/** Off-axis displacement of the group centroids at most this fraction of the on-axis one, so the relation reads clearly. */
const RELATION_SLOPE = 0.6;

export const COLOUR_RGB: Record<Colour, Rgb> = {
  red: [240, 58, 58], orange: [250, 146, 30], yellow: [244, 226, 56], green: [58, 188, 78],
  blue: [66, 128, 250], purple: [172, 92, 228], pink: [250, 136, 198], white: [244, 244, 244],
};

/**
 * Backgrounds are dark and muted (lightness 0.15-0.3, saturation <= 0.35): every object colour is at least ~45
 * luma levels brighter than every background. TAEF2 at 8x8 latents keeps luminance edges but smears chroma-only
 * ones: mid-grey backgrounds, as bright as the red, blue and purple objects, turned small shapes into blobs.
 */
export const TONE_HSL: Record<Tone, [number, number, number]> = {
  grey: [0, 0, 0.17], brown: [28, 0.35, 0.17], slate: [214, 0.3, 0.18], olive: [68, 0.32, 0.16],
};

/** Combinations never seen in train or val; each test scene has at least one. Each shape and colour appears in one pair. */
export const HELD_OUT = {
  shapeColour: [
    ["circle", "green"], ["square", "purple"], ["triangle", "yellow"], ["ring", "pink"],
    ["star", "blue"], ["cross", "orange"], ["heart", "white"], ["diamond", "red"],
  ] as Array<[Shape, Colour]>,
  /** (shape, role): the shape's group is the upper one of a vertical relation, or the left one of a horizontal one. */
  shapeRole: [["star", "above"], ["square", "above"], ["triangle", "left of"], ["heart", "left of"]] as Array<[Shape, "above" | "left of"]>,
};

/** The held-out combinations a spec contains, e.g. ["green circle", "star above"]. */
export function heldOutCombinations(spec: SceneSpec): string[] {
  const found: string[] = [];
  for (const g of spec.groups) {
    if (HELD_OUT.shapeColour.some(([s, c]) => s === g.shape && c === g.colour)) found.push(`${g.colour} ${g.shape}`);
  }
  if (spec.relation) {
    const role = spec.relation === "vertical" ? "above" : "left of";
    const first = spec.groups[0].shape;
    if (HELD_OUT.shapeRole.some(([s, r]) => s === first && r === role)) found.push(`${first} ${role}`);
  }
  return found;
}

/** Does a spec belong to a split's distribution? Test: some held-out combination; train/val: none; scorer: any. */
export function inSplit(spec: SceneSpec, split: Split): boolean {
  if (split === "scorer") return true;
  const held = heldOutCombinations(spec).length > 0;
  return split === "test" ? held : !held;
}

/** Independent random streams of one scene: its spec and layout, its captions, its pixel noise. */
export type SceneStream = "layout" | "captions" | "noise";
const STREAM_ID: Record<SceneStream, number> = { layout: 0, captions: 1, noise: 2 };

/** murmur3's 32-bit finaliser, chained over the words: a well-mixed seed from (seed, split, index, stream). */
function mix(words: number[]): number {
  let h = 0x2545f491;
  for (const w of words) {
    h = Math.imul(h ^ (w >>> 0), 0x9e3779b1) >>> 0;
    h ^= h >>> 16;
    h = Math.imul(h, 0x85ebca6b) >>> 0;
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35) >>> 0;
    h ^= h >>> 16;
  }
  return h >>> 0;
}

export function sceneRng(seed: number, split: Split, index: number, stream: SceneStream): Rng {
  if (!Number.isInteger(index) || index < 0) throw new Error(`scene index must be a non-negative integer, got ${index}`);
  return new Rng(mix([seed, SPLITS.indexOf(split), index, STREAM_ID[stream]]));
}

function pick<T>(rng: Rng, items: readonly T[]): T {
  return items[rng.int(items.length)];
}

function drawSpec(rng: Rng): SceneSpec {
  const group = (count: number): GroupSpec => ({ count, shape: pick(rng, SHAPES), colour: pick(rng, COLOURS), size: pick(rng, SIZES) });
  const texture = pick(rng, TEXTURES);
  const tone = pick(rng, TONES);
  if (rng.uniform() < 0.4) {
    // one group: a lone object half the time, else two or three alike
    const count = pick(rng, [1, 1, 2, 3]);
    return { groups: [group(count)], relation: null, region: count === 1 ? pick(rng, REGIONS) : null, texture, tone };
  }
  const [c0, c1] = pick(rng, [[1, 1], [1, 1], [1, 1], [2, 1], [1, 2]]);
  const g0 = group(c0);
  let g1 = group(c1);
  // the two groups must differ in shape or colour, or a caption could not tell them apart from one larger group
  while (g1.shape === g0.shape && g1.colour === g0.colour) g1 = group(c1);
  return { groups: [g0, g1], relation: pick(rng, AXES), region: null, texture, tone };
}

const clamp = (v: number, lo: number, hi: number) => Math.min(hi, Math.max(lo, v));

/** HSV jitter of a base colour, so "red" covers a range of reds. */
function jitterColour(rgb: Rgb, rng: Rng): Rgb {
  const [r, g, b] = rgb.map((v) => v / 255);
  const max = Math.max(r, g, b);
  const min = Math.min(r, g, b);
  const d = max - min;
  let h = d === 0 ? 0 : max === r ? ((g - b) / d) % 6 : max === g ? (b - r) / d + 2 : (r - g) / d + 4;
  h = (h * 60 + rng.range(-6, 6) + 360) % 360;
  const s = clamp((max === 0 ? 0 : d / max) + rng.range(-0.08, 0.04), 0, 1);
  const v = clamp(max + rng.range(-0.05, 0.03), 0, 1);
  return hsvToRgb(h, s, v);
}

function hsvToRgb(h: number, s: number, v: number): Rgb {
  const c = v * s;
  const x = c * (1 - Math.abs(((h / 60) % 2) - 1));
  const m = v - c;
  const [r, g, b] = h < 60 ? [c, x, 0] : h < 120 ? [x, c, 0] : h < 180 ? [0, c, x] : h < 240 ? [0, x, c] : h < 300 ? [x, 0, c] : [c, 0, x];
  return [r, g, b].map((u) => Math.round(255 * (u + m))) as Rgb;
}

function hslToRgb(h: number, s: number, l: number): Rgb {
  // HSL -> HSV: v = l + s min(l, 1 - l), s_v = 2 (1 - l / v)
  const v = l + s * Math.min(l, 1 - l);
  return hsvToRgb(h, v === 0 ? 0 : 2 * (1 - l / v), v);
}

function drawBackground(spec: SceneSpec, rng: Rng): BackgroundParams {
  const [h, s, l] = TONE_HSL[spec.tone];
  const lb = l + rng.range(-0.03, 0.03);
  const hue = h + rng.range(-8, 8);
  const sat = clamp(s + rng.range(-0.04, 0.03), 0, 1);
  // the texture's second colour is a lighter or darker shade of the same tone
  const dl = (rng.uniform() < 0.5 ? -1 : 1) * rng.range(0.04, 0.07);
  return {
    base: hslToRgb((hue + 360) % 360, sat, lb),
    alt: hslToRgb((hue + 360) % 360, sat, lb + dl),
    period: rng.range(0.14, 0.22),
    angle: spec.texture === "striped" ? pick(rng, [0, 45, 90, 135]) + rng.range(-10, 10) : 0,
    phase: [rng.uniform(), rng.uniform()],
    lightAngle: rng.range(0, 360),
    light: rng.range(0, 0.1),
  };
}

function drawObjects(spec: SceneSpec, rng: Rng): Omit<SceneObject, "x" | "y">[] {
  return spec.groups.flatMap((g, gi) => {
    // one colour per group: the objects of a group are alike, as the caption says
    const rgb = jitterColour(COLOUR_RGB[g.colour], rng);
    return Array.from({ length: g.count }, () => ({
      group: gi, shape: g.shape, colour: g.colour, size: g.size,
      diameter: SIZE_DIAMETER[g.size] * (1 + rng.range(-SIZE_JITTER, SIZE_JITTER)),
      rotation: g.shape === "circle" || g.shape === "ring" ? 0 : rng.range(-10, 10),
      rgb,
    }));
  });
}

/** The cell of the 3x3 grid a point lies in. */
export function regionOf(x: number, y: number): Region {
  const col = clamp(Math.floor(x * 3), 0, 2);
  const row = clamp(Math.floor(y * 3), 0, 2);
  return REGIONS[row * 3 + col];
}

function centroid(objs: Array<{ x: number; y: number }>): [number, number] {
  return [objs.reduce((s, o) => s + o.x, 0) / objs.length, objs.reduce((s, o) => s + o.y, 0) / objs.length];
}

/**
 * Does the layout show the relation unambiguously? Along the axis every object of group 0 precedes every object of
 * group 1 (centre to centre, with a margin), and the group centroids are displaced mostly along that axis.
 */
export function relationHolds(g0: Array<{ x: number; y: number }>, g1: Array<{ x: number; y: number }>, axis: Axis, separation = RELATION_SEPARATION): boolean {
  const on = (o: { x: number; y: number }) => (axis === "horizontal" ? o.x : o.y);
  const off = (o: { x: number; y: number }) => (axis === "horizontal" ? o.y : o.x);
  if (Math.max(...g0.map(on)) + separation >= Math.min(...g1.map(on))) return false;
  const [a, b] = [centroid(g0), centroid(g1)].map(([x, y]) => ({ x, y }));
  return Math.abs(off(b) - off(a)) <= RELATION_SLOPE * (on(b) - on(a));
}

const MAX_PLACEMENT_TRIES = 2000;

/** Centres for the objects, or null when rejection sampling finds no layout (the caller then redraws the spec). */
function place(spec: SceneSpec, objs: Omit<SceneObject, "x" | "y">[], rng: Rng): SceneObject[] | null {
  for (let t = 0; t < MAX_PLACEMENT_TRIES; t++) {
    // with a relation, a random line across its axis parts the groups, so most draws already satisfy it
    const cut = rng.range(0.35, 0.65);
    const placed: SceneObject[] = [];
    for (const o of objs) {
      const lo = o.diameter / 2 + EDGE_MARGIN;
      const hi = 1 - lo;
      let [xlo, xhi, ylo, yhi] = [lo, hi, lo, hi];
      if (spec.region) {
        const k = REGIONS.indexOf(spec.region);
        const [col, row] = [k % 3, Math.floor(k / 3)];
        // the centre inside the region's cell, kept a little off the cell's edges so the region is unambiguous
        [xlo, xhi] = [Math.max(lo, col / 3 + 0.03), Math.min(hi, (col + 1) / 3 - 0.03)];
        [ylo, yhi] = [Math.max(lo, row / 3 + 0.03), Math.min(hi, (row + 1) / 3 - 0.03)];
      } else if (spec.relation) {
        const [a, b] = o.group === 0 ? [lo, cut - RELATION_SEPARATION / 2] : [cut + RELATION_SEPARATION / 2, hi];
        if (spec.relation === "horizontal") [xlo, xhi] = [a, b];
        else [ylo, yhi] = [a, b];
      }
      if (xlo > xhi || ylo > yhi) break;
      const x = rng.range(xlo, xhi);
      const y = rng.range(ylo, yhi);
      if (placed.some((p) => Math.hypot(p.x - x, p.y - y) < (p.diameter + o.diameter) / 2 + OBJECT_GAP)) break;
      placed.push({ ...o, x, y });
    }
    if (placed.length < objs.length) continue;
    if (spec.relation && !relationHolds(placed.filter((o) => o.group === 0), placed.filter((o) => o.group === 1), spec.relation)) continue;
    return placed;
  }
  return null;
}

const MAX_SPEC_TRIES = 10000;

/** Scene `index` of `split` under `seed`: a pure function of the three. */
export function makeScene(seed: number, split: Split, index: number): Scene {
  if (!SPLITS.includes(split)) throw new Error(`unknown scene split '${split}'; expected one of ${SPLITS.join(", ")}`);
  const rng = sceneRng(seed, split, index, "layout");
  // rejection keeps each split's distribution the whole one conditioned on its held-out rule (and on a layout existing)
  for (let t = 0; t < MAX_SPEC_TRIES; t++) {
    const spec = drawSpec(rng);
    if (!inSplit(spec, split)) continue;
    const objects = place(spec, drawObjects(spec, rng), rng);
    if (objects) return { seed, split, index, spec, objects, background: drawBackground(spec, rng) };
  }
  throw new Error(`scene ${split}/${index} (seed ${seed}): no spec of this split with a layout in ${MAX_SPEC_TRIES} draws`);
}

// ---- rendering -----------------------------------------------------------------------------------------------

const hex = (c: Rgb) => `#${c.map((v) => clamp(Math.round(v), 0, 255).toString(16).padStart(2, "0")).join("")}`;
const f = (v: number) => Number(v.toFixed(3));

/** The shape's outline centred on (0, 0) in a unit circle (diameter 1); rings are drawn as a stroke. */
function shapeElement(shape: Shape, fill: string): string {
  switch (shape) {
    case "circle":
      return `<circle r="0.5" fill="${fill}"/>`;
    case "ring":
      // stroke 0.17 of the diameter, outer edge on the unit circle
      return `<circle r="0.415" fill="none" stroke="${fill}" stroke-width="0.17"/>`;
    case "square":
      return `<rect x="-0.39" y="-0.39" width="0.78" height="0.78" fill="${fill}"/>`;
    case "triangle":
      // equilateral, pointing up, its bounding box centred: side 0.96, height 0.83
      return `<polygon points="0,-0.415 0.48,0.415 -0.48,0.415" fill="${fill}"/>`;
    case "diamond":
      return `<polygon points="0,-0.5 0.36,0 0,0.5 -0.36,0" fill="${fill}"/>`;
    case "cross":
      return `<path d="M-0.15,-0.47H0.15V-0.15H0.47V0.15H0.15V0.47H-0.15V0.15H-0.47V-0.15H-0.15Z" fill="${fill}"/>`;
    case "star": {
      // five points, outer radius 0.52, inner 0.22; shifted down 0.04 so the bounding box is centred
      const pts = Array.from({ length: 10 }, (_, k) => {
        const r = k % 2 === 0 ? 0.52 : 0.22;
        const a = (Math.PI * k) / 5 - Math.PI / 2;
        return `${f(r * Math.cos(a))},${f(r * Math.sin(a) + 0.04)}`;
      });
      return `<polygon points="${pts.join(" ")}" fill="${fill}"/>`;
    }
    case "heart":
      return `<path d="M0,0.44C-0.2,0.28 -0.5,0.08 -0.5,-0.16C-0.5,-0.34 -0.36,-0.46 -0.22,-0.46C-0.1,-0.46 -0.03,-0.4 0,-0.3C0.03,-0.4 0.1,-0.46 0.22,-0.46C0.36,-0.46 0.5,-0.34 0.5,-0.16C0.5,0.08 0.2,0.28 0,0.44Z" fill="${fill}"/>`;
  }
}

function backgroundDefs(spec: SceneSpec, bg: BackgroundParams): { defs: string; fill: string } {
  const p = f(bg.period);
  const [px, py] = bg.phase.map((v) => f(v * bg.period));
  const alt = hex(bg.alt);
  const pattern = (body: string, transform = "") =>
    `<pattern id="tex" patternUnits="userSpaceOnUse" x="${px}" y="${py}" width="${p}" height="${p}"${transform}>${body}</pattern>`;
  let tex = "";
  if (spec.texture === "striped") tex = pattern(`<rect width="${f(p / 2)}" height="${p}" fill="${alt}"/>`, ` patternTransform="rotate(${f(bg.angle)} 0.5 0.5)"`);
  else if (spec.texture === "checkered") tex = pattern(`<rect width="${f(p / 2)}" height="${f(p / 2)}" fill="${alt}"/><rect x="${f(p / 2)}" y="${f(p / 2)}" width="${f(p / 2)}" height="${f(p / 2)}" fill="${alt}"/>`);
  else if (spec.texture === "dotted") tex = pattern(`<circle cx="${f(p / 2)}" cy="${f(p / 2)}" r="${f(p * 0.24)}" fill="${alt}"/>`);
  const a = (bg.lightAngle * Math.PI) / 180;
  const [dx, dy] = [Math.cos(a) / 2, Math.sin(a) / 2];
  const light = `<linearGradient id="light" gradientUnits="userSpaceOnUse" x1="${f(0.5 - dx)}" y1="${f(0.5 - dy)}" x2="${f(0.5 + dx)}" y2="${f(0.5 + dy)}"><stop offset="0" stop-color="#fff" stop-opacity="${f(bg.light)}"/><stop offset="1" stop-color="#000" stop-opacity="${f(bg.light)}"/></linearGradient>`;
  return { defs: `<defs>${tex}${light}</defs>`, fill: tex ? "url(#tex)" : "none" };
}

/** The scene as an SVG document of `size` x `size` pixels (user units are fractions of the side). */
export function sceneSvg(scene: Scene, size: number): string {
  const { defs, fill } = backgroundDefs(scene.spec, scene.background);
  const objs = scene.objects.map((o) =>
    `<g transform="translate(${f(o.x)} ${f(o.y)}) rotate(${f(o.rotation)}) scale(${f(o.diameter)})">${shapeElement(o.shape, hex(o.rgb))}</g>`);
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${size}" height="${size}" viewBox="0 0 1 1">`,
    defs,
    `<rect width="1" height="1" fill="${hex(scene.background.base)}"/>`,
    fill === "none" ? "" : `<rect width="1" height="1" fill="${fill}"/>`,
    `<rect width="1" height="1" fill="url(#light)"/>`,
    ...objs,
    "</svg>",
  ].join("");
}

/** Std of the per-pixel Gaussian noise on rendered scenes, in 8-bit levels. */
export const PIXEL_NOISE = 3;

/** Rasterise a scene: uint8 RGB, HWC, `size` x `size`, with the scene's own seeded pixel noise. */
export async function renderScene(scene: Scene, size: number): Promise<Uint8Array> {
  if (!Number.isInteger(size) || size < 8) throw new Error(`scene size must be an integer of at least 8 pixels, got ${size}`);
  const { data, info } = await sharp(Buffer.from(sceneSvg(scene, size)), { density: 72 })
    .removeAlpha()
    .raw({ depth: "uchar" })
    .toBuffer({ resolveWithObject: true });
  if (info.width !== size || info.height !== size || info.channels !== 3) {
    throw new Error(`scene ${scene.split}/${scene.index}: rasterised to ${info.width}x${info.height}x${info.channels}, expected ${size}x${size}x3`);
  }
  const rng = sceneRng(scene.seed, scene.split, scene.index, "noise");
  const out = new Uint8Array(data.length);
  for (let i = 0; i < data.length; i++) out[i] = clamp(Math.round(data[i] + PIXEL_NOISE * rng.normal()), 0, 255);
  return out;
}

/** Scenes rendered into one uint8 NHWC array. */
export async function renderScenes(scenes: Scene[], size: number): Promise<Uint8Array> {
  const per = size * size * 3;
  const out = new Uint8Array(scenes.length * per);
  for (let k = 0; k < scenes.length; k++) out.set(await renderScene(scenes[k], size), k * per);
  return out;
}
