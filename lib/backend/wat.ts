// A small assembler from WebAssembly text (WAT) to a binary module, so that the wasm engine's own kernels
// (lib/backend/wasm_simd.ts) live in this repository as readable source and are assembled when the engine
// starts: no committed binary, no compiler to install. It covers what those kernels use: functions with params,
// results and locals, flat (unfolded) instruction sequences, block/loop/if with labels, i32/f32/f64 scalar ops,
// the SIMD ops of the table below, two atomics, and one imported memory (shared when the engine runs threads).
// Opcodes: the WebAssembly core specification, binary format, and its SIMD and threads proposals.

type ValType = "i32" | "i64" | "f32" | "f64" | "v128";
const VALTYPE: Record<ValType, number> = { i32: 0x7f, i64: 0x7e, f32: 0x7d, f64: 0x7c, v128: 0x7b };

/** Immediate kinds: none, local index, label depth, function index, memarg (with natural log2 alignment), constants, lanes. */
type Imm = "" | "local" | "label" | "func" | "block" | `mem${number}` | "i32" | "f32" | "f64" | "v128" | "lane" | "shuffle" | `mem${number}lane`;

const CORE: Record<string, [number, Imm]> = {
  unreachable: [0x00, ""], nop: [0x01, ""], block: [0x02, "block"], loop: [0x03, "block"], if: [0x04, "block"],
  else: [0x05, ""], end: [0x0b, ""], br: [0x0c, "label"], br_if: [0x0d, "label"], return: [0x0f, ""], call: [0x10, "func"],
  drop: [0x1a, ""], select: [0x1b, ""],
  "local.get": [0x20, "local"], "local.set": [0x21, "local"], "local.tee": [0x22, "local"],
  "i32.load": [0x28, "mem2"], "f32.load": [0x2a, "mem2"], "f64.load": [0x2b, "mem3"],
  "i32.store": [0x36, "mem2"], "f32.store": [0x38, "mem2"], "f64.store": [0x39, "mem3"],
  "i32.const": [0x41, "i32"], "f32.const": [0x43, "f32"], "f64.const": [0x44, "f64"],
  "i32.eqz": [0x45, ""], "i32.eq": [0x46, ""], "i32.ne": [0x47, ""], "i32.lt_s": [0x48, ""], "i32.lt_u": [0x49, ""],
  "i32.gt_s": [0x4a, ""], "i32.gt_u": [0x4b, ""], "i32.le_s": [0x4c, ""], "i32.le_u": [0x4d, ""], "i32.ge_s": [0x4e, ""],
  "i32.ge_u": [0x4f, ""],
  "f32.eq": [0x5b, ""], "f32.ne": [0x5c, ""], "f32.lt": [0x5d, ""], "f32.gt": [0x5e, ""], "f32.le": [0x5f, ""], "f32.ge": [0x60, ""],
  "i32.add": [0x6a, ""], "i32.sub": [0x6b, ""], "i32.mul": [0x6c, ""], "i32.div_s": [0x6d, ""], "i32.div_u": [0x6e, ""],
  "i32.rem_s": [0x6f, ""], "i32.rem_u": [0x70, ""], "i32.and": [0x71, ""], "i32.or": [0x72, ""], "i32.xor": [0x73, ""],
  "i32.shl": [0x74, ""], "i32.shr_s": [0x75, ""], "i32.shr_u": [0x76, ""],
  "f32.abs": [0x8b, ""], "f32.neg": [0x8c, ""], "f32.floor": [0x8e, ""], "f32.nearest": [0x90, ""], "f32.sqrt": [0x91, ""],
  "f32.add": [0x92, ""], "f32.sub": [0x93, ""], "f32.mul": [0x94, ""], "f32.div": [0x95, ""], "f32.min": [0x96, ""], "f32.max": [0x97, ""],
  "f64.sqrt": [0x9f, ""], "f64.add": [0xa0, ""], "f64.sub": [0xa1, ""], "f64.mul": [0xa2, ""], "f64.div": [0xa3, ""],
  "i32.trunc_f32_s": [0xa8, ""], "f32.convert_i32_s": [0xb2, ""], "f32.demote_f64": [0xb6, ""], "f64.convert_i32_s": [0xb7, ""],
  "f64.promote_f32": [0xbb, ""], "i32.reinterpret_f32": [0xbc, ""], "f32.reinterpret_i32": [0xbe, ""],
};

