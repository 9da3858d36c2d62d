// Train the text-to-image world's attribute scorer on the TAEF2 round trips of the world's scorer split (build
// them first: npm run world -- encode), evaluate it per attribute on val and test, and write its weights and
// training log. Resumable: checkpoints in runs/scorer/<world>/.
//   node node_modules/d2g/lib/bin/train_attribute_scorer.js [--steps N] [--out FILE]
// At D2G_SCALE=cpu (default) the weights go to data/weights/attribute_scorer64.safetensors, at smoke scale to
// runs/scorer/smoke/attribute_scorer.safetensors (the committed file is never overwritten by a smoke run).
import * as path from "path";
import { formatEngine, initEngine } from "../backend/engine";
import { fromRoot } from "../core/paths";
import { Rng } from "../core/random";
import { ATTRIBUTE_SCORER, ATTRIBUTE_SCORER_WEIGHTS, AttributeAccuracy, AttributeScorer } from "../metrics/attribute_scorer";
import { evaluateScorer, SCORER_TRAINING, saveAttributeScorer, trainAttributeScorer, worldScorerData } from "../experiments/attribute_scorer_training";
import { byScale, currentScale } from "../experiments/scale";
import { T2iWorld } from "../experiments/t2i_world";

function flag(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i < 0 ? undefined : process.argv[i + 1];
}

const pct = (v: number) => (Number.isNaN(v) ? "-" : (100 * v).toFixed(2));

function table(rows: Record<string, AttributeAccuracy>): string {
  const cols = ["shape", "colour", "size", "count", "relation", "region", "texture", "tone", "objectsCorrect", "allCorrect"] as const;
  return [
    `| data | images | ${cols.join(" | ")} |`,
    `|---|---|${cols.map(() => "---").join("|")}|`,
    ...Object.entries(rows).map(([name, a]) => `| ${name} | ${a.images} | ${cols.map((c) => pct(a[c])).join(" | ")} |`),
  ].join("\n");
}

async function main(): Promise<void> {
  const engine = await initEngine();
  const scale = currentScale();
  const world = await T2iWorld.forScale(scale);
  const steps = flag("steps");
  const cfg = { ...byScale(SCORER_TRAINING, scale), ...(steps ? { steps: Number(steps) } : {}) };
  if (!(Number.isInteger(cfg.steps) && cfg.steps > 0)) throw new Error(`--steps ${steps}: expected a positive integer`);
  const out = flag("out") ?? (scale === "smoke" ? fromRoot("runs", "scorer", "smoke", "attribute_scorer.safetensors") : ATTRIBUTE_SCORER_WEIGHTS);
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
  console.log(`wrote ${out} and its .log.csv`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
