// The cost of Stable Diffusion 1.5's networks at their real sizes (random weights: time does not depend on them):
// one UNet evaluation (batch 1, 64x64x4 latents, 77 tokens), the text encoder on 77 tokens, the VAE decoder from
// 64x64 latents to 512 px, and what a 50-step guided sample costs from those. `npm run bench` runs it after its
// cases (--sd15-latent picks the UNet's latent sizes, --no-sd15 skips it, --sd15-only runs nothing else).
import * as tf from "@tensorflow/tfjs";
import { EngineInfo } from "../backend/engine";
import { Rng } from "../core/random";
import { CLIP_CONTEXT_LENGTH } from "../data/clip_tokenizer";
import { clipTextModelFromConfig, SD15_TEXT_ENCODER_CONFIG_JSON } from "../nn/clip/text_encoder";
import { AutoencoderKL, parseAutoencoderKLConfig, SD15_VAE_CONFIG_JSON } from "../nn/sd/autoencoder_kl";
import { parseUNet2DConditionConfig, SD15_UNET_CONFIG_JSON, UNet2DConditionModel } from "../nn/sd/unet2d_condition";
import { UsageError } from "./args";

/** SD1.5's UNet holds 859,520,964 float32 parameters (3.44 GB): more than wasm's 4 GiB memory leaves for the work. */
const WASM_NOTE = "wasm cannot run SD1.5's UNet (its 3.44 GB of float32 weights do not fit beside the activations in wasm's 4 GiB memory): it runs on the tfjs cpu backend here; the engine it is meant for is tfjs-node-gpu";

export interface Sd15Timing {
  what: string;
  /** The engine it ran on (the UNet leaves wasm for the cpu backend). */
  engine: string;
  parameters: number;
  /** Building the network with random weights. */
  buildS: number;
  /** One evaluation after `warmup` untimed ones: wall time, and CPU time of the process (all threads; steadier under load). */
  ms: number;
  cpuMs: number;
  warmup: number;
  /** Peak bytes of live tensors during the evaluation (weights included), as the engine counts them. */
  peakTensorBytes: number;
  /** Peak resident memory of the whole process so far. */
  maxRssBytes: number;
  kernels?: Array<{ name: string; ms: number }>;
}

/** Build `net` with random weights, then evaluate `run` once (after a warm-up on compiling engines). */
async function timeNetwork(what: string, build: () => { parameters: number; run: () => tf.Tensor; dispose: () => void }, profile: boolean): Promise<Sd15Timing> {
  const t0 = performance.now();
  const net = build();
  const buildS = (performance.now() - t0) / 1e3;
  // tfjs-node(-gpu) compile and autotune on the first call; the JS engines do not, and there one more evaluation of
  // the UNet costs minutes
  const backend = tf.getBackend();
  const warmup = backend === "tensorflow" || backend === "webgl" || backend === "webgpu" ? 1 : 0;
  for (let i = 0; i < warmup; i++) tf.tidy(() => net.run()).dataSync();
  let ms = 0;
  let cpuMs = 0;
  const info = await tf.profile(async () => {
    const t = performance.now();
    const cpu0 = process.cpuUsage();
    const y = net.run();
    await y.data();
    ms = performance.now() - t;
    const cpu = process.cpuUsage(cpu0);
    cpuMs = (cpu.user + cpu.system) / 1e3;
    y.dispose();
  });
  net.dispose();
  const byName = new Map<string, number>();
  for (const k of info.kernels) byName.set(k.name, (byName.get(k.name) ?? 0) + (k.kernelTimeMs as number));
  const kernels = profile ? [...byName].map(([name, kms]) => ({ name, ms: kms })).sort((a, b) => b.ms - a.ms).slice(0, 12) : undefined;
  return { what, engine: backend, parameters: net.parameters, buildS, ms, cpuMs, warmup, peakTensorBytes: info.peakBytes, maxRssBytes: process.resourceUsage().maxRSS * 1024, kernels };
}

function sd15Unet(latent: number): () => { parameters: number; run: () => tf.Tensor; dispose: () => void } {
  return () => {
    const rng = new Rng(11);
    const unet = new UNet2DConditionModel(parseUNet2DConditionConfig(SD15_UNET_CONFIG_JSON, "SD1.5 UNet config"), rng);
    const x = tf.randomNormal([1, latent, latent, 4], 0, 1, "float32", rng.seed()) as tf.Tensor4D;
    const ctx = tf.randomNormal([1, CLIP_CONTEXT_LENGTH, 768], 0, 1, "float32", rng.seed()) as tf.Tensor3D;
    return { parameters: unet.numParameters(), run: () => unet.forward(x, 500, ctx), dispose: () => (tf.dispose([x, ctx]), unet.dispose()) };
  };
}

