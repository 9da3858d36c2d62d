import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as tf from "@tensorflow/tfjs";
import { Rng } from "../lib/core/random";
import { fromRoot } from "../lib/core/paths";
import { HostTensor } from "../lib/io/host_tensor";
import { readTorchCheckpoint } from "../lib/io/pth";
import { writeSafetensors } from "../lib/io/safetensors";
import { lossAndGrads } from "../lib/train/adam";
import { clipContrastiveLoss, ClipModel, clipParameterShapes, parseClipConfig } from "../lib/nn/clip/clip_model";
import { clipConfigFromArch, inferOpenAiArch, loadOpenAiClip, loadOpenClip, loadTransformersClip, OPEN_CLIP_ARCHS, OpenClipArch, openAiToTransformers } from "../lib/nn/clip/checkpoints";
import { parseClipVisionConfig } from "../lib/nn/clip/vision_encoder";
import { nhwc, rowsOf, scaledErr } from "./support";

// References (test/fixtures/clip/make_clip_model_fixture.py): model A is OpenAI's CLIP code at a tiny size
// (QuickGELU, 2 image heads), saved as OpenAI released its models (a float16 TorchScript archive) and in
// transformers' layout; model B is open_clip's CLIP (GELU, head width 8, MLP ratio 4.3637 as ViT-g-14's config).
const FIX = fromRoot("test", "fixtures", "clip");
const io = readTorchCheckpoint(path.join(FIX, "clip_tiny_io.pth"));
const ids = rowsOf(io.ids);
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "d2g-clip-model-"));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** Model B's architecture: open_clip's CLIP(embed 16, vision width 16 / head_width 8 / mlp_ratio 4.3637, text width 16 / 2 heads / 1 layer). */
const TINY_OPEN_CLIP: OpenClipArch = {
  embedDim: 16,
  vision: { imageSize: 32, patchSize: 8, width: 16, layers: 2, heads: 2, mlpWidth: Math.trunc(16 * 4.3637) },
  text: { contextLength: 16, vocabSize: 100, width: 16, heads: 2, layers: 1, mlpWidth: 64 },
  quickGelu: false,
};

function checkOutputs(model: ClipModel, prefix: "a" | "b", what: string): void {
  const pixels = nhwc(io.pixels);
  const before = tf.memory().numTensors;
  const img = model.imageFeatures(pixels);
  const txt = model.textFeatures(ids);
  const e = model.embed(pixels, ids);
  const logits = model.logits(e);
  assert.equal(tf.memory().numTensors, before + 5);
  for (const [t, key] of [[img, "image_embeds"], [txt, "text_embeds"], [logits, "logits_per_image"]] as const) {
    const err = scaledErr(t, io[`${prefix}_${key}`], `${what} ${key}`);
    if (process.env.D2G_PRINT_ERRORS) console.log(what, key, err);
    assert.ok(err < 1e-5, `${what} ${key}: max error ${err.toExponential(2)} of the output's scale`);
  }
  tf.dispose([pixels, img, txt, e.image, e.text, logits]);
}

test("transformers CLIPModel folder (float16 pytorch_model.bin, legacy position_ids) matches OpenAI's CLIP", () => {
  const model = loadTransformersClip(path.join(FIX, "hf_tiny"));
  assert.equal(model.config.vision.numAttentionHeads, 2);
  checkOutputs(model, "a", "transformers");
  model.dispose();
});

test("a sharded transformers checkpoint (model.safetensors.index.json) loads the same model", () => {
  const dir = path.join(tmp, "sharded");
  fs.mkdirSync(dir);
  fs.copyFileSync(path.join(FIX, "hf_tiny", "config.json"), path.join(dir, "config.json"));
  const sd = readTorchCheckpoint(path.join(FIX, "hf_tiny", "pytorch_model.bin"));
  const keys = Object.keys(sd);
  const shards = [keys.slice(0, 20), keys.slice(20)];
  const map: Record<string, string> = {};
  shards.forEach((ks, i) => {
    const name = `model-0000${i + 1}-of-00002.safetensors`;
    writeSafetensors(path.join(dir, name), Object.fromEntries(ks.map((k) => [k, sd[k]])));
    ks.forEach((k) => (map[k] = name));
  });
  fs.writeFileSync(path.join(dir, "model.safetensors.index.json"), JSON.stringify({ metadata: {}, weight_map: map }));
  const model = loadTransformersClip(dir);
  checkOutputs(model, "a", "sharded");
  model.dispose();
  fs.rmSync(path.join(dir, "model-00002-of-00002.safetensors"));
  assert.throws(() => loadTransformersClip(dir), /model\.safetensors\.index\.json: shard model-00002-of-00002\.safetensors is missing/);
});

