import { before, test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as tf from "@tensorflow/tfjs";
import { initEngine } from "../lib/backend/engine";
import { Rng } from "../lib/core/random";
import { u8ToUnit, unitToU8 } from "../lib/data/images";
import { parseCaption } from "../lib/data/scene_captions";
import { COLOURS, makeScene, renderScenes, SHAPES, SIZES } from "../lib/data/scenes";
import { taef2Codec } from "../lib/nn/latent_codec";
import {
  ATTRIBUTE_SCORER_WEIGHTS, AttributeScorer, decodeReading, GRID_CHANNELS, loadAttributeScorer, SceneReading, scoreCaption, scoreReading, summariseScores,
} from "../lib/metrics/attribute_scorer";
import { evaluateScorer, scorerTargets, trainAttributeScorer } from "../lib/experiments/attribute_scorer_training";

// The attribute scorer: its scoring rules on hand-made readings, its decoding of the grid, its training targets,
// exact resume of its training, and the committed weights reading TAEF2 round trips of test scenes.

before(async () => {
  await initEngine({ quiet: true });
});

const caption = "two small red triangles above a blue ring on a striped grey background";

function reading(objects: Array<[string, string, string, number, number]>, texture = "striped", tone = "grey"): SceneReading {
  return { objects: objects.map(([shape, colour, size, x, y]) => ({ shape, colour, size, x, y, score: 0.9 })), texture, tone } as SceneReading;
}

test("a reading is scored against a caption per attribute and all-correct", () => {
  const good = reading([["triangle", "red", "small", 0.3, 0.2], ["triangle", "red", "small", 0.7, 0.25], ["ring", "blue", "medium", 0.5, 0.75]]);
  const s = scoreCaption(good, caption);
  assert.deepEqual([s.objects, s.shape, s.colour, s.size, s.count, s.relation, s.region, s.allCorrect], [3, 3, 3, 3, true, true, null, true]);
  // the ring above the triangles: every object right, the relation wrong
  const flipped = scoreCaption(reading([["triangle", "red", "small", 0.3, 0.8], ["triangle", "red", "small", 0.7, 0.85], ["ring", "blue", "medium", 0.5, 0.2]]), caption);
  assert.deepEqual([flipped.shape, flipped.relation, flipped.objectsCorrect], [3, false, false]);
  // one triangle missing and the ring green: count, colour and all-correct fail
  const poor = scoreCaption(reading([["triangle", "red", "small", 0.3, 0.2], ["ring", "green", "medium", 0.5, 0.75]]), caption);
  assert.deepEqual([poor.count, poor.shape, poor.colour, poor.size, poor.relation, poor.allCorrect], [false, 2, 1, 2, true, false]);
  // a dotted background: objects right, all-correct wrong
  const bg = scoreCaption(reading([["triangle", "red", "small", 0.3, 0.2], ["triangle", "red", "small", 0.7, 0.25], ["ring", "blue", "medium", 0.5, 0.75]], "dotted"), caption);
  assert.deepEqual([bg.objectsCorrect, bg.texture, bg.allCorrect], [true, false, false]);
  const lone = parseCaption("a large white heart in the top left corner on an olive background");
  assert.equal(scoreReading(reading([["heart", "white", "large", 0.2, 0.2]], "plain", "olive"), lone).allCorrect, true);
  assert.equal(scoreReading(reading([["heart", "white", "large", 0.5, 0.2]], "plain", "olive"), lone).region, false);
  const acc = summariseScores([s, poor]);
  assert.deepEqual([acc.images, acc.shape, acc.colour, acc.count, acc.allCorrect], [2, 5 / 6, 4 / 6, 0.5, 0.5]);
  assert.ok(Number.isNaN(acc.region));
});

test("the grid decodes to objects: threshold, centre offset, classes, duplicate suppression", () => {
  const g = 8;
  const C = GRID_CHANNELS;
  const grid = new Float32Array(g * g * C.total).fill(-10);
  const put = (cx: number, cy: number, logit: number, ox: number, oy: number, shape: number, colour: number, size: number) => {
    const at = (cy * g + cx) * C.total;
    grid[at + C.obj] = logit;
    [grid[at + C.offset], grid[at + C.offset + 1]] = [ox, oy];
    grid[at + C.shape + shape] = grid[at + C.colour + colour] = grid[at + C.size + size] = 5;
  };
  put(1, 2, 3, 0, 0, 4, 5, 2); // centre (1.5, 2.5) / 8
  put(2, 2, 1, -10, 0, 1, 1, 1); // weaker, 0.51 cells to the right of the first: the same object
  put(6, 6, 0.5, 10, -10, 0, 2, 0);
  const bg = new Float32Array([0, 0, 3, 0, 0, 4, 0, 0]);
  const r = decodeReading(grid, bg, 0, g);
  assert.equal(r.objects.length, 2);
  assert.deepEqual([r.objects[0].shape, r.objects[0].colour, r.objects[0].size], [SHAPES[4], COLOURS[5], SIZES[2]]);
  assert.ok(Math.abs(r.objects[0].x - 1.5 / 8) < 1e-6 && Math.abs(r.objects[0].y - 2.5 / 8) < 1e-6);
  assert.ok(Math.abs(r.objects[1].x - 7 / 8) < 1e-3 && Math.abs(r.objects[1].y - 6 / 8) < 1e-3);
  assert.deepEqual([r.texture, r.tone], ["checkered", "brown"]);
  assert.equal(decodeReading(grid, bg, 0, g, { threshold: 0.7 }).objects.length, 1);
});

test("training targets put each object in its cell, mirrored with the image", () => {
  const s = makeScene(0, "scorer", 3);
  const [t, f] = [scorerTargets([s], [false], 8), scorerTargets([s], [true], 8)];
  const obj = t.obj.arraySync()[0];
  const objF = f.obj.arraySync()[0];
  for (const o of s.objects) {
    const [cx, cy] = [Math.floor(o.x * 8), Math.floor(o.y * 8)];
    assert.equal(obj[cy][cx], 1);
    assert.equal(objF[cy][Math.floor((1 - o.x) * 8)], 1);
    assert.equal(t.shape.arraySync()[0][cy][cx][SHAPES.indexOf(o.shape)], 1);
  }
  assert.equal(t.obj.sum().arraySync(), s.objects.length);
  tf.dispose([...Object.values(t), ...Object.values(f)]);
});

test("scorer training resumes exactly and does not grow the tensor count", async () => {
  const scenes = Array.from({ length: 16 }, (_, i) => makeScene(1, "scorer", i));
  const data = { images: await renderScenes(scenes, 64), scenes, size: 64 };
  const cfg = { steps: 4, batch: 4, lr: 2e-3, warmup: 1, seed: 3, flip: true };
  const config = { imageSize: 64, widths: [8, 8, 8] as [number, number, number] };
  const whole = new AttributeScorer(config, new Rng(2));
  const run = await trainAttributeScorer(whole, data, cfg);
  assert.equal(run.tensorsAtEnd, run.tensorsAfterFirstStep);
  assert.ok(run.history.every((h) => Number.isFinite(h.loss)));
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "d2g-scorer-"));
  const half = new AttributeScorer(config, new Rng(2));
  const first = await trainAttributeScorer(half, data, { ...cfg, steps: 2 }, dir);
  const resumed = new AttributeScorer(config, new Rng(99));
  const r = await trainAttributeScorer(resumed, data, cfg, dir);
  assert.equal(r.resumedFrom, 2);
  // the run's time counts the part before the resume
  assert.ok(r.seconds >= first.seconds && first.seconds > 0);
  const [a, b] = [await whole.stateDict(), await resumed.stateDict()];
  for (const k of Object.keys(a)) assert.deepEqual(b[k].data, a[k].data, k);
  [whole, half, resumed].forEach((m) => m.dispose());
});

