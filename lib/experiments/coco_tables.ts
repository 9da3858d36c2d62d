import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as tf from "@tensorflow/tfjs";
import { inferenceInfo } from "../backend/onnx_runtime";
import { interruptible } from "../core/interrupt";
import { runDir, settingsKey } from "../core/paths";
import { ClipTokenizer } from "../data/clip_tokenizer";
import { loadCoco30k } from "../data/coco";
import { StableDiffusion } from "../diffusion/sd_pipeline";
import { UNet2DGeneratorConfig, generateUNet2D } from "../distill/generator";
import { readSafetensors } from "../io/safetensors";
import { loadFidInception } from "../metrics/inception";
import { CaptionGenerator, evaluateT2i, GIGAGAN_EVAL_SIZE, ReferenceSource, referenceStats, T2iEvalResult, T2iJudges } from "../metrics/t2i_eval";
import { loadOpenClip } from "../nn/clip/checkpoints";
import { FrozenForward } from "../nn/frozen";
import { loadUNet2DConditionModel } from "../nn/sd/load";
import { UNet2DConditionModel } from "../nn/sd/unet2d_condition";
import { cachedResult } from "../train/checkpoint";
import { Row } from "../viz/table";
import { Claim, committedTableIfAny, numberIn } from "./claims";
import { byScale, currentScale, Scale } from "./scale";
import { ArmTraining, HEADLINE_RUNGS, T2iDistillation, t2iDistillationConfig, WORLD_DDIM } from "./t2i_distillation";
import { seedNoise, T2I_TEACHERS, teacherTrainingOf, weightsTag } from "./t2i_teacher";
import { worldClipFile } from "./world_clips";
import { wClipFeatureNet } from "./world_judges";

// Notebook 04: the paper's COCO tables (issue #17). Table 1 (COCO2014 FID-30k of the SD1.5 family, with latency),
// Table 2 (COCO2017-5k of the SDXL family: FID, CLIP score, DreamDiv, DreamSim) and Table 4 (training compute), each
// with the paper's numbers as PAPER.md pins them and our measured rows beside, the protocol differences named in
// the same table. Every row goes through one protocol (lib/metrics/t2i_eval.ts: a sample per caption seeded by its
// index, FID and CLIP score, sharded and resumable). At paper scale: SD1.5 (50 DDIM steps) and the distilled
// student from a user's weights, scored on COCO2014's 30k captions against the user's val2014 images (GigaGAN's
// centre crop and Lanczos 256, clean-fid's InceptionV3) with OpenCLIP ViT-g-14. At cpu scale the same protocol on
// the text-to-image world (notebooks 03a, 03b): its test captions for COCO's, FID-wCLIP (the world's eval CLIP's
// image embeddings against the rendered test scenes) for Inception FID, the eval CLIP for ViT-g-14; rows: the
// world's teacher with DDIM 50 at guidance 8 and with 1, 2 and 4 steps, and 03b's regression-only and full
// Diffusion2GAN students. Latency: seconds per image at batch 1, text encoding to decoded image, median of
// repeated runs after a warm-up, on tfjs (the training engine) and onnxruntime (the inference engine).

/** PAPER.md's mark for a number the paper's text does not give. */
export const NF = "[NF]";

/** PAPER.md, COCO2014 FID-30k, SD1.5 family [V]; latency only for Diffusion2GAN. */
export const PAPER_TABLE1: Array<{ model: string; fid: number; latencyS: number | null }> = [
  { model: "SD1.5 (teacher, 50 steps)", fid: 8.74, latencyS: null },
  { model: "InstaFlow-0.9B", fid: 13.1, latencyS: null },
  { model: "UFOGen", fid: 12.78, latencyS: null },
  { model: "DMD", fid: 11.49, latencyS: null },
  { model: "GigaGAN", fid: 9.09, latencyS: null },
  { model: "StyleGAN-T", fid: 13.9, latencyS: null },
  { model: "Diffusion2GAN", fid: 9.29, latencyS: 0.09 },
];

/** PAPER.md, COCO2017 5k, SDXL family [V]: FID / CLIP / DreamDiv / DreamSim (the teacher's DreamSim is cut off in PAPER.md). */
export const PAPER_TABLE2: Array<{ model: string; fid: number; clip: number; dreamDiv: number; dreamSim: number | null }> = [
  { model: "SDXL-Turbo", fid: 28.1, clip: 0.342, dreamDiv: 0.232, dreamSim: 0.368 },
  { model: "SDXL-Lightning", fid: 30.14, clip: 0.324, dreamDiv: 0.315, dreamSim: 0.345 },
  { model: "SDXL-Diffusion2GAN", fid: 25.49, clip: 0.347, dreamDiv: 0.268, dreamSim: 0.284 },
  { model: "SDXL-Base (teacher, 50 steps)", fid: 25.56, clip: 0.346, dreamDiv: 0.338, dreamSim: null },
];