test("OpenAI's TorchScript release format (float16, build_model's extra keys) loads and matches", () => {
  const file = path.join(FIX, "openai_tiny_jit.pt");
  const sd = readTorchCheckpoint(file);
  assert.equal(sd["visual.conv1.weight"].dtype, "float16");
  assert.equal(sd["ln_final.weight"].dtype, "float32");
  assert.deepEqual(sd["input_resolution"].shape, []);
  const model = loadOpenAiClip(file, { vision: 2, text: 4 });
  assert.equal(model.config.vision.hiddenAct, "quick_gelu");
  checkOutputs(model, "a", "OpenAI .pt");
  // the conversion gives exactly transformers' keys and values (the hf_tiny file was converted by the fixture script)
  const hf = readTorchCheckpoint(path.join(FIX, "hf_tiny", "pytorch_model.bin"));
  const conv = openAiToTransformers(sd, file);
  assert.deepEqual(Object.keys(conv).sort(), Object.keys(hf).filter((k) => !k.endsWith("position_ids")).sort());
  model.dispose();
});

test("open_clip checkpoint (.bin and .safetensors; GELU, head width 8, fractional MLP ratio) matches open_clip", () => {
  const bin = path.join(FIX, "open_clip_tiny.bin");
  const model = loadOpenClip(bin, TINY_OPEN_CLIP);
  assert.equal(model.config.vision.intermediateSize, 69);
  checkOutputs(model, "b", "open_clip .bin");
  model.dispose();
  const st = path.join(tmp, "open_clip_model.safetensors");
  writeSafetensors(st, readTorchCheckpoint(bin));
  const again = loadOpenClip(st, TINY_OPEN_CLIP);
  checkOutputs(again, "b", "open_clip .safetensors");
  again.dispose();
  // heads are not in the shapes: the wrong count loads but computes something else
  const wrong = loadOpenClip(bin, { ...TINY_OPEN_CLIP, vision: { ...TINY_OPEN_CLIP.vision, heads: 1 } });
  const pixels = nhwc(io.pixels);
  const f = wrong.imageFeatures(pixels);
  assert.ok(scaledErr(f, io.b_image_embeds, "one head") > 1e-3);
  tf.dispose([pixels, f]);
  wrong.dispose();
});

test("parameter names are transformers' CLIPModel keys; the state dict round-trips", async () => {
  const model = loadTransformersClip(path.join(FIX, "hf_tiny"));
  const names = model.namedVariables().map(([n]) => n);
  for (const k of ["vision_model.pre_layrnorm.weight", "vision_model.embeddings.patch_embedding.weight", "vision_model.encoder.layers.1.self_attn.q_proj.bias", "visual_projection.weight", "text_projection.weight", "logit_scale"]) {
    assert.ok(names.includes(k), k);
  }
  const sd = await model.stateDict();
  const copy = new ClipModel(model.config, new Rng(9));
  copy.loadStateDict(sd, { source: "round trip" });
  const pixels = nhwc(io.pixels);
  const a = model.imageFeatures(pixels);
  const b = copy.imageFeatures(pixels);
  assert.deepEqual(Array.from(b.dataSync()), Array.from(a.dataSync()));
  tf.dispose([pixels, a, b]);
  model.dispose();
  copy.dispose();
});

