import * as fs from "fs";
import * as path from "path";
import * as tf from "@tensorflow/tfjs";
import { interruptible } from "../core/interrupt";
import { runDir, settingsKey } from "../core/paths";
import { Rng } from "../core/random";
import { unitToU8 } from "../data/images";
import { LatentDiffusion } from "../diffusion/latent_diffusion";
import { parseSchedulerConfig, SchedulerConfig } from "../diffusion/schedulers";
import { DISCRIMINATOR_LADDER, ladderRung, t2iDiffusion2GanDefaults, T2IDiffusion2GanConfig, trainDiffusion2GanT2I } from "../distill/diffusion2gan";
import { generateUNet2D } from "../distill/generator";
import { clipTokenCondition, OdePairs, PairManifest } from "../distill/ode_pairs";
import { RegressionLossName } from "../distill/regression";
import { traceOnnx } from "../backend/onnx_export";
import { concatHost, HostTensor } from "../io/host_tensor";
import { writeOnnx } from "../io/onnx_file";
import { ATTRIBUTE_SCORER_WEIGHTS } from "../metrics/attribute_scorer";
import { readSafetensors, writeSafetensors } from "../io/safetensors";
import { LatentCodec, taef2Codec } from "../nn/latent_codec";
import { saveUNet2DConditionModel } from "../nn/sd/load";
import { UNet2DConditionModel } from "../nn/sd/unet2d_condition";
import { augmentPair, resolveOps, sameOps } from "../perceptual/augment";
import { cachedResult } from "../train/checkpoint";
import { Figure, Interval, intervalFigure } from "../viz/plot";
import { Row } from "../viz/table";
import { Claim, committedTableIfAny, numberIn } from "./claims";
import { PAPER_NOTE_PRESET, RELEASED_PRESET } from "./reconstruction";
import { decodeClipped, loadPerceptualNets, PerceptualNets } from "./reconstruction_eval";
import { byScale, currentScale, Scale } from "./scale";
import { ensureWorldTeacher, loadT2iTeacher, makeWorldPairs, promptNoise, T2I_TEACHERS, WORLD_SCHEDULER_CONFIG, weightsTag, worldPairsDir } from "./t2i_teacher";
import { worldClipFile } from "./world_clips";
import { JudgedRun, Judgement, judgementColumns, JudgesConfig, WorldJudges } from "./world_judges";

// Notebook 03: Diffusion2GAN distils the text-to-image teacher (issue #16). At cpu scale the teacher is the
// text-to-image world's (lib/experiments/t2i_teacher.ts: SD1.5's UNet2DConditionModel and pipeline code at a size two
// cores can train, on TAEF2 latents of procedural scenes), the stand-in for SD1.5, and the ODE pairs are its DDIM-50
// samples at guidance 3 and 8 (CFG-3 and CFG-8, the stand-ins of SD-CFG-3 and SD-CFG-8). Every training is an
// "arm": the full recipe with some parts changed, trained through lib/distill/diffusion2gan.ts, checkpointed under
// runs/<scale>/t2i_distillation/<arm>-<settings>/ckpt while it runs; a finished arm keeps its EMA generator
// (generator.safetensors) and its scores, and a rerun reads both back. The experiments:
//  a. the regression-loss ablation on CFG-3: five losses, regression only, equal steps (the paper's 20k iterations);
//  b. the discriminator ladder on CFG-8: E-LatentLPIPS only, then one discriminator component more per row;
//  c. per arm: FID-wCLIP, CLIP score, attribute accuracy (the world's judges), ms per step, and how closely the
//     student follows the teacher's noise-to-image map on noise no pair was made from (LatentLPIPS, E-LatentLPIPS,
//     LPIPS between student and teacher outputs);
//  d. the headline rows (E-LatentLPIPS only, full recipe) at more seeds, and the noise floor of every metric;
//  e. the visual comparison of the paper's Fig. 4;
//  f. the distilled generator as a diffusers UNet folder;
//  g. E-LatentLPIPS' augmentation presets inside distillation (issue #19: the ablation of notebook 05 where it
//     matters most), regression only on CFG-3 at the regression ablation's budget.

export interface T2iEvaluationConfig extends JudgesConfig {
  batch: number;
  /** Seed of the prompts' noise (promptNoise, as the teacher's report draws it): no pair was made from it. */
  seed: number;
  /** The noise of the evaluation noise floor: the full recipe judged again on other noise. */
  floorSeed: number;
  /** E-LatentLPIPS to the teacher: the mean over this many seeded augmentation draws. */
  eDraws: number;
}

export interface VisualConfig {
  prompts: number;
  guidance: number;
  /** The teacher with this few DDIM steps, for the comparison's last rows. */
  fewSteps: number[];
}

/** SD1.5 at paper scale: the user's diffusers folder and the released LatentLPIPS for SD1.5 latents. */
export interface Sd15Source {
  /** A diffusers Stable Diffusion 1.5 folder, read by StableDiffusion.fromFolder (D2G_SD15_DIR). */
  folder: string | undefined;
  /** elatentlpips' sd15 trunk and heads (D2G_LATENT_LPIPS_SD15). */
  latentLpips: string | undefined;
  /** ODE pairs per guidance (PAPER.md: SD-CFG-3 3M, SD-CFG-8 12M [S]). */
  pairs: Record<number, number>;
  /** COCO2014 captions and images behind FID-30k and CLIP-30k (PAPER.md [V]). */
  evaluationSamples: number;
}

export interface T2iDistillationConfig {
  /** The world's teacher and pairs (smoke, cpu), or SD1.5 (paper). */
  teacher: { kind: "world" } | ({ kind: "sd15" } & Sd15Source);
  /** DDIM steps of the pairs; G's default timestep is the first of this plan. */
  pairSteps: number;
  /** The pairs of the regression-loss ablation (CFG-3) and of the discriminator ladder (CFG-8). */
  regressionGuidance: number;
  ladderGuidance: number;
  /** The full recipe, the ladder's last row; every arm is this config with its changes. */
  recipe: T2IDiffusion2GanConfig;
  losses: RegressionLossName[];
  /** Steps of each regression-ablation arm (regression only). */
  regressionAblationSteps: number;
  /**
   * (g) E-LatentLPIPS' augmentations, row label -> ops or presets (lib/perceptual/augment.ts); [] is plain
   * LatentLPIPS. Rows equal to an arm of the regression ablation (none = LatentLPIPS, the recipe's preset =
   * E-LatentLPIPS) reuse it rather than train it twice.
   */
  augmentations: Record<string, readonly string[]>;
  /** Seeds besides the recipe's own for the headline rows (E-LatentLPIPS only, full recipe). */
  extraSeeds: number[];
  /** [NF] LatentLPIPS' L1 term (mean |x0 - x1|, on in the released code); off as in notebooks 01 and 05. */
  latentL1: boolean;
  evaluation: T2iEvaluationConfig;
  visual: VisualConfig;
}

/** The world's scheduler as DDIM reads it (SD1.5's scheduler_config.json): G's timestep and x0 mapping come from it. */
export const WORLD_DDIM: SchedulerConfig = parseSchedulerConfig(WORLD_SCHEDULER_CONFIG, "world scheduler", { className: "DDIMScheduler" });

