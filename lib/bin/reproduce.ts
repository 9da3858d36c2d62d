// npm run reproduce -- [FILTER ...] [--update-figures] [--plan] [--dir DIR] [--out DIR]
// Runs the notebooks headless at the scale of D2G_SCALE, in name order, with Jupyter's nbclient (the engine of
// `jupyter nbconvert --execute`) and this checkout's tslab kernel (lib/bin/setup.sh); `npm run notebooks` is the
// same runner. First it says what it will run and how long each notebook should take (lib/experiments/plan.ts);
// while a notebook runs, each long loop's progress reaches the terminal as plain lines from the kernel
// (D2G_PROGRESS_LINES, lib/core/progress.ts); at the end, a table of times and the files each notebook wrote.
// Executed notebooks, figures and tables go to runs/<scale>/ and the experiments keep their run state under runs/,
// so a run never touches tracked files unless --update-figures asks for the committed figures/.
// A failing cell stops the run (exit 1) after printing the cell and its outputs: tslab reports a cell's error
// only there (see execute_notebook.py). Ctrl-C stops it (exit 130) with one line saying what was kept and how to
// resume; a rerun resumes from the run state the experiments keep.

import { spawn, spawnSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { fromRoot } from "../core/paths";
import { formatDuration } from "../core/progress";
import { notebookPlan } from "../experiments/plan";
import { chromiumPath } from "../viz/plot";
import { byScale, currentScale, Scale } from "../experiments/scale";

const USAGE = `usage: npm run reproduce -- [FILTER ...] [--update-figures] [--plan] [--dir DIR] [--out DIR]
       npm run notebooks -- ...  (the same command)
  FILTER            run only notebooks whose file name contains one of these strings
  --update-figures  write figures and tables into the committed figures/ and the executed notebooks into
                    notebooks/executed/ (cpu scale only: the committed results are the cpu-scale ones)
  --plan            print what would run and its estimated duration, run nothing
  --dir DIR         notebooks folder (default: notebooks/, or D2G_NOTEBOOKS_DIR)
  --out DIR         where executed notebooks go (default: runs/<scale>/notebooks/)
env: D2G_SCALE (smoke | cpu | paper, default cpu), inherited by the kernel; D2G_FIGURES overrides where figures and
tables go (default: runs/<scale>/figures/).`;

const PYTHON = "/usr/bin/python3";
const KERNEL = "tslab";
/** Seconds between two progress lines of one loop on the terminal. */
const PROGRESS_LINE_S = "5";

/** Bad arguments or settings: exit status 2, with the usage text where the arguments were at fault. */
class UsageError extends Error {
  constructor(message: string, readonly showUsage = true) {
    super(message);
  }
}

export interface RunArgs {
  filters: string[];
  updateFigures: boolean;
  planOnly: boolean;
  dir: string;
  /** --dir was given (else dir is the default). */
  dirGiven: boolean;
  out?: string;
}

export function parseArgs(argv: readonly string[], env: Record<string, string | undefined> = process.env): RunArgs {
  const args: RunArgs = { filters: [], updateFigures: false, planOnly: false, dir: path.resolve(env.D2G_NOTEBOOKS_DIR ?? fromRoot("notebooks")), dirGiven: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--dir" || a === "--out") {
      const v = argv[++i];
      if (v === undefined || v.startsWith("-")) throw new UsageError(`${a} needs a folder`);
      if (a === "--dir") {
        args.dir = path.resolve(v);
        args.dirGiven = true;
      } else args.out = path.resolve(v);
    } else if (a === "--update-figures") args.updateFigures = true;
    else if (a === "--plan") args.planOnly = true;
    else if (a.startsWith("-")) throw new UsageError(`unknown option ${a}`);
    else args.filters.push(a);
  }
  return args;
}

/** The notebooks to run, in name order; a filter that matches nothing lists the notebooks there are. */
export function chooseNotebooks(dir: string, filters: readonly string[]): string[] {
  if (!fs.existsSync(dir)) throw new UsageError(`notebooks folder ${dir} does not exist`, false);
  const all = fs.readdirSync(dir).filter((f) => f.endsWith(".ipynb") && !/\.(failed|stopped)\.ipynb$/.test(f)).sort();
  if (all.length === 0) throw new UsageError(`no notebooks in ${dir}`, false);
  const unmatched = filters.filter((s) => !all.some((f) => f.includes(s)));
  if (unmatched.length) {
    throw new UsageError(`no notebook matches ${unmatched.map((s) => JSON.stringify(s)).join(", ")}; the notebooks in ${dir} are:\n  ${all.map((f) => f.replace(/\.ipynb$/, "")).join("\n  ")}`, false);
  }
  return filters.length ? all.filter((f) => filters.some((s) => f.includes(s))) : all;
}

