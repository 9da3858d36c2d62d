import { test } from "node:test";
import assert from "node:assert/strict";
import * as path from "path";
import * as tf from "@tensorflow/tfjs";
import { Rng } from "../lib/core/random";
import { fromRoot } from "../lib/core/paths";
import { readTorchCheckpoint } from "../lib/io/pth";
import { DDPMPP_CIFAR10, officialUNetRename, SongUNet } from "../lib/nn/unet";

const FIX = fromRoot("test", "fixtures", "unet");
const TINY = { imgResolution: 8, inChannels: 3, outChannels: 3, labelDim: 10, augmentDim: 0, modelChannels: 8, channelMult: [1, 2], channelMultEmb: 4, numBlocks: 1, attnResolutions: [4], dropout: 0 };

test("SongUNet loads an EDMPrecond-layout checkpoint and matches PyTorch", () => {
  const net = new SongUNet(TINY, new Rng(0));
  const file = path.join(FIX, "songunet_tiny.pth");
  net.loadStateDict(readTorchCheckpoint(file), { source: file, rename: officialUNetRename });
  const io = readTorchCheckpoint(path.join(FIX, "songunet_tiny_io.pth"));
  const t = (k: string) => tf.tensor(io[k].data as Float32Array, io[k].shape);
  const y = net.forward(t("x") as tf.Tensor4D, t("noise") as tf.Tensor1D, t("labels") as tf.Tensor2D);
  const want = io.y.data as Float32Array;
  const got = y.dataSync();
  let err = 0;
  for (let i = 0; i < want.length; i++) err = Math.max(err, Math.abs(got[i] - want[i]));
  assert.ok(err < 1e-4, `max abs diff to PyTorch ${err}`);
  net.dispose();
});

test("the published DDPM++ CIFAR-10 configuration has 55.7M parameters under the official names", () => {
  const net = new SongUNet(DDPMPP_CIFAR10, new Rng(0));
  // published as 55.7M; the exact count is what the PyTorch transcription in make_unet_fixture.py gives at this config
  assert.equal(net.numParameters(), 55735299);
  const names = net.namedVariables().map(([n]) => n);
  assert.ok(names.includes("enc.16x16_block0.qkv.weight") && names.includes("dec.32x32_aux_conv.bias"));
  net.dispose();
});