/** PAPER.md, Table 4 [S]: InstaFlow's 199 A100 GPU-days; Diffusion2GAN's "far fewer" without a number [paper text]. */
export const PAPER_TABLE4 = { instaflowGpuDays: 199, claim: "Diffusion2GAN reaches a better FID than InstaFlow with far fewer GPU-days" };

export interface LatencyConfig {
  /** Timed runs per row after one warm-up (the median is reported); the teacher's 50-step rows get teacherReps. */
  reps: number;
  teacherReps: number;
}

/** Smoke and cpu: the text-to-image world through the protocol. */
export interface WorldTablesConfig {
  kind: "world";
  /** Test captions (the first caption of test scenes 0..prompts-1), one sample each. */
  prompts: number;
  seed: number;
  /** The noise floor's: the full-recipe student judged again on the noise of this seed. */
  floorSeed: number;
  batch: number;
  shardSize: number;
  teacherSteps: number;
  guidance: number;
  fewSteps: number[];
  latency: LatencyConfig;
}

/** Paper: SD1.5 and the distilled student on COCO2014's 30k captions, from a user's files. */
export interface Sd15TablesConfig {
  kind: "sd15";
  /** A diffusers SD1.5 folder (D2G_SD15_DIR). */
  sd15: string | undefined;
  /** Notebook 03b's export at paper scale: a diffusers UNet folder with diffusion2gan.json (D2G_STUDENT_UNET). */
  student: string | undefined;
  /** The user's COCO val2014 image folder (D2G_COCO2014_DIR), or clean-fid statistics (.npz, D2G_COCO_FID_STATS). */
  reference: ReferenceSource | undefined;
  /** pytorch-fid's Inception weights (D2G_FID_INCEPTION). */
  inception: string | undefined;
  /** OpenCLIP ViT-g-14 laion2b_s12b_b42k, open_clip_pytorch_model.bin (D2G_CLIP_VIT_G14): GigaGAN's "ViT-G/14". */
  clip: string | undefined;
  captions: number;
  steps: number;
  /** [NF] the teacher's guidance in Table 1; 8 as SD-CFG-8, the pairs the student learned from. */
  guidance: number;
  seed: number;
  batch: number;
  shardSize: number;
  latency: LatencyConfig;
}

export type CocoTablesConfig = WorldTablesConfig | Sd15TablesConfig;

const fromEnv = (k: string) => process.env[k] || undefined;

export const COCO_TABLES_CONFIGS: Record<Scale, CocoTablesConfig> = {
  smoke: { kind: "world", prompts: 4, seed: 7, floorSeed: 8, batch: 4, shardSize: 2, teacherSteps: T2I_TEACHERS.smoke.pairs.steps, guidance: 8, fewSteps: [1, 2], latency: { reps: 2, teacherReps: 1 } },
  // 1,000 of the 2,000 test captions (the first 200 are 03b's, with the same noise); DDIM 50 at guidance 8 is 100
  // UNet evaluations per image, most of the run (lib/experiments/plan.ts has the time)
  cpu: { kind: "world", prompts: 1000, seed: 7, floorSeed: 8, batch: 50, shardSize: 200, teacherSteps: 50, guidance: 8, fewSteps: [1, 2, 4], latency: { reps: 7, teacherReps: 3 } },
  paper: {
    kind: "sd15", sd15: fromEnv("D2G_SD15_DIR"), student: fromEnv("D2G_STUDENT_UNET"),
    reference: fromEnv("D2G_COCO_FID_STATS") ? { statsFile: process.env.D2G_COCO_FID_STATS! } : fromEnv("D2G_COCO2014_DIR") ? { folder: process.env.D2G_COCO2014_DIR! } : undefined,
    inception: fromEnv("D2G_FID_INCEPTION"), clip: fromEnv("D2G_CLIP_VIT_G14"),
    captions: 30_000, steps: 50, guidance: 8, seed: 7, batch: 16, shardSize: 1000, latency: { reps: 5, teacherReps: 3 },
  },
};

export function cocoTablesConfig(scale: Scale = currentScale()): CocoTablesConfig {
  return byScale(COCO_TABLES_CONFIGS, scale);
}

// ---- rows ------------------------------------------------------------------------------------------------------

export type EngineName = "tfjs" | "onnxruntime";

/** Seconds per image at batch 1: the median of the timed runs, and the machine's load while they ran. */
export interface Latency {
  tfjs: number;
  /** null where onnxruntime is not the inference engine (D2G_INFER=tfjs, or it does not load) or the row does not run on it. */
  onnxruntime: number | null;
  reps: number;
  loadAverage: number;
}

export interface MeasuredRow {
  id: string;
  name: string;
  /** UNet evaluations per image (a guided step counts two). */
  nfe: number;
  eval: T2iEvalResult;
  latency: Latency;
}

/** A generator on either engine, and what it costs per image. */
export interface RowGenerator {
  id: string;
  name: string;
  nfe: number;
  make: (engine: EngineName) => CaptionGenerator;
  /** Tag of the weights behind it: keys its cached evaluation. */
  tag: string;
  teacherLike: boolean;
  /** Whether make("onnxruntime") runs the networks on onnxruntime (else the row is timed on tfjs only). */
  onOrt: boolean;
}