test("official configs: parameter counts from shapes (no allocation) match open_clip's profile", () => {
  // the shape listing equals the real module's on a tiny config
  const tiny = clipConfigFromArch(TINY_OPEN_CLIP);
  const model = new ClipModel(tiny, new Rng(0));
  const got = clipParameterShapes(tiny).map(([n, s]) => `${n} ${s}`).sort();
  const torchShape = (s: number[], layout: string) => (layout === "conv" ? [s[3], s[2], s[0], s[1]] : layout === "linear" ? [s[1], s[0]] : s);
  assert.deepEqual(got, model.expectedWeights().map((e) => `${e.name} ${torchShape(e.shape, e.layout)}`).sort());
  model.dispose();
  const count = (shapes: Array<[string, number[]]>, prefix?: string) => shapes.filter(([n]) => !prefix || n.startsWith(prefix)).reduce((a, [, s]) => a + s.reduce((x, y) => x * y, 1), 0);
  // open_clip docs/model_profile.csv: mparams, image_mparams (vision tower + proj), text_mparams
  const profile = { "ViT-B-32": [151.28, 87.85, 63.43], "ViT-L-14": [427.62, 303.97, 123.65], "ViT-g-14": [1366.68, 1012.65, 354.03] } as const;
  const exact: Record<string, number> = { "ViT-B-32": 151277313, "ViT-L-14": 427616513, "ViT-g-14": 1366678273 };
  for (const [name, [all, image, text]] of Object.entries(profile)) {
    const shapes = clipParameterShapes(clipConfigFromArch(OPEN_CLIP_ARCHS[name as keyof typeof OPEN_CLIP_ARCHS]));
    const img = count(shapes, "vision_model.") + count(shapes, "visual_projection.");
    const txt = count(shapes, "text_model.") + count(shapes, "text_projection.");
    assert.equal(count(shapes), exact[name], name);
    assert.equal(Math.round(count(shapes) / 1e4) / 100, all, `${name} total`);
    assert.equal(Math.round(img / 1e4) / 100, image, `${name} image tower`);
    assert.equal(Math.round(txt / 1e4) / 100, text, `${name} text tower`);
  }
  // openai/clip-vit-large-patch14's config.json (forward-shaping keys) gives the same model as OpenAI's ViT-L/14
  const l14 = parseClipConfig({
    model_type: "clip", projection_dim: 768, logit_scale_init_value: 2.6592,
    text_config: { hidden_size: 768, intermediate_size: 3072, num_attention_heads: 12, num_hidden_layers: 12, projection_dim: 768 },
    vision_config: { hidden_size: 1024, intermediate_size: 4096, num_attention_heads: 16, num_hidden_layers: 24, patch_size: 14, projection_dim: 768 },
  });
  assert.equal(count(clipParameterShapes(l14)), exact["ViT-L-14"]);
  // transformers' defaults are openai/clip-vit-base-patch32
  assert.equal(count(clipParameterShapes(parseClipConfig({ model_type: "clip" }))), exact["ViT-B-32"]);
});

test("OpenAI layout: the architecture from shapes (build_model's rules), ResNets and strays refused", () => {
  const shaped = (shape: number[]): HostTensor => ({ dtype: "float16", shape, data: new Uint16Array(0) });
  const b32: Record<string, HostTensor> = {
    "visual.conv1.weight": shaped([768, 3, 32, 32]),
    "visual.positional_embedding": shaped([50, 768]),
    "visual.proj": shaped([768, 512]),
    "text_projection": shaped([512, 512]),
    "positional_embedding": shaped([77, 512]),
    "token_embedding.weight": shaped([49408, 512]),
    "ln_final.weight": shaped([512]),
  };
  for (let i = 0; i < 12; i++) {
    b32[`visual.transformer.resblocks.${i}.attn.in_proj_weight`] = shaped([2304, 768]);
    b32[`visual.transformer.resblocks.${i}.mlp.c_fc.weight`] = shaped([3072, 768]);
    b32[`transformer.resblocks.${i}.attn.in_proj_weight`] = shaped([1536, 512]);
    b32[`transformer.resblocks.${i}.mlp.c_fc.weight`] = shaped([2048, 512]);
  }
  assert.deepEqual(inferOpenAiArch(b32, "b32", { quickGelu: true }), { ...OPEN_CLIP_ARCHS["ViT-B-32"], quickGelu: true });
  assert.throws(() => inferOpenAiArch({ "visual.layer1.0.conv1.weight": shaped([64, 64, 1, 1]) }, "rn50.pt", { quickGelu: true }), /rn50\.pt: no 'visual\.proj': a ResNet image tower/);
  const stray = { ...readTorchCheckpoint(path.join(FIX, "open_clip_tiny.bin")), "visual.transformer.resblocks.0.ls_1.gamma": shaped([16]) };
  assert.throws(() => openAiToTransformers(stray, "ls.bin"), /ls\.bin: unexpected key 'visual\.transformer\.resblocks\.0\.ls_1\.gamma' in a residual block/);
  assert.throws(() => openAiToTransformers({ ...stray, "visual.attn_pool.query": shaped([1]) }, "x"), /unexpected key/);
});

