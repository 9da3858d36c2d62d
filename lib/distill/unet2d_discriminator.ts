import * as tf from "@tensorflow/tfjs";
import { Rng } from "../core/random";
import { cloneModule } from "../nn/module";
import { UNet2DConditionModel } from "../nn/sd/unet2d_condition";
import { BodyHooks, BodyLayout, DiffusionDiscriminator, DiscriminatorSwitches } from "./discriminator";

// The conditional diffusion discriminator of a text-to-image teacher (PAPER.md, "Conditional diffusion
// discriminator"): the teacher's UNet2DConditionModel, initialised from its weights, reading the caption through its
// own cross-attention (c = the text encoder's hidden states [N, L, D]). The added parts are the shared ones of
// lib/distill/discriminator.ts, placed on diffusers' blocks:
//  - conv_z(z) is added to conv_in's output;
//  - x at 1/2 and 1/4 joins the output of down_blocks.0 and down_blocks.1 (each ends with its downsampler), which
//    is also the skip those blocks hand to the decoder;
//  - each up block is read before its first skip concatenation (`up_blocks.i_before`), at it (`_at`), and after its
//    last (resnet, attention) pair, before the upsampler (`_after`); the final head reads the last up block's output
//    where conv_norm_out would.

export interface UNet2DDiscriminatorConfig extends DiscriminatorSwitches {
  /** [NF] The timestep whose embedding the body runs at; x is clean, so the least noisy one the teacher knows. */
  timestep: number;
}

export const UNET2D_DISCRIMINATOR_DEFAULTS: UNet2DDiscriminatorConfig = { diffusionInit: true, zCond: true, multiScale: true, timestep: 0 };

export class UNet2DDiscriminator extends DiffusionDiscriminator<tf.Tensor3D> {
  body: UNet2DConditionModel;
  // x is clean, and at t = 0 the teacher's input x_t = sqrt(abar_0) x + ... is x to within 0.05%: no rescaling
  protected override readonly inputScale = 1;

  constructor(teacher: UNet2DConditionModel, readonly cfg: UNet2DDiscriminatorConfig, rng: Rng) {
    super();
    this.body = cfg.diffusionInit ? cloneModule(teacher) : new UNet2DConditionModel(teacher.config, rng);
    this.addParts(this.layout(), cfg, rng);
  }

  private layout(): BodyLayout {
    const c = this.body.config;
    const ch = c.block_out_channels;
    const rev = [...ch].reverse();
    const downs = this.body.down_blocks.flatMap((b, i) => (b.downsamplers.length ? [{ name: `down_blocks.${i}`, channels: ch[i], factor: 2 ** (i + 1) }] : []));
    const taps = this.body.up_blocks.flatMap((b, i) => [
      // what comes up from below: the middle block's width, then the previous up block's
      { name: `up_blocks.${i}_before`, channels: rev[Math.max(i - 1, 0)] },
      { name: `up_blocks.${i}_at`, channels: b.resnets[0].inC },
      { name: `up_blocks.${i}_after`, channels: rev[i] },
    ]);
    return { inChannels: c.in_channels, stemChannels: ch[0], downs, taps, final: { channels: ch[0], groups: c.norm_num_groups, eps: c.norm_eps } };
  }

  protected override walk(x: tf.Tensor4D, ctx: tf.Tensor3D | undefined, hooks: BodyHooks): tf.Tensor4D {
    const body = this.body;
    const n = x.shape[0];
    if (!ctx || ctx.rank !== 3 || ctx.shape[0] !== n) throw new Error(`UNet2DDiscriminator: the text condition must be encoder hidden states [${n}, L, D], got ${ctx ? `[${ctx.shape}]` : "none"}`);
    const emb = body.timeEmbedding(this.cfg.timestep, n);
    // center_input_sample: x = 2 x - 1
    const xs = body.config.center_input_sample ? (tf.sub(tf.mul(x, 2), 1) as tf.Tensor4D) : x;
    let h = hooks.stem(body.conv_in.forward(xs));
    const skips: tf.Tensor4D[] = [h];
    body.down_blocks.forEach((block, i) => {
      const out = block.forward(h, emb, ctx);
      // the block's output is also its last skip, so an injection reaches the decoder too
      h = block.downsamplers.length ? hooks.down(`down_blocks.${i}`, out.h) : out.h;
      skips.push(...out.skips.slice(0, -1), h);
    });
    if (body.mid_block) h = body.mid_block.forward(h, emb, ctx);
    body.up_blocks.forEach((block, i) => {
      const mine = skips.splice(skips.length - block.resnets.length, block.resnets.length);
      hooks.tap(`up_blocks.${i}_before`, h);
      if (this.heads.items.has(`up_blocks.${i}_at`)) hooks.tap(`up_blocks.${i}_at`, tf.concat([h, mine[mine.length - 1]], 3));
      h = block.features(h, mine, emb, ctx);
      hooks.tap(`up_blocks.${i}_after`, h);
      // upsample to the size of the next skip, as UNet2DConditionModel.forward does
      const next = skips[skips.length - 1];
      for (const up of block.upsamplers) h = up.forward(h, next ? [next.shape[1], next.shape[2]] : undefined);
    });
    return h;
  }
}
