import { test } from "node:test";
import assert from "node:assert/strict";
import * as path from "path";
import * as tf from "@tensorflow/tfjs";
import { Rng } from "../lib/core/random";
import { fromRoot } from "../lib/core/paths";
import { readTorchCheckpoint } from "../lib/io/pth";
import { rowsOf, scaledErr } from "./support";
import { ClipTextModel, clipTextModelFromConfig, eosPositions, parseClipTextConfig, SD15_TEXT_ENCODER_CONFIG_JSON } from "../lib/nn/clip/text_encoder";

// Reference: OpenAI's original CLIP text tower at a tiny size, its weights in transformers' key layout
// (test/fixtures/clip/make_clip_text_fixture.py).
const FIX = fromRoot("test", "fixtures", "clip");
const TINY = {
  architectures: ["CLIPTextModelWithProjection"],
  vocab_size: 300,
  hidden_size: 24,
  intermediate_size: 96,
  num_hidden_layers: 2,
  num_attention_heads: 3,
  max_position_embeddings: 16,
  hidden_act: "quick_gelu",
  layer_norm_eps: 1e-5,
  projection_dim: 16,
  bos_token_id: 298,
  eos_token_id: 299,
  pad_token_id: 1,
  model_type: "clip_text_model",
};
const io = readTorchCheckpoint(path.join(FIX, "text_tiny_io.pth"));
const ids = rowsOf(io.ids);

function loadTiny(json: Record<string, unknown> = TINY): ClipTextModel {
  const net = clipTextModelFromConfig(json, new Rng(0), "tiny");
  const file = path.join(FIX, "text_tiny.pth");
  net.loadStateDict(readTorchCheckpoint(file), { source: file });
  return net;
}

test("CLIP text encoder (quick_gelu and gelu) matches the reference: last hidden state, pooled, projected", () => {
  for (const [act, prefix] of [["quick_gelu", ""], ["gelu", "gelu_"]]) {
    const net = loadTiny({ ...TINY, hidden_act: act });
    const before = tf.memory().numTensors;
    const out = net.forward(ids);
    assert.equal(tf.memory().numTensors, before + 3);
    for (const [t, k] of [[out.lastHiddenState, "last_hidden_state"], [out.pooled, "pooled"], [out.textEmbeds!, "text_embeds"]] as const) {
      const e = scaledErr(t, io[prefix + k], prefix + k);
      if (process.env.D2G_PRINT_ERRORS) console.log(act, k, e);
      assert.ok(e < 1e-5, `${act} ${k}: max error ${e.toExponential(2)} of the output's scale`);
    }
    tf.dispose([out.lastHiddenState, out.pooled, out.textEmbeds!]);
    net.dispose();
  }
});

test("CLIP text encoder: parameter names are transformers' keys; the state dict round-trips", async () => {
  const net = loadTiny();
  const names = net.namedVariables().map(([n]) => n);
  assert.ok(names.includes("text_model.encoder.layers.1.self_attn.q_proj.bias") && names.includes("text_projection.weight"));
  const file = readTorchCheckpoint(path.join(FIX, "text_tiny.pth"));
  assert.deepEqual(names.slice().sort(), Object.keys(file).filter((k) => k !== "text_model.embeddings.position_ids").sort());
  const sd = await net.stateDict();
  assert.deepEqual(Array.from(sd["text_projection.weight"].data as Float32Array), Array.from(file["text_projection.weight"].data as Float32Array));
  const copy = clipTextModelFromConfig(TINY, new Rng(5));
  copy.loadStateDict(sd, { source: "round trip" });
  const a = net.forward(ids);
  const b = copy.forward(ids);
  assert.deepEqual(Array.from(b.textEmbeds!.dataSync()), Array.from(a.textEmbeds!.dataSync()));
  tf.dispose([a.lastHiddenState, a.pooled, a.textEmbeds!, b.lastHiddenState, b.pooled, b.textEmbeds!]);
  net.dispose();
  copy.dispose();
});

