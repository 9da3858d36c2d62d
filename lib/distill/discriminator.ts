import * as tf from "@tensorflow/tfjs";
import { Rng } from "../core/random";
import { edmPreconditioning } from "../diffusion/edm";
import { Conv2d, GroupNorm } from "../nn/layers";
import { Module, ModuleDict } from "../nn/module";
import { resample, silu, SongUNet, SongUNetConfig, UNetBlock } from "../nn/unet";

// Diffusion2GAN's conditional diffusion discriminator, built from the teacher network and initialised from its
// weights. It scores a clean sample x given the noise z it should have come from and the condition c:
//  - z enters through a zero-initialised conv added to the input conv, so at init the body is the teacher's;
//  - c enters through the network's own conditioning (class embedding here; cross-attention for SD);
//  - multi-scale: x resized to 1/2 and 1/4 is injected (zero-initialised convs) after the later down blocks,
//    and real/fake logits come from every decoder resolution, before, at and after the skip concatenation,
//    plus a final head.
// Each part can be switched off for the paper's discriminator ablation.

export interface DiscriminatorConfig {
  zCond: boolean;
  multiScale: boolean;
  /** Start from the teacher's weights (true) or from a fresh init of the same architecture. */
  diffusionInit: boolean;
  /** Noise level whose embedding the body is run at (the sample is clean, so a small one). */
  sigma: number;
}

export const DISCRIMINATOR_DEFAULTS: DiscriminatorConfig = { zCond: true, multiScale: true, diffusionInit: true, sigma: 0.002 };

/** A logit head: SiLU, 1x1 conv to one channel, spatial mean. */
class Head extends Module {
  conv: Conv2d;
  constructor(c: number, rng: Rng) {
    super();
    this.conv = new Conv2d(c, 1, 1, rng);
  }
  logit(h: tf.Tensor4D): tf.Tensor1D {
    return tf.tidy(() => tf.reshape(tf.mean(this.conv.forward(silu(h) as tf.Tensor4D), [1, 2, 3]), [-1]) as tf.Tensor1D);
  }
}

function zeroConv(cin: number, cout: number, rng: Rng): Conv2d {
  const c = new Conv2d(cin, cout, 3, rng);
  c.weight.assign(tf.zerosLike(c.weight));
  c.bias!.assign(tf.zerosLike(c.bias!));
  return c;
}

export class ConditionalDiscriminator extends Module {
  body: SongUNet;
  z_conv?: Conv2d;
  inject = new ModuleDict<Conv2d>();
  heads = new ModuleDict<Head>();
  final_norm: GroupNorm;
  final_head: Head;

  constructor(readonly netCfg: SongUNetConfig, readonly cfg: DiscriminatorConfig, rng: Rng, teacher?: SongUNet) {
    super();
    this.body = new SongUNet(netCfg, rng);
    if (cfg.diffusionInit) {
      if (!teacher) throw new Error("ConditionalDiscriminator: diffusionInit needs the teacher network");
      const src = teacher.namedVariables();
      this.body.namedVariables().forEach(([n, v], i) => {
        if (src[i][0] !== n) throw new Error(`ConditionalDiscriminator: teacher variable '${src[i][0]}' where '${n}' was expected`);
        v.assign(src[i][1]);
      });
    }
    const mc = netCfg.modelChannels;
    if (cfg.zCond) this.z_conv = zeroConv(netCfg.inChannels, mc, rng);
    for (const [name, b] of this.body.enc.items) {
      if (cfg.multiScale && name.endsWith("_down")) this.inject.set(name, zeroConv(netCfg.inChannels, (b as UNetBlock).outC, rng));
    }
    if (cfg.multiScale) {
      for (const [name, b] of this.body.dec.items) {
        if (!(b instanceof UNetBlock)) continue;
        if (name.endsWith("_block0")) {
          this.heads.set(`${name}_before`, new Head(b.inC - this.skipChannelsAt(name), rng));
          this.heads.set(`${name}_at`, new Head(b.inC, rng));
        }
        if (name.endsWith(`_block${netCfg.numBlocks}`)) this.heads.set(`${name}_after`, new Head(b.outC, rng));
      }
    }
    const last = mc * netCfg.channelMult[0];
    this.final_norm = new GroupNorm(Math.min(32, Math.floor(last / 4)), last, 1e-6);
    this.final_head = new Head(last, rng);
  }

  private skipChannelsAt(decName: string): number {
    const b = this.body.dec.items.get(decName) as UNetBlock;
    // input = running features + one skip; the running features have the previous block's width
    const names = [...this.body.dec.items.keys()];
    const prev = this.body.dec.items.get(names[names.indexOf(decName) - 1]) as UNetBlock;
    return b.inC - prev.outC;
  }

  /** Real/fake logits, one [N] tensor per head, in decoder order (the final head, at aux_norm, comes last). */
  logits(x: tf.Tensor4D, z: tf.Tensor4D, c?: tf.Tensor2D): tf.Tensor1D[] {
    return tf.tidy(() => {
      const n = x.shape[0];
      const p = edmPreconditioning(this.cfg.sigma);
      const emb = this.body.embedding(tf.fill([n], p.cNoise) as tf.Tensor1D, c);
      const xin = tf.mul(x, p.cIn) as tf.Tensor4D;
      const out: tf.Tensor1D[] = [];
      const skips: tf.Tensor4D[] = [];
      let h = xin;
      let xs = xin;
      for (const [name, b] of this.body.enc.items) {
        if (b instanceof UNetBlock) h = b.forward(h, emb);
        else {
          h = b.forward(h);
          // z enters at the input: h += conv_z(z), zero at init
          if (this.z_conv) h = tf.add(h, this.z_conv.forward(tf.mul(z, p.cIn) as tf.Tensor4D)) as tf.Tensor4D;
        }
        const inj = this.inject.items.get(name);
        if (inj) {
          xs = resample(xs, "down");
          h = tf.add(h, inj.forward(xs)) as tf.Tensor4D;
        }
        skips.push(h);
      }
      for (const [name, b] of this.body.dec.items) {
        if (name.endsWith("aux_norm")) out.push(this.final_head.logit(this.final_norm.forward(h)));
        if (!(b instanceof UNetBlock)) continue;
        const before = this.heads.items.get(`${name}_before`);
        if (before) out.push(before.logit(h));
        if (h.shape[3] !== b.inC) h = tf.concat([h, skips.pop()!], 3);
        const at = this.heads.items.get(`${name}_at`);
        if (at) out.push(at.logit(h));
        h = b.forward(h, emb);
        const after = this.heads.items.get(`${name}_after`);
        if (after) out.push(after.logit(h));
      }
      return out;
    });
  }
}