/** Median seconds of `reps` runs of one caption after a warm-up run (a first run also exports and loads ONNX models). */
async function secondsPerImage(gen: CaptionGenerator, caption: string, seed: number, reps: number): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i <= reps; i++) {
    const t0 = performance.now();
    const x = await gen([caption], [seed]);
    await x.data();
    x.dispose();
    if (i > 0) times.push((performance.now() - t0) / 1000);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)];
}

async function measure(dir: string, g: RowGenerator, captions: string[], judges: T2iJudges, c: { seed: number; batch: number; shardSize: number; size: number | null; latency: LatencyConfig }): Promise<MeasuredRow> {
  const ort = inferenceInfo().engine === "onnxruntime" && g.onOrt;
  const engine: EngineName = ort ? "onnxruntime" : "tfjs";
  // keyed by everything the samples and scores depend on: other weights or judges start a new folder, never resume an old one
  const rowDir = path.join(dir, `${g.id}-${settingsKey({ tag: g.tag, seed: c.seed, size: c.size, captions: captions.length, fid: judges.fid.name, reference: judges.referenceTag, clip: judges.clip?.tag ?? null })}`);
  const ev = await evaluateT2i(path.join(rowDir, "samples"), captions, g.make(engine), judges, c, `${g.name}: ${captions.length} samples`);
  const reps = g.teacherLike ? c.latency.teacherReps : c.latency.reps;
  const latency = await cachedResult(path.join(rowDir, `latency-${reps}-${engine}.json`), async () => ({
    tfjs: await secondsPerImage(g.make("tfjs"), captions[0], c.seed, reps),
    onnxruntime: ort ? await secondsPerImage(g.make("onnxruntime"), captions[0], c.seed, reps) : null,
    reps,
    loadAverage: Math.round(100 * os.loadavg()[0]) / 100,
  }));
  return { id: g.id, name: g.name, nfe: g.nfe, eval: ev, latency };
}

/** A UNet's forward on onnxruntime: one exported model per input shape (lib/nn/frozen.ts). */
function frozenUNet(name: string, unet: UNet2DConditionModel): FrozenForward {
  return new FrozenForward({
    name, variables: unet.namedVariables(), inputs: ["sample", "timestep", "encoder_hidden_states"], outputs: ["out"],
    fn: (x, t, ctx) => unet.forward(x as tf.Tensor4D, t as tf.Tensor1D, ctx as tf.Tensor3D),
  });
}

/** G(z, c) of a one-step student, exported whole (the UNet at G's timestep and the x0 read-out). */
export function frozenStudent(name: string, unet: UNet2DConditionModel, g: UNet2DGeneratorConfig, schedule: typeof WORLD_DDIM): FrozenForward {
  return new FrozenForward({ name, variables: unet.namedVariables(), inputs: ["z", "c"], outputs: ["x0"], fn: (z, c) => generateUNet2D(unet, z as tf.Tensor4D, c as tf.Tensor3D, g, schedule) });
}

// ---- the world (smoke, cpu) -------------------------------------------------------------------------------------

export interface WorldTables {
  config: WorldTablesConfig;
  rows: MeasuredRow[];
  /** The last row (the full-recipe student) judged on config.floorSeed's noise: the evaluation's noise floor. */
  floor: MeasuredRow;
  /** Where the students came from (03b's arms) and what the judges are. */
  provenance: string[];
  compute: ComputeInputs;
}

/** What the compute table reads: the teacher's training record, the pairs' teacher evaluations, the students' training records. */
export interface ComputeInputs {
  teacher: { seconds: number; steps: number };
  pairs: Array<{ guidance: number; count: number; teacherEvals: number }>;
  students: Array<{ name: string; training: ArmTraining }>;
}

/**
 * The world's rows: the teacher (DDIM teacherSteps and fewSteps at the guidance) and notebook 03b's headline students
 * (E-LatentLPIPS only, full recipe), each evaluated on the test captions and timed. At cpu scale the students
 * must exist (notebook 03b trains them); at smoke scale they are trained here through 03b's code (seconds).
 */
