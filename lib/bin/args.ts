import { describeOption, OptionSpec, optionValid } from "../core/options";

// The command-line parser every entry point in lib/bin uses: typed flags (int, number, string, bool, enum, with
// ranges) declared once, from which both the parsing and the usage text come. An unknown flag, a missing value, a
// value of the wrong type or out of range, or a wrong number of positional arguments prints the problem and the
// usage on stderr and exits with status 2 before any work starts; --help prints the usage and exits 0.

export type FlagSpec = OptionSpec & {
  help: string;
  default?: number | string | boolean;
  /** Placeholder of the value in the usage text, e.g. N or DIR. */
  arg?: string;
};

export interface PositionalSpec {
  /** Placeholder in the usage text, e.g. NAME. */
  name: string;
  help: string;
  min: number;
  max: number;
  /** The only values allowed, if any. */
  values?: readonly string[];
}

export interface CliSpec {
  /** How it is run, e.g. "npm run train:teacher --". */
  command: string;
  /** What it does, one or two lines. */
  summary: string;
  flags: Record<string, FlagSpec>;
  positionals?: PositionalSpec;
  /** Trailing lines of the usage, e.g. environment variables. */
  notes?: string;
}

/** Bad command-line input; runCli prints it with the usage and exits 2. Throw it from main for checks the
 * flag types cannot express (a value that must be a multiple of 8, two flags that exclude each other). */
export class UsageError extends Error {
  override name = "UsageError";
}

type ValueOf<F> = F extends { type: "int" | "number" } ? number : F extends { type: "bool" } ? boolean : F extends { values: readonly (infer V)[] } ? V : string;

export type Flags<S extends Record<string, FlagSpec>> = {
  [K in keyof S]: S[K] extends { type: "bool" } ? boolean : S[K] extends { default: number | string } ? ValueOf<S[K]> : ValueOf<S[K]> | undefined;
};

export interface Parsed<S extends CliSpec> {
  flags: Flags<S["flags"]>;
  positionals: string[];
}

function flagArg(f: FlagSpec): string {
  return f.arg ?? (f.type === "int" || f.type === "number" ? "N" : f.type === "enum" ? f.values.join("|") : "VALUE");
}

export function usage(spec: CliSpec): string {
  const flags = Object.entries(spec.flags).map(([name, f]) => `--${name}${f.type === "bool" ? "" : ` ${flagArg(f)}`}`);
  const pos = spec.positionals;
  const more = pos?.max === Infinity ? " ..." : "";
  const posText = pos ? (pos.min === 0 ? `[${pos.name}${more}]` : `${pos.name}${more}`) : "";
  const rows: Array<[string, string]> = [];
  if (pos) rows.push([pos.name, pos.help + (pos.values ? ` (${pos.values.join(", ")})` : "")]);
  Object.values(spec.flags).forEach((f, i) => {
    const detail = f.type === "bool" || f.type === "string" ? "" : describeOption(f);
    const dflt = f.default !== undefined ? `default ${f.default}` : "";
    const extra = [detail, dflt].filter(Boolean).join("; ");
    rows.push([flags[i], f.help + (extra ? ` (${extra})` : "")]);
  });
  rows.push(["--help", "print this help and exit"]);
  const width = Math.max(...rows.map(([a]) => a.length)) + 2;
  return [
    `usage: ${spec.command} ${[posText, ...flags.map((f) => `[${f}]`)].filter(Boolean).join(" ")}`,
    spec.summary,
    ...rows.map(([a, b]) => `  ${a.padEnd(width)}${b}`),
    ...(spec.notes ? [spec.notes] : []),
  ].join("\n");
}

function parseValue(name: string, f: FlagSpec, text: string): number | string | boolean {
  const bad = () => new UsageError(`--${name} ${JSON.stringify(text)}: expected ${describeOption(f)}`);
  let value: number | string;
  if (f.type === "int") {
    if (!/^[+-]?\d+$/.test(text)) throw bad();
    value = Number(text);
  } else if (f.type === "number") {
    value = text.trim() === "" ? NaN : Number(text);
  } else value = text;
  if (!optionValid(value, f) || (f.type === "string" && text === "")) throw bad();
  return value;
}

