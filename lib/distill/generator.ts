import * as tf from "@tensorflow/tfjs";
import { alphasCumprod, DdpmConfig, PredictionType } from "../diffusion/ddpm_schedule";
import { edmDenoise } from "../diffusion/edm";
import { samplingPlan, SchedulerConfig } from "../diffusion/schedulers";
import { rawNetOf } from "../diffusion/train_edm";
import { UNet2DConditionModel } from "../nn/sd/unet2d_condition";
import { SongUNet } from "../nn/unet";

// Diffusion2GAN's generator G(z, c): a network of the teacher's architecture, initialised from the teacher's
// weights, evaluated once on the noise z under the condition c and read as a clean sample. The noise level it is
// evaluated at and how its output becomes a sample are not in the paper ([NF] in PAPER.md): here they default to
// the teacher's own first sampling step, so that at init G is the teacher's one-step estimate of its ODE solution.

/** EDM teachers (the CIFAR-10 SongUNet): G(z, c) = D_student(sigma_G z; sigma_G, c). */
export function generate(student: SongUNet, z: tf.Tensor4D, c: tf.Tensor2D | undefined, sigmaG: number): tf.Tensor4D {
  return tf.tidy(() => edmDenoise(rawNetOf(student), tf.mul(z, sigmaG) as tf.Tensor4D, tf.fill([z.shape[0]], sigmaG) as tf.Tensor1D, c));
}

/** How G evaluates a UNet2DConditionModel and reads its output. */
export interface UNet2DGeneratorConfig {
  /** [NF] The timestep the network sees; default the first (noisiest) timestep of the teacher's DDIM plan. */
  timestep: number;
  /** [NF] What the output is read as; default the teacher's own prediction type. */
  prediction: PredictionType;
}

/** The defaults for a teacher with this scheduler, sampled by DDIM in `ddimSteps` steps (SD1.5, 50 steps: t = 981). */
export function unet2dGeneratorDefaults(scheduler: SchedulerConfig, ddimSteps: number): UNet2DGeneratorConfig {
  return { timestep: samplingPlan(scheduler, "ddim", ddimSteps).timesteps[0], prediction: scheduler.predictionType };
}

/**
 * Text-to-image teachers: G(z, c) = the clean latent read from net(x_t; t, c) at x_t = z (DDIM starts from
 * x_T = z), with abar_t from the teacher's training schedule. c: the text encoder's hidden states [N, L, D].
 */
export function generateUNet2D(net: UNet2DConditionModel, z: tf.Tensor4D, c: tf.Tensor3D, g: UNet2DGeneratorConfig, schedule: DdpmConfig): tf.Tensor4D {
  const t = g.timestep;
  if (!Number.isInteger(t) || t < 0 || t >= schedule.steps) throw new Error(`Diffusion2GAN generator: timestep ${t} is not an integer in 0..${schedule.steps - 1} of the teacher's schedule`);
  const a = alphasCumprod(schedule)[t];
  return tf.tidy(() => {
    const out = net.forward(z, t, c);
    switch (g.prediction) {
      // x0 = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)
      case "epsilon":
        return tf.div(tf.sub(z, tf.mul(out, Math.sqrt(1 - a))), Math.sqrt(a)) as tf.Tensor4D;
      // x0 = sqrt(abar_t) x_t - sqrt(1 - abar_t) v
      case "v_prediction":
        return tf.sub(tf.mul(z, Math.sqrt(a)), tf.mul(out, Math.sqrt(1 - a))) as tf.Tensor4D;
      case "sample":
        return out;
      default:
        throw new Error(`Diffusion2GAN generator: unknown prediction ${JSON.stringify(g.prediction)} (expected epsilon, v_prediction or sample)`);
    }
  });
}