/** The library's defaults for pairs made by DDIM in `pairSteps` steps (G runs at that plan's first timestep), E-LatentLPIPS with the released preset. */
const recipe = (pairSteps: number, batch: number, regressionSteps: number, ganSteps: number, o: Partial<T2IDiffusion2GanConfig> = {}): T2IDiffusion2GanConfig => ({
  ...t2iDiffusion2GanDefaults(WORLD_DDIM, pairSteps), batch, regressionSteps, ganSteps, augment: RELEASED_PRESET, ...o,
});

const LOSSES: RegressionLossName[] = ["mse", "pseudo-huber", "lpips", "latentlpips", "e-latentlpips"];

/** The issue's presets: none, each family, the released bg and what adds to it (c colour, o cutout); bgo is geometric + cutout, notebooks 01 and 05's reading of the paper's note [S]. */
const AUGMENTATIONS: Record<string, readonly string[]> = { none: [], b: ["b"], g: ["g"], bg: ["bg"], bgc: ["bgc"], bgco: ["bgco"], bgo: PAPER_NOTE_PRESET };

const WORLD_EVALUATION = (scale: Scale, eDraws: number): T2iEvaluationConfig => {
  const r = T2I_TEACHERS[scale].report;
  // the teacher report's prompts, noise and reference: the teacher rows here are 03a's rows at guidance 3 and 8
  return { prompts: r.prompts, reference: r.reference, batch: r.batch, seed: r.seed, floorSeed: r.seed + 1, eDraws };
};

export const T2I_DISTILLATION_CONFIGS: Record<Scale, T2iDistillationConfig> = {
  smoke: {
    teacher: { kind: "world" }, pairSteps: T2I_TEACHERS.smoke.pairs.steps, regressionGuidance: 3, ladderGuidance: 8,
    recipe: recipe(T2I_TEACHERS.smoke.pairs.steps, 2, 1, 2, { r1Every: 2, mixAndMatch: 0.5, ckptEvery: 2, emaHalflifeImages: 2000, emaRampup: 0.05 }),
    losses: LOSSES, regressionAblationSteps: 2, augmentations: { none: [], bg: ["bg"], bgo: PAPER_NOTE_PRESET }, extraSeeds: [1], latentL1: false,
    evaluation: WORLD_EVALUATION("smoke", 2), visual: { prompts: 2, guidance: 8, fewSteps: [1, 2] },
  },
  // Sized to two cores (lib/experiments/plan.ts has the time; npm run bench:plan -- t2i measures the step costs):
  // batch 16, 200 steps per regression arm, the ladder 100 regression + 150 GAN steps per row, a second seed for its
  // first and last rows. The paper's 20k iterations at batch 256 are ~1,600x this.
  cpu: {
    teacher: { kind: "world" }, pairSteps: T2I_TEACHERS.cpu.pairs.steps, regressionGuidance: 3, ladderGuidance: 8,
    // EDM's EMA ramp: a half-life of 5% of the images seen (at most 2,000), so a short run's EMA is not its init
    recipe: recipe(T2I_TEACHERS.cpu.pairs.steps, 16, 100, 150, { ckptEvery: 50, emaHalflifeImages: 2000, emaRampup: 0.05 }),
    losses: LOSSES, regressionAblationSteps: 200, augmentations: AUGMENTATIONS, extraSeeds: [1], latentL1: false,
    evaluation: WORLD_EVALUATION("cpu", 4), visual: { prompts: 8, guidance: 8, fewSteps: [1, 4] },
  },
  // PAPER.md: the regression ablation on SD-CFG-3 at 20k iterations, batch 256 [S]; the ladder's iterations [NF]
  // (20k regression + 20k GAN here); lambda_GAN, R1 gamma, learning rates and EMA [NF] (the library's defaults)
  paper: {
    teacher: { kind: "sd15", folder: process.env.D2G_SD15_DIR, latentLpips: process.env.D2G_LATENT_LPIPS_SD15, pairs: { 3: 3_000_000, 8: 12_000_000 }, evaluationSamples: 30_000 },
    pairSteps: 50, regressionGuidance: 3, ladderGuidance: 8,
    recipe: recipe(50, 256, 20_000, 20_000, { ckptEvery: 1000, emaHalflifeImages: 500_000 }),
    losses: LOSSES, regressionAblationSteps: 20_000, augmentations: AUGMENTATIONS, extraSeeds: [1], latentL1: true,
    evaluation: { prompts: 30_000, reference: 30_000, batch: 64, seed: 7, floorSeed: 8, eDraws: 4 }, visual: { prompts: 8, guidance: 8, fewSteps: [1, 4] },
  },
};

export function t2iDistillationConfig(scale: Scale = currentScale()): T2iDistillationConfig {
  return byScale(T2I_DISTILLATION_CONFIGS, scale);
}

// ---- arms ------------------------------------------------------------------------------------------------------

export type ArmTable = "regression" | "ladder" | "augmentation";

/** One training: the recipe with its changes, on the pairs of one guidance scale. */
export interface Arm {
  id: string;
  table: ArmTable;
  /** The row of its table: the loss, the ladder's row name, or the augmentation preset. */
  row: string;
  /** The ladder's row index (0..5); -1 in the regression ablation. */
  rung: number;
  guidance: number;
  cfg: T2IDiffusion2GanConfig;
}

export const REGRESSION_LABELS: Record<RegressionLossName, string> = {
  mse: "MSE", "pseudo-huber": "pseudo-Huber", lpips: "LPIPS (TAEF2 decode)", latentlpips: "LatentLPIPS", "e-latentlpips": "E-LatentLPIPS",
};

/** The ladder's rows whose spread over seeds is measured: E-LatentLPIPS only, and the full recipe. */
export const HEADLINE_RUNGS = [0, DISCRIMINATOR_LADDER.length - 1];

/** Every arm of the notebook: the regression ablation, the ladder, and the headline rows at the extra seeds. */
export function distillationArms(c: T2iDistillationConfig): Arm[] {
  const regression = c.losses.map((loss): Arm => ({
    id: `regression-${loss}`, table: "regression", row: REGRESSION_LABELS[loss], rung: -1, guidance: c.regressionGuidance,
    cfg: { ...c.recipe, regression: loss, regressionSteps: c.regressionAblationSteps, ganSteps: 0 },
  }));
  const seeds = [c.recipe.seed, ...c.extraSeeds];
  const ladder = DISCRIMINATOR_LADDER.flatMap((row, k) =>
    seeds.filter((s) => s === c.recipe.seed || HEADLINE_RUNGS.includes(k)).map((seed): Arm => ({
      id: `ladder-${k}${seed === c.recipe.seed ? "" : `-seed${seed}`}`, table: "ladder", row, rung: k, guidance: c.ladderGuidance,
      cfg: { ...ladderRung(c.recipe, k), regression: "e-latentlpips", seed },
    })),
  );
  const augmentation = augmentationArms(c, regression).filter((a) => a.table === "augmentation");
  return [...regression, ...ladder, ...augmentation];
}

