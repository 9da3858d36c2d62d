// Reading a diffusers config.json into a typed config. Every key the model uses has a reader and diffusers' default
// (a key that is absent takes the default, as in diffusers). Keys whose other values would change the maths in a
// way this port does not implement are accepted only at their default ("fixed"); keys that do not affect these
// models (listed beside each spec) and keys diffusers itself does not know are ignored, as diffusers does.

export type Fail = (expected: string) => never;
export type Reader<T> = (v: unknown, fail: Fail) => T;

export interface Field<T> {
  default: T;
  read: Reader<T>;
}

export const field = <T>(read: Reader<T>, def: T): Field<T> => ({ default: def, read });

export const int: Reader<number> = (v, fail) => (Number.isInteger(v) ? (v as number) : fail("an integer"));
export const positiveInt: Reader<number> = (v, fail) => (Number.isInteger(v) && (v as number) > 0 ? (v as number) : fail("a positive integer"));
export const num: Reader<number> = (v, fail) => (typeof v === "number" && Number.isFinite(v) ? v : fail("a number"));
export const bool: Reader<boolean> = (v, fail) => (typeof v === "boolean" ? v : fail("true or false"));

export function oneOf<T extends string>(values: readonly T[]): Reader<T> {
  return (v, fail) => (values.includes(v as T) ? (v as T) : fail(`one of ${values.map((x) => JSON.stringify(x)).join(", ")}`));
}

export function nullable<T>(read: Reader<T>): Reader<T | null> {
  return (v, fail) => (v === null ? null : read(v, (e) => fail(`null or ${e}`)));
}

export function list<T>(read: Reader<T>): Reader<T[]> {
  return (v, fail) => {
    if (!Array.isArray(v)) return fail("a list");
    return v.map((x, i) => read(x, (e) => fail(`a list whose item ${i} is ${e}`)));
  };
}

/** A value or a list of them (diffusers' per-block settings). */
export function oneOrList<T>(read: Reader<T>): Reader<T | T[]> {
  const l = list(read);
  return (v, fail) => (Array.isArray(v) ? l(v, fail) : read(v, (e) => fail(`${e} or a list of them`)));
}

/** A per-block setting as one value per block; a list must have one entry per block. */
export function perBlock<T>(v: T | T[], n: number, key: string, source: string): T[] {
  if (!Array.isArray(v)) return Array.from({ length: n }, () => v);
  if (v.length !== n) throw new Error(`${source}: '${key}' has ${v.length} entries for ${n} blocks`);
  return v;
}

function same(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

export interface ConfigSpec<T> {
  /** diffusers' `_class_name` of this model. */
  className: string;
  fields: { [K in keyof T]: Field<T[K]> };
  /** Keys accepted only at this value (their other values change the maths in ways not implemented here). */
  fixed: Record<string, unknown>;
}

/** Parse a config.json object; errors name the file and the key. */
export function parseConfig<T>(raw: unknown, source: string, spec: ConfigSpec<T>): T {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) throw new Error(`${source}: a config must be a JSON object`);
  const obj = raw as Record<string, unknown>;
  const cls = obj._class_name;
  if (cls !== undefined && cls !== spec.className) throw new Error(`${source}: _class_name is ${JSON.stringify(cls)}, expected "${spec.className}"`);
  const out = {} as T;
  for (const key of Object.keys(spec.fields) as Array<keyof T & string>) {
    const f = spec.fields[key];
    const v = obj[key];
    const fail: Fail = (expected) => {
      throw new Error(`${source}: '${key}' should be ${expected}, got ${JSON.stringify(v)}`);
    };
    out[key] = v === undefined ? f.default : f.read(v, fail);
  }
  for (const [key, def] of Object.entries(spec.fixed)) {
    if (obj[key] !== undefined && !same(obj[key], def)) {
      throw new Error(`${source}: '${key}' = ${JSON.stringify(obj[key])} is not supported by this ${spec.className} (only ${JSON.stringify(def)})`);
    }
  }
  return out;
}

/** The config as diffusers writes it: every field, the fixed keys at their values, class name and version. */
export function configJson<T>(config: T, spec: ConfigSpec<T>, diffusersVersion: string): Record<string, unknown> {
  return { _class_name: spec.className, _diffusers_version: diffusersVersion, ...spec.fixed, ...config };
}
