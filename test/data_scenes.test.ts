import { test } from "node:test";
import assert from "node:assert/strict";
import { canonicalCaption } from "../lib/data/scene_captions";
import {
  COLOURS, HELD_OUT, heldOutCombinations, makeScene, regionOf, relationHolds, renderScene, sceneSvg, SHAPES, SIZE_DIAMETER, Split,
} from "../lib/data/scenes";

// The world's scenes: a pure function of (seed, split, index), every layout rule kept, and the compositional split:
// no held-out combination in train or val, at least one in every test scene.

const per = (split: Split, n: number) => Array.from({ length: n }, (_, i) => makeScene(7, split, i));

test("a scene is a pure function of (seed, split, index): same in any order, pixels identical", async () => {
  const forward = [0, 1, 2, 3, 4].map((i) => makeScene(3, "train", i));
  const backward = [4, 3, 2, 1, 0].map((i) => makeScene(3, "train", i)).reverse();
  assert.deepEqual(backward, forward);
  assert.deepEqual(await renderScene(makeScene(3, "test", 9), 64), await renderScene(makeScene(3, "test", 9), 64));
  // another seed, split or index is another scene
  const a = JSON.stringify(makeScene(3, "train", 0));
  for (const other of [makeScene(4, "train", 0), makeScene(3, "val", 0), makeScene(3, "train", 1)]) assert.notEqual(JSON.stringify(other), a);
});

test("layouts keep every rule: inside the image, no overlaps, the relation and the region readable", () => {
  for (const split of ["train", "test", "scorer"] as const) {
    for (const s of per(split, 400)) {
      const where = `${split}/${s.index}`;
      assert.equal(s.objects.length, s.spec.groups.reduce((n, g) => n + g.count, 0), where);
      for (const o of s.objects) {
        assert.ok(o.x - o.diameter / 2 > 0 && o.x + o.diameter / 2 < 1 && o.y - o.diameter / 2 > 0 && o.y + o.diameter / 2 < 1, `${where}: object outside the image`);
        assert.ok(Math.abs(o.diameter / SIZE_DIAMETER[o.size] - 1) <= 0.06 + 1e-9, `${where}: diameter off its size class`);
      }
      for (let i = 0; i < s.objects.length; i++) {
        for (let j = i + 1; j < s.objects.length; j++) {
          const [p, q] = [s.objects[i], s.objects[j]];
          assert.ok(Math.hypot(p.x - q.x, p.y - q.y) >= (p.diameter + q.diameter) / 2 + 0.04 - 1e-9, `${where}: objects ${i} and ${j} overlap`);
        }
      }
      if (s.spec.relation) {
        assert.ok(relationHolds(s.objects.filter((o) => o.group === 0), s.objects.filter((o) => o.group === 1), s.spec.relation), `${where}: relation not shown`);
        const [g0, g1] = s.spec.groups;
        assert.ok(g0.shape !== g1.shape || g0.colour !== g1.colour, `${where}: two groups a caption cannot tell apart`);
      }
      if (s.spec.region) assert.equal(regionOf(s.objects[0].x, s.objects[0].y), s.spec.region, where);
    }
  }
});

test("the compositional split: train and val never hold a held-out combination, every test scene does", () => {
  const seen = { shapeColour: new Set<string>(), role: new Set<string>() };
  for (const split of ["train", "val"] as const) {
    for (const s of per(split, 2000)) {
      assert.deepEqual(heldOutCombinations(s.spec), [], `${split}/${s.index}: ${canonicalCaption(s.spec)}`);
      for (const g of s.spec.groups) seen.shapeColour.add(`${g.colour} ${g.shape}`);
      if (s.spec.relation) seen.role.add(`${s.spec.groups[0].shape} ${s.spec.relation}`);
    }
  }
  const held = new Set<string>();
  for (const s of per("test", 1000)) {
    const combos = heldOutCombinations(s.spec);
    assert.ok(combos.length > 0, `test/${s.index} holds no held-out combination: ${canonicalCaption(s.spec)}`);
    combos.forEach((c) => held.add(c));
  }
  // every held-out combination is tested, and every other (shape, colour) pair and role is trained
  assert.equal(held.size, HELD_OUT.shapeColour.length + HELD_OUT.shapeRole.length);
  assert.equal(seen.shapeColour.size, SHAPES.length * COLOURS.length - HELD_OUT.shapeColour.length);
  assert.equal(seen.role.size, 2 * SHAPES.length - HELD_OUT.shapeRole.length);
});

test("a model that ignores the text fails: no spec is common", () => {
  const counts = new Map<string, number>();
  for (const s of per("train", 2000)) counts.set(canonicalCaption(s.spec), (counts.get(canonicalCaption(s.spec)) ?? 0) + 1);
  // a text-blind generator is all-correct at most as often as the commonest spec occurs
  assert.ok(Math.max(...counts.values()) / 2000 < 0.01, `the commonest spec is ${Math.max(...counts.values())} of 2000 scenes`);
  assert.ok(counts.size > 1900, `only ${counts.size} distinct specs in 2000 scenes`);
});

test("bad requests are named", async () => {
  assert.throws(() => makeScene(0, "training" as Split, 0), /unknown scene split 'training'/);
  assert.throws(() => makeScene(0, "train", -1), /non-negative integer/);
  await assert.rejects(renderScene(makeScene(0, "train", 0), 4.5), /integer of at least 8/);
  assert.match(sceneSvg(makeScene(0, "train", 0), 64), /^<svg [^>]*width="64" height="64"/);
});