/**
 * (g) One arm per augmentation row: E-LatentLPIPS with those ops, regression only on CFG-3 at the regression
 * ablation's budget. A row equal to a regression-ablation arm is that arm (same training, read back).
 */
export function augmentationArms(c: T2iDistillationConfig, regression = distillationArms(c).filter((a) => a.table === "regression")): Arm[] {
  const reused = (ops: readonly string[]) =>
    ops.length === 0 ? regression.find((a) => a.cfg.regression === "latentlpips") : regression.find((a) => a.cfg.regression === "e-latentlpips" && sameOps(ops, a.cfg.augment));
  return Object.entries(c.augmentations).map(([label, ops]): Arm => {
    const arm = reused(ops);
    if (arm) return { ...arm, row: label };
    const cfg: T2IDiffusion2GanConfig = { ...c.recipe, regression: "e-latentlpips", augment: ops, regressionSteps: c.regressionAblationSteps, ganSteps: 0 };
    return { id: `augmentation-${label.replace(/[^a-z0-9]+/gi, "-")}`, table: "augmentation", row: label, rung: -1, guidance: c.regressionGuidance, cfg };
  });
}

export interface ArmTraining {
  steps: number;
  regressionSteps: number;
  ganSteps: number;
  /** Mean time of one training step (regression and GAN steps together). */
  msPerStep: number;
  seconds: number;
  parameters: number;
  tensorsAfterFirstStep: number;
  tensorsAtEnd: number;
  /** Every k-th step's losses (at most ~200 points). */
  curve: Array<Record<string, number>>;
}

/** How closely the student follows the teacher's noise-to-image map: distances between their outputs on the same (z, c). */
export interface Correspondence {
  latentLpips: number;
  /** The mean over the evaluation's seeded augmentation draws. */
  eLatentLpips: number;
  /** On the decoded images (pixel LPIPS, stand-in trunk). */
  lpips: number;
}

export interface ArmResult {
  arm: Arm;
  seed: number;
  training: ArmTraining;
  judged: Omit<JudgedRun, "figure">;
  toTeacher: Correspondence;
}

/** The teacher on the evaluation's prompts and noise at one guidance (DDIM, pairSteps): a reference row and the target of the correspondence. */
export interface TeacherRow {
  guidance: number;
  judged: Omit<JudgedRun, "figure">;
}

export interface NoiseFloor {
  /** The full recipe judged on the evaluation noise and on floorSeed's. */
  evaluation: [Judgement, Judgement];
  /** The headline rows at every seed. */
  headline: ArmResult[];
}

export interface VisualComparison {
  images: HostTensor;
  captions: string[];
  /** The caption of each column. */
  prompts: string[];
  cols: number;
  title: string;
}

export interface ExportedGenerator {
  dir: string;
  files: string[];
  /** G(z, c) -> x0 as one ONNX model at batch 1: inputs z (NHWC latents) and c (the text encoder's states). */
  onnx: string;
  parameters: number;
  /** How G is called: the timestep and the prediction type, also written beside the weights. */
  generator: T2IDiffusion2GanConfig["generator"];
}

// ---- the experiment ---------------------------------------------------------------------------------------------

/**
 * The experiment's state: teacher, pairs, perceptual networks, codec and judges, loaded once. Every method is
 * resumable: trainings resume from their checkpoints, finished arms and scores are read back.
 */
export class T2iDistillation {
  private readonly pairs = new Map<number, OdePairs<tf.Tensor3D>>();
  private readonly teacherLatents = new Map<number, Float32Array>();

  private constructor(
    readonly config: T2iDistillationConfig,
    readonly scale: Scale,
    readonly base: string,
    readonly teacher: LatentDiffusion,
    readonly manifests: PairManifest[],
    readonly nets: PerceptualNets,
    readonly codec: LatentCodec,
    readonly judges: WorldJudges,
    /** Keys every trained arm: the teacher's and its text encoder's weights, the pairs, the perceptual trunks. */
    private readonly provenance: Record<string, string>,
    /** Keys every score besides: the eval CLIP's and the attribute scorer's weights. */
    private readonly judgesTag: string,
  ) {
    for (const m of manifests) this.pairs.set(m.guidance, OdePairs.open(worldPairsDir(m.guidance, scale), clipTokenCondition(teacher.textEncoder)));
  }

  /**
   * Load what the experiment needs, making what is missing at this scale: the world's CLIPs and teacher (at cpu
   * scale committed) and the ODE pairs (notebook 03a makes them; resumable).
   */
  static async open(config: T2iDistillationConfig = t2iDistillationConfig(), scale: Scale = currentScale(), o: { base?: string } = {}): Promise<T2iDistillation> {
    if (config.teacher.kind === "sd15") {
      throw new Error(
        `${scale} scale distils SD1.5 from a diffusers folder (${config.teacher.folder ?? "set D2G_SD15_DIR"}) and scores it by COCO2014 FID-30k and CLIP-30k; ` +
          "that evaluation exists (notebook 04, lib/experiments/coco_tables.ts, scores an exported student), but training on SD1.5's pairs is not wired up here yet, so this notebook prints the paper config and its cost and stops here",
      );
    }
    const guidances = [config.regressionGuidance, config.ladderGuidance];
    const made = T2I_TEACHERS[scale].pairs.guidances;
    const missing = guidances.filter((g) => !made.includes(g));
    if (missing.length) throw new Error(`t2i distillation: the world's pairs are made at guidance ${made.join(", ")}; the config asks for ${missing.join(", ")}`);
    if (config.pairSteps !== T2I_TEACHERS[scale].pairs.steps) throw new Error(`t2i distillation: the config says the pairs took ${config.pairSteps} DDIM steps; the world's ${scale} pairs take ${T2I_TEACHERS[scale].pairs.steps}`);
    return interruptible(async () => {
      await ensureWorldTeacher(scale);
      const manifests = (await makeWorldPairs(scale)).filter((m) => guidances.includes(m.guidance));
      const teacher = await loadT2iTeacher(scale);
      const nets = loadPerceptualNets(config.latentL1);
      const codec = await taef2Codec();
      const judges = await WorldJudges.load(scale, config.evaluation);
      const provenance = {
        teacher: weightsTag(T2I_TEACHERS[scale].weights),
        textEncoder: weightsTag(worldClipFile("text", scale)),
        pairs: settingsKey(manifests.map((m) => m.shards.map((s) => s.sha256))),
        nets: settingsKey([nets.latentTrunk, nets.lpipsTrunk]),
      };
      const judgesTag = `${weightsTag(worldClipFile("eval", scale))}-${weightsTag(ATTRIBUTE_SCORER_WEIGHTS)}`;
      return new T2iDistillation(config, scale, o.base ?? runDir(scale, "t2i_distillation"), teacher, manifests, nets, codec, judges, provenance, judgesTag);
    });
  }

  arms(): Arm[] {
    return distillationArms(this.config);
  }

