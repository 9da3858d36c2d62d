import * as tf from "@tensorflow/tfjs";
import { dropout } from "../backend/dropout";
import { downsample2x, upsample2x } from "../backend/resample";
import { Rng } from "../core/random";
import { Conv2d, GroupNorm, Linear } from "./layers";
import { Module, ModuleDict } from "./module";

// The EDM CIFAR-10 network: DDPM++ ("SongUNet" in NVlabs/edm training/networks.py), standard encoder and
// decoder, positional noise embedding, [1,1] resampling filter. Field and block names equal the official
// ones, so a converted checkpoint (keys without the "model." prefix of EDMPrecond) loads unchanged.

export interface SongUNetConfig {
  imgResolution: number;
  inChannels: number;
  outChannels: number;
  /** Number of classes; 0 = unconditional. */
  labelDim: number;
  /** Dimension of the augmentation labels of EDM's non-leaky augmentation (9 for CIFAR-10); 0 = none. */
  augmentDim: number;
  modelChannels: number;
  channelMult: number[];
  channelMultEmb: number;
  numBlocks: number;
  attnResolutions: number[];
  dropout: number;
}

/** The published CIFAR-10 configuration (edm-cifar10-32x32-cond-vp: 55.7M parameters). */
export const DDPMPP_CIFAR10: SongUNetConfig = {
  imgResolution: 32, inChannels: 3, outChannels: 3, labelDim: 10, augmentDim: 9,
  modelChannels: 128, channelMult: [2, 2, 2], channelMultEmb: 4, numBlocks: 4, attnResolutions: [16], dropout: 0.13,
};

type Init = "xavier" | "zero" | "attn";

/** EDM's inits: xavier_uniform, scaled by 1e-5 for the layers that end a residual branch, by sqrt(0.2) for qkv. */
function edmInit(layer: Conv2d | Linear, init: Init, fanIn: number, fanOut: number, rng: Rng): Conv2d | Linear {
  const gain = init === "zero" ? 1e-5 : init === "attn" ? Math.sqrt(0.2) : 1;
  const b = gain * Math.sqrt(6 / (fanIn + fanOut));
  layer.weight.assign(tf.tidy(() => tf.randomUniform(layer.weight.shape, -b, b, "float32", rng.seed())));
  if (layer.bias) layer.bias.assign(tf.zerosLike(layer.bias));
  return layer;
}

function conv(cin: number, cout: number, k: number, init: Init, rng: Rng): Conv2d {
  return edmInit(new Conv2d(cin, cout, k, rng), init, cin * k * k, cout * k * k, rng) as Conv2d;
}

function linear(cin: number, cout: number, init: Init, rng: Rng, bias = true): Linear {
  return edmInit(new Linear(cin, cout, rng, bias), init, cin, cout, rng) as Linear;
}

/** EDM's GroupNorm: 32 groups unless that leaves fewer than 4 channels per group; `act` fuses the SiLU that follows. */
function groupNorm(c: number, act?: "silu"): GroupNorm {
  return new GroupNorm(Math.min(32, Math.floor(c / 4)), c, 1e-6, act);
}

export function silu(x: tf.Tensor): tf.Tensor {
  return tf.mul(x, tf.sigmoid(x));
}

// The [1,1] resampling filter makes down = 2x2 box average with stride 2, up = nearest-neighbour 2x, both
// differentiable twice (R1 needs gradients of gradients; lib/backend/resample.ts).
export function resample(x: tf.Tensor4D, mode: "up" | "down" | "keep"): tf.Tensor4D {
  if (mode === "down") return downsample2x(x);
  if (mode === "up") return upsample2x(x);
  return x;
}

export interface BlockOptions {
  resample: "up" | "down" | "keep";
  attention: boolean;
}

export class UNetBlock extends Module {
  norm0: GroupNorm;
  conv0: Conv2d;
  affine: Linear;
  norm1: GroupNorm;
  conv1: Conv2d;
  skip?: Conv2d;
  norm2?: GroupNorm;
  qkv?: Conv2d;
  proj?: Conv2d;
  constructor(readonly inC: number, readonly outC: number, embC: number, readonly o: BlockOptions, readonly dropout: number, rng: Rng) {
    super();
    this.norm0 = groupNorm(inC, "silu");
    this.conv0 = conv(inC, outC, 3, "xavier", rng);
    this.affine = linear(embC, outC, "xavier", rng);
    this.norm1 = groupNorm(outC, "silu");
    this.conv1 = conv(outC, outC, 3, "zero", rng);
    // DDPM++ uses resample_proj: any resampling or channel change gets a 1x1 projection on the skip path
    if (outC !== inC || o.resample !== "keep") this.skip = conv(inC, outC, 1, "xavier", rng);
    if (o.attention) {
      this.norm2 = groupNorm(outC);
      this.qkv = conv(outC, outC * 3, 1, "attn", rng);
      this.proj = conv(outC, outC, 1, "zero", rng);
    }
  }

