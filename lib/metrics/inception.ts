import * as crypto from "crypto";
import * as fs from "fs";
import * as tf from "@tensorflow/tfjs";
import { Rng } from "../core/random";
import { HostTensor } from "../io/host_tensor";
import { readTorchCheckpoint } from "../io/pth";
import { pilResizeFloat } from "../data/pil_resize";
import { FrozenForward } from "../nn/frozen";
import { BatchNorm2d, MaxPool2d, Pool2d } from "../nn/layers";
import { Layer, param, torchUniform } from "../nn/module";
import { FeatureNet } from "./feature_net";

// The InceptionV3 of FID: TensorFlow's 2015 graph (inception-2015-12-05) as pytorch-fid ports it, torchvision's
// Inception3 with patched blocks. Its quirks, all kept here: every conv is bias-free with BatchNorm eps 0.001; the
// branch average pools leave padding out of the mean (count_include_pad=False, as TF does); and the last block
// (Mixed_7c, FIDInceptionE_2) max-pools its pool branch. Features are the 2048-d global average pool after Mixed_7c.
// Field names are the state-dict keys of pytorch-fid's pt_inception-2015-12-05-6726825d.pth.

/** torch.nn.Conv2d(bias=False) with a possibly rectangular kernel and symmetric padding. */
class Conv extends Layer {
  weight: tf.Variable;
  constructor(inC: number, outC: number, readonly kh: number, readonly kw: number, rng: Rng, readonly stride: number, readonly ph: number, readonly pw: number) {
    super();
    this.weight = param(torchUniform([kh, kw, inC, outC], inC * kh * kw, rng), "conv");
  }
  forward(x: tf.Tensor4D): tf.Tensor4D {
    const pad = this.ph === 0 && this.pw === 0 ? "valid" : ([[0, 0], [this.ph, this.ph], [this.pw, this.pw], [0, 0]] as tf.backend_util.ExplicitPadding);
    return tf.conv2d(x, this.weight as tf.Tensor4D, this.stride, pad);
  }
}

interface ConvSpec {
  k?: number | [number, number];
  stride?: number;
  pad?: number | [number, number];
}

/** torchvision's BasicConv2d: conv, BatchNorm (eps 0.001), ReLU. */
class BasicConv2d extends Layer {
  conv: Conv;
  bn: BatchNorm2d;
  constructor(inC: number, outC: number, rng: Rng, s: ConvSpec = {}) {
    super();
    const [kh, kw] = typeof s.k === "number" ? [s.k, s.k] : s.k ?? [1, 1];
    const [ph, pw] = typeof s.pad === "number" ? [s.pad, s.pad] : s.pad ?? [0, 0];
    this.conv = new Conv(inC, outC, kh, kw, rng, s.stride ?? 1, ph, pw);
    this.bn = new BatchNorm2d(outC, 0.001);
  }
  forward(x: tf.Tensor4D): tf.Tensor4D {
    return tf.tidy(() => tf.relu(this.bn.forward(this.conv.forward(x))));
  }
}

const concat = (xs: tf.Tensor4D[]): tf.Tensor4D => tf.concat(xs, 3);
// TF's average pool, as FIDInceptionA/C/E_1 patch it in: padding does not count in the mean.
const tfAvgPool = new Pool2d("avg", 3, 1, 1, false);

/** Mixed_5b..5d (FIDInceptionA). */
class BlockA extends Layer {
  branch1x1: BasicConv2d;
  branch5x5_1: BasicConv2d;
  branch5x5_2: BasicConv2d;
  branch3x3dbl_1: BasicConv2d;
  branch3x3dbl_2: BasicConv2d;
  branch3x3dbl_3: BasicConv2d;
  branch_pool: BasicConv2d;
  readonly outC: number;
  constructor(inC: number, poolFeatures: number, w: (c: number) => number, rng: Rng) {
    super();
    this.branch1x1 = new BasicConv2d(inC, w(64), rng);
    this.branch5x5_1 = new BasicConv2d(inC, w(48), rng);
    this.branch5x5_2 = new BasicConv2d(w(48), w(64), rng, { k: 5, pad: 2 });
    this.branch3x3dbl_1 = new BasicConv2d(inC, w(64), rng);
    this.branch3x3dbl_2 = new BasicConv2d(w(64), w(96), rng, { k: 3, pad: 1 });
    this.branch3x3dbl_3 = new BasicConv2d(w(96), w(96), rng, { k: 3, pad: 1 });
    this.branch_pool = new BasicConv2d(inC, poolFeatures, rng);
    this.outC = w(64) + w(64) + w(96) + poolFeatures;
  }
  forward(x: tf.Tensor4D): tf.Tensor4D {
    return tf.tidy(() => concat([
      this.branch1x1.forward(x),
      this.branch5x5_2.forward(this.branch5x5_1.forward(x)),
      this.branch3x3dbl_3.forward(this.branch3x3dbl_2.forward(this.branch3x3dbl_1.forward(x))),
      this.branch_pool.forward(tfAvgPool.forward(x)),
    ]));
  }
}

