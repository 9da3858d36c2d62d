import * as tf from "@tensorflow/tfjs";
import { Rng } from "../core/random";
import { ClipTextModel } from "../nn/clip/text_encoder";
import { parseUNet2DConditionConfig, UNet2DConditionModel } from "../nn/sd/unet2d_condition";
import { Adam, lossAndGrads } from "../train/adam";
import { batchIndices } from "../train/data_order";
import { edmEmaBeta, Ema } from "../train/ema";
import { runTraining, TrainResult } from "../train/loop";
import { alphasCumprod, DdpmConfig } from "./ddpm_schedule";

// Training a text-conditioned latent diffusion model as Stable Diffusion was trained (Rombach et al. 2022, and
// diffusers' train_text_to_image.py): latents x0 of the training images, a frozen CLIP text encoder's
// last_hidden_state as the UNet's cross-attention context, t uniform over the 1,000 training steps of the
// scaled-linear schedule, the epsilon objective, AdamW, an EMA of the weights; captions are dropped (replaced by
// the empty caption) for a fraction of the batch, so the same network also learns the unconditional model that
// classifier-free guidance needs. Seeded; resumable; the data order is a pure function of (seed, step).

/** Latents of captioned images and one caption each per step. */
export interface CaptionedLatents {
  size: number;
  /** Latents [n, h, w, C] at `indices` and one caption token row each (`step` seeds which caption of several). */
  batch(indices: Int32Array, step: number): { x: tf.Tensor4D; ids: number[][] };
  /** The token row of the empty caption: the unconditional branch of guidance. */
  readonly emptyRow: number[];
}

export interface LatentDiffusionTrainConfig {
  /** The UNet's diffusers config.json. */
  unet: Record<string, unknown>;
  schedule: DdpmConfig;
  batch: number;
  steps: number;
  /** Peak learning rate, reached linearly after `warmup` steps and then held (as SD's constant schedule). */
  lr: number;
  warmup: number;
  /** AdamW decay on tensors of rank >= 2 (diffusers' default adam_weight_decay 1e-2). */
  weightDecay: number;
  clipNorm: number;
  /**
   * From this step on the UNet learns v = sqrt(abar) eps - sqrt(1 - abar) x0 (Salimans & Ho 2022; SD 2.x's
   * "v_prediction") instead of eps; null: eps throughout, as SD1.5. Its scheduler config must say which.
   */
  vPredictionFrom: number | null;
  /** Fraction of captions replaced by the empty one (10%, as for guidance in SD and Imagen). */
  captionDropout: number;
  emaHalflifeImages: number;
  emaRampup: number;
  seed: number;
  ckptEvery: number;
}

export interface LatentDiffusionTrainOutput {
  unet: UNet2DConditionModel;
  /** The EMA weights: the model to sample from. */
  ema: UNet2DConditionModel;
  result: TrainResult;
}

export async function trainLatentDiffusion(cfg: LatentDiffusionTrainConfig, data: CaptionedLatents, textEncoder: ClipTextModel, o: { ckptDir?: string; label?: string } = {}): Promise<LatentDiffusionTrainOutput> {
  const config = parseUNet2DConditionConfig(cfg.unet, "latent diffusion training config");
  const unet = new UNet2DConditionModel(config, new Rng(cfg.seed));
  const named = unet.namedVariables();
  const params = unet.parameters();
  const adam = new Adam(params, { lr: cfg.lr, clipNorm: cfg.clipNorm, weightDecay: cfg.weightDecay }, params.map((p) => p.rank >= 2));
  const ema = new Ema(params);
  const vars: Record<string, tf.Variable> = {};
  named.forEach(([n, v], i) => {
    vars[`unet.${n}`] = v;
    vars[`ema.${n}`] = ema.shadow[i];
    vars[`adam.m.${n}`] = adam.m[i];
    vars[`adam.v.${n}`] = adam.v[i];
  });
  const abar = alphasCumprod(cfg.schedule);
  const noiseRng = new Rng(cfg.seed + 1);
  const dropRng = new Rng(cfg.seed + 2);
  const order = new Map<number, Int32Array>();
  const result = await runTraining({
    label: o.label ?? "latent diffusion",
    totalSteps: cfg.steps,
    ckptDir: o.ckptDir,
    ckptEvery: cfg.ckptEvery,
    vars,
    rngs: { noise: noiseRng, drop: dropRng },
    extraState: adam.checkpointState,
    step(i) {
      const { x, ids } = data.batch(batchIndices(cfg.seed, data.size, cfg.batch, i, order), i);
      const n = x.shape[0];
      const rows = ids.map((r) => (dropRng.uniform() < cfg.captionDropout ? data.emptyRow : r));
      const t = Array.from({ length: n }, () => noiseRng.int(cfg.schedule.steps));
      const eps = tf.randomNormal(x.shape, 0, 1, "float32", noiseRng.seed()) as tf.Tensor4D;
      // the text encoder is frozen: its states are computed off the gradient tape
      const text = textEncoder.forward(rows);
      tf.dispose([text.pooled, ...(text.textEmbeds ? [text.textEmbeds] : [])]);
      const { loss, grads } = lossAndGrads(
        () =>
          tf.tidy(() => {
            // x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps
            const a = tf.tensor4d(t.map((k) => Math.sqrt(abar[k])), [n, 1, 1, 1]);
            const s = tf.tensor4d(t.map((k) => Math.sqrt(1 - abar[k])), [n, 1, 1, 1]);
            const xt = tf.add(tf.mul(a, x), tf.mul(s, eps)) as tf.Tensor4D;
            // v = sqrt(abar_t) eps - sqrt(1 - abar_t) x0
            const target = cfg.vPredictionFrom !== null && i >= cfg.vPredictionFrom ? tf.sub(tf.mul(a, eps), tf.mul(s, x)) : eps;
            // L = E || target - net_theta(x_t, t, c) ||^2
            return tf.mean(tf.square(tf.sub(unet.forward(xt, tf.tensor1d(t, "float32"), text.lastHiddenState), target))) as tf.Scalar;
          }),
        params,
      );
      const lr = cfg.lr * Math.min(1, (i + 1) / Math.max(1, cfg.warmup));
      const gradNorm = adam.apply(grads, lr);
      ema.update(edmEmaBeta(cfg.batch, (i + 1) * cfg.batch, cfg.emaHalflifeImages, cfg.emaRampup));
      tf.dispose([x, eps, text.lastHiddenState, ...grads]);
      return { loss, gradNorm, lr };
    },
  });
  const emaUnet = new UNet2DConditionModel(config, new Rng(cfg.seed));
  ema.copyTo(emaUnet.parameters());
  adam.dispose();
  ema.dispose();
  return { unet, ema: emaUnet, result };
}
