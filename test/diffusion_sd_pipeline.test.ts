import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as tf from "@tensorflow/tfjs";
import "@tensorflow/tfjs-backend-wasm";
import { fromRoot } from "../lib/core/paths";
import { ProgressState, setProgressSink } from "../lib/core/progress";
import { Rng } from "../lib/core/random";
import { ClipTokenizer } from "../lib/data/clip_tokenizer";
import { SD15_SCHEDULER_CONFIG_JSON } from "../lib/diffusion/schedulers";
import { StableDiffusion } from "../lib/diffusion/sd_pipeline";
import { readJsonFile, writeJsonFile } from "../lib/io/json_file";
import { HostTensor } from "../lib/io/host_tensor";
import { readSafetensors, writeSafetensors, writeSafetensorsLazy } from "../lib/io/safetensors";
import { clipTextModelFromConfig } from "../lib/nn/clip/text_encoder";
import { AutoencoderKL, parseAutoencoderKLConfig } from "../lib/nn/sd/autoencoder_kl";
import { loadSingleFile, saveAutoencoderKL, saveUNet2DConditionModel } from "../lib/nn/sd/load";
import { parseUNet2DConditionConfig, UNet2DConditionModel } from "../lib/nn/sd/unet2d_condition";
import { nhwc } from "./support";

// The pipeline against diffusers' StableDiffusionPipeline on a tiny folder (test/fixtures/sd/make_pipeline_fixture.py
// ran diffusers' __call__ on it with the same initial noise), and a tiny SD family written here as a diffusers
// folder, loaded back and sampled.

const FIX = fromRoot("test", "fixtures", "sd");
const TINY = path.join(FIX, "tiny_pipeline");
const REF = readSafetensors(path.join(FIX, "pipeline_reference.safetensors"));

interface Run {
  name: string;
  sampler: "ddim" | "euler";
  prompt: string[];
  negative_prompt: string[] | null;
  steps: number;
  guidance: number;
  batch: number;
  height: number | null;
  width: number | null;
}
const RUNS = JSON.parse(REF.metadata.runs) as Run[];

/** max |got - want| / max |want|. */
function relErr(got: tf.Tensor, want: tf.Tensor): number {
  assert.deepEqual(got.shape, want.shape);
  return tf.tidy(() => tf.max(tf.abs(tf.sub(got, want))).dataSync()[0] / tf.max(tf.abs(want)).dataSync()[0]);
}

for (const backend of ["wasm", "cpu"]) {
  test(`generate equals diffusers' StableDiffusionPipeline: 3 guided DDIM and Euler steps, latents and images (${backend})`, async () => {
    await tf.setBackend(backend);
    const sd = StableDiffusion.fromFolder(TINY);
    for (const run of RUNS) {
      const z = nhwc(REF.tensors[`${run.name}_noise`]);
      const before = tf.memory().numTensors;
      const out = await sd.generate({
        prompt: run.prompt,
        negativePrompt: run.negative_prompt ?? undefined,
        steps: run.steps,
        guidance: run.guidance,
        sampler: run.sampler,
        batch: run.batch,
        height: run.height ?? undefined,
        width: run.width ?? undefined,
        latents: z,
      });
      assert.equal(out.nfe, 2 * run.steps, "a guided step costs two evaluations");
      const [wantLatents, wantImages] = [nhwc(REF.tensors[`${run.name}_latents`]), nhwc(REF.tensors[`${run.name}_images`])];
      const e = relErr(out.latents, wantLatents);
      assert.ok(e < 1e-4, `${run.name}: latents differ from diffusers' by ${e} relative`);
      const imageErr = tf.tidy(() => tf.max(tf.abs(tf.sub(out.images, wantImages))).dataSync()[0]);
      assert.ok(imageErr < 1e-4, `${run.name}: images differ from diffusers' by ${imageErr}`);
      tf.dispose([out.latents, out.images, wantLatents, wantImages]);
      assert.equal(tf.memory().numTensors, before, `${run.name}: generate leaves no tensors behind`);
      z.dispose();
    }
    sd.dispose();
  });
}