  forward(x: tf.Tensor4D, emb: tf.Tensor2D, dropoutSeed?: number): tf.Tensor4D {
    return tf.tidy(() => {
      const skipScale = Math.SQRT1_2;
      // norm0 and norm1 include the SiLU that follows them
      let h = this.conv0.forward(resample(this.norm0.forward(x), this.o.resample));
      // h = silu(norm1(h + affine(emb)))  (adaptive_scale = False in DDPM++)
      const params = tf.reshape(this.affine.forward(emb), [emb.shape[0], 1, 1, this.outC]);
      h = this.norm1.forward(tf.add(h, params) as tf.Tensor4D);
      if (dropoutSeed !== undefined && this.dropout > 0) h = dropout(h, this.dropout, dropoutSeed);
      h = this.conv1.forward(h);
      const orig = this.skip ? this.skip.forward(resample(x, this.o.resample)) : x;
      // x = (h + skip(x)) / sqrt(2)
      let out = tf.mul(tf.add(h, orig), skipScale) as tf.Tensor4D;
      if (this.qkv && this.norm2 && this.proj) {
        const [n, hh, ww, c] = out.shape;
        // channels of qkv interleave as (channel, {q,k,v}), as the reference's reshape(N, C, 3, HW) implies; the
        // 1x1 conv runs with its output channels regrouped as ({q,k,v}, channel), so q, k, v are contiguous slices
        const qkv = this.qkv;
        const weight = tf.reshape(tf.transpose(tf.reshape(qkv.weight, [c, c, 3]), [0, 2, 1]), [1, 1, c, 3 * c]) as tf.Tensor4D;
        const bias = tf.reshape(tf.transpose(tf.reshape(qkv.bias!, [c, 3])), [3 * c]);
        const grouped = tf.add(tf.conv2d(this.norm2.forward(out), weight, 1, "valid"), bias);
        const [q, k, v] = tf.split(tf.reshape(grouped, [n, hh * ww, 3 * c]), 3, 2) as tf.Tensor3D[];
        // w = softmax(q^T k / sqrt(C)) over keys; a = v w^T
        const w = tf.softmax(tf.matMul(q, tf.div(k, Math.sqrt(c)), false, true));
        const a = tf.reshape(tf.matMul(w, v), [n, hh, ww, c]) as tf.Tensor4D;
        out = tf.mul(tf.add(this.proj.forward(a), out), skipScale) as tf.Tensor4D;
      }
      return out;
    });
  }
}

/** Positional noise embedding with endpoint = True, emitted as [sin, cos] (the reference flips its [cos, sin]). */
function positionalEmbedding(x: tf.Tensor1D, channels: number): tf.Tensor2D {
  return tf.tidy(() => {
    const half = channels / 2;
    // freq_i = (1/10000)^(i / (C/2 - 1))
    const freqs = tf.tensor1d(Array.from({ length: half }, (_, i) => (1 / 10000) ** (i / (half - 1))));
    const arg = tf.mul(tf.reshape(x, [-1, 1]), tf.reshape(freqs, [1, half]));
    return tf.concat([tf.sin(arg), tf.cos(arg)], 1) as tf.Tensor2D;
  });
}

export class SongUNet extends Module {
  map_label?: Linear;
  map_augment?: Linear;
  map_layer0: Linear;
  map_layer1: Linear;
  enc = new ModuleDict<Conv2d | UNetBlock>();
  dec = new ModuleDict<Conv2d | UNetBlock | GroupNorm>();
  /** Channels of each encoder output kept for a skip connection, in order. */
  private readonly skipChannels: number[] = [];

