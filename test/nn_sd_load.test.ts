import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as tf from "@tensorflow/tfjs";
import "@tensorflow/tfjs-backend-wasm";
import { fromRoot } from "../lib/core/paths";
import { readJsonFile } from "../lib/io/json_file";
import { HostTensor } from "../lib/io/host_tensor";
import { readTorchCheckpoint } from "../lib/io/pth";
import { readSafetensors, SafetensorsFile, writeSafetensors } from "../lib/io/safetensors";
import { recordSource } from "../lib/io/tensor_source";
import { splitLdmCheckpoint } from "../lib/nn/sd/ldm_keys";
import { loadAutoencoderKL, loadSingleFile, loadUNet2DConditionModel, saveUNet2DConditionModel, stableDiffusionFolder, textEncoderWeights } from "../lib/nn/sd/load";
import { parseAutoencoderKLConfig } from "../lib/nn/sd/autoencoder_kl";
import { parseUNet2DConditionConfig, UNet2DConditionModel } from "../lib/nn/sd/unet2d_condition";
import { nhwc } from "./support";

// Every way Stable Diffusion weights reach the networks, checked by the networks' outputs against diffusers'
// (test/fixtures/sd/make_sd_fixtures.py): fp16 and fp32 safetensors, the .fp16 variant names, sharded indexes,
// torch .bin, legacy VAE attention names, a whole diffusers folder, and export to a folder diffusers can open.

const FIX = fromRoot("test", "fixtures", "sd");
const REF = readSafetensors(path.join(FIX, "reference.safetensors")).tensors;
/** UNet B's state dict as torch saved it: float16, diffusers' names. */
const UNET_B = readTorchCheckpoint(path.join(FIX, "unet_b", "diffusion_pytorch_model.bin"));
const UNET_B_CONFIG = fs.readFileSync(path.join(FIX, "unet_b", "config.json"), "utf8");

function tmpDir(t: { after: (fn: () => void) => void }): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "d2g-sd-"));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A UNet folder with config.json and the given weight files. */
function unetFolder(dir: string, files: Record<string, Record<string, HostTensor>>): string {
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, "config.json"), UNET_B_CONFIG);
  for (const [name, tensors] of Object.entries(files)) writeSafetensors(path.join(dir, name), tensors);
  return dir;
}

/** UNet B's output on the fixture's inputs, as a host array. */
function unetBOutput(unet: UNet2DConditionModel): Float32Array {
  return tf.tidy(() => {
    const ctx = tf.tensor3d(REF.b_context.data as Float32Array, REF.b_context.shape as [number, number, number]);
    const cond = tf.tensor2d(REF.b_timestep_cond.data as Float32Array, REF.b_timestep_cond.shape as [number, number]);
    return unet.forward(nhwc(REF.b_sample), tf.tensor1d(REF.b_timesteps.data as Float32Array), ctx, cond).dataSync() as Float32Array;
  });
}

function assertMatchesDiffusers(unet: UNet2DConditionModel, what: string): void {
  const got = unetBOutput(unet);
  const want = tf.tidy(() => nhwc(REF.b_out).dataSync() as Float32Array);
  const scale = want.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
  const err = got.reduce((m, v, i) => Math.max(m, Math.abs(v - want[i])), 0) / scale;
  assert.ok(err < 1e-5, `${what}: relative error ${err}`);
  unet.dispose();
}

