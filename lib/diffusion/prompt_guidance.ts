import * as tf from "@tensorflow/tfjs";
import { ClipPadding, ClipTokenizer } from "../data/clip_tokenizer";
import { ClipTextModel } from "../nn/clip/text_encoder";
import { Guidance } from "./samplers";

// Text conditioning as StableDiffusionPipeline.encode_prompt builds it: each prompt tokenized to 77 ids (padded
// with <|endoftext|>, truncated), the text encoder's last_hidden_state as the UNet's condition; with guidance
// scale w > 1 the unconditional branch is the negative prompt, or "" when there is none, and the sampler combines
// the two as out_u + w (out_c - out_u) (samplers.ts `guided`, the same on D as on eps or v since D is affine in
// the network's output at fixed x and sigma).

export interface PromptOptions {
  /** One negative prompt for all, or one per prompt; default "" (the pipeline's unconditional text). */
  negativePrompt?: string | string[];
  /** Classifier-free guidance scale; the pipeline guides only when it is above 1 (SD1.5's usual 7.5). */
  guidanceScale?: number;
  /** Default "endoftext", what SD1.5's tokenizer pads with. */
  padding?: ClipPadding;
  /** Tokens per row (the tokenizer's model_max_length); default 77. */
  contextLength?: number;
}

export interface PromptConditioning {
  /** [N, 77, hidden]: the condition of the guided (or only) branch. */
  cond: tf.Tensor3D;
  /** Present when guidanceScale > 1; its cond is `cond`, its uncond the negative prompts' states. */
  guidance?: Guidance;
}

/**
 * Encode prompts (and their negatives) for a text-conditioned teacher; the caller disposes cond and
 * guidance.uncond. A prompt is text or an already tokenized row (as the ODE-pair store keeps its conditions).
 */
export function encodePrompts(tokenizer: ClipTokenizer, encoder: ClipTextModel, prompts: string[] | number[][], o: PromptOptions = {}): PromptConditioning {
  if (prompts.length === 0) throw new Error("encodePrompts: no prompts");
  const scale = o.guidanceScale ?? 1;
  const encode = (texts: string[] | number[][]) => {
    const rows = typeof texts[0] === "string" ? tokenizer.tokenize(texts as string[], { padding: o.padding, contextLength: o.contextLength }) : (texts as number[][]);
    const out = encoder.forward(rows);
    tf.dispose([out.pooled, ...(out.textEmbeds ? [out.textEmbeds] : [])]);
    return out.lastHiddenState;
  };
  const cond = encode(prompts);
  if (!(scale > 1)) return { cond };
  const neg = o.negativePrompt ?? "";
  const negatives = typeof neg === "string" ? prompts.map(() => neg) : neg;
  if (negatives.length !== prompts.length) {
    cond.dispose();
    throw new Error(`encodePrompts: ${negatives.length} negative prompts for ${prompts.length} prompts`);
  }
  return { cond, guidance: { cond, uncond: encode(negatives), scale } };
}
