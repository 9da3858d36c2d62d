// npm run notebooks -- [FILTER ...] [--dir DIR] [--out DIR]
// Executes notebooks headless at the scale of D2G_SCALE (smoke | cpu | paper, default cpu), in name order, with
// Jupyter's nbclient (the engine of `jupyter nbconvert --execute`) and the tslab kernel; executed copies go to
// runs/notebooks/<scale>/, never over the sources. Stops at the first failing notebook, exit status 1, after printing
// the failing cell with its outputs: tslab reports a cell's error only there, so nbconvert's own report would
// show the cell without the error (see execute_notebook.py).

import { spawn, spawnSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { fromRoot } from "../core/paths";
import { byScale, currentScale } from "../experiments/scale";

const USAGE = `usage: npm run notebooks -- [FILTER ...] [--dir DIR] [--out DIR]
  FILTER     run only notebooks whose file name contains one of these strings
  --dir DIR  notebooks folder (default: notebooks/, or D2G_NOTEBOOKS_DIR)
  --out DIR  where executed copies go (default: runs/notebooks/<scale>/)
env: D2G_SCALE (smoke | cpu | paper, default cpu) is inherited by the kernel; at smoke, figures and tables go to
<out>/figures unless D2G_FIGURES says otherwise, so a CI run leaves the committed figures/ alone.`;

const PYTHON = "/usr/bin/python3";
const KERNEL = "tslab";

/** nbconvert's limit for one cell, seconds. */
const CELL_TIMEOUT_S = byScale({ smoke: 300, cpu: 4 * 3600, paper: 48 * 3600 });

const SETUP_HINT = "run `npm run setup` (installs Jupyter from Debian and registers the tslab kernel)";

function checkJupyter(): string {
  if (!fs.existsSync(PYTHON)) throw new Error(`${PYTHON} not found: ${SETUP_HINT}`);
  const probe = spawnSync(
    PYTHON,
    ["-c", `import nbclient; from jupyter_client.kernelspec import KernelSpecManager as K; print(K().get_kernel_spec("${KERNEL}").argv[0])`],
    { encoding: "utf8" },
  );
  if (probe.status !== 0) {
    throw new Error(`Jupyter (nbclient) or its "${KERNEL}" kernel is missing for ${PYTHON}: ${SETUP_HINT}\n${probe.stderr.trim()}`);
  }
  const binary = probe.stdout.trim();
  if (!fs.existsSync(binary)) throw new Error(`the "${KERNEL}" kernel starts ${binary}, which does not exist (checkout moved?): ${SETUP_HINT}`);
  return binary;
}

function parseArgs(argv: string[]): { filters: string[]; dir: string; out?: string } {
  const filters: string[] = [];
  let dir = process.env.D2G_NOTEBOOKS_DIR ?? fromRoot("notebooks");
  let out: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--dir" || a === "--out") {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a folder\n${USAGE}`);
      if (a === "--dir") dir = v;
      else out = v;
    } else if (a.startsWith("-")) throw new Error(`unknown option ${a}\n${USAGE}`);
    else filters.push(a);
  }
  return { filters, dir: path.resolve(dir), out: out && path.resolve(out) };
}

function execute(nb: string, outDir: string, env: NodeJS.ProcessEnv): Promise<number> {
  const args = [fromRoot("lib", "bin", "execute_notebook.py"), nb, outDir, KERNEL, String(CELL_TIMEOUT_S)];
  // The driver's per-cell lines and failure report go straight to our log.
  const child = spawn(PYTHON, args, { stdio: ["ignore", "inherit", "inherit"], env });
  return new Promise((resolve, reject) => {
    child.on("error", reject);
    child.on("exit", (code, signal) => resolve(code ?? (signal ? 128 : 1)));
  });
}

async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  if (argv.includes("--help") || argv.includes("-h")) {
    console.log(USAGE);
    return 0;
  }
  const scale = currentScale();
  const { filters, dir, out } = parseArgs(argv);
  const outDir = out ?? fromRoot("runs", "notebooks", scale);
  if (!fs.existsSync(dir)) throw new Error(`notebooks folder ${dir} does not exist`);
  const all = fs.readdirSync(dir).filter((f) => f.endsWith(".ipynb")).sort();
  const chosen = filters.length ? all.filter((f) => filters.some((s) => f.includes(s))) : all;
  if (chosen.length === 0) throw new Error(`no notebooks in ${dir}${filters.length ? ` match ${filters.join(", ")}` : ""}`);
  if (path.resolve(outDir) === dir) throw new Error(`--out must differ from the notebooks folder (${dir}): executed copies never replace the sources`);

  const kernelBinary = checkJupyter();
  fs.mkdirSync(outDir, { recursive: true });
  const env: NodeJS.ProcessEnv = { ...process.env, D2G_SCALE: scale };
  if (scale === "smoke" && !env.D2G_FIGURES) env.D2G_FIGURES = path.join(outDir, "figures");
  console.log(`notebooks: ${chosen.length} at scale ${scale}, kernel ${KERNEL} (${kernelBinary}), cell timeout ${CELL_TIMEOUT_S}s`);
  console.log(`executed copies: ${outDir}${env.D2G_FIGURES ? `, figures: ${env.D2G_FIGURES}` : ""}`);

  const t0 = Date.now();
  for (const [k, name] of chosen.entries()) {
    const tag = `[${k + 1}/${chosen.length}] ${name}`;
    console.log(`${tag} running`);
    const start = Date.now();
    const code = await execute(path.join(dir, name), outDir, env);
    const secs = ((Date.now() - start) / 1000).toFixed(1);
    if (code !== 0) {
      console.error(`${tag} FAILED after ${secs}s (exit ${code}; the failing cell and its outputs are above)`);
      return 1;
    }
    console.log(`${tag} ok in ${secs}s -> ${path.join(outDir, name)}`);
  }
  console.log(`all ${chosen.length} notebooks ok in ${((Date.now() - t0) / 1000).toFixed(1)}s`);
  return 0;
}

main().then(
  (code) => (process.exitCode = code),
  (e: Error) => {
    console.error(`run_notebooks: ${e.message}`);
    process.exitCode = 1;
  },
);