/** Mixed_6a (InceptionB): stride-2 reduction 35 -> 17. */
class BlockB extends Layer {
  branch3x3: BasicConv2d;
  branch3x3dbl_1: BasicConv2d;
  branch3x3dbl_2: BasicConv2d;
  branch3x3dbl_3: BasicConv2d;
  readonly outC: number;
  constructor(inC: number, w: (c: number) => number, rng: Rng) {
    super();
    this.branch3x3 = new BasicConv2d(inC, w(384), rng, { k: 3, stride: 2 });
    this.branch3x3dbl_1 = new BasicConv2d(inC, w(64), rng);
    this.branch3x3dbl_2 = new BasicConv2d(w(64), w(96), rng, { k: 3, pad: 1 });
    this.branch3x3dbl_3 = new BasicConv2d(w(96), w(96), rng, { k: 3, stride: 2 });
    this.outC = w(384) + w(96) + inC;
  }
  forward(x: tf.Tensor4D): tf.Tensor4D {
    return tf.tidy(() => concat([
      this.branch3x3.forward(x),
      this.branch3x3dbl_3.forward(this.branch3x3dbl_2.forward(this.branch3x3dbl_1.forward(x))),
      tf.maxPool(x, 3, 2, "valid"),
    ]));
  }
}

/** Mixed_6b..6e (FIDInceptionC): factorised 7x7 convolutions. */
class BlockC extends Layer {
  branch1x1: BasicConv2d;
  branch7x7_1: BasicConv2d;
  branch7x7_2: BasicConv2d;
  branch7x7_3: BasicConv2d;
  branch7x7dbl_1: BasicConv2d;
  branch7x7dbl_2: BasicConv2d;
  branch7x7dbl_3: BasicConv2d;
  branch7x7dbl_4: BasicConv2d;
  branch7x7dbl_5: BasicConv2d;
  branch_pool: BasicConv2d;
  readonly outC: number;
  constructor(inC: number, c7: number, w: (c: number) => number, rng: Rng) {
    super();
    const row: ConvSpec = { k: [1, 7], pad: [0, 3] };
    const col: ConvSpec = { k: [7, 1], pad: [3, 0] };
    this.branch1x1 = new BasicConv2d(inC, w(192), rng);
    this.branch7x7_1 = new BasicConv2d(inC, c7, rng);
    this.branch7x7_2 = new BasicConv2d(c7, c7, rng, row);
    this.branch7x7_3 = new BasicConv2d(c7, w(192), rng, col);
    this.branch7x7dbl_1 = new BasicConv2d(inC, c7, rng);
    this.branch7x7dbl_2 = new BasicConv2d(c7, c7, rng, col);
    this.branch7x7dbl_3 = new BasicConv2d(c7, c7, rng, row);
    this.branch7x7dbl_4 = new BasicConv2d(c7, c7, rng, col);
    this.branch7x7dbl_5 = new BasicConv2d(c7, w(192), rng, row);
    this.branch_pool = new BasicConv2d(inC, w(192), rng);
    this.outC = 4 * w(192);
  }
  forward(x: tf.Tensor4D): tf.Tensor4D {
    return tf.tidy(() => {
      const dbl = [this.branch7x7dbl_1, this.branch7x7dbl_2, this.branch7x7dbl_3, this.branch7x7dbl_4, this.branch7x7dbl_5];
      return concat([
        this.branch1x1.forward(x),
        this.branch7x7_3.forward(this.branch7x7_2.forward(this.branch7x7_1.forward(x))),
        dbl.reduce((h, m) => m.forward(h), x),
        this.branch_pool.forward(tfAvgPool.forward(x)),
      ]);
    });
  }
}

