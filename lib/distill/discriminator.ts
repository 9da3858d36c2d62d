import * as tf from "@tensorflow/tfjs";
import { Rng } from "../core/random";
import { edmPreconditioning } from "../diffusion/edm";
import { Conv2d, GroupNorm } from "../nn/layers";
import { Module, ModuleDict } from "../nn/module";
import { resample, silu, SongUNet, SongUNetConfig, UNetBlock } from "../nn/unet";

// Diffusion2GAN's conditional diffusion discriminator, built from the teacher network and initialised from its
// weights. It scores a clean sample x given the noise z it should have come from and the condition c:
//  - z enters through a zero-initialised conv added after the input conv, so at init the body is the teacher's;
//  - c enters through the network's own conditioning (class embedding for the CIFAR-10 SongUNet, cross-attention
//    for a text-to-image UNet2DConditionModel: lib/distill/unet2d_discriminator.ts);
//  - multi-scale: x resized to 1/2 and 1/4 is injected (zero-initialised convs) after the down-sampling stages of
//    those sizes, and real/fake logits come from every decoder resolution, before, at and after the skip
//    concatenation, plus a final head.
// Each part is a switch, for the paper's discriminator ablation. What differs between teacher families is only how
// the body is walked (`walk`) and where its widths are (`BodyLayout`); the added parts and the logits are shared.

/** The discriminator's components that the paper's ablation ladder turns on one by one. */
export interface DiscriminatorSwitches {
  /** Start from the teacher's weights (true) or from a fresh init of the same architecture. */
  diffusionInit: boolean;
  /** z through a zero-initialised conv added after the input conv. */
  zCond: boolean;
  /** x injected at 1/2 and 1/4 of its size, and logit heads throughout the decoder (else only the final head). */
  multiScale: boolean;
}

/** The class-conditional SongUNet case. */
export interface DiscriminatorConfig extends DiscriminatorSwitches {
  /** Noise level whose embedding the body is run at (the sample is clean, so a small one). */
  sigma: number;
}

export const DISCRIMINATOR_DEFAULTS: DiscriminatorConfig = { zCond: true, multiScale: true, diffusionInit: true, sigma: 0.002 };

/** Sizes of the multi-scale input relative to x: 1/2 and 1/4 (PAPER.md: 32 and 16 for SD1.5's 64x64 latents). */
export const INJECTION_FACTORS: readonly number[] = [2, 4];

/** A logit head: SiLU, 1x1 conv to one channel, spatial mean. */
export class Head extends Module {
  conv: Conv2d;
  constructor(c: number, rng: Rng) {
    super();
    this.conv = new Conv2d(c, 1, 1, rng);
  }
  logit(h: tf.Tensor4D): tf.Tensor1D {
    return tf.tidy(() => tf.reshape(tf.mean(this.conv.forward(silu(h) as tf.Tensor4D), [1, 2, 3]), [-1]) as tf.Tensor1D);
  }
}

/** A 3x3 conv whose weights and bias start at zero: adding its output leaves the teacher's features unchanged. */
export function zeroConv(cin: number, cout: number, rng: Rng): Conv2d {
  const c = new Conv2d(cin, cout, 3, rng);
  c.weight.assign(tf.zerosLike(c.weight));
  c.bias!.assign(tf.zerosLike(c.bias!));
  return c;
}

/** Where the added parts attach to a body, with the widths they need. */
export interface BodyLayout {
  /** Channels of x and z. */
  inChannels: number;
  /** Width after the input conv, where conv_z(z) is added. */
  stemChannels: number;
  /** Down-sampling stages in encoder order: after stage `name` the features are 1/factor of x's side. */
  downs: Array<{ name: string; channels: number; factor: number }>;
  /** Decoder feature maps a head may read, in decoder order. */
  taps: Array<{ name: string; channels: number }>;
  /** The decoder's last features, which the final head reads after a GroupNorm of its own. */
  final: { channels: number; groups: number; eps: number };
}

/** Where a body's walk lets the discriminator in. */
export interface BodyHooks {
  /** After the input conv: h + conv_z(z). */
  stem(h: tf.Tensor4D): tf.Tensor4D;
  /** After a down-sampling stage: h + inject(x at h's size). */
  down(name: string, h: tf.Tensor4D): tf.Tensor4D;
  /** A decoder feature map: its head, if there is one, reads it. */
  tap(name: string, h: tf.Tensor4D): void;
}

export abstract class DiffusionDiscriminator<C extends tf.Tensor> extends Module {
  z_conv?: Conv2d;
  inject = new ModuleDict<Conv2d>();
  heads = new ModuleDict<Head>();
  final_norm!: GroupNorm;
  final_head!: Head;
  private readonly factors = new Map<string, number>();
  /** What x and z are multiplied by before the body sees them. */
  protected abstract readonly inputScale: number;

  /** Run the body on the scaled x under condition c through the hooks; return the decoder's last features. */
  protected abstract walk(x: tf.Tensor4D, c: C | undefined, hooks: BodyHooks): tf.Tensor4D;

  /** The added parts, drawn from rng in this order once the subclass has built its body. */
  protected addParts(layout: BodyLayout, sw: DiscriminatorSwitches, rng: Rng): void {
    if (sw.zCond) this.z_conv = zeroConv(layout.inChannels, layout.stemChannels, rng);
    if (sw.multiScale) {
      for (const d of layout.downs) {
        if (!INJECTION_FACTORS.includes(d.factor)) continue;
        this.inject.set(d.name, zeroConv(layout.inChannels, d.channels, rng));
        this.factors.set(d.name, d.factor);
      }
      for (const t of layout.taps) this.heads.set(t.name, new Head(t.channels, rng));
    }
    const f = layout.final;
    this.final_norm = new GroupNorm(f.groups, f.channels, f.eps);
    this.final_head = new Head(f.channels, rng);
  }