test("fp16 safetensors under the .fp16 variant name, with and without asking for the variant", async (t) => {
  await tf.setBackend("wasm");
  const dir = unetFolder(path.join(tmpDir(t), "unet"), { "diffusion_pytorch_model.fp16.safetensors": UNET_B });
  assert.equal(new SafetensorsFile(path.join(dir, "diffusion_pytorch_model.fp16.safetensors")).info("conv_in.weight").dtype, "float16");
  assertMatchesDiffusers(loadUNet2DConditionModel(dir, { variant: "fp16" }), "variant fp16");
  // a folder with only fp16 weights loads without being told
  assertMatchesDiffusers(loadUNet2DConditionModel(dir), "fp16 fallback");
  assert.throws(() => loadUNet2DConditionModel(dir, { variant: "bf16" }), /no weights file \(looked for diffusion_pytorch_model\.bf16\.safetensors, diffusion_pytorch_model\.safetensors\.index\.bf16\.json/);
});

test("a sharded checkpoint: index.json and two shards", async (t) => {
  await tf.setBackend("wasm");
  const names = Object.keys(UNET_B);
  const half = Math.floor(names.length / 2);
  const shard = (part: string[]) => Object.fromEntries(part.map((k) => [k, UNET_B[k]]));
  const files = ["diffusion_pytorch_model-00001-of-00002.safetensors", "diffusion_pytorch_model-00002-of-00002.safetensors"];
  const dir = unetFolder(path.join(tmpDir(t), "unet"), { [files[0]]: shard(names.slice(0, half)), [files[1]]: shard(names.slice(half)) });
  const weightMap = Object.fromEntries(names.map((k, i) => [k, files[i < half ? 0 : 1]]));
  fs.writeFileSync(path.join(dir, "diffusion_pytorch_model.safetensors.index.json"), JSON.stringify({ metadata: { total_size: 0 }, weight_map: weightMap }));
  assertMatchesDiffusers(loadUNet2DConditionModel(dir), "sharded");
  fs.rmSync(path.join(dir, files[1]));
  assert.throws(() => loadUNet2DConditionModel(dir), /index\.json: shard 'diffusion_pytorch_model-00002-of-00002\.safetensors' is missing/);
});

test("export: a diffusers folder (config.json with _class_name, fp32 safetensors in torch layout) that reads back identically", async (t) => {
  await tf.setBackend("wasm");
  const unet = loadUNet2DConditionModel(path.join(FIX, "unet_b"));
  const dir = path.join(tmpDir(t), "student");
  saveUNet2DConditionModel(unet, dir);
  const config = readJsonFile(path.join(dir, "config.json")) as Record<string, unknown>;
  assert.equal(config._class_name, "UNet2DConditionModel");
  assert.equal(typeof config._diffusers_version, "string");
  const original = JSON.parse(UNET_B_CONFIG) as Record<string, unknown>;
  for (const [k, v] of Object.entries(original)) assert.deepEqual(config[k], v, `config.json keeps ${k}`);
  assert.equal(config.class_embed_type, null);
  const file = new SafetensorsFile(path.join(dir, "diffusion_pytorch_model.safetensors"));
  assert.deepEqual(file.names().sort(), Object.keys(UNET_B).sort(), "diffusers' keys");
  for (const k of file.names()) {
    assert.deepEqual(file.info(k).shape, UNET_B[k].shape, `${k} in torch layout`);
    assert.equal(file.info(k).dtype, "float32");
  }
  assert.equal(file.metadata.format, "pt");
  const before = unetBOutput(unet);
  const back = loadUNet2DConditionModel(dir);
  assert.deepEqual(unetBOutput(back), before, "bit-identical after the round trip");
  assert.deepEqual(back.config, unet.config);
  unet.dispose();
  back.dispose();
});

test("a missing weight, a wrong shape and an unexpected key are each named with the shapes", async (t) => {
  await tf.setBackend("cpu");
  const root = tmpDir(t);
  const edited = (name: string, edit: (sd: Record<string, HostTensor>) => void) => {
    const sd = { ...UNET_B };
    edit(sd);
    return unetFolder(path.join(root, name), { "diffusion_pytorch_model.safetensors": sd });
  };
  const missing = edited("missing", (sd) => delete sd["mid_block.attentions.0.proj_in.weight"]);
  assert.throws(() => loadUNet2DConditionModel(missing), /missing[/\\]diffusion_pytorch_model\.safetensors: missing weight 'mid_block\.attentions\.0\.proj_in\.weight' \(expected shape \[6,6\]\)/);
  const wrong = edited("wrong", (sd) => (sd["conv_in.weight"] = { dtype: "float32", shape: [4, 3, 3, 3], data: new Float32Array(108) }));
  assert.throws(() => loadUNet2DConditionModel(wrong), /weight 'conv_in\.weight' has shape \[4,3,3,3\], expected \[4,3,1,1\]/);
  const extra = edited("extra", (sd) => (sd["up_blocks.9.resnets.0.conv1.weight"] = { dtype: "float32", shape: [1], data: new Float32Array(1) }));
  assert.throws(() => loadUNet2DConditionModel(extra), /1 weight\(s\) not used by the model: 'up_blocks\.9\.resnets\.0\.conv1\.weight'/);
  fs.mkdirSync(path.join(root, "empty"));
  fs.writeFileSync(path.join(root, "empty", "config.json"), UNET_B_CONFIG);
  assert.throws(() => loadUNet2DConditionModel(path.join(root, "empty")), /empty: no weights file \(looked for diffusion_pytorch_model\.safetensors, /);
});

test("a diffusers Stable Diffusion folder: parts located, legacy VAE attention names, text encoder weights handed over", async (t) => {
  await tf.setBackend("wasm");
  const root = tmpDir(t);
  const file = path.join(FIX, "v1_tiny.safetensors");
  const sf = loadSingleFile(file, {
    unetConfig: parseUNet2DConditionConfig(readJsonFile(path.join(FIX, "unet_a_config.json")), "a"),
    vaeConfig: parseAutoencoderKLConfig(readJsonFile(path.join(FIX, "vae_config.json")), "v"),
  });
  const write = (rel: string, text: string) => {
    fs.mkdirSync(path.dirname(path.join(root, rel)), { recursive: true });
    fs.writeFileSync(path.join(root, rel), text);
  };
  write("model_index.json", JSON.stringify({ _class_name: "StableDiffusionPipeline" }));
  saveUNet2DConditionModel(sf.unet, path.join(root, "unet"));
  // the VAE as older diffusers folders store it: attention as query/key/value/proj_attn
  write("vae/config.json", fs.readFileSync(path.join(FIX, "vae_config.json"), "utf8"));
  const legacy: Record<string, HostTensor> = {};
  for (const [k, lazy] of sf.vae.lazyStateDict()) {
    legacy[k.replace(/\.to_q\./, ".query.").replace(/\.to_k\./, ".key.").replace(/\.to_v\./, ".value.").replace(/\.to_out\.0\./, ".proj_attn.")] = lazy.read();
  }
  assert.ok("encoder.mid_block.attentions.0.proj_attn.weight" in legacy);
  writeSafetensors(path.join(root, "vae", "diffusion_pytorch_model.safetensors"), legacy);
  write("text_encoder/config.json", JSON.stringify({ architectures: ["CLIPTextModel"], hidden_size: 4 }));
  const te = sf.textEncoder;
  writeSafetensors(path.join(root, "text_encoder", "model.safetensors"), Object.fromEntries(te.names().map((k) => [k, te.get(k)])));
  write("tokenizer/vocab.json", "{}");
  write("tokenizer/merges.txt", "#version: 0.2\n");
  write("scheduler/scheduler_config.json", JSON.stringify({ _class_name: "PNDMScheduler", steps_offset: 1 }));

  const sd = stableDiffusionFolder(root);
  assert.deepEqual(sd.modelIndex, { _class_name: "StableDiffusionPipeline" });
  assert.deepEqual(sd.schedulerConfig, { _class_name: "PNDMScheduler", steps_offset: 1 });
  assert.equal(sd.tokenizer.merges, path.join(root, "tokenizer", "merges.txt"));
  const vae = loadAutoencoderKL(sd.vae);
  const z = nhwc(REF.vae_latent);
  const [a, b] = [vae.decode(z), sf.vae.decode(z)];
  assert.deepEqual(a.dataSync(), b.dataSync(), "legacy names load to the same VAE");
  const text = textEncoderWeights(sd.textEncoder);
  assert.deepEqual(text.config, { architectures: ["CLIPTextModel"], hidden_size: 4 });
  assert.deepEqual(text.weights.names().sort(), ["text_model.embeddings.token_embedding.weight", "text_model.final_layer_norm.weight"]);
  assert.equal(text.weights.get("text_model.final_layer_norm.weight").dtype, "float16");
  const unet = loadUNet2DConditionModel(sd.unet);
  assert.equal(unet.numParameters(), sf.unet.numParameters());
  fs.rmSync(path.join(root, "scheduler"), { recursive: true });
  assert.throws(() => stableDiffusionFolder(root), /not a diffusers Stable Diffusion folder: scheduler[/\\]scheduler_config\.json is missing/);
  tf.dispose([z, a, b]);
  for (const m of [vae, unet, sf.unet, sf.vae]) m.dispose();
});

test("single file with an EMA copy: { ema: true } takes the UNet from model_ema.*, as diffusers' extract_ema", () => {
  const file = path.join(FIX, "v1_tiny.safetensors");
  const tensors = readSafetensors(file).tensors;
  // ldm names the EMA copy of "model.diffusion_model.a.b" "model_ema.diffusion_modelab"
  for (const k of Object.keys(tensors)) {
    if (!k.startsWith("model.diffusion_model.")) continue;
    const ema = "model_ema." + k.split(".").slice(1).join("");
    tensors[ema] = { dtype: "float32", shape: tensors[k].shape, data: new Float32Array(tensors[k].data.length).fill(0.5) };
  }
  const src = recordSource(tensors, "with-ema");
  const unetConfig = parseUNet2DConditionConfig(readJsonFile(path.join(FIX, "unet_a_config.json")), "a");
  const vaeConfig = parseAutoencoderKLConfig(readJsonFile(path.join(FIX, "vae_config.json")), "v");
  const ema = splitLdmCheckpoint(src, unetConfig, vaeConfig, { ema: true });
  assert.deepEqual(Array.from(ema.unet.get("up_blocks.2.attentions.1.proj_out.bias").data as Float32Array), [0.5, 0.5, 0.5, 0.5]);
  assert.deepEqual(ema.unused, ["betas"]);
  const plain = splitLdmCheckpoint(src, unetConfig, vaeConfig);
  assert.equal(plain.unet.get("conv_in.weight").dtype, "float16");
  assert.equal(plain.unused.filter((k) => k.startsWith("model_ema.")).length, plain.unet.names().length, "without ema the copy is reported unused");
  delete tensors["model_ema.diffusion_modelout2bias"];
  assert.throws(() => splitLdmCheckpoint(recordSource(tensors, "with-ema"), unetConfig, vaeConfig, { ema: true }), /with-ema: EMA weights asked for, but 'model_ema\.diffusion_modelout2bias' \(for 'model\.diffusion_model\.out\.2\.bias'\) is missing/);
});
