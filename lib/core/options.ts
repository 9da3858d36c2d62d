// Checks of typed options, shared by library configs (an unknown key or a value outside its range is an error that
// names the option and what is valid, never silently ignored or passed on) and the command-line parser
// (lib/bin/args.ts), so both describe a range in the same words.

export type OptionSpec =
  | { type: "int" | "number"; min?: number; max?: number; /** exclusive lower bound */ above?: number }
  | { type: "bool" }
  | { type: "string" }
  | { type: "enum"; values: readonly string[] };

/** "an integer in 1..24", "a number > 0", "one of wavelet, bilinear". */
export function describeOption(spec: OptionSpec): string {
  if (spec.type === "bool") return "true or false";
  if (spec.type === "string") return "a string";
  if (spec.type === "enum") return `one of ${spec.values.join(", ")}`;
  const what = spec.type === "int" ? "an integer" : "a number";
  const { min, max, above } = spec;
  if (min !== undefined && max !== undefined) return `${what} in ${min}..${max}`;
  const bounds = [above !== undefined ? `> ${above}` : min !== undefined ? `>= ${min}` : "", max !== undefined ? `<= ${max}` : ""].filter(Boolean);
  return bounds.length ? `${what} ${bounds.join(" and ")}` : what;
}

/** Whether `value` satisfies `spec` (numbers must be finite). */
export function optionValid(value: unknown, spec: OptionSpec): boolean {
  switch (spec.type) {
    case "bool":
      return typeof value === "boolean";
    case "string":
      return typeof value === "string";
    case "enum":
      return typeof value === "string" && spec.values.includes(value);
    default:
      return (
        typeof value === "number" && Number.isFinite(value) && (spec.type === "number" || Number.isInteger(value)) &&
        (spec.min === undefined || value >= spec.min) && (spec.max === undefined || value <= spec.max) && (spec.above === undefined || value > spec.above)
      );
  }
}

/**
 * Throw if `given` has a key not in `specs`, or a value that does not satisfy its spec. `what` names the config in
 * the message, e.g. "sampleAugment options". A spec of null accepts any value (the caller checks it itself).
 */
export function checkOptions(what: string, given: object, specs: Record<string, OptionSpec | null>): void {
  for (const [key, value] of Object.entries(given)) {
    if (!Object.prototype.hasOwnProperty.call(specs, key)) {
      throw new Error(`${what}: unknown option '${key}' (known: ${Object.keys(specs).join(", ")})`);
    }
    const spec = specs[key];
    if (spec && value !== undefined && !optionValid(value, spec)) {
      throw new Error(`${what}: option '${key}' is ${JSON.stringify(value)}, expected ${describeOption(spec)}`);
    }
  }
}