  /** Real/fake logits, one [N] tensor per head, in decoder order; the final head comes last. */
  logits(x: tf.Tensor4D, z: tf.Tensor4D, c?: C): tf.Tensor1D[] {
    return tf.tidy(() => {
      const s = this.inputScale;
      const xIn = tf.mul(x, s) as tf.Tensor4D;
      // x at 1/f of its side: 2x2 box averages, each from the previous size
      const scaled = new Map<number, tf.Tensor4D>([[1, xIn]]);
      const at = (f: number): tf.Tensor4D => {
        if (!scaled.has(f)) scaled.set(f, resample(at(f / 2), "down"));
        return scaled.get(f)!;
      };
      const out: tf.Tensor1D[] = [];
      const h = this.walk(xIn, c, {
        // z enters at the input: h += conv_z(z), zero at init
        stem: (h) => (this.z_conv ? (tf.add(h, this.z_conv.forward(tf.mul(z, s) as tf.Tensor4D)) as tf.Tensor4D) : h),
        down: (name, h) => {
          const inj = this.inject.items.get(name);
          if (!inj) return h;
          const xs = at(this.factors.get(name)!);
          if (xs.shape[1] !== h.shape[1] || xs.shape[2] !== h.shape[2]) {
            throw new Error(`${this.constructor.name}: x at 1/${this.factors.get(name)} is ${xs.shape[1]}x${xs.shape[2]}, the features after ${name} are ${h.shape[1]}x${h.shape[2]} (multi-scale input needs sides divisible by 4)`);
          }
          // h += inject(x resized to h's size), zero at init
          return tf.add(h, inj.forward(xs)) as tf.Tensor4D;
        },
        tap: (name, h) => {
          const head = this.heads.items.get(name);
          if (head) out.push(head.logit(h));
        },
      });
      out.push(this.final_head.logit(this.final_norm.forward(h)));
      return out;
    });
  }
}

/** The class-conditional case: the CIFAR-10 SongUNet teacher, its class embedding as the condition. */
export class ConditionalDiscriminator extends DiffusionDiscriminator<tf.Tensor2D> {
  body: SongUNet;
  protected override readonly inputScale: number;
  private readonly cNoise: number;

  constructor(readonly netCfg: SongUNetConfig, readonly cfg: DiscriminatorConfig, rng: Rng, teacher?: SongUNet) {
    super();
    this.body = new SongUNet(netCfg, rng);
    if (cfg.diffusionInit) {
      if (!teacher) throw new Error("ConditionalDiscriminator: diffusionInit needs the teacher network");
      this.body.assignFrom(teacher);
    }
    // the body sees x as EDM's denoiser would at sigma: c_in x, with c_noise as its noise label
    const p = edmPreconditioning(cfg.sigma);
    this.inputScale = p.cIn;
    this.cNoise = p.cNoise;
    this.addParts(this.layout(), cfg, rng);
  }

  private layout(): BodyLayout {
    const cfg = this.netCfg;
    const downs: BodyLayout["downs"] = [];
    for (const [name, b] of this.body.enc.items) {
      if (name.endsWith("_down")) downs.push({ name, channels: (b as UNetBlock).outC, factor: cfg.imgResolution / parseInt(name, 10) });
    }
    const taps: BodyLayout["taps"] = [];
    let prev: UNetBlock | undefined;
    for (const [name, b] of this.body.dec.items) {
      if (!(b instanceof UNetBlock)) continue;
      if (name.endsWith("_block0")) taps.push({ name: `${name}_before`, channels: prev!.outC }, { name: `${name}_at`, channels: b.inC });
      if (name.endsWith(`_block${cfg.numBlocks}`)) taps.push({ name: `${name}_after`, channels: b.outC });
      prev = b;
    }
    const last = cfg.modelChannels * cfg.channelMult[0];
    return { inChannels: cfg.inChannels, stemChannels: cfg.modelChannels, downs, taps, final: { channels: last, groups: Math.min(32, Math.floor(last / 4)), eps: 1e-6 } };
  }

  protected override walk(x: tf.Tensor4D, c: tf.Tensor2D | undefined, hooks: BodyHooks): tf.Tensor4D {
    const emb = this.body.embedding(tf.fill([x.shape[0]], this.cNoise) as tf.Tensor1D, c);
    const skips: tf.Tensor4D[] = [];
    let h = x;
    for (const [name, b] of this.body.enc.items) {
      h = b instanceof UNetBlock ? hooks.down(name, b.forward(h, emb)) : hooks.stem(b.forward(h));
      skips.push(h);
    }
    for (const [name, b] of this.body.dec.items) {
      // the output layers (aux_norm, aux_conv) are where the final head takes over
      if (!(b instanceof UNetBlock)) break;
      hooks.tap(`${name}_before`, h);
      if (h.shape[3] !== b.inC) h = tf.concat([h, skips.pop()!], 3);
      hooks.tap(`${name}_at`, h);
      h = b.forward(h, emb);
      hooks.tap(`${name}_after`, h);
    }
    return h;
  }
}
