import * as tf from "@tensorflow/tfjs";

// EDM (Karras et al. 2022) formulation: x = y + sigma * n with y ~ data, the network F_theta wrapped as
// D(x; sigma) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x; c_noise(sigma)).

export interface EdmConfig {
  sigmaMin: number;
  sigmaMax: number;
  rho: number;
  sigmaData: number;
}

export const EDM_DEFAULTS: EdmConfig = { sigmaMin: 0.002, sigmaMax: 80, rho: 7, sigmaData: 0.5 };

export interface Preconditioning {
  cSkip: number;
  cOut: number;
  cIn: number;
  cNoise: number;
}

export function edmPreconditioning(sigma: number, sigmaData = EDM_DEFAULTS.sigmaData): Preconditioning {
  const s2 = sigma * sigma;
  const d2 = sigmaData * sigmaData;
  return {
    // c_skip = sigma_data^2 / (sigma^2 + sigma_data^2)
    cSkip: d2 / (s2 + d2),
    // c_out = sigma sigma_data / sqrt(sigma^2 + sigma_data^2)
    cOut: (sigma * sigmaData) / Math.sqrt(s2 + d2),
    // c_in = 1 / sqrt(sigma^2 + sigma_data^2)
    cIn: 1 / Math.sqrt(s2 + d2),
    // c_noise = ln(sigma) / 4
    cNoise: Math.log(sigma) / 4,
  };
}

/** EDM noise levels sigma_0 > ... > sigma_{N-1} and a final sigma_N = 0 (N + 1 values). */
export function edmSigmas(n: number, cfg: EdmConfig = EDM_DEFAULTS): number[] {
  const out: number[] = [];
  const a = cfg.sigmaMax ** (1 / cfg.rho);
  const b = cfg.sigmaMin ** (1 / cfg.rho);
  // sigma_i = (sigma_max^(1/rho) + i/(N-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho
  for (let i = 0; i < n; i++) out.push((a + (n > 1 ? i / (n - 1) : 0) * (b - a)) ** cfg.rho);
  out.push(0);
  return out;
}

/** A raw network F(x_in, c_noise, cond): the thing trained and distilled. */
export type RawNet = (xIn: tf.Tensor4D, cNoise: tf.Tensor1D, cond?: tf.Tensor) => tf.Tensor4D;

/** A denoiser D(x; sigma, cond): the common interface of every teacher, whatever its parametrisation. */
export type Denoiser = (x: tf.Tensor4D, sigma: number, cond?: tf.Tensor) => tf.Tensor4D;

/** D(x; sigma) with one sigma per sample, as training needs (the coefficients of edmPreconditioning as tensors). */
export function edmDenoise(net: RawNet, x: tf.Tensor4D, sigma: tf.Tensor1D, cond?: tf.Tensor, sigmaData = EDM_DEFAULTS.sigmaData): tf.Tensor4D {
  return tf.tidy(() => {
    const s = tf.reshape(sigma, [-1, 1, 1, 1]);
    const s2d2 = tf.add(tf.square(s), sigmaData * sigmaData);
    const cSkip = tf.div(sigmaData * sigmaData, s2d2);
    const cOut = tf.div(tf.mul(s, sigmaData), tf.sqrt(s2d2));
    const cIn = tf.rsqrt(s2d2);
    const f = net(tf.mul(x, cIn) as tf.Tensor4D, tf.div(tf.log(sigma), 4) as tf.Tensor1D, cond);
    return tf.add(tf.mul(x, cSkip), tf.mul(f, cOut)) as tf.Tensor4D;
  });
}

/** Wrap a raw network with EDM preconditioning. */
export function edmDenoiser(net: RawNet, sigmaData = EDM_DEFAULTS.sigmaData): Denoiser {
  return (x, sigma, cond) =>
    tf.tidy(() => edmDenoise(net, x, tf.fill([x.shape[0]], sigma) as tf.Tensor1D, cond, sigmaData));
}