test("generate refuses a scheduler it does not run, wrong latents and bad sizes, naming what was expected", async () => {
  await tf.setBackend("cpu");
  const sd = StableDiffusion.fromFolder(TINY);
  await assert.rejects(() => sd.generate({ prompt: "x", steps: 2 }), /not the folder's PNDMScheduler; pass sampler "ddim" or "euler"/);
  const z = tf.zeros([2, 8, 8, 4]) as tf.Tensor4D;
  await assert.rejects(() => sd.generate({ prompt: "x", sampler: "ddim", latents: z }), /latents \[2,8,8,4\] should be \[1, 8, 8, 4\]/);
  await assert.rejects(() => sd.generate({ prompt: "x", sampler: "ddim", height: 20 }), /height and width must be positive multiples of 8, got 20 and 16/);
  await assert.rejects(() => sd.generate({ prompt: ["a", "b"], negativePrompt: ["n"], sampler: "ddim" }), /1 negative prompts for 2 prompts/);
  z.dispose();
  sd.dispose();
});

/** Random tiny networks of the fixture's configurations, written by this library as a diffusers folder. */
function writeTinyFamily(root: string, schedulerClass: string): { unet: UNet2DConditionModel; vae: AutoencoderKL; textConfig: Record<string, unknown> } {
  const rng = new Rng(21);
  const unet = new UNet2DConditionModel(parseUNet2DConditionConfig(readJsonFile(path.join(TINY, "unet", "config.json")), "unet"), rng);
  const vae = new AutoencoderKL(parseAutoencoderKLConfig(readJsonFile(path.join(TINY, "vae", "config.json")), "vae"), rng);
  const textConfig = readJsonFile(path.join(TINY, "text_encoder", "config.json")) as Record<string, unknown>;
  const text = clipTextModelFromConfig(textConfig, rng);
  saveUNet2DConditionModel(unet, path.join(root, "unet"));
  saveAutoencoderKL(vae, path.join(root, "vae"));
  fs.mkdirSync(path.join(root, "text_encoder"));
  writeSafetensorsLazy(path.join(root, "text_encoder", "model.safetensors"), text.lazyStateDict(), { format: "pt" });
  writeJsonFile(path.join(root, "text_encoder", "config.json"), textConfig);
  text.dispose();
  fs.cpSync(path.join(TINY, "tokenizer"), path.join(root, "tokenizer"), { recursive: true });
  fs.mkdirSync(path.join(root, "scheduler"));
  writeJsonFile(path.join(root, "scheduler", "scheduler_config.json"), { ...SD15_SCHEDULER_CONFIG_JSON, _class_name: schedulerClass });
  writeJsonFile(path.join(root, "model_index.json"), { _class_name: "StableDiffusionPipeline", scheduler: ["diffusers", schedulerClass] });
  return { unet, vae, textConfig };
}

test("a tiny SD family saved as a diffusers folder loads and generates: seeded host noise, a progress bar per step, no tensors left", async (t) => {
  await tf.setBackend("wasm");
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "d2g-sd-family-"));
  t.after(() => fs.rmSync(root, { recursive: true, force: true }));
  const written = writeTinyFamily(root, "EulerDiscreteScheduler");
  const sd = StableDiffusion.fromFolder(root);
  assert.equal(sd.unet.numParameters(), written.unet.numParameters());
  const states: ProgressState[] = [];
  const prev = setProgressSink((s) => states.push(s));
  const before = tf.memory().numTensors;
  try {
    // defaults: the folder's Euler scheduler, guidance 7.5, sample_size 8 x VAE factor 2 = 16 px
    const a = await sd.generate({ prompt: "a red bus on a street", steps: 4, seed: 3 });
    assert.deepEqual(a.latents.shape, [1, 8, 8, 4]);
    assert.deepEqual(a.images.shape, [1, 16, 16, 3]);
    assert.equal(a.nfe, 8);
    const px = a.images.dataSync();
    assert.ok(px.every((v) => v >= 0 && v <= 1) && new Set(px).size > 100, "images in [0, 1] and not constant");
    const last = states[states.length - 1];
    assert.ok(last.done && last.step === 4 && last.total === 4, `the bar counts the 4 steps: ${JSON.stringify(last)}`);
    assert.ok(last.label.includes("euler"));

    // the same seed gives the same image, another seed another one, two per prompt are two different images
    const b = await sd.generate({ prompt: "a red bus on a street", steps: 4, seed: 3 });
    assert.deepEqual(b.latents.dataSync(), a.latents.dataSync());
    const c = await sd.generate({ prompt: ["a red bus on a street", "a cat"], steps: 4, seed: 4, batch: 2 });
    assert.deepEqual(c.latents.shape, [4, 8, 8, 4]);
    const cl = c.latents.arraySync() as number[][][][];
    assert.notDeepEqual(cl[0], cl[1]);
    assert.notDeepEqual(cl[0], a.latents.arraySync()[0]);
    // the folder's networks are the ones written
    const mem = new StableDiffusion({ unet: written.unet, vae: written.vae, textEncoder: sd.textEncoder, tokenizer: sd.tokenizer, schedulerConfig: sd.schedulerConfig });
    const d = await mem.generate({ prompt: "a red bus on a street", steps: 4, seed: 3 });
    assert.ok(relErr(d.latents, a.latents) < 1e-6, "in-memory networks and the folder's agree");
    tf.dispose([a.latents, a.images, b.latents, b.images, c.latents, c.images, d.latents, d.images]);
    assert.equal(tf.memory().numTensors, before, "generate leaves no tensors behind");

    // the same seed gives the same noise on every engine
    await tf.setBackend("cpu");
    const cpu = StableDiffusion.fromFolder(root);
    const e = await cpu.generate({ prompt: "a red bus on a street", steps: 4, seed: 3 });
    const eData = e.latents.dataSync();
    await tf.setBackend("wasm");
    const again = await sd.generate({ prompt: "a red bus on a street", steps: 4, seed: 3 });
    const err = relErr(tf.tensor(eData, again.latents.shape), again.latents);
    assert.ok(err < 1e-4, `cpu and wasm differ by ${err}`);
    tf.dispose([again.latents, again.images]);
    await tf.setBackend("cpu");
    tf.dispose([e.latents, e.images]);
    cpu.dispose();
  } finally {
    setProgressSink(prev);
    await tf.setBackend("wasm");
  }
  sd.dispose();
  written.unet.dispose();
  written.vae.dispose();
});