  /** An arm by id. */
  armById(id: string): Arm {
    const arm = this.arms().find((a) => a.id === id);
    if (!arm) throw new Error(`t2i distillation: no arm '${id}' (arms: ${this.arms().map((a) => a.id).join(", ")})`);
    return arm;
  }

  /** The folder of an arm: its settings and the data behind it in the name, so a changed one never resumes old work. */
  armDir(arm: Arm): string {
    return path.join(this.base, `${arm.id}-${settingsKey({ cfg: arm.cfg, guidance: arm.guidance, ...this.provenance })}`);
  }

  private get side(): number {
    return this.judges.world.config.imageSize / this.codec.factor;
  }

  /** Text conditions of prompts [b, b + m). */
  private condition(b: number, m: number): tf.Tensor3D {
    return this.captionCondition(this.judges.prompts.slice(b, b + m));
  }

  /** G's text condition for captions: the teacher's text encoder on their token rows, as the pairs' conditions are made. */
  captionCondition(captions: string[]): tf.Tensor3D {
    return clipTokenCondition(this.teacher.textEncoder)(Float32Array.from(this.teacher.tokenize(captions).flat()), captions.length);
  }

  /** The teacher's row at a guidance: judged once, its latents kept as the target of every student's correspondence. */
  teacherRow(guidance: number): Promise<TeacherRow> {
    return interruptible(async () => {
      const e = this.config.evaluation;
      const dir = path.join(this.base, `teacher-cfg-${guidance}-${settingsKey({ e, steps: this.config.pairSteps, teacher: this.provenance.teacher, textEncoder: this.provenance.textEncoder, judges: this.judgesTag })}`);
      const file = path.join(dir, "latents.safetensors");
      const row = await cachedResult(path.join(dir, "judged.json"), async () => {
        const parts: Float32Array[] = [];
        const { figure, ...judged } = await this.judges.judge(`teacher, guidance ${guidance}, DDIM ${this.config.pairSteps}`, async (b, m) => {
          const z = promptNoise(this.teacher, e.seed, b, m, this.side);
          const cond = this.teacher.encode(this.judges.prompts.slice(b, b + m), guidance);
          const out = await this.teacher.sampleLatents(z, cond, { steps: this.config.pairSteps, sampler: "ddim" });
          parts.push((await out.latents.data()) as Float32Array);
          const images = await this.codec.decodeFrozen(out.latents);
          tf.dispose([z, cond.cond, ...(cond.guidance ? [cond.guidance.uncond] : []), out.latents]);
          return { images, nfe: out.nfe };
        }, { batch: e.batch });
        fs.mkdirSync(dir, { recursive: true });
        writeSafetensors(file, { latents: { dtype: "float32", shape: [e.prompts, this.side, this.side, this.teacher.unet.config.in_channels], data: concatHost(parts) } });
        return { guidance, judged } as TeacherRow;
      });
      if (!this.teacherLatents.has(guidance)) {
        if (!fs.existsSync(file)) throw new Error(`${file}: the teacher's latents are missing beside its scores; delete ${dir} to make both again`);
        this.teacherLatents.set(guidance, readSafetensors(file).tensors.latents.data as Float32Array);
      }
      return row;
    });
  }

  /** Train an arm (resuming its checkpoint) unless its generator exists; returns the generator's file. */
  private async train(arm: Arm): Promise<string> {
    const dir = this.armDir(arm);
    const file = path.join(dir, "generator.safetensors");
    if (fs.existsSync(file)) return file;
    const pairs = this.pairs.get(arm.guidance)!;
    const ckptDir = path.join(dir, "ckpt");
    const out = await trainDiffusion2GanT2I({
      cfg: arm.cfg, teacher: this.teacher.unet, scheduler: WORLD_DDIM, pairs, ckptDir, label: `Diffusion2GAN ${arm.id} (CFG-${arm.guidance})`,
      perceptual: { latentLpips: this.nets.latent, lpips: this.nets.lpips, decode: (x) => this.codec.decode(x) },
    });
    const r = out.result;
    const every = Math.max(1, Math.ceil(r.history.length / 200));
    const training: ArmTraining = {
      steps: arm.cfg.regressionSteps + arm.cfg.ganSteps, regressionSteps: arm.cfg.regressionSteps, ganSteps: arm.cfg.ganSteps, msPerStep: r.msPerStep, seconds: r.seconds,
      parameters: out.generator.numParameters(), tensorsAfterFirstStep: r.tensorsAfterFirstStep, tensorsAtEnd: r.tensorsAtEnd,
      curve: r.history.filter((h) => h.step % every === 0 || h.step === r.history.length).map((h) => pick(h, ["step", "regression", "lossG", "lossD", "r1"])),
    };
    fs.mkdirSync(dir, { recursive: true });
    writeSafetensors(file, await out.generator.stateDict(), { unet: JSON.stringify(this.teacher.unet.config), arm: JSON.stringify(arm), training: JSON.stringify(training) });
    out.generator.dispose();
    // the generator and its log are what later steps read; the checkpoints (G, D, both Adams) are not kept
    fs.rmSync(ckptDir, { recursive: true, force: true });
    return file;
  }

  /** An arm's EMA generator (trained first when missing); the caller disposes it. */
  async generator(arm: Arm): Promise<UNet2DConditionModel> {
    const file = await interruptible(() => this.train(arm));
    const { tensors } = readSafetensors(file);
    const net = new UNet2DConditionModel(this.teacher.unet.config, new Rng(0));
    net.loadStateDict(tensors, { source: file });
    return net;
  }

  /** An arm trained, judged and compared with its teacher (each part read back when done before). */
  arm(arm: Arm): Promise<ArmResult> {
    return interruptible(async () => {
      // the teacher's latents at the arm's guidance are the target of its correspondence
      await this.teacherRow(arm.guidance);
      const dir = this.armDir(arm);
      return cachedResult(path.join(dir, `scores-${settingsKey({ e: this.config.evaluation, judges: this.judgesTag })}.json`), async () => {
        const net = await this.generator(arm);
        try {
          const file = path.join(dir, "generator.safetensors");
          const training = JSON.parse(readSafetensors(file).metadata.training) as ArmTraining;
          const { judged, toTeacher } = await this.judgeStudent(`${arm.id}: judged`, net, arm.cfg, this.config.evaluation.seed, arm.guidance);
          return { arm, seed: arm.cfg.seed, training, judged, toTeacher: toTeacher! };
        } finally {
          net.dispose();
        }
      });
    });
  }

