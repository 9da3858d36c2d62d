import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as tf from "@tensorflow/tfjs";
import { Rng } from "../lib/core/random";
import { ClipTokenizer } from "../lib/data/clip_tokenizer";
import { encodePrompts } from "../lib/diffusion/prompt_guidance";
import { clipTextModelFromConfig } from "../lib/nn/clip/text_encoder";

const mirror = process.env.D2G_DATA_MIRROR;
const noMirror = mirror ? false : "D2G_DATA_MIRROR not set";
const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "d2g-prompt-"));
after(() => fs.rmSync(dataDir, { recursive: true, force: true }));

test("prompt conditioning: last_hidden_state of 77-token rows, negative prompt or \"\" as the unconditional text", { skip: noMirror }, async () => {
  const tok = await ClipTokenizer.load({ dataDir, mirror: mirror ?? null, log: () => undefined });
  // full CLIP vocabulary, tiny width
  const enc = clipTextModelFromConfig({ hidden_size: 8, intermediate_size: 16, num_hidden_layers: 1, num_attention_heads: 2 }, new Rng(3));
  const states = (texts: string[]) => {
    const o = enc.forward(tok.tokenize(texts));
    tf.dispose([o.pooled]);
    return o.lastHiddenState;
  };
  const prompts = ["a red bus on a street", "two cats"];
  const before = tf.memory().numTensors;

  const plain = encodePrompts(tok, enc, prompts, { guidanceScale: 1 });
  assert.equal(plain.guidance, undefined);
  assert.deepEqual(plain.cond.shape, [2, 77, 8]);

  const g = encodePrompts(tok, enc, prompts, { guidanceScale: 7.5 });
  assert.equal(g.guidance!.scale, 7.5);
  assert.equal(g.guidance!.cond, g.cond);
  const want = states(prompts);
  const empty = states(["", ""]);
  assert.deepEqual(Array.from(g.cond.dataSync()), Array.from(want.dataSync()));
  assert.deepEqual(Array.from(g.guidance!.uncond.dataSync()), Array.from(empty.dataSync()));

  const n = encodePrompts(tok, enc, prompts, { guidanceScale: 3, negativePrompt: ["blurry", "dogs"] });
  const negWant = states(["blurry", "dogs"]);
  assert.deepEqual(Array.from(n.guidance!.uncond.dataSync()), Array.from(negWant.dataSync()));
  assert.throws(() => encodePrompts(tok, enc, prompts, { guidanceScale: 3, negativePrompt: ["one"] }), /1 negative prompts for 2 prompts/);

  tf.dispose([plain.cond, g.cond, g.guidance!.uncond, n.cond, n.guidance!.uncond, want, empty, negWant]);
  assert.equal(tf.memory().numTensors, before);
  enc.dispose();
});
