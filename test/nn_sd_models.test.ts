import { test } from "node:test";
import assert from "node:assert/strict";
import * as path from "path";
import * as tf from "@tensorflow/tfjs";
import "@tensorflow/tfjs-backend-wasm";
import { fromRoot } from "../lib/core/paths";
import { readJsonFile } from "../lib/io/json_file";
import { Rng } from "../lib/core/random";
import { HostTensor } from "../lib/io/host_tensor";
import { readSafetensors } from "../lib/io/safetensors";
import { withoutInit } from "../lib/nn/module";
import { AutoencoderKL, AutoencoderKLCodec, parseAutoencoderKLConfig, SD15_VAE_CONFIG_JSON } from "../lib/nn/sd/autoencoder_kl";
import { loadSingleFile, loadUNet2DConditionModel } from "../lib/nn/sd/load";
import { parseUNet2DConditionConfig, SD15_UNET_CONFIG_JSON, UNet2DConditionModel } from "../lib/nn/sd/unet2d_condition";
import { nhwc } from "./support";

// The SD networks against the original diffusers code: tiny configurations whose weights and reference outputs
// test/fixtures/sd/make_sd_fixtures.py wrote by running diffusers itself (see there).

const FIX = fromRoot("test", "fixtures", "sd");
const REF = readSafetensors(path.join(FIX, "reference.safetensors")).tensors;
// ours vs diffusers: about 5e-7 (wasm and cpu). The transformer GroupNorm at eps 1e-5 instead of 1e-6 gives 1.1e-5.
const TOL = 1e-5;

const t1 = (t: HostTensor) => tf.tensor1d(t.data as Float32Array);
const t2 = (t: HostTensor) => tf.tensor2d(t.data as Float32Array, t.shape as [number, number]);
const t3 = (t: HostTensor) => tf.tensor3d(t.data as Float32Array, t.shape as [number, number, number]);

/** max |ours - diffusers| / max |diffusers| over the tensor (both NHWC). */
function relErr(got: tf.Tensor, want: tf.Tensor): number {
  assert.deepEqual(got.shape, want.shape);
  return tf.tidy(() => tf.max(tf.abs(tf.sub(got, want))).dataSync()[0] / tf.max(tf.abs(want)).dataSync()[0]);
}

function singleFile() {
  return loadSingleFile(path.join(FIX, "v1_tiny.safetensors"), {
    unetConfig: parseUNet2DConditionConfig(readJsonFile(path.join(FIX, "unet_a_config.json")), "unet_a_config.json"),
    vaeConfig: parseAutoencoderKLConfig(readJsonFile(path.join(FIX, "vae_config.json")), "vae_config.json"),
  });
}

for (const backend of ["wasm", "cpu"]) {
  test(`SD1.5-shaped UNet from an ldm single file equals diffusers (${backend})`, async () => {
    await tf.setBackend(backend);
    const { unet, vae, textEncoder } = singleFile();
    const before = tf.memory().numTensors;
    const [x, ctx, want] = [nhwc(REF.a_sample), t3(REF.a_context), nhwc(REF.a_out)];
    const t = t1(REF.a_timesteps);
    const y = unet.forward(x, t, ctx);
    const e = relErr(y, want);
    assert.ok(e < TOL, `UNet A: relative error ${e}`);
    tf.dispose([x, ctx, want, t, y]);
    assert.equal(tf.memory().numTensors, before, "forward leaves no tensors behind");
    unet.dispose();
    vae.dispose();
    textEncoder.close?.();
  });
}

test("UNet with linear projections, odd sizes and most options off their defaults equals diffusers (.bin, fp16)", async () => {
  await tf.setBackend("wasm");
  const unet = loadUNet2DConditionModel(path.join(FIX, "unet_b"));
  const [x, ctx, cond, want] = [nhwc(REF.b_sample), t3(REF.b_context), t2(REF.b_timestep_cond), nhwc(REF.b_out)];
  const t = t1(REF.b_timesteps);
  const y = unet.forward(x, t, ctx, cond);
  const e = relErr(y, want);
  assert.ok(e < TOL, `UNet B: relative error ${e}`);
  // one timestep for the whole batch is broadcast, as diffusers does
  const y0 = unet.forward(x, 3.5, ctx, cond);
  const yb = unet.forward(x, tf.tensor1d([3.5, 3.5]), ctx, cond);
  assert.equal(relErr(y0, yb), 0);
  assert.throws(() => unet.forward(x, t, tf.zeros([2, 3, 4]) as tf.Tensor3D, cond), /encoderHiddenStates \[2,3,4\] should be \[2, L, 5\]/);
  tf.dispose([x, ctx, cond, want, t, y, y0, yb]);
  unet.dispose();
});

test("AutoencoderKL from the single file equals diffusers: moments, clamped logvar, decoder, codec scaling", async () => {
  await tf.setBackend("wasm");
  const { unet, vae, textEncoder, unused } = singleFile();
  unet.dispose();
  assert.deepEqual(unused, ["betas"]);
  assert.deepEqual(textEncoder.names().sort(), ["text_model.embeddings.token_embedding.weight", "text_model.final_layer_norm.weight"]);
  const img = nhwc(REF.vae_image);
  const { mean, logvar } = vae.encode(img);
  assert.ok(relErr(mean, nhwc(REF.vae_mean)) < TOL, "mean");
  assert.ok(relErr(logvar, nhwc(REF.vae_logvar)) < TOL, "logvar");
  const lv = logvar.dataSync();
  assert.ok(lv.includes(20) && lv.includes(-30), "the fixture drives logvar past both clamps");
  const z = nhwc(REF.vae_latent);
  const dec = vae.decode(z);
  assert.ok(relErr(dec, nhwc(REF.vae_decoded)) < TOL, "decoder");

  const codec = new AutoencoderKLCodec(vae);
  assert.equal(codec.scale, 0.18215);
  assert.equal(codec.factor, 2);
  const zc = codec.encode(img);
  const scaled = tf.mul(mean, 0.18215);
  assert.ok(relErr(zc, scaled) < 1e-6, "encode = scaling_factor x mean");
  const dc = codec.decode(scaled as tf.Tensor4D);
  const direct = vae.decode(mean);
  assert.ok(relErr(dc, direct) < 1e-5, "decode undoes the scaling");
  assert.throws(() => codec.encode(tf.zeros([1, 15, 18, 3]) as tf.Tensor4D), /multiples of 2/);
  tf.dispose([img, mean, logvar, z, dec, zc, scaled, dc, direct]);
  codec.dispose();
});

