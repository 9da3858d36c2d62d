import * as tf from "@tensorflow/tfjs";
import { interruptible, Interrupted, stopRequested } from "../core/interrupt";
import { Progress } from "../core/progress";
import { Rng } from "../core/random";
import { CheckpointMeta, latestCheckpoint, loadCheckpoint, saveCheckpoint } from "./checkpoint";

// The one training loop every experiment uses: resume from the newest checkpoint, step, report progress,
// checkpoint periodically and at the end. What a step does is the caller's; what must survive a restart is
// named explicitly (variables and RNGs), so resuming continues the same run bit for bit on the same engine.
// Every step boundary yields to the event loop when due and honours a stop request (lib/core/interrupt.ts):
// the run checkpoints where it is and throws Interrupted.

export interface TrainSpec {
  label: string;
  totalSteps: number;
  /** Where checkpoints go; without one the run is not resumable. */
  ckptDir?: string;
  ckptEvery: number;
  /** Every variable the run owns (weights, EMA, optimiser moments), by stable name. */
  vars: Record<string, tf.Variable>;
  /** Every random stream the run draws from. */
  rngs: Record<string, Rng>;
  /** Restore/save scalar state that is not a tensor (e.g. the optimiser's step count). */
  extraState?: { save(): Record<string, unknown>; load(s: Record<string, unknown>): void };
  /** One update at step index `i` (0-based); returns the metrics to log. */
  step(i: number): Record<string, number>;
  /** Evaluate every `evalEvery` steps (and at the end); the returned metrics join that step's history entry. */
  evalEvery?: number;
  /** Evaluate after exactly these step counts instead (e.g. at matched network-evaluation budgets). */
  evalAt?: number[];
  evaluate?(stepsDone: number): Promise<Record<string, number>>;
  /** Also evaluate before the first step (a history entry with step 0) when the run starts from scratch. */
  evalAtStart?: boolean;
  /** Called after a checkpoint or at the end (e.g. to redraw a live loss curve). */
  onCheckpoint?(history: Array<Record<string, number>>): void | Promise<void>;
}

export interface TrainResult {
  history: Array<Record<string, number>>;
  resumedFrom: number;
  /** Wall time per step of this session, evaluations and checkpoints included. */
  secondsPerStep: number;
  /** Mean time of one step (the spec's step() alone) over every session of the run, resumed ones included. */
  msPerStep: number;
  /** Wall time of the whole run, the interrupted parts before a resume included. */
  seconds: number;
  /** Live tensors after the first step and at the end: equal unless a step leaks. */
  tensorsAfterFirstStep: number;
  tensorsAtEnd: number;
}

export async function runTraining(spec: TrainSpec): Promise<TrainResult> {
  return interruptible(() => trainLoop(spec));
}

async function trainLoop(spec: TrainSpec): Promise<TrainResult> {
  let history: Array<Record<string, number>> = [];
  let start = 0;
  // time inside step() summed over the steps it covers, kept in the checkpoint so a resumed run reports all of it
  let timed = { ms: 0, steps: 0 };
  let secondsBefore = 0;
  const latest = spec.ckptDir ? latestCheckpoint(spec.ckptDir) : undefined;
  if (latest) {
    const meta = loadCheckpoint(latest, spec.vars);
    for (const [k, r] of Object.entries(spec.rngs)) {
      if (meta.rngs[k] === undefined) throw new Error(`${latest}: checkpoint lacks the state of RNG '${k}'`);
      r.state = meta.rngs[k];
    }
    spec.extraState?.load(meta);
    history = meta.history;
    start = meta.step;
    if (meta.stepTime) timed = meta.stepTime as typeof timed;
    secondsBefore = Number(meta.trainSeconds ?? 0);
  }
  const t0 = Date.now();
  const seconds = () => secondsBefore + (Date.now() - t0) / 1000;
  const save = async (step: number, trainSeconds = seconds()) => {
    if (!spec.ckptDir) return;
    const meta: CheckpointMeta = { ...(spec.extraState?.save() ?? {}), step, history, stepTime: timed, trainSeconds, rngs: Object.fromEntries(Object.entries(spec.rngs).map(([k, r]) => [k, r.state])) };
    await saveCheckpoint(spec.ckptDir, spec.vars, meta);
    await spec.onCheckpoint?.(history);
  };
  if (start === 0 && spec.evalAtStart && spec.evaluate) history.push({ step: 0, ...(await spec.evaluate(0)) });
  const progress = new Progress(spec.label, spec.totalSteps - start);
  let tensorsAfterFirstStep = -1;
  for (let i = start; i < spec.totalSteps; i++) {
    const t = performance.now();
    const metrics = spec.step(i);
    timed = { ms: timed.ms + performance.now() - t, steps: timed.steps + 1 };
    const due = spec.evalAt ? spec.evalAt.includes(i + 1) : !!spec.evalEvery && ((i + 1) % spec.evalEvery === 0 || i + 1 === spec.totalSteps);
    const evaluated = spec.evaluate && due ? await spec.evaluate(i + 1) : {};
    history.push({ step: i + 1, ...metrics, ...evaluated });
    if (tensorsAfterFirstStep < 0) tensorsAfterFirstStep = tf.memory().numTensors;
    progress.tick(1, { ...metrics, ...evaluated });
    if (i + 1 === spec.totalSteps) break;
    const periodic = (i + 1) % spec.ckptEvery === 0;
    if (periodic) await save(i + 1);
    if (await stopRequested()) {
      if (!periodic) await save(i + 1);
      const kept = spec.ckptDir ? `checkpoint kept in ${spec.ckptDir}; run it again to resume` : "no checkpoint folder was given, so nothing was kept";
      throw new Interrupted(`${spec.label} stopped at step ${i + 1} of ${spec.totalSteps}; ${kept}`);
    }
  }
  const steps = spec.totalSteps - start;
  // the run reports the time its last checkpoint records, so a run resumed from it never reports less
  const total = seconds();
  if (steps > 0) await save(spec.totalSteps, total);
  progress.finish();
  return {
    history,
    resumedFrom: start,
    secondsPerStep: steps > 0 ? (Date.now() - t0) / 1000 / steps : 0,
    msPerStep: timed.steps > 0 ? timed.ms / timed.steps : 0,
    seconds: total,
    tensorsAfterFirstStep,
    tensorsAtEnd: tf.memory().numTensors,
  };
}