  constructor(readonly config: SongUNetConfig, rng: Rng) {
    super();
    const mc = config.modelChannels;
    const embC = mc * config.channelMultEmb;
    const noiseC = mc;
    if (config.labelDim) this.map_label = linear(config.labelDim, noiseC, "xavier", rng);
    if (config.augmentDim) this.map_augment = linear(config.augmentDim, noiseC, "xavier", rng, false);
    this.map_layer0 = linear(noiseC, embC, "xavier", rng);
    this.map_layer1 = linear(embC, embC, "xavier", rng);
    const block = (cin: number, cout: number, o: BlockOptions) => new UNetBlock(cin, cout, embC, o, config.dropout, rng);

    let cout = config.inChannels;
    config.channelMult.forEach((mult, level) => {
      const res = config.imgResolution >> level;
      if (level === 0) {
        this.enc.set(`${res}x${res}_conv`, conv(cout, mc, 3, "xavier", rng));
        cout = mc;
      } else {
        this.enc.set(`${res}x${res}_down`, block(cout, cout, { resample: "down", attention: false }));
      }
      this.skipChannels.push(cout);
      for (let idx = 0; idx < config.numBlocks; idx++) {
        const cin = cout;
        cout = mc * mult;
        this.enc.set(`${res}x${res}_block${idx}`, block(cin, cout, { resample: "keep", attention: config.attnResolutions.includes(res) }));
        this.skipChannels.push(cout);
      }
    });
    const skips = [...this.skipChannels];
    for (let level = config.channelMult.length - 1; level >= 0; level--) {
      const res = config.imgResolution >> level;
      if (level === config.channelMult.length - 1) {
        this.dec.set(`${res}x${res}_in0`, block(cout, cout, { resample: "keep", attention: true }));
        this.dec.set(`${res}x${res}_in1`, block(cout, cout, { resample: "keep", attention: false }));
      } else {
        this.dec.set(`${res}x${res}_up`, block(cout, cout, { resample: "up", attention: false }));
      }
      for (let idx = 0; idx <= config.numBlocks; idx++) {
        const cin = cout + skips.pop()!;
        cout = mc * config.channelMult[level];
        const attn = idx === config.numBlocks && config.attnResolutions.includes(res);
        this.dec.set(`${res}x${res}_block${idx}`, block(cin, cout, { resample: "keep", attention: attn }));
      }
      if (level === 0) {
        this.dec.set(`${res}x${res}_aux_norm`, groupNorm(cout, "silu"));
        this.dec.set(`${res}x${res}_aux_conv`, conv(cout, config.outChannels, 3, "zero", rng));
      }
    }
  }

  /** The conditioning vector of every block: noise embedding + label (+ augmentation) mapping, through two layers. */
  embedding(noiseLabels: tf.Tensor1D, classLabels?: tf.Tensor2D, augmentLabels?: tf.Tensor2D): tf.Tensor2D {
    return tf.tidy(() => {
      let emb: tf.Tensor2D = positionalEmbedding(noiseLabels, this.config.modelChannels);
      if (this.map_label) {
        if (!classLabels) throw new Error(`SongUNet: class labels [N, ${this.config.labelDim}] are required by a conditional network`);
        // emb += map_label(onehot * sqrt(label_dim))
        emb = tf.add(emb, this.map_label.forward(tf.mul(classLabels, Math.sqrt(this.config.labelDim))));
      }
      if (this.map_augment && augmentLabels) emb = tf.add(emb, this.map_augment.forward(augmentLabels));
      emb = silu(this.map_layer0.forward(emb)) as tf.Tensor2D;
      return silu(this.map_layer1.forward(emb)) as tf.Tensor2D;
    });
  }

  /**
   * F(x; c_noise, class). classLabels are one-hot [N, labelDim]; dropoutRng turns training-mode dropout on.
   */
  forward(x: tf.Tensor4D, noiseLabels: tf.Tensor1D, classLabels?: tf.Tensor2D, augmentLabels?: tf.Tensor2D, dropoutRng?: Rng): tf.Tensor4D {
    return tf.tidy(() => {
      const emb = this.embedding(noiseLabels, classLabels, augmentLabels);
      const seed = () => (dropoutRng ? dropoutRng.seed() : undefined);
      const skips: tf.Tensor4D[] = [];
      let h = x;
      for (const [, b] of this.enc.items) {
        h = b instanceof UNetBlock ? b.forward(h, emb, seed()) : (b as Conv2d).forward(h);
        skips.push(h);
      }
      let out: tf.Tensor4D | undefined;
      let aux: tf.Tensor4D | undefined;
      for (const [name, b] of this.dec.items) {
        // out = aux_conv(silu(aux_norm(h))), the SiLU inside aux_norm
        if (name.endsWith("aux_norm")) aux = (b as GroupNorm).forward(h);
        else if (name.endsWith("aux_conv")) out = (b as Conv2d).forward(aux!);
        else {
          const blk = b as UNetBlock;
          if (h.shape[3] !== blk.inC) h = tf.concat([h, skips.pop()!], 3);
          h = blk.forward(h, emb, seed());
        }
      }
      return out!;
    });
  }
}

/** Keys of the official checkpoint that carry no learnable state here (the fixed [1,1] resampling filters). */
export function officialUNetRename(key: string): string | undefined {
  const k = key.startsWith("model.") ? key.slice("model.".length) : key;
  return k.endsWith(".resample_filter") ? undefined : k;
}

