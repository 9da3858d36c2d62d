// Train the text-to-image world's attribute scorer on the TAEF2 round trips of the world's scorer split (build
// them first: npm run world -- encode), evaluate it per attribute on val and test, and write its weights and
// training log. Resumable: checkpoints in runs/scorer/<world>/.
//   npm run train:scorer [-- --steps N] [-- --out FILE]
// The weights go to runs/scorer/<world>/out/attribute_scorer.safetensors; `--out data/weights/attribute_scorer64.safetensors`
// replaces the committed ones (the file the experiments load, ATTRIBUTE_SCORER_WEIGHTS).
import * as path from "path";
import { formatEngine, initEngine } from "../backend/engine";
import { fromRoot } from "../core/paths";
import { Rng } from "../core/random";
import { ATTRIBUTE_SCORER, ATTRIBUTE_SCORER_WEIGHTS, AttributeAccuracy, AttributeScorer } from "../metrics/attribute_scorer";
import { evaluateScorer, SCORER_TRAINING, saveAttributeScorer, trainAttributeScorer, worldScorerData } from "../experiments/attribute_scorer_training";
import { byScale, currentScale } from "../experiments/scale";
import { T2iWorld } from "../experiments/t2i_world";
import { runCli } from "./args";

const SPEC = {
  command: "npm run train:scorer --",
  summary: "Train the text-to-image world's attribute scorer on TAEF2 round trips (resumable) and report per-attribute accuracy.",
  flags: {
    steps: { type: "int", min: 1, max: 10_000_000, help: "training steps (default: the scale's)" },
    out: { type: "string", arg: "FILE", help: "where the weights go (default runs/scorer/<world>/out/attribute_scorer.safetensors)" },
  },
} as const;

const pct = (v: number) => (Number.isNaN(v) ? "-" : (100 * v).toFixed(2));

function table(rows: Record<string, AttributeAccuracy>): string {
  const cols = ["shape", "colour", "size", "count", "relation", "region", "texture", "tone", "objectsCorrect", "allCorrect"] as const;
  return [
    `| data | images | ${cols.join(" | ")} |`,
    `|---|---|${cols.map(() => "---").join("|")}|`,
    ...Object.entries(rows).map(([name, a]) => `| ${name} | ${a.images} | ${cols.map((c) => pct(a[c])).join(" | ")} |`),
  ].join("\n");
}

runCli(SPEC, async ({ flags }) => {
  const engine = await initEngine();
  const scale = currentScale();
  const world = await T2iWorld.forScale(scale);
  const cfg = { ...byScale(SCORER_TRAINING, scale), ...(flags.steps ? { steps: flags.steps } : {}) };
  const out = flags.out ?? fromRoot("runs", "scorer", world.config.name, "out", "attribute_scorer.safetensors");
  const data = await worldScorerData(world, "scorer");
  console.log(`attribute scorer: ${data.scenes.length} round-tripped scorer scenes of world ${world.config.name}, ${cfg.steps} steps of ${cfg.batch}`);
  const scorer = new AttributeScorer({ ...ATTRIBUTE_SCORER, imageSize: world.config.imageSize }, new Rng(cfg.seed));
  const run = await trainAttributeScorer(scorer, data, cfg, fromRoot("runs", "scorer", world.config.name));
  const acc: Record<string, AttributeAccuracy> = {
    "test (TAEF2 round trip)": await evaluateScorer(scorer, await worldScorerData(world, "test")),
    "val (TAEF2 round trip)": await evaluateScorer(scorer, await worldScorerData(world, "val")),
    "test (rendered)": await evaluateScorer(scorer, await worldScorerData(world, "test", { clean: true })),
  };
  console.log(`${cfg.steps} steps in ${run.seconds.toFixed(0)} s (resumed from step ${run.resumedFrom}); accuracy (%):\n${table(acc)}`);
  await saveAttributeScorer(out, scorer, {
    description: `attribute scorer of the text-to-image world (${world.config.imageSize} px), trained on ${data.scenes.length} TAEF2 round trips of its scorer split`,
    training: cfg,
    data: { world: world.config.name, seed: world.config.seed, imageSize: world.config.imageSize, scorerScenes: data.scenes.length, cache: path.basename(world.cache.dir) },
    accuracy: acc,
    steps: cfg.steps,
    seconds: run.seconds.toFixed(0),
    parameters: scorer.numParameters(),
    engine: formatEngine(engine).replace(/^engine: /, ""),
    created: new Date().toISOString(),
  }, run);
  console.log(`wrote ${out} and its .log.csv${out === ATTRIBUTE_SCORER_WEIGHTS ? "" : ` (the experiments load ${ATTRIBUTE_SCORER_WEIGHTS}: pass --out there to replace it)`}`);
});
