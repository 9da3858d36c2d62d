// A tiny text-to-image world for the Diffusion2GAN tests: a UNet2DConditionModel of three levels (8x8x4 latents, so
// the multi-scale input has both its 1/2 and 1/4 sizes) with cross-attention at the outer level and in the middle
// block (few attention ops: each (image, head) pair is its own matMuls, and a small op costs ~1 ms), a one-layer CLIP text
// encoder, SD1.5's schedule read as DDIM, and ODE pairs made through the pair store from 77-token rows.
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as tf from "@tensorflow/tfjs";
import { Rng } from "../lib/core/random";
import { sampleOde } from "../lib/diffusion/samplers";
import { parseSchedulerConfig, samplingPlan, schedulerDenoiser, SchedulerConfig, SD15_SCHEDULER_CONFIG_JSON } from "../lib/diffusion/schedulers";
import { clipTokenCondition, generatePairs, mergePairs, OdePairs, PairRecord } from "../lib/distill/ode_pairs";
import { clipTextModelFromConfig, ClipTextModel } from "../lib/nn/clip/text_encoder";
import { parseUNet2DConditionConfig, UNet2DConditionModel } from "../lib/nn/sd/unet2d_condition";

export const TINY_UNET = parseUNet2DConditionConfig({
  sample_size: 8, in_channels: 4, out_channels: 4, block_out_channels: [8, 8, 16], layers_per_block: 1,
  down_block_types: ["CrossAttnDownBlock2D", "DownBlock2D", "DownBlock2D"],
  up_block_types: ["UpBlock2D", "UpBlock2D", "CrossAttnUpBlock2D"],
  cross_attention_dim: 8, attention_head_dim: 1, norm_num_groups: 4,
}, "tiny UNet2DConditionModel");

export const TINY_TEXT = {
  vocab_size: 40, hidden_size: 8, intermediate_size: 16, num_hidden_layers: 1, num_attention_heads: 2,
  max_position_embeddings: 77, bos_token_id: 1, eos_token_id: 2, pad_token_id: 0,
};

export const SCHEDULER: SchedulerConfig = parseSchedulerConfig(SD15_SCHEDULER_CONFIG_JSON, "SD1.5 scheduler", { className: "DDIMScheduler" });
export const DDIM_STEPS = 4;

export const tinyUNet = (seed: number) => new UNet2DConditionModel(TINY_UNET, new Rng(seed));
export const tinyTextEncoder = (seed: number): ClipTextModel => clipTextModelFromConfig(TINY_TEXT, new Rng(seed), "tiny CLIP text");

/** Caption k's 77-token row: bos, two words, eos, padding. */
export function tokenRow(k: number): number[] {
  const row = new Array(77).fill(0);
  row.splice(0, 4, 1, 3 + (k % 30), 3 + ((7 * k + 5) % 30), 2);
  return row;
}

export const tmp = (tag: string) => fs.mkdtempSync(path.join(os.tmpdir(), `d2g-${tag}-`));

/** `count` ODE pairs of the teacher (DDIM, DDIM_STEPS steps) for captions drawn from six, stored as token rows. */
export async function tinyTextPairs(teacher: UNet2DConditionModel, encoder: ClipTextModel, count: number): Promise<OdePairs<tf.Tensor3D>> {
  const dir = tmp("t2i-pairs");
  const rec: PairRecord = { teacher: "tiny-t2i", sampler: "ddim", steps: DDIM_STEPS, guidance: 1, seed: 2, count, shardSize: count, zShape: [8, 8, 4], cDim: 77 };
  const plan = samplingPlan(SCHEDULER, "ddim", DDIM_STEPS);
  const D = schedulerDenoiser((x, t, c) => teacher.forward(x, t, c as tf.Tensor3D), SCHEDULER);
  const encode = clipTokenCondition(encoder);
  await generatePairs(dir, rec, async (z, tokens) => {
    const c = encode(tokens.dataSync() as Float32Array, z.shape[0]);
    const start = tf.mul(z, plan.startScale) as tf.Tensor4D;
    const r = await sampleOde(D, start, { sigmas: plan.sigmas, method: "euler", cond: c });
    const x = tf.mul(r.x, plan.endScale) as tf.Tensor4D;
    tf.dispose([c, start, r.x]);
    return { x, nfe: r.nfe };
  }, (rng) => tokenRow(rng.int(6)), { batch: count });
  mergePairs(dir, rec);
  return OdePairs.open(dir, encode);
}
