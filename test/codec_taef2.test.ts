import { before, test } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import "@tensorflow/tfjs-backend-wasm";
import { ensureData } from "../lib/data/fetch";
import { loadImages } from "../lib/data/images";
import { psnr8bit, taef2Codec } from "../lib/nn/latent_codec";

// The real TAEF2 weights (official .pth, float16) on a Kodak photo. PyTorch with the same weights gives 30.6 dB
// on kodim04 centre-cropped and resized to 256 px (28.6 dB mean over the 24 photos); a broken port gives far less.

before(async () => {
  await tf.setBackend("wasm");
});

test("TAEF2 round trip of a Kodak photo at 256 px keeps PSNR > 27 dB", async () => {
  const codec = await taef2Codec();
  assert.equal(codec.channels, 32);
  assert.equal(codec.factor, 8);
  const image = await loadImages(await ensureData("images/kodak/kodim04.png"), { size: 256, kernel: "lanczos3" });
  const z = codec.encode(image);
  assert.deepEqual(z.shape, [1, 32, 32, 32]);
  // FLUX.2's normalised latent space: roughly zero mean, unit scale
  const { mean, variance } = tf.moments(z);
  const [m, sd] = [mean.dataSync()[0], Math.sqrt(variance.dataSync()[0])];
  assert.ok(Math.abs(m) < 0.3 && sd > 0.5 && sd < 1.5, `latent mean ${m}, std ${sd}`);
  const decoded = codec.decode(z);
  const [psnr] = await psnr8bit(decoded, image);
  console.log(`TAEF2 kodim04 256 px: PSNR ${psnr.toFixed(2)} dB, latent mean ${m.toFixed(3)} std ${sd.toFixed(3)}`);
  assert.ok(psnr > 27, `PSNR ${psnr.toFixed(2)} dB`);
  tf.dispose([image, z, mean, variance, decoded]);
  codec.dispose();
});