export async function worldTables(scale: Scale = currentScale(), config = cocoTablesConfig(scale), o: { base?: string } = {}): Promise<WorldTables> {
  if (config.kind !== "world") throw new Error(`coco tables: the ${scale} config runs SD1.5 (sd15Tables), not the world`);
  return interruptible(async () => {
    const d2g = await T2iDistillation.open(t2iDistillationConfig(scale), scale);
    const frozen: FrozenForward[] = [];
    const students: UNet2DConditionModel[] = [];
    try {
      const arms = HEADLINE_RUNGS.map((k) => d2g.armById(`ladder-${k}`));
      const missing = arms.filter((a) => !fs.existsSync(path.join(d2g.armDir(a), "generator.safetensors")));
      if (missing.length && scale !== "smoke") {
        throw new Error(
          `coco tables (${scale}): notebook 03b's students ${missing.map((a) => `${a.id} (${a.row})`).join(", ")} are not trained yet (no ${missing.map((a) => path.join(d2g.armDir(a), "generator.safetensors")).join(", ")}); ` +
            `run notebook 03b first at this scale: D2G_SCALE=${scale} npm run reproduce -- 03b`,
        );
      }
      const world = d2g.judges.world;
      if (config.prompts > world.config.counts.test) throw new Error(`coco tables: ${config.prompts} prompts, but world '${world.config.name}' has ${world.config.counts.test} test scenes`);
      const captions = Array.from({ length: config.prompts }, (_, i) => world.captions("test", i)[0]);
      const evalTag = weightsTag(worldClipFile("eval", scale));
      const judges: T2iJudges = {
        fid: wClipFeatureNet(d2g.judges.evalClip, evalTag), reference: d2g.judges.reference, referenceTag: `world-${world.config.name}-test-${d2g.judges.config.reference}`,
        clip: { model: d2g.judges.evalClip, tokenizer: d2g.judges.tokenizer, template: "none", tag: `world-eval-clip-${evalTag}` },
      };
      const teacher = d2g.teacher;
      const side = world.config.imageSize / d2g.codec.factor;
      const decode = async (latents: tf.Tensor4D, engine: EngineName) => (engine === "tfjs" ? tf.tidy(() => tf.clipByValue(d2g.codec.decode(latents), -1, 1) as tf.Tensor4D) : d2g.codec.decodeFrozen(latents));
      const teacherUNet = frozenUNet("world-teacher-unet", teacher.unet);
      frozen.push(teacherUNet);
      const teacherTag = weightsTag(T2I_TEACHERS[scale].weights);
      const teacherRow = (steps: number): RowGenerator => ({
        id: `teacher-ddim${steps}-cfg${config.guidance}`, name: `teacher, DDIM ${steps}, guidance ${config.guidance}`, nfe: (config.guidance > 1 ? 2 : 1) * steps, tag: teacherTag, teacherLike: steps >= 10, onOrt: true,
        make: (engine) => async (caps, seeds) => {
          const z = seedNoise(teacher, seeds, side);
          const cond = teacher.encode(caps, config.guidance);
          const unet = engine === "onnxruntime" ? async (x: tf.Tensor4D, t: number, ctx?: tf.Tensor) => {
            const ts = tf.fill([x.shape[0]], t) as tf.Tensor1D;
            const [y] = await teacherUNet.run([x, ts, ctx!]);
            ts.dispose();
            return y as tf.Tensor4D;
          } : undefined;
          const out = await teacher.sampleLatents(z, cond, { steps, sampler: "ddim", unet });
          tf.dispose([z, cond.cond, ...(cond.guidance ? [cond.guidance.uncond] : [])]);
          const images = await decode(out.latents, engine);
          out.latents.dispose();
          return images;
        },
      });
      const studentRow = async (k: number, name: string): Promise<RowGenerator> => {
        const arm = d2g.armById(`ladder-${k}`);
        const net = await d2g.generator(arm);
        students.push(net);
        const g = frozenStudent(`world-student-${arm.id}`, net, arm.cfg.generator, WORLD_DDIM);
        frozen.push(g);
        return {
          id: `student-${arm.id}`, name, nfe: 1, tag: path.basename(d2g.armDir(arm)), teacherLike: false, onOrt: true,
          make: (engine) => async (caps, seeds) => {
            const z = seedNoise(teacher, seeds, side);
            const c = d2g.captionCondition(caps);
            const latents = engine === "onnxruntime" ? ((await g.run([z, c]))[0] as tf.Tensor4D) : generateUNet2D(net, z, c, arm.cfg.generator, WORLD_DDIM);
            tf.dispose([z, c]);
            const images = await decode(latents, engine);
            latents.dispose();
            return images;
          },
        };
      };
      const gens: RowGenerator[] = [
        teacherRow(config.teacherSteps),
        ...config.fewSteps.map(teacherRow),
        await studentRow(HEADLINE_RUNGS[0], "regression only (E-LatentLPIPS), 1 step"),
        await studentRow(HEADLINE_RUNGS[1], "Diffusion2GAN (full recipe), 1 step"),
      ];
      const dir = o.base ?? runDir(scale, "coco_tables");
      const rows: MeasuredRow[] = [];
      for (const g of gens) rows.push(await measure(dir, g, captions, judges, { ...config, size: null }));
      const full = gens[gens.length - 1];
      const floor = await measure(dir, { ...full, id: `${full.id}-floor` }, captions, judges, { ...config, seed: config.floorSeed, size: null });
      const training = (k: number) => JSON.parse(readSafetensors(path.join(d2g.armDir(d2g.armById(`ladder-${k}`)), "generator.safetensors")).metadata.training) as ArmTraining;
      const t = teacherTrainingOf(scale);
      return {
        config, rows, floor,
        provenance: [
          `teacher: ${T2I_TEACHERS[scale].weights} (sha256 ${teacherTag}); students: ${arms.map((a) => `runs/${scale}/t2i_distillation/${path.basename(d2g.armDir(a))}`).join(", ")}`,
          `${captions.length} test captions (first caption of test scenes 0..${captions.length - 1}); FID-wCLIP against ${d2g.judges.config.reference} rendered test scenes; CLIP score with the eval CLIP (sha256 ${evalTag})`,
        ],
        compute: {
          teacher: { seconds: t.seconds, steps: t.steps },
          pairs: d2g.manifests.map((m) => ({ guidance: m.guidance, count: m.count, teacherEvals: m.teacherEvals })),
          students: HEADLINE_RUNGS.map((k, i) => ({ name: gens[gens.length - 2 + i].name, training: training(k) })),
        },
      };
    } finally {
      for (const f of frozen) await f.dispose();
      for (const s of students) s.dispose();
      d2g.dispose();
    }
  });
}

