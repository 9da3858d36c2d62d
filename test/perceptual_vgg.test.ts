import { before, test } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { Rng } from "../lib/core/random";
import { fromRoot } from "../lib/core/paths";
import { readTorchCheckpoint } from "../lib/io/pth";
import { ClassifierHead, LatentVgg16Bn, Vgg16, vgg16TapChannels } from "../lib/nn/vgg";

before(async () => {
  await tf.setBackend("cpu");
});

/** Official conv widths of VGG16 in order, and the `features` index of each conv (3 per conv with BN, 2 without). */
const CONVS = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512];
const STAGE_OF = [0, 0, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4];

/** name -> torch shape, from a module's expected weights. */
function torchShapes(m: { expectedWeights(): Array<{ name: string; shape: number[]; layout: string }> }): Map<string, number[]> {
  return new Map(m.expectedWeights().map((e) => {
    const [h, w, i, o] = e.shape;
    return [e.name, e.layout === "conv" ? [o, i, h, w] : e.shape];
  }));
}

test("width-1 VGG16 has torchvision's features.* names and shapes (14,714,688 parameters)", () => {
  const vgg = new Vgg16(new Rng(0));
  const want = new Map<string, number[]>();
  let idx = 0;
  let inC = 3;
  CONVS.forEach((c, k) => {
    want.set(`features.${idx}.weight`, [c, inC, 3, 3]);
    want.set(`features.${idx}.bias`, [c]);
    inC = c;
    idx += 2;
    if (k === CONVS.length - 1 || STAGE_OF[k + 1] !== STAGE_OF[k]) idx += 1; // the stage's max-pool
  });
  assert.deepEqual(torchShapes(vgg), want);
  assert.equal(vgg.numParameters(), 14_714_688);
  assert.deepEqual(vgg.tapIndices, [3, 8, 15, 22, 29]);
  vgg.dispose();
});

test("width-1 latent VGG16-BN has the released net.slice{k}.{i}.* names and shapes", () => {
  const net = new LatentVgg16Bn(4, new Rng(0));
  const want = new Map<string, number[]>();
  let idx = 0;
  let inC = 4;
  // elatentlpips slices of vgg16_bn.features: [0,7), [7,14), [14,24), [24,34), [34,44)
  const sliceOf = (i: number) => [7, 14, 24, 34, 44].findIndex((end) => i < end) + 1;
  CONVS.forEach((c, k) => {
    const s = sliceOf(idx);
    want.set(`slice${s}.${idx}.weight`, [c, inC, 3, 3]);
    want.set(`slice${s}.${idx}.bias`, [c]);
    for (const b of ["weight", "bias", "running_mean", "running_var"]) want.set(`slice${s}.${idx + 1}.${b}`, [c]);
    want.set(`slice${s}.${idx + 1}.num_batches_tracked`, []);
    inC = c;
    idx += 3;
    if (k === CONVS.length - 1 || STAGE_OF[k + 1] !== STAGE_OF[k]) idx += 1;
  });
  assert.equal(idx, 44);
  assert.deepEqual(torchShapes(net), want);
  // conv + BN affine parameters; the running statistics are buffers
  assert.equal(net.numParameters(), 14_723_712);
  net.dispose();
});

test("trunk key names equal those of the PyTorch reference fixture", () => {
  const sd = readTorchCheckpoint(fromRoot("test", "fixtures", "lpips", "latent_lpips.pth"));
  const released = Object.keys(sd).filter((k) => k.startsWith("net.")).map((k) => k.slice(4)).sort();
  const net = new LatentVgg16Bn(4, new Rng(0), { width: 1 / 32 });
  assert.deepEqual(net.namedVariables().map(([n]) => n).sort(), released);
  net.dispose();
  const vsd = readTorchCheckpoint(fromRoot("test", "fixtures", "lpips", "vgg16.pth"));
  const vgg = new Vgg16(new Rng(0), { width: 1 / 32 });
  assert.deepEqual(vgg.namedVariables().map(([n]) => n).sort(), Object.keys(vsd).sort());
  vgg.dispose();
});

test("latent trunk taps for a 64x64 latent are 64, 64, 64, 32, 16 pixels wide", () => {
  const net = new LatentVgg16Bn(4, new Rng(1), { width: 1 / 16 });
  const taps = tf.tidy(() => net.taps(tf.randomNormal([1, 64, 64, 4], 0, 1, "float32", 3) as tf.Tensor4D));
  assert.deepEqual(taps.map((t) => t.shape), [64, 64, 64, 32, 16].map((s, l) => [1, s, s, vgg16TapChannels({ width: 1 / 16 })[l]]));
  tf.dispose(taps);
  net.dispose();
});

test("width multiplier scales every stage and the classifier head stays out of the trunk's state dict", () => {
  assert.deepEqual(vgg16TapChannels({ width: 1 / 4 }), [16, 32, 64, 128, 128]);
  const rng = new Rng(2);
  const net = new LatentVgg16Bn(4, rng, { width: 1 / 16 });
  const head = new ClassifierHead(net.tapChannels[4], 10, rng);
  const logits = tf.tidy(() => head.forward(net.forward(tf.randomNormal([3, 16, 16, 4], 0, 1, "float32", 4) as tf.Tensor4D)));
  assert.deepEqual(logits.shape, [3, 10]);
  assert.ok(net.namedVariables().every(([n]) => n.startsWith("slice")));
  assert.deepEqual(head.namedVariables().map(([n]) => n), ["fc.weight", "fc.bias"]);
  logits.dispose();
  net.dispose();
  head.dispose();
});

test("training mode updates BN running statistics; eval mode uses them", () => {
  const net = new LatentVgg16Bn(4, new Rng(5), { width: 1 / 32 });
  const x = tf.randomNormal([2, 8, 8, 4], 0, 1, "float32", 6) as tf.Tensor4D;
  const before = net.slice1.namedVariables().find(([n]) => n === "1.running_mean")![1].dataSync().slice();
  const y0 = net.forward(x);
  net.setTraining(true);
  net.forward(x).dispose();
  net.setTraining(false);
  const after = net.slice1.namedVariables().find(([n]) => n === "1.running_mean")![1].dataSync();
  assert.notDeepEqual(Array.from(after), Array.from(before));
  const y1 = net.forward(x);
  assert.ok(tf.max(tf.abs(tf.sub(y0, y1))).dataSync()[0] > 0);
  tf.dispose([x, y0, y1]);
  net.dispose();
});
