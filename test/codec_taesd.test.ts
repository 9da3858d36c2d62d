import { test } from "node:test";
import assert from "node:assert/strict";
import * as path from "path";
import * as tf from "@tensorflow/tfjs";
import "@tensorflow/tfjs-backend-wasm";
import { fromRoot } from "../lib/core/paths";
import { readTorchCheckpoint } from "../lib/io/pth";
import { patchify, TaesdCodec, unpatchify } from "../lib/nn/latent_codec";
import { TaesdConfig, TAEF2, TAESD_SD1 } from "../lib/nn/taesd";
import { nhwc } from "./support";

// The port against PyTorch: narrow TAESD nets with random weights in the official key layout, written with
// PyTorch's outputs by test/fixtures/make_taesd_fixture.py.

const FIX = fromRoot("test", "fixtures", "taesd");
const WIDTH = 8;
const TOL = 1e-4;

const VARIANTS: Array<{ prefix: string; config: TaesdConfig }> = [
  { prefix: "sd", config: { ...TAESD_SD1, width: WIDTH } },
  { prefix: "f2", config: { ...TAEF2, width: WIDTH } },
];

function maxAbsDiff(a: tf.Tensor, b: tf.Tensor): number {
  assert.deepEqual(a.shape, b.shape);
  return tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]);
}

function load(prefix: string, config: TaesdConfig, patch = 1): TaesdCodec {
  const files = { encoder: path.join(FIX, `${prefix}_encoder.pth`), decoder: path.join(FIX, `${prefix}_decoder.pth`) };
  return new TaesdCodec(config, files, { name: `fixture-${prefix}`, patch });
}

for (const backend of ["cpu", "wasm"]) {
  for (const { prefix, config } of VARIANTS) {
    test(`${prefix} TAESD (${backend}): encoder and decoder equal PyTorch within ${TOL}`, async () => {
      await tf.setBackend(backend);
      const ref = readTorchCheckpoint(path.join(FIX, `${prefix}_reference.pth`));
      const codec = load(prefix, config);
      const [image, latent, latentIn, decoded] = [ref.image, ref.latent, ref.latent_in, ref.decoded].map(nhwc);

      const z = codec.encoder.forward(image);
      const d = maxAbsDiff(z, latent);
      assert.ok(d < TOL, `encoder: max |ours - PyTorch| = ${d}`);
      const y = codec.decoder.forward(latentIn);
      const e = maxAbsDiff(y, decoded);
      assert.ok(e < TOL, `decoder: max |ours - PyTorch| = ${e}`);

      // the codec works in [-1, 1]: encode(2x - 1) = encoder(x), decode(z) = 2 decoder(z) - 1
      const zc = tf.tidy(() => codec.encode(tf.sub(tf.mul(image, 2), 1)));
      assert.ok(maxAbsDiff(zc, latent) < TOL);
      const yc = codec.decode(latentIn);
      const want = tf.tidy(() => tf.sub(tf.mul(decoded, 2), 1));
      assert.ok(maxAbsDiff(yc, want) < 2 * TOL);

      tf.dispose([image, latent, latentIn, decoded, z, y, zc, yc, want]);
      codec.dispose();
    });
  }
}

test("module names are exactly the official state-dict keys, at any width", () => {
  for (const { prefix, config } of VARIANTS) {
    const codec = load(prefix, config);
    for (const part of ["encoder", "decoder"] as const) {
      const file = Object.keys(readTorchCheckpoint(path.join(FIX, `${prefix}_${part}.pth`))).sort();
      const ours = codec[part].namedVariables().map(([k]) => k).sort();
      assert.deepEqual(ours, file, `${prefix} ${part}`);
    }
    codec.dispose();
  }
});

test("TAEF2 2x2 patchify matches FLUX.2's channel order and inverts exactly", async () => {
  await tf.setBackend("cpu");
  const ref = readTorchCheckpoint(path.join(FIX, "f2_reference.pth"));
  const codec = load("f2", VARIANTS[1].config, 2);
  assert.equal(codec.channels, 128);
  assert.equal(codec.factor, 16);
  const [image, latent, packed] = [ref.image, ref.latent, ref.latent_packed].map(nhwc);
  const z = tf.tidy(() => codec.encode(tf.sub(tf.mul(image, 2), 1)));
  assert.ok(maxAbsDiff(z, packed) < TOL);
  const back = unpatchify(patchify(latent, 2), 2);
  assert.equal(maxAbsDiff(back, latent), 0);
  // decoding the packed latent is decoding the unpacked one
  const flat = load("f2", VARIANTS[1].config);
  const a = codec.decode(packed);
  const b = flat.decode(latent);
  assert.ok(maxAbsDiff(a, b) < 1e-6);
  tf.dispose([image, latent, packed, z, back, a, b]);
  codec.dispose();
  flat.dispose();
});

test("bad shapes are refused with the expected shape in the message", async () => {
  await tf.setBackend("cpu");
  const codec = load("sd", VARIANTS[0].config);
  const odd = tf.zeros([1, 20, 16, 3]) as tf.Tensor4D;
  assert.throws(() => codec.encode(odd), /multiples of 8/);
  const wrong = tf.zeros([1, 2, 2, 32]) as tf.Tensor4D;
  assert.throws(() => codec.decode(wrong), /\[N, h, w, 4\]/);
  tf.dispose([odd, wrong]);
  codec.dispose();
});

test("a checkpoint of another variant is refused, naming the file and the weight", () => {
  const files = { encoder: path.join(FIX, "sd_encoder.pth"), decoder: path.join(FIX, "sd_decoder.pth") };
  assert.throws(() => new TaesdCodec({ ...TAEF2, width: WIDTH }, files, { name: "mismatch" }), /sd_encoder\.pth: (missing weight|weight) '/);
});