const r2 = (v: number) => Math.round(100 * v) / 100;
const r3 = (v: number) => Math.round(1000 * v) / 1000;
const ms = (s: number | null) => (s === null ? "" : Math.round(10_000 * s) / 10);

/** The paper's Table 1 row each of our rows measures (the world's rows stand in for it). */
function paperCounterpart(id: string): { model: string; fid: number | string; latencyS: number | string } {
  const p = (model: string) => PAPER_TABLE1.find((r) => r.model.startsWith(model))!;
  if (/^(teacher|sd15)-ddim50-/.test(id)) return { ...p("SD1.5"), latencyS: NF };
  if (id === "student" || id === `student-ladder-${HEADLINE_RUNGS[1]}`) return { model: "Diffusion2GAN", fid: p("Diffusion2GAN").fid, latencyS: p("Diffusion2GAN").latencyS! };
  if (id === `student-ladder-${HEADLINE_RUNGS[0]}`) return { model: "E-LatentLPIPS only (discriminator ablation [S], FID-30k)", fid: 14.72, latencyS: NF };
  return { model: "(not in Table 1)", fid: "", latencyS: "" };
}

/** What separates the world's rows from the paper's, for the table's last column. */
export const WORLD_DIFFERENCES =
  "world teacher (4.2M-param UNet2DConditionModel, 64 px scenes, TAEF2 latents) for SD1.5; world test captions for COCO2014's 30k; FID-wCLIP (eval CLIP embeddings vs rendered test scenes) for Inception FID; eval CLIP, no 'A photo depicts', for ViT-g-14; 2 CPU cores for an A100";

/** What separates the paper-scale rows from the paper's. */
export const SD15_DIFFERENCES = "the paper's protocol (GigaGAN's evaluation); the teacher's guidance [NF] (8 here); tfjs, not PyTorch, on the user's machine";

/** Table 1: our rows with the paper's counterpart beside, then the paper's rows we have no model for. */
export function table1Rows(rows: MeasuredRow[], differences: string): Row[] {
  const fidCol = rows[0]?.eval.fidName ?? "FID";
  const clipCol = differences === WORLD_DIFFERENCES ? "CLIP score (eval CLIP)" : "CLIP score (ViT-g-14)";
  const ours = rows.map((r, i) => {
    const p = paperCounterpart(r.id);
    return {
      model: `ours: ${r.name}`, NFE: r.nfe, samples: r.eval.samples, [fidCol]: r2(r.eval.fid), [clipCol]: r3(r.eval.clipScore ?? NaN),
      "latency tfjs (ms/img)": ms(r.latency.tfjs), "latency onnxruntime (ms/img)": ms(r.latency.onnxruntime), "load average": r.latency.loadAverage,
      "paper row": p.model, "paper FID-30k": p.fid, "paper latency (s/img)": p.latencyS, "protocol differences": i === 0 ? differences : "as above",
    };
  });
  const others = PAPER_TABLE1.filter((p) => !["SD1.5", "Diffusion2GAN"].some((m) => p.model.startsWith(m))).map((p) => ({
    model: `paper only: ${p.model}`, NFE: "", samples: "", [fidCol]: "", [clipCol]: "", "latency tfjs (ms/img)": "", "latency onnxruntime (ms/img)": "", "load average": "",
    "paper row": p.model, "paper FID-30k": p.fid, "paper latency (s/img)": p.latencyS ?? NF, "protocol differences": "no such model on this machine",
  }));
  return [...ours, ...others];
}

/** Table 2: the paper's SDXL rows ([NF] where PAPER.md has no number); nothing of ours (no SDXL here). */
export function table2Rows(): Row[] {
  return PAPER_TABLE2.map((p) => ({
    model: p.model, "paper FID (COCO2017 5k)": p.fid, "paper CLIP": p.clip, "paper DreamDiv": p.dreamDiv, "paper DreamSim": p.dreamSim ?? NF,
    ours: "not measured: no SDXL weights or SDXL-scale world on this machine; DreamDiv and DreamSim need the DreamSim network",
  }));
}