  /**
   * A student judged on the prompts with the noise of `seed`; with `guidance`, also compared with the teacher's
   * latents at that guidance (same prompts, same noise).
   */
  private async judgeStudent(label: string, net: UNet2DConditionModel, cfg: T2IDiffusion2GanConfig, seed: number, guidance?: number): Promise<{ judged: Omit<JudgedRun, "figure">; toTeacher?: Correspondence }> {
    const e = this.config.evaluation;
    const target = guidance === undefined ? undefined : this.teacherLatents.get(guidance);
    const sums = { latentLpips: 0, eLatentLpips: 0, lpips: 0 };
    const per = this.side * this.side * this.teacher.unet.config.in_channels;
    const { figure, ...judged } = await this.judges.judge(label, async (b, m) => {
      const z = promptNoise(this.teacher, seed, b, m, this.side);
      const c = this.condition(b, m);
      const latents = generateUNet2D(net, z, c, cfg.generator, WORLD_DDIM);
      const images = await this.codec.decodeFrozen(latents);
      if (target) {
        const t = tf.tensor4d(target.subarray(b * per, (b + m) * per), latents.shape);
        const add = (key: keyof Correspondence, d: tf.Tensor1D) => {
          const total = d.sum();
          sums[key] += total.dataSync()[0];
          tf.dispose([d, total]);
        };
        add("latentLpips", this.nets.latent.distance(latents, t));
        for (let k = 0; k < e.eDraws; k++) {
          const rng = new Rng(1_000_003 * (k + 1) + b);
          add("eLatentLpips", tf.tidy(() => tf.div(this.nets.latent.distance(latents, t, (x0, x1) => augmentPair(x0, x1, { ops: cfg.augment }, rng)), e.eDraws) as tf.Tensor1D));
        }
        const [mine, theirs] = [await decodeClipped(this.codec, latents), await decodeClipped(this.codec, t)];
        add("lpips", this.nets.lpips.distance(mine, theirs));
        tf.dispose([t, mine, theirs]);
      }
      tf.dispose([z, c, latents]);
      return { images, nfe: 1 };
    }, { batch: e.batch });
    const n = e.prompts;
    return { judged, toTeacher: target ? { latentLpips: sums.latentLpips / n, eLatentLpips: sums.eLatentLpips / n, lpips: sums.lpips / n } : undefined };
  }

  /** Every arm of a table (the headline seeds' extra arms are the noise floor's). */
  private async table(table: ArmTable): Promise<{ teacher: TeacherRow; arms: ArmResult[] }> {
    const arms = this.arms().filter((a) => a.table === table && a.cfg.seed === this.config.recipe.seed);
    const guidance = table === "regression" ? this.config.regressionGuidance : this.config.ladderGuidance;
    const teacher = await this.teacherRow(guidance);
    const results: ArmResult[] = [];
    for (const a of arms) results.push(await this.arm(a));
    return { teacher, arms: results };
  }

  /** (a) The regression-loss ablation on CFG-3. */
  regressionAblation(): Promise<{ teacher: TeacherRow; arms: ArmResult[] }> {
    return this.table("regression");
  }

  /** (b) The discriminator ladder on CFG-8. */
  ladder(): Promise<{ teacher: TeacherRow; arms: ArmResult[] }> {
    return this.table("ladder");
  }

  /** (g) E-LatentLPIPS' augmentation presets on CFG-3, regression only; each result carries its row's label. */
  augmentationAblation(): Promise<{ teacher: TeacherRow; arms: ArmResult[] }> {
    return interruptible(async () => {
      const teacher = await this.teacherRow(this.config.regressionGuidance);
      const arms: ArmResult[] = [];
      for (const a of augmentationArms(this.config)) arms.push({ ...(await this.arm(a)), arm: a });
      return { teacher, arms };
    });
  }

  /** (d) The headline rows at every seed, and the full recipe judged on other noise. */
  noiseFloor(): Promise<NoiseFloor> {
    return interruptible(async () => {
      const headline: ArmResult[] = [];
      for (const a of this.arms().filter((x) => x.table === "ladder" && HEADLINE_RUNGS.includes(x.rung))) headline.push(await this.arm(a));
      const full = this.armById(`ladder-${HEADLINE_RUNGS[1]}`);
      const e = this.config.evaluation;
      const other = await cachedResult(path.join(this.armDir(full), `floor-${settingsKey({ e, judges: this.judgesTag })}.json`), async () => {
        const net = await this.generator(full);
        try {
          return (await this.judgeStudent(`${full.id}: judged on other noise`, net, full.cfg, e.floorSeed)).judged;
        } finally {
          net.dispose();
        }
      });
      const same = headline.find((r) => r.arm.id === full.id)!.judged;
      return { evaluation: [same, other], headline };
    });
  }

  /**
   * (e) The paper's Fig. 4: the same prompts and noise through the teacher (DDIM, pairSteps, at the visual
   * guidance), the Diffusion2GAN student (full recipe), the regression-only student (E-LatentLPIPS only) and the
   * teacher with few DDIM steps.
   */
  visualComparison(): Promise<VisualComparison> {
    return interruptible(async () => {
      const v = this.config.visual;
      const n = Math.min(v.prompts, this.config.evaluation.prompts);
      const z = promptNoise(this.teacher, this.config.evaluation.seed, 0, n, this.side);
      const rows: Array<{ name: string; latents: tf.Tensor4D }> = [];
      try {
        const teacher = async (steps: number) => {
          const cond = this.teacher.encode(this.judges.prompts.slice(0, n), v.guidance);
          const out = await this.teacher.sampleLatents(z, cond, { steps, sampler: "ddim" });
          tf.dispose([cond.cond, ...(cond.guidance ? [cond.guidance.uncond] : [])]);
          return out.latents;
        };
        rows.push({ name: `teacher, DDIM ${this.config.pairSteps}, guidance ${v.guidance}`, latents: await teacher(this.config.pairSteps) });
        for (const [id, name] of [[`ladder-${HEADLINE_RUNGS[1]}`, "Diffusion2GAN, 1 step"], ["ladder-0", "E-LatentLPIPS only, 1 step"]]) {
          const arm = this.armById(id);
          const net = await this.generator(arm);
          const c = this.condition(0, n);
          rows.push({ name, latents: generateUNet2D(net, z, c, arm.cfg.generator, WORLD_DDIM) });
          tf.dispose([c]);
          net.dispose();
        }
        for (const steps of v.fewSteps) rows.push({ name: `teacher, DDIM ${steps}, guidance ${v.guidance}`, latents: await teacher(steps) });
        const s = this.judges.world.config.imageSize;
        const data = new Uint8Array(rows.length * n * s * s * 3);
        for (const [k, r] of rows.entries()) {
          const images = await decodeClipped(this.codec, r.latents);
          data.set(unitToU8(await images.data()), k * n * s * s * 3);
          images.dispose();
        }
        return {
          images: { dtype: "uint8", shape: [rows.length * n, s, s, 3], data },
          captions: rows.flatMap((r) => Array.from({ length: n }, () => r.name)),
          prompts: this.judges.prompts.slice(0, n),
          cols: n,
          title: `The same test captions and noise (${this.scale} scale, the world's teacher standing in for SD1.5): the teacher, the Diffusion2GAN student, the regression-only student, the teacher with ${v.fewSteps.join(" and ")} DDIM steps; one test caption per column`,
        };
      } finally {
        tf.dispose([z, ...rows.map((r) => r.latents)]);
      }
    });
  }