/** Mixed_7a (InceptionD): stride-2 reduction 17 -> 8. */
class BlockD extends Layer {
  branch3x3_1: BasicConv2d;
  branch3x3_2: BasicConv2d;
  branch7x7x3_1: BasicConv2d;
  branch7x7x3_2: BasicConv2d;
  branch7x7x3_3: BasicConv2d;
  branch7x7x3_4: BasicConv2d;
  readonly outC: number;
  constructor(inC: number, w: (c: number) => number, rng: Rng) {
    super();
    this.branch3x3_1 = new BasicConv2d(inC, w(192), rng);
    this.branch3x3_2 = new BasicConv2d(w(192), w(320), rng, { k: 3, stride: 2 });
    this.branch7x7x3_1 = new BasicConv2d(inC, w(192), rng);
    this.branch7x7x3_2 = new BasicConv2d(w(192), w(192), rng, { k: [1, 7], pad: [0, 3] });
    this.branch7x7x3_3 = new BasicConv2d(w(192), w(192), rng, { k: [7, 1], pad: [3, 0] });
    this.branch7x7x3_4 = new BasicConv2d(w(192), w(192), rng, { k: 3, stride: 2 });
    this.outC = w(320) + w(192) + inC;
  }
  forward(x: tf.Tensor4D): tf.Tensor4D {
    return tf.tidy(() => concat([
      this.branch3x3_2.forward(this.branch3x3_1.forward(x)),
      this.branch7x7x3_4.forward(this.branch7x7x3_3.forward(this.branch7x7x3_2.forward(this.branch7x7x3_1.forward(x)))),
      tf.maxPool(x, 3, 2, "valid"),
    ]));
  }
}

/** Mixed_7b (FIDInceptionE_1, average pool) and Mixed_7c (FIDInceptionE_2, max pool). */
class BlockE extends Layer {
  branch1x1: BasicConv2d;
  branch3x3_1: BasicConv2d;
  branch3x3_2a: BasicConv2d;
  branch3x3_2b: BasicConv2d;
  branch3x3dbl_1: BasicConv2d;
  branch3x3dbl_2: BasicConv2d;
  branch3x3dbl_3a: BasicConv2d;
  branch3x3dbl_3b: BasicConv2d;
  branch_pool: BasicConv2d;
  readonly pool: Pool2d;
  readonly outC: number;
  constructor(inC: number, poolMode: "avg" | "max", w: (c: number) => number, rng: Rng) {
    super();
    const row: ConvSpec = { k: [1, 3], pad: [0, 1] };
    const col: ConvSpec = { k: [3, 1], pad: [1, 0] };
    this.branch1x1 = new BasicConv2d(inC, w(320), rng);
    this.branch3x3_1 = new BasicConv2d(inC, w(384), rng);
    this.branch3x3_2a = new BasicConv2d(w(384), w(384), rng, row);
    this.branch3x3_2b = new BasicConv2d(w(384), w(384), rng, col);
    this.branch3x3dbl_1 = new BasicConv2d(inC, w(448), rng);
    this.branch3x3dbl_2 = new BasicConv2d(w(448), w(384), rng, { k: 3, pad: 1 });
    this.branch3x3dbl_3a = new BasicConv2d(w(384), w(384), rng, row);
    this.branch3x3dbl_3b = new BasicConv2d(w(384), w(384), rng, col);
    this.branch_pool = new BasicConv2d(inC, w(192), rng);
    // pytorch-fid: "The FID Inception model uses max pooling instead of average pooling" in the last block.
    this.pool = poolMode === "max" ? new Pool2d("max", 3, 1, 1) : tfAvgPool;
    this.outC = w(320) + 4 * w(384) + w(192);
  }
  forward(x: tf.Tensor4D): tf.Tensor4D {
    return tf.tidy(() => {
      const b3 = this.branch3x3_1.forward(x);
      const bd = this.branch3x3dbl_2.forward(this.branch3x3dbl_1.forward(x));
      return concat([
        this.branch1x1.forward(x),
        this.branch3x3_2a.forward(b3),
        this.branch3x3_2b.forward(b3),
        this.branch3x3dbl_3a.forward(bd),
        this.branch3x3dbl_3b.forward(bd),
        this.branch_pool.forward(this.pool.forward(x)),
      ]);
    });
  }
}