test("tokenizer_config.json: SD 2.x's \"!\" padding, the row length, and a pad token no CLIP pipeline uses", async (t) => {
  await tf.setBackend("cpu");
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "d2g-sd-tok-"));
  t.after(() => fs.rmSync(root, { recursive: true, force: true }));
  fs.cpSync(TINY, root, { recursive: true });
  const config = path.join(root, "tokenizer", "tokenizer_config.json");
  const tok = ClipTokenizer.fromVocabMerges(path.join(TINY, "tokenizer", "vocab.json"), path.join(TINY, "tokenizer", "merges.txt"));
  writeJsonFile(config, { model_max_length: 77, pad_token: { content: "!", lstrip: false } });
  const sd2 = StableDiffusion.fromFolder(root);
  assert.deepEqual(sd2.tokenize(["two cats"]), tok.tokenize(["two cats"], { padding: "zero" }));
  assert.equal(sd2.tokenize(["two cats"])[0][76], 0);
  sd2.dispose();
  writeJsonFile(config, { model_max_length: 16 });
  const short = StableDiffusion.fromFolder(root);
  assert.deepEqual(short.tokenize(["two cats"]), tok.tokenize(["two cats"], { contextLength: 16 }));
  short.dispose();
  writeJsonFile(config, { pad_token: "<pad>" });
  assert.throws(() => StableDiffusion.fromFolder(root), /tokenizer_config\.json: pad_token "<pad>" is not supported/);
});

test("an ldm single file (UNet, VAE, CLIP with its position_ids buffer) with given configs generates as its parts do", async (t) => {
  await tf.setBackend("wasm");
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "d2g-sd-single-"));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  // the part-A single file's UNet and VAE, and a CLIP text encoder as wide as that UNet's context
  const tensors: Record<string, HostTensor> = {};
  for (const [k, v] of Object.entries(readSafetensors(path.join(FIX, "v1_tiny.safetensors")).tensors)) {
    if (!k.startsWith("cond_stage_model.")) tensors[k] = v;
  }
  const textConfig = { ...(readJsonFile(path.join(TINY, "text_encoder", "config.json")) as Record<string, unknown>), hidden_size: 4, intermediate_size: 8 };
  const text = clipTextModelFromConfig(textConfig, new Rng(5));
  for (const [k, v] of text.lazyStateDict()) tensors[`cond_stage_model.transformer.${k}`] = v.read();
  tensors["cond_stage_model.transformer.text_model.embeddings.position_ids"] = { dtype: "int32", shape: [1, 77], data: Int32Array.from({ length: 77 }, (_, i) => i) };
  const file = path.join(dir, "tiny.safetensors");
  writeSafetensors(file, tensors);
  const configs = {
    unetConfig: parseUNet2DConditionConfig(readJsonFile(path.join(FIX, "unet_a_config.json")), "unet_a_config.json"),
    vaeConfig: parseAutoencoderKLConfig(readJsonFile(path.join(FIX, "vae_config.json")), "vae_config.json"),
  };
  const tokenizer = ClipTokenizer.fromVocabMerges(path.join(TINY, "tokenizer", "vocab.json"), path.join(TINY, "tokenizer", "merges.txt"));
  const sd = await StableDiffusion.fromSingleFile(file, { ...configs, tokenizer, textEncoderConfig: textConfig });
  assert.equal(sd.schedulerConfig._class_name, "PNDMScheduler", "SD1.5's scheduler config by default");
  const parts = loadSingleFile(file, configs);
  parts.textEncoder.close?.();
  const mem = new StableDiffusion({ unet: parts.unet, vae: parts.vae, textEncoder: text, tokenizer, schedulerConfig: sd.schedulerConfig });
  const opts = { prompt: "a red bus", steps: 2, sampler: "ddim" as const, seed: 9 };
  const [a, b] = [await sd.generate(opts), await mem.generate(opts)];
  assert.deepEqual(a.images.shape, [1, 16, 16, 3]);
  assert.deepEqual(a.latents.dataSync(), b.latents.dataSync());
  tf.dispose([a.latents, a.images, b.latents, b.images]);
  sd.dispose();
  mem.dispose();
});