/** The plan as printed before the run: one line per notebook with its estimate and what it runs. */
export function planLines(notebooks: readonly string[], scale: Scale): string[] {
  const stems = notebooks.map((n) => n.replace(/\.ipynb$/, ""));
  const width = Math.max(...stems.map((s) => s.length), 5);
  let total = 0;
  let unknown = 0;
  const lines = stems.map((stem) => {
    const plan = notebookPlan(stem, scale);
    if (!plan) {
      unknown++;
      return `  ${stem.padEnd(width)}  ${"?".padStart(7)}  (no estimate for this notebook)`;
    }
    total += plan.seconds;
    return `  ${stem.padEnd(width)}  ${("~" + formatDuration(plan.seconds)).padStart(7)}  ${plan.summary}`;
  });
  lines.push(`  ${"total".padEnd(width)}  ${("~" + formatDuration(total)).padStart(7)}${unknown ? `  (+ ${unknown} without an estimate)` : ""}`);
  return lines;
}

/** The command that runs the notebooks not yet done, with the same scale and options. */
export function resumeCommand(scale: Scale, args: RunArgs, rest: readonly string[], all: readonly string[]): string {
  const stems = all.map((n) => n.replace(/\.ipynb$/, ""));
  // the shortest filter that names each notebook: its number when that is unique, else its whole name
  const names = rest.map((n) => {
    const stem = n.replace(/\.ipynb$/, "");
    const prefix = stem.split("_")[0];
    return stems.filter((s) => s.includes(prefix)).length === 1 ? prefix : stem;
  });
  const options = [args.updateFigures ? "--update-figures" : "", args.dirGiven ? `--dir ${args.dir}` : "", args.out ? `--out ${args.out}` : ""].filter(Boolean);
  return `${scale === "cpu" ? "" : `D2G_SCALE=${scale} `}npm run reproduce -- ${[...options, ...names].join(" ")}`;
}

/**
 * What setup provides: nbclient, Chromium, and this checkout's kernel spec (found through JUPYTER_PATH); runs
 * setup once when any of them is missing.
 */
function checkSetup(env: NodeJS.ProcessEnv): string {
  const launcher = fromRoot("lib", "bin", "tslab-kernel");
  const probe = () =>
    spawnSync(PYTHON, ["-c", `import nbclient; from jupyter_client.kernelspec import KernelSpecManager as K; print(K().get_kernel_spec("${KERNEL}").argv[0])`], { encoding: "utf8", env });
  const ok = (r: ReturnType<typeof probe>) => r.status === 0 && r.stdout.trim() === launcher && fs.existsSync(chromiumPath());
  let r = fs.existsSync(PYTHON) ? probe() : undefined;
  if (!r || !ok(r)) {
    console.log(`reproduce: Jupyter, Chromium or this checkout's kernel is not set up; running \`npm run setup\``);
    const setup = spawnSync("bash", [fromRoot("lib", "bin", "setup.sh")], { stdio: "inherit" });
    if (setup.status !== 0) throw new Error(`npm run setup failed (exit ${setup.status}); see its messages above`);
    r = probe();
    if (!ok(r)) throw new Error(`after setup, the "${KERNEL}" kernel does not start ${launcher} or ${chromiumPath()} is missing: ${(r.stderr || r.stdout).trim()}`);
  }
  return launcher;
}

/** Files under dir (recursively) with their modification times, to tell which ones a notebook wrote. */
function snapshot(dir: string): Map<string, number> {
  const out = new Map<string, number>();
  if (!fs.existsSync(dir)) return out;
  for (const e of fs.readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (!e.isFile()) continue;
    const p = path.join(e.parentPath, e.name);
    out.set(path.relative(dir, p), fs.statSync(p).mtimeMs);
  }
  return out;
}

function written(before: Map<string, number>, after: Map<string, number>): string[] {
  return [...after].filter(([f, t]) => before.get(f) !== t).map(([f]) => f).sort();
}

/** --update-figures: the executed copy also goes to <notebooks>/executed/, where it is committed. */
function copyExecuted(outDir: string, dir: string, name: string): void {
  fs.mkdirSync(path.join(dir, "executed"), { recursive: true });
  fs.copyFileSync(path.join(outDir, name), path.join(dir, "executed", name));
}

interface Outcome {
  notebook: string;
  seconds: number;
  estimate?: number;
  files: string[];
}

