import * as crypto from "crypto";
import * as fs from "fs";
import * as tf from "@tensorflow/tfjs";
import { fromRoot } from "../core/paths";
import { Rng } from "../core/random";
import { readSafetensors } from "../io/safetensors";
import { FrozenForward } from "../nn/frozen";
import { Conv2d, Linear, MaxPool2d, ReLU } from "../nn/layers";
import { Layer, Module, Sequential } from "../nn/module";
import { FeatureNet } from "./feature_net";

// "FID-C10": the stand-in FID feature network of the CIFAR-10 experiment, whose teacher generates 16x16 images.
// A small VGG-style classifier (stages of conv3x3-ReLU, 2x2 max-pool between stages) trained on CIFAR-10
// downsampled by 2x2 box averaging; its features are the global average pool of the last stage (the role of
// Inception's pool3), its logits a Linear on top. Trained by `lib/bin/train_standins.ts c10`; weights committed in
// data/weights/. Numbers computed with it print as FID-C10 / KID-C10 and compare only with each other.

export interface C10ClassifierConfig {
  /** Input side in pixels. */
  resolution: number;
  /** Output channels of each stage; the last is the feature dimension. */
  widths: number[];
  convsPerStage: number;
  classes: number;
}

export const C10_CLASSIFIER: C10ClassifierConfig = { resolution: 16, widths: [32, 64, 128], convsPerStage: 1, classes: 10 };

export const C10_WEIGHTS = fromRoot("data", "weights", "c10_classifier16.safetensors");

/** Keys `features.{i}.*` (conv, ReLU, ..., pool between stages) and `fc.*`. */
export class C10Classifier extends Module {
  features: Sequential;
  fc: Linear;
  readonly dim: number;
  constructor(readonly config: C10ClassifierConfig, rng: Rng) {
    super();
    const layers: Layer[] = [];
    let c = 3;
    config.widths.forEach((o, s) => {
      if (s > 0) layers.push(new MaxPool2d(2));
      for (let k = 0; k < config.convsPerStage; k++) {
        layers.push(new Conv2d(c, o, 3, rng, { padding: 1 }), new ReLU());
        c = o;
      }
    });
    this.features = new Sequential(layers);
    this.dim = c;
    this.fc = new Linear(c, config.classes, rng);
  }

  /** Penultimate features [N, dim]: the global average pool of the last stage. */
  embed(x: tf.Tensor4D): tf.Tensor2D {
    const { resolution: r } = this.config;
    if (x.shape[1] !== r || x.shape[2] !== r || x.shape[3] !== 3) {
      throw new Error(`C10Classifier: expected RGB images [N, ${r}, ${r}, 3] in [-1, 1], got [${x.shape}]`);
    }
    return tf.tidy(() => tf.mean(this.features.forward(x), [1, 2]) as tf.Tensor2D);
  }

  logits(x: tf.Tensor4D): tf.Tensor2D {
    return tf.tidy(() => this.fc.forward(this.embed(x)));
  }
}

/** 2x2 (k x k) box averaging, the downsampling the 16x16 CIFAR-10 experiment uses for its data. */
export function boxDownsample(images: tf.Tensor4D, k: number): tf.Tensor4D {
  return k === 1 ? images : tf.avgPool(images, k, k, "valid");
}

/** The classifier as a FeatureNet; images of a multiple of its resolution are box-averaged down to it first. */
export class C10Features implements FeatureNet {
  readonly label = "C10";
  readonly dim: number;
  private readonly frozen: FrozenForward;
  constructor(readonly model: C10Classifier, readonly name: string) {
    this.dim = model.dim;
    const r = model.config.resolution;
    this.frozen = new FrozenForward({
      name, variables: model.namedVariables(), inputs: ["images"], outputs: ["features"],
      fn: (x) => model.embed(boxDownsample(x as tf.Tensor4D, (x as tf.Tensor4D).shape[1] / r)),
    });
  }
  async features(images: tf.Tensor4D): Promise<tf.Tensor2D> {
    const r = this.model.config.resolution;
    const [, h, w] = images.shape;
    if (h !== w || h % r !== 0) throw new Error(`${this.name}: expected square images whose side is a multiple of ${r}, got [${images.shape}]`);
    const [f] = await this.frozen.run([images]);
    return f as tf.Tensor2D;
  }
}

export interface LoadedC10 {
  model: C10Classifier;
  net: C10Features;
  /** The safetensors metadata: config, steps, seconds, test accuracy (test_acc, test_acc_first500). */
  metadata: Record<string, string>;
}

/** Load the committed classifier (or another file written by train_standins). */
export function loadC10Classifier(file = C10_WEIGHTS): LoadedC10 {
  if (!fs.existsSync(file)) throw new Error(`${file}: C10 classifier weights not found (train them with: node node_modules/d2g/lib/bin/train_standins.js c10)`);
  const { tensors, metadata } = readSafetensors(file);
  if (!metadata.config) throw new Error(`${file}: no 'config' in the safetensors metadata; expected a file written by train_standins`);
  const model = new C10Classifier(JSON.parse(metadata.config) as C10ClassifierConfig, new Rng(0));
  model.loadStateDict(tensors, { source: file });
  const sha = crypto.createHash("sha256").update(fs.readFileSync(file)).digest("hex");
  return { model, net: new C10Features(model, `c10-classifier${model.config.resolution}-${sha.slice(0, 8)}`), metadata };
}

/** The committed classifier's FeatureNet (FID-C10, KID-C10). */
export function loadC10FeatureNet(file = C10_WEIGHTS): C10Features {
  return loadC10Classifier(file).net;
}