const SIMD: Record<string, [number, Imm]> = {
  "v128.load": [0x00, "mem4"], "v128.load32_splat": [0x09, "mem2"], "v128.store": [0x0b, "mem4"], "v128.const": [0x0c, "v128"],
  "i8x16.shuffle": [0x0d, "shuffle"], "i32x4.splat": [0x11, ""], "f32x4.splat": [0x13, ""], "f64x2.splat": [0x14, ""],
  "i32x4.extract_lane": [0x1b, "lane"], "f32x4.extract_lane": [0x1f, "lane"], "f32x4.replace_lane": [0x20, "lane"],
  "f64x2.extract_lane": [0x21, "lane"],
  "f32x4.eq": [0x41, ""], "f32x4.ne": [0x42, ""], "f32x4.lt": [0x43, ""], "f32x4.gt": [0x44, ""], "f32x4.le": [0x45, ""], "f32x4.ge": [0x46, ""],
  "v128.not": [0x4d, ""], "v128.and": [0x4e, ""], "v128.andnot": [0x4f, ""], "v128.or": [0x50, ""], "v128.xor": [0x51, ""],
  "v128.bitselect": [0x52, ""], "v128.load32_lane": [0x56, "mem2lane"], "v128.store32_lane": [0x5a, "mem2lane"],
  "v128.load32_zero": [0x5c, "mem2"], "v128.load64_zero": [0x5d, "mem3"],
  "f32x4.demote_f64x2_zero": [0x5e, ""], "f64x2.promote_low_f32x4": [0x5f, ""],
  "f32x4.floor": [0x68, ""], "f32x4.nearest": [0x6a, ""],
  "i32x4.shl": [0xab, ""], "i32x4.shr_s": [0xac, ""], "i32x4.shr_u": [0xad, ""], "i32x4.add": [0xae, ""], "i32x4.sub": [0xb1, ""],
  "i32x4.mul": [0xb5, ""],
  "f32x4.abs": [0xe0, ""], "f32x4.neg": [0xe1, ""], "f32x4.sqrt": [0xe3, ""], "f32x4.add": [0xe4, ""], "f32x4.sub": [0xe5, ""],
  "f32x4.mul": [0xe6, ""], "f32x4.div": [0xe7, ""], "f32x4.min": [0xe8, ""], "f32x4.max": [0xe9, ""], "f32x4.pmin": [0xea, ""],
  "f32x4.pmax": [0xeb, ""], "f64x2.add": [0xf0, ""], "f64x2.sub": [0xf1, ""], "f64x2.mul": [0xf2, ""],
  "i32x4.trunc_sat_f32x4_s": [0xf8, ""], "f32x4.convert_i32x4_s": [0xfa, ""],
  // relaxed SIMD: a b + c, fused where the CPU has FMA
  "f32x4.relaxed_madd": [0x105, ""],
};

/** Threads proposal: atomic access to shared memory (prefix 0xfe). */
const ATOMIC: Record<string, [number, Imm]> = { "i32.atomic.load": [0x10, "mem2"], "i32.atomic.rmw.add": [0x1e, "mem2"] };

function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n = Math.floor(n / 128);
    if (n !== 0) b |= 0x80;
    out.push(b);
  } while (n !== 0);
  return out;
}

function sleb(n: number): number[] {
  const out: number[] = [];
  for (;;) {
    const b = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (b & 0x40) === 0) || (n === -1 && (b & 0x40) !== 0)) return [...out, b];
    out.push(b | 0x80);
  }
}

function bytesOf(array: Float32Array | Float64Array | Int32Array): number[] {
  return Array.from(new Uint8Array(array.buffer));
}