test("the real SD1.5 configs have 859,520,964 (UNet) and 83,653,863 (VAE) parameters under diffusers' names", async () => {
  // zero-filled weights on the cpu engine are never touched, so this builds the 3.4 GB UNet without the RAM
  await tf.setBackend("cpu");
  const unet = withoutInit(() => new UNet2DConditionModel(parseUNet2DConditionConfig(SD15_UNET_CONFIG_JSON, "sd15"), new Rng(0)));
  assert.equal(unet.numParameters(), 859_520_964);
  const names = new Map(unet.namedVariables().map(([k, v]) => [k, v.shape]));
  assert.deepEqual(names.get("down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight"), [768, 320]);
  assert.ok(!names.has("down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.bias"), "q/k/v have no bias");
  assert.deepEqual(names.get("down_blocks.0.attentions.0.transformer_blocks.0.ff.net.0.proj.weight"), [320, 2560]);
  assert.deepEqual(names.get("up_blocks.3.resnets.0.conv1.weight"), [3, 3, 960, 320]);
  assert.deepEqual(names.get("mid_block.attentions.0.proj_in.weight"), [1, 1, 1280, 1280]);
  unet.dispose();
  const vae = withoutInit(() => new AutoencoderKL(parseAutoencoderKLConfig(SD15_VAE_CONFIG_JSON, "sd15 vae"), new Rng(0)));
  assert.equal(vae.numParameters(), 83_653_863);
  assert.equal(vae.factor, 8);
  vae.dispose();
});

test("configs: diffusers' defaults, and clear errors naming the key for what this port does not do", () => {
  const c = parseUNet2DConditionConfig({}, "empty.json");
  assert.deepEqual(c.block_out_channels, [320, 640, 1280, 1280]);
  assert.equal(c.cross_attention_dim, 1280);
  assert.equal(c.attention_head_dim, 8);
  const bad: Array<[object, RegExp]> = [
    [{ class_embed_type: "timestep" }, /x\.json: 'class_embed_type' = "timestep" is not supported .*only null/],
    [{ time_embedding_type: "fourier" }, /'time_embedding_type' = "fourier" is not supported/],
    [{ dual_cross_attention: true }, /'dual_cross_attention'/],
    [{ down_block_types: ["SimpleCrossAttnDownBlock2D"] }, /'down_block_types' should be a list whose item 0 is one of "CrossAttnDownBlock2D", "DownBlock2D"/],
    [{ attention_head_dim: "8" }, /'attention_head_dim' should be a positive integer or a list of them, got "8"/],
    [{ _class_name: "UNet2DModel" }, /_class_name is "UNet2DModel", expected "UNet2DConditionModel"/],
    [{ block_out_channels: [32, 64] }, /2 block_out_channels for 4 down blocks/],
    [{ norm_num_groups: 7 }, /block_out_channels 320 is not divisible by norm_num_groups 7/],
    [{ attention_head_dim: [8, 8] }, /'attention_head_dim' has 2 entries for 4 blocks/],
    [{ transformer_layers_per_block: [[1, 1], 1, 1, 1] }, /needs reverse_transformer_layers_per_block/],
  ];
  for (const [raw, re] of bad) assert.throws(() => parseUNet2DConditionConfig(raw, "x.json"), re);
  assert.throws(() => parseAutoencoderKLConfig({ down_block_types: ["AttnDownEncoderBlock2D"] }, "v.json"), /v\.json: 'down_block_types'/);
  assert.throws(() => parseAutoencoderKLConfig({ block_out_channels: [64, 128] }, "v.json"), /2 block_out_channels but 1 down_block_types/);
});

test("gradients reach every UNet parameter (the student and the discriminator train from the teacher's UNet)", async () => {
  await tf.setBackend("cpu");
  const unet = loadUNet2DConditionModel(path.join(FIX, "unet_b"));
  const [x, ctx, cond] = [nhwc(REF.b_sample), t3(REF.b_context), t2(REF.b_timestep_cond)];
  const before = tf.memory().numTensors;
  const { value, grads } = tf.variableGrads(() => tf.sum(tf.square(unet.forward(x, 640, ctx, cond))) as tf.Scalar, unet.parameters());
  const names = new Map(unet.namedVariables().map(([k, v]) => [v.name, k]));
  for (const [id, g] of Object.entries(grads)) {
    const [finite, nonzero] = tf.tidy(() => [tf.all(tf.isFinite(g)).dataSync()[0], tf.any(tf.notEqual(g, 0)).dataSync()[0]]);
    assert.ok(finite && nonzero, `${names.get(id)}: gradient ${finite ? "is all zero" : "is not finite"}`);
  }
  assert.equal(Object.keys(grads).length, unet.parameters().length);
  tf.dispose([value, ...Object.values(grads)]);
  assert.equal(tf.memory().numTensors, before);
  tf.dispose([x, ctx, cond]);
  unet.dispose();
});