/** Parse argv (without node and the script) against `spec`; "help" if --help or -h was given. */
export function parseArgs<const S extends CliSpec>(spec: S, argv: readonly string[]): Parsed<S> | "help" {
  const end = argv.indexOf("--");
  const options = end < 0 ? argv : argv.slice(0, end);
  // --help wins over anything else on the line, even bad arguments before it
  if (options.includes("--help") || options.includes("-h")) return "help";
  const flags: Record<string, number | string | boolean | undefined> = {};
  const positionals: string[] = [];
  let onlyPositionals = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (onlyPositionals || !a.startsWith("-") || a === "-") {
      positionals.push(a);
      continue;
    }
    if (a === "--") {
      onlyPositionals = true;
      continue;
    }
    const eq = a.indexOf("=");
    const name = a.startsWith("--") ? a.slice(2, eq < 0 ? undefined : eq) : "";
    const f = Object.prototype.hasOwnProperty.call(spec.flags, name) ? spec.flags[name] : undefined;
    if (!f) throw new UsageError(`unknown option ${eq < 0 ? a : a.slice(0, eq)}`);
    if (name in flags) throw new UsageError(`--${name} is given twice`);
    if (f.type === "bool") {
      if (eq >= 0) throw new UsageError(`--${name} takes no value`);
      flags[name] = true;
      continue;
    }
    let text: string;
    if (eq >= 0) text = a.slice(eq + 1);
    else {
      const next = argv[i + 1];
      if (next === undefined || next.startsWith("--")) throw new UsageError(`--${name} needs a value (${describeOption(f)})`);
      text = next;
      i++;
    }
    flags[name] = parseValue(name, f, text);
  }
  for (const [name, f] of Object.entries(spec.flags)) {
    if (name in flags) continue;
    if (f.default !== undefined && !optionValid(f.default, f)) throw new Error(`${spec.command}: the default of --${name} (${f.default}) is not ${describeOption(f)}`);
    flags[name] = f.type === "bool" ? false : f.default;
  }
  const pos = spec.positionals ?? { name: "", help: "", min: 0, max: 0 };
  if (positionals.length < pos.min || positionals.length > pos.max) {
    const count = pos.min === pos.max ? `${pos.min}` : pos.max === Infinity ? `at least ${pos.min}` : `${pos.min} to ${pos.max}`;
    const want = pos.max === 0 ? "no arguments" : `${count} argument${pos.max === 1 ? "" : "s"} (${pos.name})`;
    throw new UsageError(`expected ${want}, got ${positionals.length === 0 ? "none" : positionals.map((p) => JSON.stringify(p)).join(" ")}`);
  }
  const wrong = pos.values ? positionals.find((p) => !pos.values!.includes(p)) : undefined;
  if (wrong !== undefined) throw new UsageError(`${pos.name} ${JSON.stringify(wrong)}: expected one of ${pos.values!.join(", ")}`);
  return { flags: flags as Flags<S["flags"]>, positionals };
}

/**
 * Parse process.argv against `spec` and run `main` with the result. Bad arguments (or a UsageError from main):
 * the problem and the usage on stderr, exit 2. --help: the usage on stdout, exit 0. Any other failure: its message
 * (the stack too for a programming error) on stderr, exit 1. Otherwise main's return value is the exit status.
 */
export function runCli<const S extends CliSpec>(spec: S, main: (args: Parsed<S>) => Promise<number | void> | number | void): void {
  const fail = (e: unknown): void => {
    if (e instanceof UsageError) {
      process.stderr.write(`${e.message}\n\n${usage(spec)}\n`);
      process.exit(2);
    }
    const bug = !(e instanceof Error) || e instanceof TypeError || e instanceof RangeError || e instanceof ReferenceError;
    process.stderr.write(`${bug ? String((e as Error)?.stack ?? e) : (e as Error).message}\n`);
    process.exit(1);
  };
  let args: Parsed<S> | "help";
  try {
    args = parseArgs(spec, process.argv.slice(2));
  } catch (e) {
    return fail(e);
  }
  if (args === "help") {
    process.stdout.write(usage(spec) + "\n");
    return;
  }
  const parsed = args;
  Promise.resolve()
    .then(() => main(parsed))
    .then((code) => {
      process.exitCode = code ?? 0;
    }, fail);
}