/**
 * Table 4: our wall hours on the 2-core machine for the teacher's training (its weights' record), the ODE pairs
 * (the manifests' teacher evaluations at the measured cost of one, `teacherEvalMs`: the pair store records no time)
 * and each student's distillation (03b's training records), beside the paper's GPU-days.
 */
export function computeRows(c: ComputeInputs, teacherEvalMs: number): Row[] {
  const h = (s: number) => Math.round((1000 * s) / 3600) / 1000;
  return [
    { stage: "teacher training", ours: `${c.teacher.steps} steps`, "ours (hours, 2 CPU cores)": h(c.teacher.seconds), source: "the teacher weights' training record", "paper (A100 GPU-days)": `${NF} (SD1.5's own training)` },
    ...c.pairs.map((p) => ({
      stage: `ODE pairs CFG-${p.guidance}`, ours: `${p.count} pairs, ${p.teacherEvals.toLocaleString("en")} teacher evaluations`, "ours (hours, 2 CPU cores)": h((p.teacherEvals * teacherEvalMs) / 1000),
      source: `estimated: ${teacherEvalMs} ms per evaluation (measured; the pair manifests record no time)`, "paper (A100 GPU-days)": `${NF} (SD-CFG-${p.guidance}: ${p.guidance === 8 ? "12M" : "3M"} pairs)`,
    })),
    ...c.students.map((s) => ({
      stage: `distillation: ${s.name}`, ours: `${s.training.steps} steps (${s.training.regressionSteps} regression + ${s.training.ganSteps} GAN)`, "ours (hours, 2 CPU cores)": h(s.training.seconds),
      source: "03b's training record", "paper (A100 GPU-days)": s.name.startsWith("Diffusion2GAN") ? `${NF} ("far fewer" than InstaFlow)` : NF,
    })),
    { stage: "InstaFlow-0.9B (reference)", ours: "", "ours (hours, 2 CPU cores)": "", source: "PAPER.md [S]", "paper (A100 GPU-days)": PAPER_TABLE4.instaflowGpuDays },
  ];
}

// ---- paper scale: SD1.5 on COCO2014 ------------------------------------------------------------------------------

/** What the paper-scale run still needs from the user, as environment settings; empty when it can start. */
export function sd15Missing(c: Sd15TablesConfig): string[] {
  const need: Array<[string, string | undefined]> = [
    ["D2G_SD15_DIR (a diffusers Stable Diffusion 1.5 folder)", c.sd15],
    ["D2G_STUDENT_UNET (03b's exported student: a diffusers UNet folder with diffusion2gan.json)", c.student],
    ["D2G_FID_INCEPTION (pytorch-fid's pt_inception-2015-12-05-6726825d.pth)", c.inception],
    ["D2G_CLIP_VIT_G14 (OpenCLIP ViT-g-14 laion2b_s12b_b42k open_clip_pytorch_model.bin)", c.clip],
  ];
  const out = need.filter(([, v]) => !v || !fs.existsSync(v)).map(([k, v]) => (v ? `${k}: ${v} does not exist` : k));
  if (!c.reference) out.push("D2G_COCO2014_DIR (the COCO val2014 image folder) or D2G_COCO_FID_STATS (clean-fid statistics .npz)");
  return out;
}

/**
 * Table 1's measured rows at paper scale: SD1.5 (DDIM steps, guidance) and the distilled student, each on the
 * first `captions` of the COCO2014 30k list through GigaGAN's protocol (256 px, clean-fid Inception FID, ViT-g-14
 * CLIP score), timed at batch 1 on tfjs. onnxruntime is not timed here: SD1.5's UNet (3.4 GB in float32) is over
 * the 2 GB a single ONNX protobuf holds.
 */
export async function sd15Tables(c: Sd15TablesConfig, o: { base?: string } = {}): Promise<MeasuredRow[]> {
  const missing = sd15Missing(c);
  if (missing.length) throw new Error(`coco tables (paper scale) needs: ${missing.join("; ")}`);
  return interruptible(async () => {
    const dir = o.base ?? runDir("paper", "coco_tables");
    const inception = loadFidInception(c.inception!, "clean");
    const clip = loadOpenClip(c.clip!, "ViT-g-14");
    const sd = StableDiffusion.fromFolder(c.sd15!);
    const student = loadUNet2DConditionModel(c.student!);
    try {
      const generator = (JSON.parse(fs.readFileSync(path.join(c.student!, "diffusion2gan.json"), "utf8")) as { generator: UNet2DGeneratorConfig }).generator;
      const reference = await referenceStats(c.reference!, inception, { size: GIGAGAN_EVAL_SIZE, workDir: path.join(dir, "reference") });
      const judges: T2iJudges = {
        fid: inception, reference, referenceTag: "statsFile" in c.reference! ? path.basename(c.reference.statsFile) : `folder-${settingsKey(path.resolve(c.reference!.folder))}`,
        clip: { model: clip, tokenizer: await ClipTokenizer.load(), template: "a-photo-depicts", tag: "open_clip-ViT-g-14-laion2b_s12b_b42k" },
      };
      const captions = (await loadCoco30k()).slice(0, c.captions).map((p) => p.text);
      const gens = sd15Generators(sd, student, generator, { ...c, sd15: c.sd15!, student: c.student! });
      const rows: MeasuredRow[] = [];
      for (const g of gens) rows.push(await measure(dir, g, captions, judges, { ...c, size: GIGAGAN_EVAL_SIZE, latency: c.latency }));
      return rows;
    } finally {
      student.dispose();
      sd.dispose();
      clip.dispose();
    }
  });
}

