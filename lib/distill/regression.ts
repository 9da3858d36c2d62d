import * as tf from "@tensorflow/tfjs";
import { LatentLpips, PairAugment } from "../perceptual/latent_lpips";
import { Lpips } from "../perceptual/lpips";

// The regression term of Diffusion2GAN, selectable by name: the paper's ablation compares all five.

export const REGRESSION_LOSSES = ["e-latentlpips", "latentlpips", "lpips", "mse", "pseudo-huber"] as const;
export type RegressionLossName = (typeof REGRESSION_LOSSES)[number];

export interface RegressionDeps {
  /** Pixel LPIPS (pixel teachers, or latent teachers through `decode`). */
  lpips?: Lpips;
  /** Decoder to pixels in [-1, 1] for LPIPS on a latent teacher. */
  decode?: (latent: tf.Tensor4D) => tf.Tensor4D;
  /** Resize images to this size before LPIPS (consistency distillation upsamples CIFAR to 224). */
  lpipsSize?: number;
  latentLpips?: LatentLpips;
  /** E-LatentLPIPS's augmentation: one random draw applied to both inputs. */
  augment?: PairAugment;
}

export type RegressionLoss = (pred: tf.Tensor4D, target: tf.Tensor4D) => tf.Scalar;

export function regressionLoss(name: string, deps: RegressionDeps = {}): RegressionLoss {
  const need = <T>(v: T | undefined, what: string): T => {
    if (v === undefined) throw new Error(`regression loss '${name}' needs ${what}`);
    return v;
  };
  switch (name as RegressionLossName) {
    case "mse":
      return (p, t) => tf.tidy(() => tf.mean(tf.square(tf.sub(p, t))) as tf.Scalar);
    case "pseudo-huber":
      return (p, t) =>
        tf.tidy(() => {
          // d(p, t) = sqrt(|p - t|^2 + c^2) - c per sample, c = 0.00054 sqrt(dim) (as in improved consistency training)
          const dim = p.size / p.shape[0];
          const c = 0.00054 * Math.sqrt(dim);
          const sq = tf.sum(tf.square(tf.sub(p, t)), [1, 2, 3]);
          return tf.mean(tf.sub(tf.sqrt(tf.add(sq, c * c)), c)) as tf.Scalar;
        });
    case "lpips": {
      const lpips = need(deps.lpips, "an Lpips network");
      const toPixels = (x: tf.Tensor4D) => {
        const img = deps.decode ? deps.decode(x) : x;
        return deps.lpipsSize && deps.lpipsSize !== img.shape[1] ? tf.image.resizeBilinear(img, [deps.lpipsSize, deps.lpipsSize]) : img;
      };
      return (p, t) => tf.tidy(() => tf.mean(lpips.distance(toPixels(p), toPixels(t))) as tf.Scalar);
    }
    case "latentlpips": {
      const ll = need(deps.latentLpips, "a LatentLpips network");
      return (p, t) => tf.tidy(() => tf.mean(ll.distance(p, t)) as tf.Scalar);
    }
    case "e-latentlpips": {
      const ll = need(deps.latentLpips, "a LatentLpips network");
      const aug = need(deps.augment, "an augmentation (E-LatentLPIPS ensembles over random augmentations)");
      return (p, t) => tf.tidy(() => tf.mean(ll.distance(p, t, aug)) as tf.Scalar);
    }
    default:
      throw new Error(`unknown regression loss '${name}'; expected one of ${REGRESSION_LOSSES.join(", ")}`);
  }
}