test("bad files, configs and inputs are named", () => {
  assert.throws(() => loadTransformersClip(tmp), /no config\.json/);
  fs.writeFileSync(path.join(tmp, "config.json"), JSON.stringify({ model_type: "clip" }));
  assert.throws(() => loadTransformersClip(tmp), /no weights \(expected one of model\.safetensors, pytorch_model\.bin, or its \.index\.json/);
  assert.throws(() => parseClipConfig({ model_type: "clip_text_model" }, "c.json"), /c\.json: model_type "clip_text_model" is not "clip"/);
  assert.throws(() => parseClipVisionConfig({ image_size: 30, patch_size: 8 }, "v.json"), /v\.json: image_size 30 is not a multiple of patch_size 8/);
  assert.throws(() => parseClipVisionConfig({ model_type: "clip_text_model" }, "v.json"), /is not a CLIP vision model/);
  assert.throws(() => loadOpenClip(path.join(FIX, "open_clip_tiny.bin"), "ViT-B-32"), /open_clip_tiny\.bin: weight '.*' has shape/);
  assert.throws(() => loadOpenClip("x.bin", "ViT-Z-99" as never), /unknown open_clip architecture "ViT-Z-99"/);
  assert.throws(() => loadOpenAiClip(path.join(FIX, "openai_tiny_jit.pt")), /0\.25 image heads do not split width 16 \(OpenAI's rule is width \/ 64; give the head count\)/);
  const trunc = path.join(tmp, "trunc.pt");
  const bytes = fs.readFileSync(path.join(FIX, "openai_tiny_jit.pt"));
  fs.writeFileSync(trunc, bytes.subarray(0, bytes.length - 5000));
  assert.throws(() => loadOpenAiClip(trunc), /trunc\.pt/);
  const model = loadOpenClip(path.join(FIX, "open_clip_tiny.bin"), TINY_OPEN_CLIP);
  const small = tf.zeros([1, 24, 24, 3]) as tf.Tensor4D;
  assert.throws(() => model.imageFeatures(small), /input \[1,24,24,3\] is not \[N, 32, 32, 3\]/);
  small.dispose();
  model.dispose();
});

test("contrastive loss: symmetric cross-entropy; CLIPModel trains without leaking tensors", () => {
  // logits [[2, 0], [1, 3]]: rows CE = (log(1+e^-2) + log(1+e^-2)) / 2, columns (log(1+e^-1) + log(1+e^-3)) / 2
  const l = tf.tensor2d([[2, 0], [1, 3]]);
  const loss = clipContrastiveLoss(l);
  const sp = (x: number) => Math.log(1 + Math.exp(x));
  assert.ok(Math.abs(loss.dataSync()[0] - (sp(-2) + (sp(-1) + sp(-3)) / 2) / 2) < 1e-6);
  assert.throws(() => clipContrastiveLoss(tf.zeros([2, 3]) as tf.Tensor2D), /logits are \[2, 3\]/);
  tf.dispose([l, loss]);
  const model = new ClipModel(clipConfigFromArch(TINY_OPEN_CLIP), new Rng(1));
  const params = model.parameters();
  const pixels = nhwc(io.pixels);
  const step = () => {
    const { loss: v, grads } = lossAndGrads(() => tf.tidy(() => clipContrastiveLoss(model.logits(model.embed(pixels, ids)))), params);
    const norms = grads.map((g) => tf.tidy(() => tf.sum(tf.abs(g)).dataSync()[0]));
    tf.dispose(grads);
    return { v, norms };
  };
  step();
  const before = tf.memory().numTensors;
  const { v, norms } = step();
  assert.equal(tf.memory().numTensors, before);
  assert.ok(Number.isFinite(v) && v > 0);
  norms.forEach((g, i) => assert.ok(Number.isFinite(g) && g > 0, `gradient of ${model.namedVariables()[i][0]} is ${g}`));
  pixels.dispose();
  model.dispose();
});
