import { SchedulerSampler } from "../diffusion/schedulers";
import { LatentDiffusion } from "../diffusion/latent_diffusion";
import { ConditionFn, PairTeacher } from "./ode_pairs";

// A text-to-image latent diffusion model (Stable Diffusion, or the text-to-image world's teacher) as the ODE-pair
// store's teacher. A sample's condition is its prompt's token row (77 ids, kept as float32, exact below 2^24): the
// store then holds all a student needs, tokens in and the teacher's latents out, without the prompt list. z is the pipeline's initial noise N(0, I) in the latent shape [h, w, channels], and x
// the latents the pipeline's denoising loop ends with (before the VAE).

export interface SdTeacherOptions {
  steps: number;
  /** Classifier-free guidance scale (guided only above 1). */
  guidance: number;
  sampler: SchedulerSampler;
  /** The unconditional text of every sample; default "". */
  negativePrompt?: string;
}

/** Sample i's condition: the token row of prompts[i mod n] (cDim = the tokenizer's row length, 77). */
export function promptTokenCondition(sd: LatentDiffusion, prompts: string[]): ConditionFn {
  if (prompts.length === 0) throw new Error("promptTokenCondition: no prompts");
  const rows = sd.tokenize(prompts);
  return (_rng, i) => rows[i % rows.length];
}

/** The pipeline's denoising loop as a PairTeacher: latents from noise z under the token rows in c. */
export function latentDiffusionTeacher(sd: LatentDiffusion, o: SdTeacherOptions): PairTeacher {
  return async (z, c) => {
    const rows = (c.arraySync() as number[][]).map((r) => r.map(Math.round));
    const cond = sd.encode(rows, o.guidance, o.negativePrompt);
    try {
      const { latents, nfe } = await sd.sampleLatents(z, cond, { steps: o.steps, sampler: o.sampler });
      return { x: latents, nfe };
    } finally {
      cond.cond.dispose();
      cond.guidance?.uncond.dispose();
    }
  };
}