function utf8(s: string): number[] {
  const b = Array.from(Buffer.from(s, "utf8"));
  return [...uleb(b.length), ...b];
}

function section(id: number, body: number[]): number[] {
  return [id, ...uleb(body.length), ...body];
}

function vector(items: number[][]): number[] {
  return [...uleb(items.length), ...items.flat()];
}

type SExpr = string | SExpr[];

function tokenize(src: string): string[] {
  const tokens: string[] = [];
  const re = /\s+|;;[^\n]*|\(;[\s\S]*?;\)|(\(|\)|"[^"]*"|[^\s()";]+)/g;
  for (const m of src.matchAll(re)) if (m[1] !== undefined) tokens.push(m[1]);
  return tokens;
}

function parse(tokens: string[]): SExpr[] {
  const stack: SExpr[][] = [[]];
  for (const t of tokens) {
    if (t === "(") stack.push([]);
    else if (t === ")") {
      const done = stack.pop()!;
      if (stack.length === 0) throw new Error("wat: unbalanced ')'");
      stack[stack.length - 1].push(done);
    } else stack[stack.length - 1].push(t);
  }
  if (stack.length !== 1) throw new Error("wat: unbalanced '('");
  return stack[0];
}

interface Func {
  name: string;
  params: ValType[];
  results: ValType[];
  locals: ValType[];
  localIndex: Map<string, number>;
  body: string[];
}

function valType(t: SExpr, where: string): ValType {
  if (typeof t !== "string" || !(t in VALTYPE)) throw new Error(`wat: ${where}: unknown value type ${JSON.stringify(t)}`);
  return t as ValType;
}

function readFunc(form: SExpr[]): Func {
  const name = form[1];
  if (typeof name !== "string" || !name.startsWith("$")) throw new Error("wat: every func needs a $name");
  const f: Func = { name: name.slice(1), params: [], results: [], locals: [], localIndex: new Map(), body: [] };
  for (const item of form.slice(2)) {
    if (typeof item === "string") {
      f.body.push(item);
      continue;
    }
    const [head, ...rest] = item;
    if (head !== "param" && head !== "local" && head !== "result") throw new Error(`wat: ${name}: folded instructions are not supported (${String(head)})`);
    const list = head === "param" ? f.params : head === "local" ? f.locals : f.results;
    if (head !== "result" && typeof rest[0] === "string" && rest[0].startsWith("$")) {
      f.localIndex.set(rest[0].slice(1), f.params.length + f.locals.length);
      list.push(valType(rest[1], name));
    } else {
      for (const t of rest) {
        if (head !== "result") f.localIndex.set(String(f.params.length + f.locals.length), f.params.length + f.locals.length);
        list.push(valType(t, name));
      }
    }
  }
  return f;
}

function number(tok: string | undefined, where: string): number {
  const v = tok === undefined ? NaN : tok === "inf" ? Infinity : tok === "-inf" ? -Infinity : tok === "nan" ? NaN : Number(tok.replace(/_/g, ""));
  if (Number.isNaN(v) && tok !== "nan") throw new Error(`wat: ${where}: expected a number, got ${tok}`);
  return v;
}