/**
 * The paper-scale rows' generators: SD1.5 (DDIM `steps` at `guidance`) and the one-step student (G read as its
 * diffusion2gan.json says, on SD1.5's text states and scheduler), from each caption's seeded noise; images in [-1, 1].
 * `sd15` and `student` name their folders (they key the cached evaluations).
 */
export function sd15Generators(sd: StableDiffusion, student: UNet2DConditionModel, generator: UNet2DGeneratorConfig, c: { steps: number; guidance: number; sd15: string; student: string }): RowGenerator[] {
  // the UNet's sample_size (SD1.5: 64 latents, 512 px)
  const size = sd.unet.config.sample_size;
  const side = Array.isArray(size) ? size[0] : size ?? 64;
  const noise = (seeds: number[]) => tf.tidy(() => tf.concat(seeds.map((s) => sd.noise(s, 1, side, side))) as tf.Tensor4D);
  // decode gives [0, 1]; the protocol takes [-1, 1]
  const toUnit = (latents: tf.Tensor4D) => tf.tidy(() => tf.sub(tf.mul(sd.decode(latents), 2), 1) as tf.Tensor4D);
  return [
    {
      id: `sd15-ddim${c.steps}-cfg${c.guidance}`, name: `SD1.5, DDIM ${c.steps}, guidance ${c.guidance}`, nfe: 2 * c.steps, tag: path.resolve(c.sd15), teacherLike: true, onOrt: false,
      make: () => async (caps, seeds) => {
        const z = noise(seeds);
        const cond = sd.encode(caps, c.guidance);
        const out = await sd.sampleLatents(z, cond, { steps: c.steps, sampler: "ddim" });
        tf.dispose([z, cond.cond, ...(cond.guidance ? [cond.guidance.uncond] : [])]);
        const images = toUnit(out.latents);
        out.latents.dispose();
        return images;
      },
    },
    {
      id: "student", name: "Diffusion2GAN student, 1 step", nfe: 1, tag: path.resolve(c.student), teacherLike: false, onOrt: false,
      make: () => async (caps, seeds) => {
        const z = noise(seeds);
        const cond = sd.encode(caps, 1);
        const latents = generateUNet2D(student, z, cond.cond as tf.Tensor3D, generator, sd.scheduler("ddim"));
        tf.dispose([z, cond.cond]);
        const images = toUnit(latents);
        latents.dispose();
        return images;
      },
    },
  ];
}

// ---- the Result section ---------------------------------------------------------------------------------------

/**
 * The noise floor of Table 1 (figures/04_noise_floor.csv): the full-recipe student judged on a second noise draw
 * over the same captions (the evaluation's noise), beside notebook 03b's spread over training seeds of the same
 * student (its committed figures/03b_noise_floor.csv, on its 200 captions), the larger of which a difference between
 * rows must exceed to count.
 */
export function noiseFloorRows(w: Pick<WorldTables, "rows" | "floor">, seedSpread: Row[] | undefined = committedTableIfAny("03b_noise_floor")): Row[] {
  const student = w.rows.find((r) => r.id === w.floor.id.replace(/-floor$/, ""));
  if (!student) throw new Error(`coco tables: the noise floor's row ${w.floor.id} has no row it repeats`);
  const spread = (metric: string) => {
    const r = seedSpread?.find((x) => x.metric === metric);
    return r === undefined ? null : numberIn(r, "full recipe: seed spread", "03b_noise_floor");
  };
  return [
    { metric: student.eval.fidName, "evaluation noise |difference|": r2(Math.abs(w.floor.eval.fid - student.eval.fid)), "training-seed spread (03b, 200 captions)": spread("FID-wCLIP"), samples: student.eval.samples },
    ...(student.eval.clipScore === undefined || w.floor.eval.clipScore === undefined
      ? []
      : [{ metric: "CLIP score (eval CLIP)", "evaluation noise |difference|": r3(Math.abs(w.floor.eval.clipScore - student.eval.clipScore)), "training-seed spread (03b, 200 captions)": spread("CLIP score (eval CLIP)"), samples: student.eval.samples }]),
  ];
}