function sd15TextEncoder(): { parameters: number; run: () => tf.Tensor; dispose: () => void } {
  const enc = clipTextModelFromConfig(SD15_TEXT_ENCODER_CONFIG_JSON, new Rng(12), "SD1.5 text encoder config");
  // the prompt and the unconditional "" of one guided sample: <|startoftext|> ... <|endoftext|>, padded to 77
  const ids = [[49406, 320, 1929, 530, 320, 1373, 49407], [49406, 49407]].map((r) => [...r, ...Array(CLIP_CONTEXT_LENGTH - r.length).fill(49407)]);
  return {
    parameters: enc.numParameters(),
    run: () => {
      const o = enc.forward(ids);
      o.pooled.dispose();
      return o.lastHiddenState;
    },
    dispose: () => enc.dispose(),
  };
}

function sd15VaeDecoder(latent: number): () => { parameters: number; run: () => tf.Tensor; dispose: () => void } {
  return () => {
    const rng = new Rng(13);
    const vae = new AutoencoderKL(parseAutoencoderKLConfig(SD15_VAE_CONFIG_JSON, "SD1.5 VAE config"), rng);
    const z = tf.randomNormal([1, latent, latent, 4], 0, 1, "float32", rng.seed()) as tf.Tensor4D;
    const parameters = vae.decoder.numParameters() + (vae.post_quant_conv?.numParameters() ?? 0);
    return { parameters, run: () => vae.decode(z), dispose: () => (z.dispose(), vae.dispose()) };
  };
}

function fmtBytes(b: number): string {
  return `${(b / 2 ** 30).toFixed(2)} GiB`;
}

function formatTiming(t: Sd15Timing): string {
  const warm = t.warmup ? ` after ${t.warmup} warm-up` : "";
  return `${t.what}: ${(t.ms / 1e3).toFixed(2)} s on ${t.engine}${warm}, CPU ${(t.cpuMs / 1e3).toFixed(2)} s (${t.parameters.toLocaleString("en-US")} parameters, built in ${t.buildS.toFixed(1)} s; peak tensors ${fmtBytes(t.peakTensorBytes)}, peak RSS ${fmtBytes(t.maxRssBytes)})`;
}

/** The SD1.5 networks once each; the UNet leaves wasm for the cpu backend (WASM_NOTE). */
export async function benchSd15(latents: number[], engine: EngineInfo, profile: boolean, log: (s: string) => void): Promise<{ note?: string; timings: Sd15Timing[]; guidedSample?: string }> {
  const timings: Sd15Timing[] = [];
  const record = (t: Sd15Timing) => {
    timings.push(t);
    log(formatTiming(t));
    for (const k of t.kernels ?? []) log(`    ${k.name.padEnd(36)} ${(k.ms / 1e3).toFixed(2).padStart(9)} s`);
  };
  record(await timeNetwork(`SD1.5 text encoder, 2 x ${CLIP_CONTEXT_LENGTH} tokens`, sd15TextEncoder, profile));
  record(await timeNetwork("SD1.5 VAE decoder, 64x64x4 latents -> 512x512 px", sd15VaeDecoder(64), profile));
  const note = engine.engine === "wasm" ? WASM_NOTE : undefined;
  if (note) {
    log(note);
    await tf.setBackend("cpu");
  }
  try {
    for (const s of latents) record(await timeNetwork(`SD1.5 UNet, batch 1, ${s}x${s}x4 latents, ${CLIP_CONTEXT_LENGTH} tokens`, sd15Unet(s), profile));
  } finally {
    if (note) await tf.setBackend("wasm");
  }
  const unet64 = timings.find((t) => t.what.includes("64x64x4 latents, "));
  let guidedSample: string | undefined;
  if (unet64) {
    const [te, vae] = timings;
    // 50 guided steps: the conditional and unconditional branch of each (one batch of 2 in practice, counted as 2 x batch 1)
    const s = te.ms / 1e3 + (100 * unet64.ms) / 1e3 + vae.ms / 1e3;
    guidedSample = `derived: a 50-step guided 512 px sample = text encoder + 100 UNet evaluations + VAE decode = ${s.toFixed(0)} s (${(s / 60).toFixed(1)} min) with the times above`;
    log(guidedSample);
  }
  return { note, timings, guidedSample };
}


/** "64" or a list such as "16,32": the UNet's latent sizes, multiples of 8. */
export function sd15Latents(list: string): number[] {
  const sizes = list.split(",").map(Number);
  if (sizes.some((s) => !Number.isInteger(s) || s < 8 || s % 8 !== 0)) throw new UsageError(`--sd15-latent expects sizes that are multiples of 8 (e.g. 64 or 16,32), got ${JSON.stringify(list)}`);
  return sizes;
}