function encodeBody(f: Func, funcIndex: Map<string, number>): number[] {
  const out: number[] = [];
  const labels: Array<string | undefined> = [];
  const toks = f.body;
  let i = 0;
  const next = (what: string) => {
    const t = toks[i++];
    if (t === undefined) throw new Error(`wat: $${f.name}: ${what} missing at the end`);
    return t;
  };
  while (i < toks.length) {
    const op = toks[i++];
    const entry = CORE[op] ?? SIMD[op] ?? ATOMIC[op];
    if (!entry) throw new Error(`wat: $${f.name}: unknown instruction ${op}`);
    const [code, imm] = entry;
    if (op in CORE) out.push(code);
    else out.push(op in SIMD ? 0xfd : 0xfe, ...uleb(code));
    if (op === "end") labels.pop();
    if (imm === "") continue;
    if (imm === "block") {
      labels.push(toks[i]?.startsWith("$") ? toks[i++].slice(1) : undefined);
      out.push(0x40);
    } else if (imm === "label") {
      const t = next("label");
      const depth = t.startsWith("$") ? labels.length - 1 - labels.lastIndexOf(t.slice(1)) : number(t, op);
      if (depth < 0 || depth >= labels.length || (t.startsWith("$") && !labels.includes(t.slice(1)))) throw new Error(`wat: $${f.name}: no enclosing label ${t}`);
      out.push(...uleb(depth));
    } else if (imm === "local") {
      const t = next("local");
      const idx = f.localIndex.get(t.startsWith("$") ? t.slice(1) : t);
      if (idx === undefined) throw new Error(`wat: $${f.name}: unknown local ${t}`);
      out.push(...uleb(idx));
    } else if (imm === "func") {
      const t = next("function");
      const idx = funcIndex.get(t.slice(1));
      if (idx === undefined) throw new Error(`wat: $${f.name}: unknown function ${t}`);
      out.push(...uleb(idx));
    } else if (imm.startsWith("mem")) {
      let offset = 0, align = Number(imm[3]);
      while (/^(offset|align)=/.test(toks[i] ?? "")) {
        const [k, v] = toks[i++].split("=");
        if (k === "offset") offset = number(v, op);
        else align = Math.log2(number(v, op));
      }
      out.push(...uleb(align), ...uleb(offset));
      if (imm.endsWith("lane")) out.push(number(next("lane"), op));
    } else if (imm === "i32") out.push(...sleb(number(next("constant"), op) | 0));
    else if (imm === "f32") out.push(...bytesOf(new Float32Array([number(next("constant"), op)])));
    else if (imm === "f64") out.push(...bytesOf(new Float64Array([number(next("constant"), op)])));
    else if (imm === "lane") out.push(number(next("lane"), op));
    else if (imm === "shuffle") for (let k = 0; k < 16; k++) out.push(number(next("lane"), op));
    else if (imm === "v128") {
      const shape = next("v128 shape");
      const lanes = [0, 1, 2, 3].map(() => number(next("v128 lane"), op));
      if (shape === "f32x4") out.push(...bytesOf(new Float32Array(lanes)));
      else if (shape === "i32x4") out.push(...bytesOf(new Int32Array(lanes)));
      else throw new Error(`wat: $${f.name}: v128.const ${shape} is not supported (f32x4, i32x4)`);
    }
  }
  out.push(0x0b);
  return out;
}

/**
 * Assembles the `(func $name ...)` forms of `source` into a module that imports its memory as env.memory
 * (shared with at most 65536 pages when `sharedMemory`) and exports every function under its name.
 */
export function assembleWat(source: string, sharedMemory: boolean): Uint8Array {
  const forms = parse(tokenize(source));
  const funcs = forms.map((form) => {
    if (!Array.isArray(form) || form[0] !== "func") throw new Error(`wat: only (func ...) forms are supported at the top level, got ${JSON.stringify(form).slice(0, 60)}`);
    return readFunc(form);
  });
  const funcIndex = new Map(funcs.map((f, i) => [f.name, i]));
  const types = funcs.map((f) => [0x60, ...vector(f.params.map((t) => [VALTYPE[t]])), ...vector(f.results.map((t) => [VALTYPE[t]]))]);
  const memType = sharedMemory ? [0x03, ...uleb(1), ...uleb(65536)] : [0x00, ...uleb(1)];
  const imports = vector([[...utf8("env"), ...utf8("memory"), 0x02, ...memType]]);
  const code = funcs.map((f) => {
    const locals = vector(f.locals.map((t) => [1, VALTYPE[t]]));
    const body = [...locals, ...encodeBody(f, funcIndex)];
    return [...uleb(body.length), ...body];
  });
  const bytes = [
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, vector(types)),
    ...section(2, imports),
    ...section(3, vector(funcs.map((_, i) => uleb(i)))),
    ...section(7, vector(funcs.map((f, i) => [...utf8(f.name), 0x00, ...uleb(i)]))),
    ...section(10, vector(code)),
  ];
  return new Uint8Array(bytes);
}
