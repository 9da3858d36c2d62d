import { test } from "node:test";
import assert from "node:assert/strict";
import * as path from "path";
import * as tf from "@tensorflow/tfjs";
import { fromRoot } from "../lib/core/paths";
import { readTorchCheckpoint } from "../lib/io/pth";
import { clipPreprocess, clipPreprocessU8, clipResizeCrop, clipResizeShape, unitToU8Truncated } from "../lib/data/clip_image";
import { pilResizeU8 } from "../lib/data/pil_resize";

// Reference: OpenAI's clip._transform (torchvision Resize(bicubic) + CenterCrop + ToTensor + Normalize on PIL
// images, Pillow 9.4, torchvision 0.14; test/fixtures/clip/make_clip_model_fixture.py).
const io = readTorchCheckpoint(path.join(fromRoot("test", "fixtures", "clip"), "clip_tiny_io.pth"));

test("CLIP preprocessing: PIL's 8-bit bicubic resize and torchvision's centre crop match bit for bit", () => {
  let cases = 0;
  for (let k = 0; io[`pre${k}_in`]; k++, cases++) {
    const [h, w] = io[`pre${k}_in`].shape;
    const got = clipResizeCrop(io[`pre${k}_in`].data as Uint8Array, h, w, 32);
    const want = io[`pre${k}_u8`].data as Uint8Array;
    let diff = 0;
    for (let i = 0; i < want.length; i++) diff += got[i] !== want[i] ? 1 : 0;
    assert.equal(diff, 0, `${h}x${w}: ${diff} of ${want.length} bytes differ from PIL`);
  }
  // down, up, a half-pixel crop offset (64x71 -> 35 high: round(1.5) = 2), square, and none resampled (32x48)
  assert.equal(cases, 5);
  assert.deepEqual(clipResizeShape(71, 64, 32), { h: 35, w: 32 });
  assert.deepEqual(clipResizeShape(480, 640, 224), { h: 224, w: 298 });
});

test("CLIP preprocessing: normalised with CLIP's mean and std, as torch computes it", () => {
  const [h, w] = io.pre0_in.shape;
  const got = clipPreprocessU8(io.pre0_in.data as Uint8Array, h, w, 32);
  // the reference is CHW
  const want = io.pre0_out.data as Float32Array;
  let err = 0;
  for (let c = 0; c < 3; c++) for (let i = 0; i < 32 * 32; i++) err = Math.max(err, Math.abs(got[i * 3 + c] - want[c * 1024 + i]));
  assert.ok(err < 1e-6, `max error ${err}`);
  assert.throws(() => clipPreprocessU8(new Uint8Array(10), 2, 2, 32), /expected 2x2x3 bytes, got 10/);
});

test("tensor2pil: [-1, 1] to 8 bits clamps and truncates in float32 (so some exact u8 values come back one lower)", () => {
  const x = tf.tensor4d([-1.5, -1, 3 / 127.5 - 1, 0, 0.999, 1, 2, 254.9 / 127.5 - 1], [1, 2, 4, 1]);
  // (3 / 127.5 - 1 + 1) * 127.5 is 2.9999998 in float32: torch's .to(uint8) gives 2
  assert.deepEqual(Array.from(unitToU8Truncated(x)), [0, 0, 2, 127, 254, 255, 255, 254]);
  x.dispose();
  const rgb = tf.zeros([2, 40, 48, 3]) as tf.Tensor4D;
  const out = clipPreprocess(rgb, 32);
  assert.deepEqual(out.shape, [2, 32, 32, 3]);
  tf.dispose([rgb, out]);
  const grey = tf.zeros([1, 8, 8, 1]) as tf.Tensor4D;
  assert.throws(() => clipPreprocess(grey, 32), /expected RGB images/);
  grey.dispose();
});

test("PIL 8-bit resize: a constant image stays constant, sizes are checked", () => {
  const img = new Uint8Array(7 * 5 * 3).fill(200);
  assert.ok(pilResizeU8(img, 7, 5, 3, 13, 3).every((v) => v === 200));
  assert.throws(() => pilResizeU8(img, 7, 5, 3, 0, 3), /output size 0x3 must be positive integers/);
});
