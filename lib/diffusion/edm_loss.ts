import * as tf from "@tensorflow/tfjs";
import { Rng } from "../core/random";
import { EDM_DEFAULTS, edmDenoise, RawNet } from "./edm";

// EDM's training objective (Karras et al. 2022, eq. 8 with the choices of Table 1):
//   ln sigma ~ N(P_mean, P_std^2),  lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2,
//   L = E lambda(sigma) |D(y + sigma n; sigma) - y|^2.

export interface EdmLossConfig {
  pMean: number;
  pStd: number;
  sigmaData: number;
}

export const EDM_LOSS_DEFAULTS: EdmLossConfig = { pMean: -1.2, pStd: 1.2, sigmaData: EDM_DEFAULTS.sigmaData };

/** Mean weighted denoising loss of a batch y (NHWC); all noise comes from `rng`, so a step is reproducible. */
export function edmLoss(net: RawNet, y: tf.Tensor4D, cond: tf.Tensor | undefined, rng: Rng, cfg: EdmLossConfig = EDM_LOSS_DEFAULTS): tf.Scalar {
  return tf.tidy(() => {
    const n = y.shape[0];
    // ln sigma = P_mean + P_std * N(0, 1)
    const sigma = tf.exp(tf.add(tf.mul(tf.randomNormal([n], 0, 1, "float32", rng.seed()), cfg.pStd), cfg.pMean)) as tf.Tensor1D;
    const d2 = cfg.sigmaData * cfg.sigmaData;
    // lambda = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2
    const weight = tf.reshape(tf.div(tf.add(tf.square(sigma), d2), tf.mul(tf.square(sigma), d2)), [n, 1, 1, 1]);
    const noise = tf.mul(tf.randomNormal(y.shape, 0, 1, "float32", rng.seed()), tf.reshape(sigma, [n, 1, 1, 1]));
    const D = edmDenoise(net, tf.add(y, noise) as tf.Tensor4D, sigma, cond, cfg.sigmaData);
    return tf.mean(tf.mul(weight, tf.square(tf.sub(D, y)))) as tf.Scalar;
  });
}
