import * as tf from "@tensorflow/tfjs";
import { Rng } from "../core/random";
import { SongUNet, SongUNetConfig } from "../nn/unet";
import { Adam, lossAndGrads } from "../train/adam";
import { batchIndices } from "../train/data_order";
import { edmEmaBeta, Ema } from "../train/ema";
import { runTraining, TrainResult } from "../train/loop";
import { RawNet } from "./edm";
import { EDM_LOSS_DEFAULTS, edmLoss, EdmLossConfig } from "./edm_loss";

// Training an EDM teacher: the EDM loss, Adam with a linear learning-rate ramp-up, EMA with a half-life in
// images, a seeded data order that is a pure function of (seed, step) so that a resumed run sees the same batches.

export interface EdmTrainConfig {
  net: SongUNetConfig;
  batch: number;
  steps: number;
  lr: number;
  lrRampupSteps: number;
  clipNorm: number;
  emaHalflifeImages: number;
  emaRampup: number;
  seed: number;
  ckptEvery: number;
  loss: EdmLossConfig;
}

export const EDM_TRAIN_DEFAULTS: Omit<EdmTrainConfig, "net" | "batch" | "steps"> = {
  lr: 1e-3, lrRampupSteps: 200, clipNorm: 1, emaHalflifeImages: 50_000, emaRampup: 0.05, seed: 0, ckptEvery: 200, loss: EDM_LOSS_DEFAULTS,
};

/** A labelled image dataset: images NHWC in [-1, 1] and one-hot labels for the given indices. */
export interface LabelledData {
  size: number;
  batch(indices: Int32Array): { x: tf.Tensor4D; labels: tf.Tensor2D };
}

export function rawNetOf(net: SongUNet): RawNet {
  return (x, cNoise, cond) => net.forward(x, cNoise, cond as tf.Tensor2D | undefined);
}

export interface EdmTrainOutput {
  net: SongUNet;
  /** A network holding the EMA weights: the one to sample from. */
  ema: SongUNet;
  result: TrainResult;
}

export async function trainEdm(cfg: EdmTrainConfig, data: LabelledData, ckptDir?: string): Promise<EdmTrainOutput> {
  const net = new SongUNet(cfg.net, new Rng(cfg.seed));
  const params = net.parameters();
  const adam = new Adam(params, { lr: cfg.lr, clipNorm: cfg.clipNorm });
  const ema = new Ema(params);
  const noiseRng = new Rng(cfg.seed + 1);
  const dropoutRng = new Rng(cfg.seed + 2);
  const named = net.namedVariables();
  const vars: Record<string, tf.Variable> = {};
  named.forEach(([n, v]) => (vars[`net.${n}`] = v));
  const trainable = named.filter(([, v]) => v.trainable).map(([n]) => n);
  trainable.forEach((n, i) => {
    vars[`ema.${n}`] = ema.shadow[i];
    vars[`adam.m.${n}`] = adam.m[i];
    vars[`adam.v.${n}`] = adam.v[i];
  });
  const permCache = new Map<number, Int32Array>();
  const raw: RawNet = (x, c, cond) => net.forward(x, c, cond as tf.Tensor2D | undefined, undefined, dropoutRng);
  const result = await runTraining({
    label: "EDM teacher",
    totalSteps: cfg.steps,
    ckptDir,
    ckptEvery: cfg.ckptEvery,
    vars,
    rngs: { noise: noiseRng, dropout: dropoutRng },
    extraState: adam.checkpointState,
    step(i) {
      const { x, labels } = data.batch(batchIndices(cfg.seed, data.size, cfg.batch, i, permCache));
      const { loss, grads } = lossAndGrads(() => edmLoss(raw, x, labels, noiseRng, cfg.loss), params);
      // linear learning-rate warm-up, as EDM's lr_rampup
      const lr = cfg.lr * Math.min(1, (i + 1) / Math.max(1, cfg.lrRampupSteps));
      const gradNorm = adam.apply(grads, lr);
      ema.update(edmEmaBeta(cfg.batch, (i + 1) * cfg.batch, cfg.emaHalflifeImages, cfg.emaRampup));
      tf.dispose([x, labels, ...grads]);
      return { loss, gradNorm, lr };
    },
  });
  const emaNet = new SongUNet(cfg.net, new Rng(cfg.seed));
  ema.copyTo(emaNet.parameters());
  adam.dispose();
  ema.dispose();
  return { net, ema: emaNet, result };
}