  /**
   * (f) The full recipe's generator as a diffusers UNet2DConditionModel folder (config.json and
   * diffusion_pytorch_model.safetensors), with diffusion2gan.json beside them: the timestep G runs at and how its
   * output is read; and the whole map G(z, c) -> x0 as generator.onnx beside the folder.
   */
  exportGenerator(dir = path.join(this.base, "export", "unet")): Promise<ExportedGenerator> {
    return interruptible(async () => {
      const arm = this.armById(`ladder-${HEADLINE_RUNGS[1]}`);
      const net = await this.generator(arm);
      try {
        saveUNet2DConditionModel(net, dir);
        const note = {
          method: "Diffusion2GAN one-step generator (G(z, c) = x0 read from unet(z, timestep, text states))",
          generator: arm.cfg.generator, scheduler: WORLD_SCHEDULER_CONFIG, teacher: `world teacher (${this.scale} scale), ${this.provenance.teacher}`, pairs: `CFG-${arm.guidance}`,
        };
        fs.writeFileSync(path.join(dir, "diffusion2gan.json"), JSON.stringify(note, null, 2) + "\n");
        // the whole one-step map, timestep and x0 reading included, so a runtime needs no diffusers code
        const onnx = path.join(path.dirname(dir), "generator.onnx");
        const [z, c] = [tf.zeros([1, this.side, this.side, this.teacher.unet.config.in_channels]), this.condition(0, 1)];
        try {
          const fn = (zz: tf.Tensor, cc: tf.Tensor) => generateUNet2D(net, zz as tf.Tensor4D, cc as tf.Tensor3D, arm.cfg.generator, WORLD_DDIM);
          writeOnnx(onnx, traceOnnx({ name: "diffusion2gan_generator", variables: net.namedVariables(), inputs: [["z", z], ["c", c]], outputs: ["x0"], fn }));
        } finally {
          tf.dispose([z, c]);
        }
        return { dir, files: fs.readdirSync(dir).sort(), onnx, parameters: net.numParameters(), generator: arm.cfg.generator };
      } finally {
        net.dispose();
      }
    });
  }

  dispose(): void {
    this.judges.dispose();
    this.codec.dispose();
    this.teacher.dispose();
    this.nets.latent.dispose();
    this.nets.lpips.dispose();
  }
}

function pick(h: Record<string, number>, keys: string[]): Record<string, number> {
  return Object.fromEntries(keys.filter((k) => h[k] !== undefined).map((k) => [k, h[k]]));
}

// ---- tables ------------------------------------------------------------------------------------------------------

/** PAPER.md, regression-loss ablation (SD-CFG-3, 20k iterations, batch 256) [S]: FID and CLIP score. */
export const PAPER_REGRESSION_ABLATION: Record<RegressionLossName, { fid: number; clip: number }> = {
  mse: { fid: 110.55, clip: 0.222 }, "pseudo-huber": { fid: 87.6, clip: 0.23 }, lpips: { fid: 25.94, clip: 0.288 },
  latentlpips: { fid: 67.17, clip: 0.244 }, "e-latentlpips": { fid: 22.95, clip: 0.299 },
};

/** PAPER.md, discriminator ablation (SD-CFG-8) [S]: FID-30k and CLIP-30k per row of DISCRIMINATOR_LADDER. */
export const PAPER_LADDER = [
  { fid: 14.72, clip: 0.292 }, { fid: 12.04, clip: 0.3 }, { fid: 11.97, clip: 0.302 }, { fid: 10.6, clip: 0.303 }, { fid: 9.58, clip: 0.308 }, { fid: 9.45, clip: 0.31 },
];

const r3 = (v: number) => Math.round(1000 * v) / 1000;

function correspondenceColumns(c: Correspondence | undefined): Row {
  return { "LatentLPIPS to teacher": c ? r3(c.latentLpips) : "", "E-LatentLPIPS to teacher": c ? r3(c.eLatentLpips) : "", "LPIPS to teacher": c ? r3(c.lpips) : "" };
}

function teacherTableRow(t: TeacherRow, steps: number, first: string): Row {
  // (blank where a column is about training)
  return { [first]: `teacher, DDIM ${steps} (CFG-${t.guidance})`, seed: "", steps: "", NFE: t.judged.nfe, ...judgementColumns(t.judged), "ms/step": "", ...correspondenceColumns(undefined) };
}

function armColumns(r: ArmResult): Row {
  return { seed: r.seed, steps: r.training.steps, NFE: 1, ...judgementColumns(r.judged), "ms/step": Math.round(r.training.msPerStep), ...correspondenceColumns(r.toTeacher) };
}

/** (a) as a table (figures/03b_regression.csv): the teacher, then one row per loss, the paper's numbers beside. */
export function regressionRows(t: { teacher: TeacherRow; arms: ArmResult[] }, pairSteps: number): Row[] {
  return [
    { ...teacherTableRow(t.teacher, pairSteps, "loss"), "paper FID": "", "paper CLIP": "" },
    ...t.arms.map((r) => {
      const loss = r.arm.cfg.regression;
      return { loss: r.arm.row, ...armColumns(r), "paper FID": PAPER_REGRESSION_ABLATION[loss].fid, "paper CLIP": PAPER_REGRESSION_ABLATION[loss].clip };
    }),
  ];
}

/** (b) as a table (figures/03b_ladder.csv): the teacher, then one row per rung, the paper's FID-30k and CLIP-30k beside. */
export function ladderRows(t: { teacher: TeacherRow; arms: ArmResult[] }, pairSteps: number): Row[] {
  return [
    { ...teacherTableRow(t.teacher, pairSteps, "row"), "paper FID": "", "paper CLIP": "" },
    ...t.arms.map((r) => ({ row: r.arm.row, ...armColumns(r), "paper FID": PAPER_LADDER[r.arm.rung].fid, "paper CLIP": PAPER_LADDER[r.arm.rung].clip })),
  ];
}

/** What the paper and the released code say of a preset, for the augmentation table. */
function augmentationNote(ops: readonly string[], c: T2iDistillationConfig): string {
  if (ops.length === 0) return "plain LatentLPIPS (the regression table's arm)";
  if (sameOps(ops, c.recipe.augment)) return "elatentlpips' released default (the regression table's E-LatentLPIPS arm)";
  if (sameOps(ops, PAPER_NOTE_PRESET)) return "geometric + cutout, our reading of the paper's note [S] (as in notebooks 01 and 05); PAPER.md: preset used for distillation [NF]";
  return "";
}

/** (g) as a table (figures/03b_augmentation.csv): the teacher, then one row per preset with its ops. */
export function augmentationRows(t: { teacher: TeacherRow; arms: ArmResult[] }, c: T2iDistillationConfig): Row[] {
  return [
    { ...teacherTableRow(t.teacher, c.pairSteps, "preset"), ops: "", note: "" },
    ...t.arms.map((r) => {
      const ops = c.augmentations[r.arm.row] ?? [];
      return { preset: r.arm.row, ...armColumns(r), ops: resolveOps(ops).join(" "), note: augmentationNote(ops, c) };
    }),
  ];
}

/** The metrics whose noise floor is stated, as the tables name them; the last three only over seeds (their target, the teacher's output, exists for the evaluation's own noise). */
const FLOOR_METRICS = ["FID-wCLIP", "CLIP score (eval CLIP)", "all objects right %", "shape %", "colour %", "LatentLPIPS to teacher", "E-LatentLPIPS to teacher", "LPIPS to teacher"] as const;