export class FidInceptionV3 extends Layer {
  Conv2d_1a_3x3: BasicConv2d;
  Conv2d_2a_3x3: BasicConv2d;
  Conv2d_2b_3x3: BasicConv2d;
  Conv2d_3b_1x1: BasicConv2d;
  Conv2d_4a_3x3: BasicConv2d;
  Mixed_5b: BlockA;
  Mixed_5c: BlockA;
  Mixed_5d: BlockA;
  Mixed_6a: BlockB;
  Mixed_6b: BlockC;
  Mixed_6c: BlockC;
  Mixed_6d: BlockC;
  Mixed_6e: BlockC;
  Mixed_7a: BlockD;
  Mixed_7b: BlockE;
  Mixed_7c: BlockE;
  /** Feature width: 2048 at full width. */
  readonly dim: number;
  private readonly maxPool = new MaxPool2d(3, 2);

  /** `widthDiv` divides every channel count (16 gives the test fixture's architecture); 1 is the real network. */
  constructor(readonly widthDiv = 1, rng = new Rng(0)) {
    super();
    if (![1, 2, 4, 8, 16].includes(widthDiv)) throw new Error(`FidInceptionV3: widthDiv must be 1, 2, 4, 8 or 16, got ${widthDiv}`);
    const w = (c: number): number => c / widthDiv;
    this.Conv2d_1a_3x3 = new BasicConv2d(3, w(32), rng, { k: 3, stride: 2 });
    this.Conv2d_2a_3x3 = new BasicConv2d(w(32), w(32), rng, { k: 3 });
    this.Conv2d_2b_3x3 = new BasicConv2d(w(32), w(64), rng, { k: 3, pad: 1 });
    this.Conv2d_3b_1x1 = new BasicConv2d(w(64), w(80), rng);
    this.Conv2d_4a_3x3 = new BasicConv2d(w(80), w(192), rng, { k: 3 });
    this.Mixed_5b = new BlockA(w(192), w(32), w, rng);
    this.Mixed_5c = new BlockA(this.Mixed_5b.outC, w(64), w, rng);
    this.Mixed_5d = new BlockA(this.Mixed_5c.outC, w(64), w, rng);
    this.Mixed_6a = new BlockB(this.Mixed_5d.outC, w, rng);
    this.Mixed_6b = new BlockC(this.Mixed_6a.outC, w(128), w, rng);
    this.Mixed_6c = new BlockC(this.Mixed_6b.outC, w(160), w, rng);
    this.Mixed_6d = new BlockC(this.Mixed_6c.outC, w(160), w, rng);
    this.Mixed_6e = new BlockC(this.Mixed_6d.outC, w(192), w, rng);
    this.Mixed_7a = new BlockD(this.Mixed_6e.outC, w, rng);
    this.Mixed_7b = new BlockE(this.Mixed_7a.outC, "avg", w, rng);
    this.Mixed_7c = new BlockE(this.Mixed_7b.outC, "max", w, rng);
    this.dim = this.Mixed_7c.outC;
  }

  /** NHWC images already at 299x299 in [-1, 1] -> the pool features as [N, 1, 1, dim]. */
  forward(x: tf.Tensor4D): tf.Tensor4D {
    return tf.tidy(() => {
      let h = this.Conv2d_2b_3x3.forward(this.Conv2d_2a_3x3.forward(this.Conv2d_1a_3x3.forward(x)));
      h = this.maxPool.forward(h);
      h = this.maxPool.forward(this.Conv2d_4a_3x3.forward(this.Conv2d_3b_1x1.forward(h)));
      const blocks: Layer[] = [this.Mixed_5b, this.Mixed_5c, this.Mixed_5d, this.Mixed_6a, this.Mixed_6b, this.Mixed_6c, this.Mixed_6d, this.Mixed_6e, this.Mixed_7a, this.Mixed_7b, this.Mixed_7c];
      for (const b of blocks) h = b.forward(h);
      return tf.mean(h, [1, 2], true) as tf.Tensor4D;
    });
  }

  /**
   * Load a pytorch-fid state dict. Its classifier (fc.*, unused by FID) is skipped; BatchNorm's
   * num_batches_tracked, absent from files saved before torch 0.4.1, is filled in.
   */
  loadFidWeights(tensors: Record<string, HostTensor>, source: string): void {
    const all = { ...tensors };
    for (const { name } of this.expectedWeights()) {
      if (name.endsWith(".num_batches_tracked") && !(name in all)) all[name] = { dtype: "float32", shape: [], data: new Float32Array(1) };
    }
    this.loadStateDict(all, { source, rename: (k) => (k.startsWith("fc.") ? undefined : k) });
  }
}