/** The FID floor of a noise-floor table: the larger of its evaluation noise and its training-seed spread. */
export function fidFloor(floor: Row[]): number {
  const r = floor[0];
  const seeds = r["training-seed spread (03b, 200 captions)"];
  return Math.max(numberIn(r, "evaluation noise |difference|", "04_noise_floor"), seeds === null || seeds === undefined || seeds === "" ? 0 : Number(seeds));
}

/**
 * The paper's Table 1 claims against the committed cpu-scale table (figures/04_table1.csv): the one-step student's
 * FID close to its teacher's (9.29 against 8.74: 6% above), and far better than the teacher's few-step samples;
 * the student's latency a small fraction of the teacher's.
 */
const PAPER_FEW = "Diffusion2GAN 9.29 against the few-step InstaFlow-0.9B 13.10, UFOGen 12.78, DMD 11.49 (FID-30k)";

export function claims(tables: { table1?: Row[]; floor?: Row[] } = { table1: committedTableIfAny("04_table1"), floor: committedTableIfAny("04_noise_floor") }): Claim[] {
  const table = tables.table1;
  const cClose = "The one-step Diffusion2GAN student's FID is close to its 50-step teacher's";
  const cFew = "One step of the student beats few-step sampling";
  const cFast = "The student is far faster than the teacher";
  const paperClose = "SD1.5 8.74, Diffusion2GAN 9.29 (COCO2014 FID-30k)";
  if (!table) {
    const why = "no committed cpu-scale table yet: `npm run reproduce -- 04 --update-figures` at cpu scale writes figures/04_table1.csv (after notebook 03b's cpu run)";
    return [cClose, cFew, cFast].map((claim, i) => ({ claim, paper: [paperClose, PAPER_FEW, "0.09 s per image (A100)"][i], ours: "(no committed cpu-scale table)", verdict: "not tested" as const, why }));
  }
  const ours = table.filter((r) => String(r.model).startsWith("ours: "));
  const fidCol = Object.keys(ours[0] ?? {}).find((k) => k.startsWith("FID"));
  const teachers = ours.filter((r) => String(r.model).startsWith("ours: teacher")).sort((a, b) => Number(b.NFE) - Number(a.NFE));
  const teacher = teachers[0];
  const student = ours.find((r) => String(r.model).startsWith("ours: Diffusion2GAN"));
  if (!fidCol || !teacher || !student) throw new Error("figures/04_table1.csv: needs an FID column and the rows 'ours: teacher, ...' and 'ours: Diffusion2GAN ...'");
  const tFid = numberIn(teacher, fidCol, "04_table1");
  const sf = numberIn(student, fidCol, "04_table1");
  const few = teachers.slice(1);
  const fewFids = few.map((r) => `${String(r.model).replace("ours: ", "")} ${numberIn(r, fidCol, "04_table1")}`);
  // a difference counts only beyond the floor; without a floor table, any difference counts
  const floor = tables.floor ? fidFloor(tables.floor) : 0;
  const floorText = tables.floor ? `; noise floor ${floor} (${fidCol}: the larger of the evaluation noise and 03b's training-seed spread)` : "; no noise floor (figures/04_noise_floor.csv not written yet)";
  const fewFid = few.map((r) => numberIn(r, fidCol, "04_table1"));
  const beatsFew = fewFid.every((f) => f - sf > floor);
  const beatenBy = few.filter((_, i) => sf - fewFid[i] > floor).map((r) => String(r.model).replace("ours: ", ""));
  // "close": within the paper's own relative gap doubled (6% -> 12%) or 1 FID point, whichever is larger
  const close = sf - tFid <= Math.max(1, 0.12 * tFid);
  const lat = (r: Row) => Number(r["latency onnxruntime (ms/img)"] || r["latency tfjs (ms/img)"]);
  const speedup = lat(teacher) / lat(student);
  return [
    { claim: cClose, paper: paperClose, ours: `${fidCol}: teacher ${tFid}, student ${sf} (the world's test captions)`, verdict: close ? "held" : "did not hold", why: close ? undefined : `the student is ${(sf - tFid).toFixed(2)} above the teacher (more than max(1, 12% of the teacher's)); 03b trains ${T2I_TEACHERS.cpu.pairs.count} pairs for a few hundred steps at batch 16, the paper 12M pairs for tens of thousands at batch 256` },
    {
      claim: cFew, paper: PAPER_FEW, ours: `student ${sf}; ${fewFids.join(", ")} (no distilled baseline here: the teacher with few DDIM steps stands in)${floorText}`,
      verdict: beatsFew ? "held" : "did not hold",
      why: beatsFew ? undefined : beatenBy.length ? `${beatenBy.join(", ")} beats the student beyond the floor` : "a few-step teacher row is within the noise floor of the student",
    },
    { claim: cFast, paper: "Diffusion2GAN 0.09 s per image (A100); the teacher's latency [NF]", ours: `teacher ${lat(teacher)} ms, student ${lat(student)} ms per image at batch 1 (${speedup.toFixed(0)}x)`, verdict: speedup >= 10 ? "held" : "did not hold", why: speedup >= 10 ? undefined : "less than 10x faster" },
  ];
}