test("CLIP text encoder trains: every parameter gets a finite gradient, no tensors leak across steps", () => {
  const net = loadTiny();
  const vars = net.parameters();
  const step = () => {
    const { value, grads } = tf.variableGrads(() => {
      const o = net.forward(ids);
      return tf.add(tf.mean(tf.square(o.lastHiddenState)), tf.sum(o.textEmbeds!)) as tf.Scalar;
    }, vars);
    const norms = vars.map((v) => tf.tidy(() => tf.sum(tf.abs(grads[v.name])).dataSync()[0]));
    tf.dispose([value, ...Object.values(grads)]);
    return norms;
  };
  step();
  const before = tf.memory().numTensors;
  const norms = step();
  assert.equal(tf.memory().numTensors, before);
  norms.forEach((g, i) => assert.ok(Number.isFinite(g) && g > 0, `gradient of ${net.namedVariables()[i][0]} is ${g}`));
  net.dispose();
});

test("SD1.5's text encoder config builds CLIPTextModel with 123,060,480 parameters", () => {
  const cfg = parseClipTextConfig(SD15_TEXT_ENCODER_CONFIG_JSON);
  assert.equal(cfg.withProjection, false);
  assert.equal(cfg.eosTokenId, 2);
  assert.equal(cfg.hiddenAct, "quick_gelu");
  const net = new ClipTextModel(cfg, new Rng(0));
  assert.equal(net.numParameters(), 123060480);
  assert.deepEqual(net.text_model.embeddings.token_embedding.weight.shape, [49408, 768]);
  net.dispose();
  // a whole CLIPConfig: its text_config, its projection_dim, with the projection
  const clip = parseClipTextConfig({ model_type: "clip", projection_dim: 512, text_config: { hidden_size: 64, num_attention_heads: 4 } });
  assert.equal(clip.projectionDim, 512);
  assert.equal(clip.withProjection, true);
  assert.equal(clip.eosTokenId, 49407);
});

test("CLIP text encoder: bad configs and bad ids are named", () => {
  assert.throws(() => parseClipTextConfig({ ...TINY, hidden_act: "swishy" }, "cfg.json"), /cfg\.json: hidden_act "swishy" is not one of/);
  assert.throws(() => parseClipTextConfig({ ...TINY, num_hidden_layers: 1.5 }, "cfg.json"), /cfg\.json: num_hidden_layers must be a non-negative integer, got 1\.5/);
  assert.throws(() => parseClipTextConfig({ ...TINY, hidden_size: 25 }, "cfg.json"), /not divisible by num_attention_heads 3/);
  assert.throws(() => parseClipTextConfig({ model_type: "t5" }, "cfg.json"), /model_type "t5" is not a CLIP text model/);
  const net = loadTiny();
  assert.throws(() => net.forward([[1, 2, 300]]), /row 0 holds id 300, outside the vocabulary \[0, 300\)/);
  assert.throws(() => net.forward([[1, 2], [1]]), /row 1 has 1 ids, row 0 has 2/);
  assert.throws(() => net.forward([new Array(17).fill(1)]), /17 tokens per row, more than max_position_embeddings 16/);
  const file = readTorchCheckpoint(path.join(FIX, "text_tiny.pth"));
  delete file["text_model.final_layer_norm.bias"];
  assert.throws(() => net.loadStateDict(file, { source: "x.pth" }), /x\.pth: missing weight 'text_model\.final_layer_norm\.bias'/);
  net.dispose();
});

test("eos pooling positions: CLIP rows at the first 49407; other vocabularies at the first eos_token_id", () => {
  const sd = [49406, 320, 49407, 49407];
  const openai = [49406, 320, 1125, 49407, 0, 0];
  assert.deepEqual(eosPositions([sd, openai], 2), [2, 3]);
  assert.deepEqual(eosPositions([sd, openai], 49407), [2, 3]);
  assert.deepEqual(eosPositions([[5, 9, 7, 9]], 7), [2]);
  assert.deepEqual(eosPositions([[5, 9, 7, 9]], 8), [0]);
});