/** pytorch-fid's published weights: torch hub names files by the first hex digits of their sha256. */
export const FID_WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth";
const FID_WEIGHTS_SHA256_PREFIX = "6726825d";

export type InceptionResize = "bilinear" | "clean";

/**
 * The FID feature extractor. resize 'bilinear' follows pytorch-fid (F.interpolate to 299, bilinear,
 * align_corners=False, no antialiasing); 'clean' follows clean-fid (PIL bicubic on float channels in [0, 255],
 * clipped). The label is plain "" (metrics print as "FID") only for the official weights, checked by hash;
 * anything else carries its own label.
 */
export class InceptionFeatures implements FeatureNet {
  readonly name: string;
  readonly label: string;
  readonly dim: number;
  private readonly frozen: FrozenForward;
  constructor(readonly model: FidInceptionV3, readonly resize: InceptionResize, official: boolean, weightsTag: string) {
    this.dim = model.dim;
    this.name = `fid-inception-v3-w${model.widthDiv}-${weightsTag}-${resize}`;
    this.label = official && model.widthDiv === 1 ? (resize === "clean" ? "clean" : "") : `inception[${weightsTag}]`;
    // chunks of 25 images keep onnxruntime's activations near 1 GB at 299 px and divide the usual batches of 50, 100
    this.frozen = new FrozenForward({
      name: `fid-inception-v3-w${model.widthDiv}`, variables: model.namedVariables(), inputs: ["images"], outputs: ["pool3"],
      fn: (x) => model.forward(x as tf.Tensor4D), maxBatch: 25,
    });
  }

  async features(images: tf.Tensor4D): Promise<tf.Tensor2D> {
    const [n, h, w, c] = images.shape;
    if (c !== 3) throw new Error(`InceptionFeatures: expected RGB images [N, H, W, 3], got [${images.shape}]`);
    let x = images;
    // Bilinear weights sum to one, so resizing in [-1, 1] equals pytorch-fid's resize in [0, 1] then 2x - 1.
    if (this.resize === "clean") x = cleanResizeBatch(images);
    else if (h !== 299 || w !== 299) x = tf.image.resizeBilinear(images, [299, 299], false, true);
    const [pool] = await this.frozen.run([x]);
    if (x !== images) x.dispose();
    const f = tf.reshape(pool, [n, this.dim]) as tf.Tensor2D;
    pool.dispose();
    return f;
  }
}

/** Load pytorch-fid's weight file and wrap it as the FID extractor. */
export function loadFidInception(file: string, resize: InceptionResize = "bilinear"): InceptionFeatures {
  const sha = crypto.createHash("sha256").update(fs.readFileSync(file)).digest("hex");
  const model = new FidInceptionV3(1);
  model.loadFidWeights(readTorchCheckpoint(file), file);
  const official = sha.startsWith(FID_WEIGHTS_SHA256_PREFIX);
  return new InceptionFeatures(model, resize, official, sha.slice(0, 8));
}

// ---- clean-fid's resize -------------------------------------------------------------------------------------

/**
 * clean-fid's "clean" resize of one HWC float image with values in [0, 255]: per channel, PIL's bicubic resize
 * of a mode-'F' image, then clipped to [0, 255].
 */
export function cleanResize(src: Float32Array, h: number, w: number, c: number, outH: number, outW: number): Float32Array {
  return pilResizeFloat(src, h, w, c, outH, outW).map((v) => Math.min(255, Math.max(0, v)));
}

/** [-1, 1] NHWC batch -> clean-resized 299x299 [-1, 1] batch (host-side, as clean-fid resizes on the CPU). */
function cleanResizeBatch(images: tf.Tensor4D): tf.Tensor4D {
  const [n, h, w, c] = images.shape;
  const src = images.dataSync();
  const per = h * w * c;
  const out = new Float32Array(n * 299 * 299 * c);
  const img = new Float32Array(per);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < per; j++) img[j] = (src[i * per + j] + 1) * 127.5;
    const r = cleanResize(img, h, w, c, 299, 299);
    for (let j = 0; j < r.length; j++) out[i * r.length + j] = r[j] / 127.5 - 1;
  }
  return tf.tensor4d(out, [n, 299, 299, c]);
}
