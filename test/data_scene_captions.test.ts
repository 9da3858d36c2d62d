import { test } from "node:test";
import assert from "node:assert/strict";
import { Rng } from "../lib/core/random";
import { CAPTIONS_PER_SCENE, canonicalCaption, parseCaption, randomCaption, sceneCaptions } from "../lib/data/scene_captions";
import { makeScene, SceneSpec } from "../lib/data/scenes";

// Captions state every attribute of a scene's spec, in varied phrasing, and parse back to exactly that spec.

test("every caption of every scene parses back to the scene's spec", () => {
  for (const split of ["train", "val", "test", "scorer"] as const) {
    for (let i = 0; i < 300; i++) {
      const s = makeScene(11, split, i);
      const caps = sceneCaptions(s);
      assert.equal(caps.length, CAPTIONS_PER_SCENE);
      assert.deepEqual(sceneCaptions(s), caps, "captions are a pure function of the scene");
      for (const c of [...caps, canonicalCaption(s.spec)]) assert.deepEqual(parseCaption(c), s.spec, c);
    }
  }
});

test("the issue's two phrasings of one scene parse to the same spec", () => {
  const want: SceneSpec = {
    groups: [{ count: 2, shape: "triangle", colour: "red", size: "small" }, { count: 1, shape: "ring", colour: "blue", size: "medium" }],
    relation: "vertical", region: null, texture: "plain", tone: "grey",
  };
  assert.deepEqual(parseCaption("two small red triangles above a blue ring on a grey background"), want);
  assert.deepEqual(parseCaption("a blue ring below a pair of little red triangles on a plain gray background"), want);
  assert.deepEqual(parseCaption("A plain grey background with a blue ring underneath two tiny red triangles."), want);
});

test("phrasing varies: synonyms, flipped relations, lead-ins and both background positions occur", () => {
  const spec: SceneSpec = {
    groups: [{ count: 2, shape: "cross", colour: "purple", size: "large" }, { count: 1, shape: "circle", colour: "white", size: "small" }],
    relation: "horizontal", region: null, texture: "dotted", tone: "slate",
  };
  const rng = new Rng(1);
  const caps = new Set(Array.from({ length: 400 }, () => randomCaption(spec, rng)));
  assert.ok(caps.size > 150, `only ${caps.size} distinct captions in 400`);
  for (const phrase of ["violet", "plus signs", "disc", "right of", "left of", "polka-dot", "there are", "a picture of", "background with", "big", "tiny"]) {
    assert.ok([...caps].some((c) => c.includes(phrase)), `no caption says '${phrase}'`);
  }
  for (const c of caps) assert.deepEqual(parseCaption(c), spec, c);
});

test("captions outside the grammar are refused, naming the caption and the problem", () => {
  assert.throws(() => parseCaption("two red triangles above a blue ring"), /"two red triangles above a blue ring": no background/);
  assert.throws(() => parseCaption("a red pentagon on a grey background"), /unknown word 'pentagon'/);
  assert.throws(() => parseCaption("two red triangle on a grey background"), /'triangle' does not agree with its count 2/);
  assert.throws(() => parseCaption("a red triangle a blue ring on a grey background"), /need a relation/);
  assert.throws(() => parseCaption("two red triangles in the centre on a grey background"), /region is given only for a scene of one object/);
  assert.throws(() => parseCaption("a triangle on a grey background"), /no count or no colour/);
});