test("the committed scorer reads TAEF2 round trips of test scenes (held-out combinations) correctly", async (t) => {
  if (!process.env.D2G_DATA_MIRROR) {
    t.skip("D2G_DATA_MIRROR not set");
    return;
  }
  if (!fs.existsSync(ATTRIBUTE_SCORER_WEIGHTS)) {
    // reported as skipped, not passed: the scorer is trained by npm run train:scorer -- --out <that file>
    t.skip(`${ATTRIBUTE_SCORER_WEIGHTS} not trained and committed yet`);
    return;
  }
  const { scorer, metadata } = loadAttributeScorer();
  assert.ok(JSON.parse(metadata.accuracy)["test (TAEF2 round trip)"].allCorrect > 0.8);
  const codec = await taef2Codec();
  const scenes = Array.from({ length: 24 }, (_, i) => makeScene(0, "test", i));
  const x = tf.tensor4d(u8ToUnit(await renderScenes(scenes, 64)), [24, 64, 64, 3]);
  const y = tf.tidy(() => codec.decode(codec.encode(x)));
  const roundTrip = unitToU8(await y.data());
  const acc = await evaluateScorer(scorer, { images: roundTrip, scenes, size: 64 });
  for (const k of ["shape", "colour", "size", "count", "relation", "texture", "tone"] as const) assert.ok(acc[k] >= 0.9, `${k}: ${acc[k]}`);
  assert.ok(acc.objectsCorrect >= 0.8, `objects all-correct ${acc.objectsCorrect}`);
  tf.dispose([x, y]);
  codec.dispose();
  scorer.dispose();
});