/**
 * (d) The noise floor of each metric (figures/03b_noise_floor.csv): the full recipe judged on two noise draws (the
 * evaluation's own noise), and each headline row's spread over training seeds (max - min).
 */
export function noiseFloorRows(f: NoiseFloor): Row[] {
  const [a, b] = f.evaluation.map((j) => judgementColumns(j));
  const spread = (rung: number) => {
    const rows = f.headline.filter((r) => r.arm.rung === rung).map(armColumns);
    return (m: string) => (rows.length < 2 ? "" : r3(Math.max(...rows.map((r) => Number(r[m]))) - Math.min(...rows.map((r) => Number(r[m])))));
  };
  const [s0, s5] = HEADLINE_RUNGS.map(spread);
  return FLOOR_METRICS.map((m) => ({
    metric: m,
    "evaluation noise |difference|": m in a ? r3(Math.abs(Number(a[m]) - Number(b[m]))) : "",
    [`${DISCRIMINATOR_LADDER[HEADLINE_RUNGS[0]]}: seed spread`]: s0(m),
    "full recipe: seed spread": s5(m),
    seeds: new Set(f.headline.map((r) => r.seed)).size,
  }));
}

/** (d) The headline rows at every seed (figures/03b_headline.csv). */
export function headlineRows(f: NoiseFloor): Row[] {
  return f.headline.map((r) => ({ row: r.arm.row, ...armColumns(r) }));
}

/** Every arm's training curve (figures/03b_curves.csv): step, losses. */
export function curveRows(results: ArmResult[]): Row[] {
  return results.flatMap((r) => r.training.curve.map((c) => ({ arm: r.arm.id, row: r.arm.row, step: c.step, regression: c.regression ?? null, lossD: c.lossD ?? null })));
}

/**
 * FID-wCLIP per row of a table, each with a bar of +- the evaluation's noise floor: drawn from the saved rows
 * (figures/03b_regression.csv or 03b_ladder.csv, and 03b_noise_floor.csv), so they re-render it.
 */
export function fidFigure(rows: Row[], floor: Row[], table: ArmTable, subtitle: string): Figure {
  const fidFloor = Number(floor.find((r) => r.metric === "FID-wCLIP")?.["evaluation noise |difference|"] ?? 0);
  const first = { regression: "loss", ladder: "row", augmentation: "preset" }[table];
  const items: Interval[] = rows.map((r) => {
    const v = Number(r["FID-wCLIP"]);
    return { label: String(r[first]), mean: v, lo: v - fidFloor, hi: v + fidFloor };
  });
  const title = { regression: "Regression losses on CFG-3", ladder: "Discriminator ladder on CFG-8", augmentation: "E-LatentLPIPS augmentations on CFG-3" }[table];
  return intervalFigure(`${title}: FID-wCLIP per row (lower is better; bar: +- the evaluation's noise floor)`, [{ title: "", items }], { x: "FID-wCLIP (eval CLIP embeddings; not Inception FID)", subtitle });
}

// ---- the Result section ---------------------------------------------------------------------------------------

const STAND_IN = "the world's teacher stands in for SD1.5; FID-wCLIP, not Inception FID";

/**
 * The paper's orderings against the committed cpu-scale tables (figures/03b_regression.csv, 03b_ladder.csv,
 * 03b_noise_floor.csv): E-LatentLPIPS best of the regression losses and far better than plain LatentLPIPS; each
 * discriminator component improving FID. A difference counts only beyond the noise floor (the larger of the
 * evaluation noise and the full recipe's seed spread).
 */
export function claims(tables: { regression?: Row[]; ladder?: Row[]; floor?: Row[] } = { regression: committedTableIfAny("03b_regression"), ladder: committedTableIfAny("03b_ladder"), floor: committedTableIfAny("03b_noise_floor") }): Claim[] {
  const paperReg = `FID (SD-CFG-3): ${Object.entries(PAPER_REGRESSION_ABLATION).map(([k, v]) => `${REGRESSION_LABELS[k as RegressionLossName]} ${v.fid}`).join(", ")}`;
  const paperLadder = `FID-30k: ${DISCRIMINATOR_LADDER.map((r, k) => `${r} ${PAPER_LADDER[k].fid}`).join("; ")}`;
  const claimBest = "E-LatentLPIPS is the best regression loss";
  const claimFar = "E-LatentLPIPS is far better than plain LatentLPIPS (the paper: about a third of its FID)";
  const claimLadder = "Each discriminator component improves FID";
  const claimFull = "The full recipe beats E-LatentLPIPS alone";
  const { regression, ladder, floor } = tables;
  if (!regression || !ladder || !floor) {
    const why = "no committed cpu-scale tables yet: `npm run reproduce -- 03b --update-figures` at cpu scale writes figures/03b_regression.csv, 03b_ladder.csv and 03b_noise_floor.csv";
    return [
      { claim: claimBest, paper: paperReg, ours: "(no committed cpu-scale table)", verdict: "not tested", why },
      { claim: claimFar, paper: paperReg, ours: "(no committed cpu-scale table)", verdict: "not tested", why },
      { claim: claimLadder, paper: paperLadder, ours: "(no committed cpu-scale table)", verdict: "not tested", why },
      { claim: claimFull, paper: `${PAPER_LADDER[0].fid} -> ${PAPER_LADDER[5].fid}`, ours: "(no committed cpu-scale table)", verdict: "not tested", why },
    ];
  }
  const fid = (r: Row, table: string) => numberIn(r, "FID-wCLIP", table);
  const noise = fidNoiseFloor(floor);
  const losses = regression.filter((r) => !String(r.loss).startsWith("teacher"));
  const byLoss = (label: string) => losses.find((r) => r.loss === label);
  const e = byLoss(REGRESSION_LABELS["e-latentlpips"]);
  const plain = byLoss(REGRESSION_LABELS.latentlpips);
  if (!e || !plain) throw new Error("figures/03b_regression.csv: needs the rows E-LatentLPIPS and LatentLPIPS");
  const eFid = fid(e, "03b_regression");
  const others = losses.filter((r) => r !== e);
  const bestOther = others.reduce((a, b) => (fid(b, "03b_regression") < fid(a, "03b_regression") ? b : a));
  const best = others.every((r) => fid(r, "03b_regression") > eFid + noise);
  const far = fid(plain, "03b_regression") - eFid > noise && eFid <= (2 / 3) * fid(plain, "03b_regression");
  const rungs = ladder.filter((r) => !String(r.row).startsWith("teacher"));
  const steps = rungs.slice(1).map((r, k) => ({ row: String(r.row), d: fid(r, "03b_ladder") - fid(rungs[k], "03b_ladder") }));
  const improved = steps.filter((s) => s.d < -noise);
  const full = fid(rungs[0], "03b_ladder") - fid(rungs[rungs.length - 1], "03b_ladder");
  const list = losses.map((r) => `${r.loss} ${fid(r, "03b_regression")}`).join(", ");
  return [
    {
      claim: claimBest, paper: paperReg,
      ours: `FID-wCLIP (CFG-3): ${list}; noise floor ${noise} (${STAND_IN})`,
      verdict: best ? "held" : "did not hold",
      why: best ? undefined : `${bestOther.loss} (${fid(bestOther, "03b_regression")}) is not worse than E-LatentLPIPS (${eFid}) by more than the noise floor`,
    },
    {
      claim: claimFar, paper: `LatentLPIPS ${PAPER_REGRESSION_ABLATION.latentlpips.fid}, E-LatentLPIPS ${PAPER_REGRESSION_ABLATION["e-latentlpips"].fid}`,
      ours: `LatentLPIPS ${fid(plain, "03b_regression")}, E-LatentLPIPS ${eFid} (ratio ${(eFid / fid(plain, "03b_regression")).toFixed(2)}; noise floor ${noise})`,
      verdict: far ? "held" : "did not hold",
      why: far ? undefined : "E-LatentLPIPS is not below two thirds of LatentLPIPS' FID-wCLIP by more than the noise floor",
    },
    {
      claim: claimLadder, paper: paperLadder,
      ours: `FID-wCLIP change per added component (CFG-8): ${steps.map((s) => `${s.row} ${s.d >= 0 ? "+" : ""}${s.d.toFixed(2)}`).join("; ")}; noise floor ${noise}`,
      verdict: improved.length === steps.length ? "held" : "did not hold",
      why: improved.length === steps.length ? undefined : `${steps.length - improved.length} of ${steps.length} components did not lower FID-wCLIP by more than the noise floor (${STAND_IN}; ${numberIn(rungs[0], "steps", "03b_ladder")} steps at batch ${T2I_DISTILLATION_CONFIGS.cpu.recipe.batch}, against the paper's tens of thousands at 256)`,
    },
    {
      claim: claimFull, paper: `${DISCRIMINATOR_LADDER[0]} ${PAPER_LADDER[0].fid} -> full recipe ${PAPER_LADDER[5].fid}`,
      ours: `${fid(rungs[0], "03b_ladder")} -> ${fid(rungs[rungs.length - 1], "03b_ladder")} (noise floor ${noise})`,
      verdict: full > noise ? "held" : "did not hold",
      why: full > noise ? undefined : "the full recipe's FID-wCLIP is not below E-LatentLPIPS only by more than the noise floor",
    },
  ];
}