async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  if (argv.includes("--help") || argv.includes("-h")) {
    console.log(USAGE);
    return 0;
  }
  const args = parseArgs(argv);
  let scale: Scale;
  try {
    scale = currentScale();
  } catch (e) {
    throw new UsageError((e as Error).message, false);
  }
  if (args.updateFigures && scale !== "cpu") {
    throw new UsageError(`--update-figures writes the committed figures/, which hold the cpu-scale results; D2G_SCALE is ${scale}`, false);
  }
  const chosen = chooseNotebooks(args.dir, args.filters);
  const runDir = fromRoot("runs", scale);
  const outDir = args.out ?? path.join(runDir, "notebooks");
  if (outDir === args.dir) throw new UsageError(`--out must differ from the notebooks folder (${args.dir}): executed copies never replace the sources`, false);
  const figures = args.updateFigures ? fromRoot("figures") : path.resolve(process.env.D2G_FIGURES ?? path.join(runDir, "figures"));

  console.log(`reproduce: ${chosen.length} notebook${chosen.length === 1 ? "" : "s"} at scale ${scale}; estimates from the configs and costs measured with wasm on 2 cores (lib/experiments/plan.ts):`);
  for (const line of planLines(chosen, scale)) console.log(line);
  // the experiments keep their checkpoints under runs/ (per scale); nothing here deletes them
  const runState = fromRoot("runs");
  console.log(`executed notebooks: ${outDir}\nfigures and tables: ${figures}\nrun state: ${runState} (kept between runs: a rerun resumes)`);
  if (args.planOnly) return 0;

  const env: NodeJS.ProcessEnv = {
    ...process.env,
    D2G_SCALE: scale,
    D2G_FIGURES: figures,
    D2G_PROGRESS_LINES: process.env.D2G_PROGRESS_LINES ?? PROGRESS_LINE_S,
    JUPYTER_PATH: [fromRoot(".jupyter"), process.env.JUPYTER_PATH].filter(Boolean).join(path.delimiter),
  };
  checkSetup(env);
  fs.mkdirSync(outDir, { recursive: true });

  // The driver runs in its own process group: a Ctrl-C reaches this process only, which passes one signal on.
  let child: ReturnType<typeof spawn> | undefined;
  let stopped = false;
  const onSignal = (sig: NodeJS.Signals) => {
    stopped = true;
    child?.kill(sig);
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);

  const cellTimeout = byScale({ smoke: 300, cpu: 4 * 3600, paper: 48 * 3600 }, scale);
  const outcomes: Outcome[] = [];
  const t0 = Date.now();
  for (const [k, name] of chosen.entries()) {
    if (stopped) break;
    const tag = `[${k + 1}/${chosen.length}] ${name}`;
    console.log(`${tag} running`);
    const before = snapshot(figures);
    const start = Date.now();
    child = spawn(PYTHON, [fromRoot("lib", "bin", "execute_notebook.py"), path.join(args.dir, name), outDir, KERNEL, String(cellTimeout)], {
      stdio: ["ignore", "inherit", "inherit"],
      env,
      detached: true,
    });
    const code = await new Promise<number>((resolve, reject) => {
      child!.on("error", reject);
      child!.on("exit", (c, signal) => resolve(c ?? (signal ? 128 : 1)));
    });
    child = undefined;
    const seconds = (Date.now() - start) / 1000;
    if (stopped || code === 130) {
      const stem = name.replace(/\.ipynb$/, "");
      const kept = [
        outcomes.length ? `finished ${outcomes.map((o) => o.notebook.replace(/\.ipynb$/, "")).join(", ")} (${outDir})` : "",
        fs.existsSync(path.join(outDir, `${stem}.stopped.ipynb`)) ? `the partly executed ${path.join(outDir, `${stem}.stopped.ipynb`)}` : "",
        `the run state in ${runState}`,
      ].filter(Boolean);
      console.error(`reproduce: stopped during ${stem} after ${formatDuration(seconds)}; kept ${kept.join(", ")}; resume with: ${resumeCommand(scale, args, chosen.slice(k), chosen)}`);
      return 130;
    }
    if (code !== 0) {
      console.error(`${tag} FAILED after ${formatDuration(seconds)} (exit ${code}; the failing cell and its outputs are above)`);
      return 1;
    }
    console.log(`${tag} ok in ${formatDuration(seconds)}`);
    // copied as each finishes, so a stopped run keeps the ones it completed
    if (args.updateFigures) copyExecuted(outDir, args.dir, name);
    outcomes.push({ notebook: name, seconds, estimate: notebookPlan(name.replace(/\.ipynb$/, ""), scale)?.seconds, files: written(before, snapshot(figures)) });
  }
  if (stopped) {
    console.error(`reproduce: stopped before running any notebook`);
    return 130;
  }

  const width = Math.max(...outcomes.map((o) => o.notebook.length - 6), 8);
  console.log(`\nreproduce: ${outcomes.length} notebook${outcomes.length === 1 ? "" : "s"} at scale ${scale} in ${formatDuration((Date.now() - t0) / 1000)}`);
  console.log(`  ${"notebook".padEnd(width)}  ${"time".padStart(7)}  ${"planned".padStart(7)}  figures and tables in ${figures}`);
  for (const o of outcomes) {
    const est = o.estimate === undefined ? "?" : formatDuration(o.estimate);
    console.log(`  ${o.notebook.replace(/\.ipynb$/, "").padEnd(width)}  ${formatDuration(o.seconds).padStart(7)}  ${est.padStart(7)}  ${o.files.join(" ") || "(none)"}`);
  }
  console.log(`executed notebooks: ${outDir}${args.updateFigures ? ` (copied to ${path.join(args.dir, "executed")})` : ""}`);
  return 0;
}

if (require.main === module) {
  main().then(
    (code) => (process.exitCode = code),
    (e: Error) => {
      const usage = e instanceof UsageError && e.showUsage ? `\n${USAGE}` : "";
      console.error(`reproduce: ${e.message}${usage}`);
      process.exitCode = e instanceof UsageError ? 2 : 1;
    },
  );
}