/** The FID-wCLIP noise floor of the committed tables: the larger of the evaluation noise and the full recipe's seed spread. */
function fidNoiseFloor(floor: Row[]): number {
  const r = floor.find((x) => x.metric === "FID-wCLIP");
  return r ? Math.max(Number(r["evaluation noise |difference|"] ?? 0), Number(r["full recipe: seed spread"] ?? 0)) : 0;
}

/**
 * (g) against the committed cpu-scale tables (figures/03b_augmentation.csv, 03b_noise_floor.csv): does the
 * augmentation ensemble make LatentLPIPS a better distillation loss, and is the paper's note (geometric + cutout)
 * as good as the released bg? A difference counts only beyond the FID-wCLIP noise floor.
 */
export function augmentationClaims(tables: { augmentation?: Row[]; floor?: Row[] } = { augmentation: committedTableIfAny("03b_augmentation"), floor: committedTableIfAny("03b_noise_floor") }): Claim[] {
  const { augmentation: rows, floor } = tables;
  const claimHelps = "The augmentation ensemble makes LatentLPIPS a better distillation loss (the best preset beats none)";
  const claimNote = "The paper's note for distillation, geometric + cutout, is no worse than the released bg";
  const paperHelps = `LatentLPIPS ${PAPER_REGRESSION_ABLATION.latentlpips.fid} -> E-LatentLPIPS ${PAPER_REGRESSION_ABLATION["e-latentlpips"].fid} FID (SD-CFG-3); per preset: no numbers`;
  const paperNote = "preset used for distillation [NF]; a note says geometric + cutout [S]; released default bg";
  if (!rows || !floor) {
    const why = "no committed cpu-scale table yet: `npm run reproduce -- 03b --update-figures` at cpu scale writes figures/03b_augmentation.csv";
    return [claimHelps, claimNote].map((claim, k) => ({ claim, paper: k ? paperNote : paperHelps, ours: "(no committed cpu-scale table)", verdict: "not tested" as const, why }));
  }
  const noise = fidNoiseFloor(floor);
  const presets = rows.filter((r) => !String(r.preset).startsWith("teacher"));
  const fid = (r: Row) => numberIn(r, "FID-wCLIP", "03b_augmentation");
  const by = (p: string) => presets.find((r) => r.preset === p);
  const none = by("none");
  const [bg, go] = [by("bg"), by("bgo")];
  if (!none || !bg || !go) throw new Error("figures/03b_augmentation.csv: needs the presets none, bg and bgo");
  const best = presets.filter((r) => r !== none).reduce((a, b) => (fid(b) < fid(a) ? b : a));
  const helps = fid(none) - fid(best) > noise;
  const noteOk = fid(go) <= fid(bg) + noise;
  return [
    {
      claim: claimHelps, paper: paperHelps,
      ours: `none ${fid(none)}, best ${best.preset} ${fid(best)} FID-wCLIP (CFG-3; noise floor ${noise}; ${STAND_IN})`,
      verdict: helps ? "held" : "did not hold",
      why: helps ? undefined : `no preset lowers FID-wCLIP below none's by more than the noise floor (${numberIn(best, "steps", "03b_augmentation")} steps at batch ${T2I_DISTILLATION_CONFIGS.cpu.recipe.batch})`,
    },
    {
      claim: claimNote, paper: paperNote,
      ours: `bgo ${fid(go)}, bg ${fid(bg)} FID-wCLIP (noise floor ${noise})`,
      verdict: noteOk ? "held" : "did not hold",
      why: noteOk ? undefined : "geometric + cutout is worse than bg by more than the noise floor",
    },
  ];
}

/** (g) in words: the presets ordered by FID-wCLIP, and which neighbours differ by more than the noise floor. */
export function augmentationRanking(rows: Row[], floor: Row[]): string {
  const noise = fidNoiseFloor(floor);
  const presets = rows.filter((r) => !String(r.preset).startsWith("teacher")).sort((a, b) => Number(a["FID-wCLIP"]) - Number(b["FID-wCLIP"]));
  const order = presets.map((r, k) => `${k ? (Number(r["FID-wCLIP"]) - Number(presets[k - 1]["FID-wCLIP"]) > noise ? " < " : " ~ ") : ""}${r.preset} ${r["FID-wCLIP"]}`).join("");
  return `FID-wCLIP, best first ("<": the gap exceeds the noise floor of ${noise}; "~": it does not): ${order}`;
}

/** What the tables' numbers rest on, for subtitles. */
export function subtitle(d: T2iDistillation): string {
  const c = d.config;
  return `${d.scale} scale; ${STAND_IN}; batch ${c.recipe.batch}; ${c.evaluation.prompts} test captions; stand-in perceptual trunks`;
}
