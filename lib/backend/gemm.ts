import * as tf from "@tensorflow/tfjs";
import { runShared, sharedLoop } from "./simd_threads";
import { Exports, f32, makeOutput, memoryOf, offsetOf, relaxedSimd, Scratch, simdInstance } from "./wasm_simd";

// Matrix products for the wasm engine in our own WebAssembly SIMD (assembled from the WAT below, see
// lib/backend/wat.ts): C = A B with B packed into panels of 8 columns, computed in 4 x 8 tiles held in
// eight f32x4 registers; each step broadcasts one A value per row and multiplies it into one B row (one fused
// multiply-add per register where relaxed SIMD is available). Three ways of reading A share that inner step:
//   gemm_rows  a strided matrix (row step sI, column step sK, in bytes): plain, transposed and batched matMul;
//   conv_rows  a convolution's input patches through a table of source-pixel offsets per output pixel and filter
//              tap (or the zero row, in the padding), so the patch matrix is never written out; the same with
//              the table run backwards gives the input gradient;
//   dw_rows    the filter gradient dW[(tap, ci), co] = sum_p x_tap[p, ci] dy[p, co], walking the runs of pixels
//              that one tap reads along one output row.
// Each works on a range of 4-row groups [g0, g1), which is how the work is shared between threads.

const ROWS = [0, 1, 2, 3];
const ACC = ROWS.flatMap((r) => [`$c${r}0`, `$c${r}1`]);
const MICRO_LOCALS = `(local $b0 v128) (local $b1 v128) (local $s v128) ${ACC.map((a) => `(local ${a} v128)`).join(" ")}`;
const ZERO_ACC = ACC.map((a) => `v128.const i32x4 0 0 0 0 local.set ${a}`).join(" ");
/** The 4 x 8 tile, row-major, into the 128-byte buffer $tile. */
const TO_TILE = ACC.map((a, i) => `local.get $tile local.get ${a} v128.store offset=${i * 16}`).join(" ");

/** One step k: c[r] += a[r, k] * B[k, 0..7], with `splat(r)` pushing a[r, k] broadcast; $bp moves to the next B row. */
function step(splat: (r: number) => string): string {
  return `
      local.get $bp v128.load local.set $b0 local.get $bp v128.load offset=16 local.set $b1
      ${ROWS.map((r) => `${splat(r)} local.set $s
      local.get $c${r}0 local.get $s local.get $b0 f32x4.mul f32x4.add local.set $c${r}0
      local.get $c${r}1 local.get $s local.get $b1 f32x4.mul f32x4.add local.set $c${r}1`).join("\n      ")}
      local.get $bp i32.const 32 i32.add local.set $bp`;
}

/** min(a, b) of two i32 expressions. */
const min = (a: string, b: string) => `${a} ${b} ${a} ${b} i32.lt_s select`;

/** Stores the tile into C at $cp (row step $ldc bytes): `rows` x `cols` of it, added to C's values when $acc. */
const EMIT = `
  (func $emit (param $tile i32) (param $cp i32) (param $ldc i32) (param $rows i32) (param $cols i32) (param $acc i32)
      (local $r i32) (local $j i32) (local $d i32) (local $v v128) (local $f f32)
    local.get $rows i32.const 4 i32.eq local.get $cols i32.const 8 i32.eq i32.and
    if
      ${ROWS.map((r) => [0, 16].map((h) => `
      local.get $cp i32.const ${r} local.get $ldc i32.mul i32.add local.set $d
      local.get $tile v128.load offset=${r * 32 + h} local.set $v
      local.get $acc if local.get $v local.get $d v128.load offset=${h} f32x4.add local.set $v end
      local.get $d local.get $v v128.store offset=${h}`).join("")).join("")}
    else
      block $rd loop $rl
        local.get $r local.get $rows i32.ge_u br_if $rd
        i32.const 0 local.set $j
        block $jd loop $jl
          local.get $j local.get $cols i32.ge_u br_if $jd
          local.get $cp local.get $r local.get $ldc i32.mul i32.add local.get $j i32.const 2 i32.shl i32.add local.set $d
          local.get $tile local.get $r i32.const 5 i32.shl i32.add local.get $j i32.const 2 i32.shl i32.add f32.load local.set $f
          local.get $acc if local.get $f local.get $d f32.load f32.add local.set $f end
          local.get $d local.get $f f32.store
          local.get $j i32.const 1 i32.add local.set $j br $jl
        end end
        local.get $r i32.const 1 i32.add local.set $r br $rl
      end end
    end)`;

/**
 * pack_b(src, sK, sJ, K, n, dst, panel): B[k, j] = src[k sK + j sJ] (bytes) into panels of 8 columns, row k of
 * panel p at dst + p panel + 32 k (zero past column n). A whole B has panel = 32 K; a block of rows of a larger
 * B is packed with that B's panel size and dst at its first row.
 */
const PACK_B = `
  (func $pack_b (param $src i32) (param $sK i32) (param $sJ i32) (param $K i32) (param $n i32) (param $dst0 i32) (param $panel i32)
      (local $jp i32) (local $k i32) (local $j i32) (local $row i32) (local $f f32) (local $dst i32)
    block $pd loop $pl
      local.get $jp local.get $n i32.ge_u br_if $pd
      local.get $dst0 local.get $jp i32.const 3 i32.shr_u local.get $panel i32.mul i32.add local.set $dst
      i32.const 0 local.set $k
      local.get $src local.get $jp local.get $sJ i32.mul i32.add local.set $row
      block $kd loop $kl
        local.get $k local.get $K i32.ge_u br_if $kd
        local.get $sJ i32.const 4 i32.eq local.get $jp i32.const 8 i32.add local.get $n i32.le_u i32.and
        if
          local.get $dst local.get $row v128.load v128.store
          local.get $dst local.get $row v128.load offset=16 v128.store offset=16
        else
          i32.const 0 local.set $j
          block $jd loop $jl
            local.get $j i32.const 8 i32.ge_u br_if $jd
            f32.const 0 local.set $f
            local.get $jp local.get $j i32.add local.get $n i32.lt_u
            if local.get $row local.get $j local.get $sJ i32.mul i32.add f32.load local.set $f end
            local.get $dst local.get $j i32.const 2 i32.shl i32.add local.get $f f32.store
            local.get $j i32.const 1 i32.add local.set $j br $jl
          end end
        end
        local.get $dst i32.const 32 i32.add local.set $dst
        local.get $row local.get $sK i32.add local.set $row
        local.get $k i32.const 1 i32.add local.set $k br $kl
      end end
      local.get $jp i32.const 8 i32.add local.set $jp br $pl
    end end)`;

/**
 * Loops over the row groups of [g0, g1) and the panels ($jp: first column of the panel, whose K rows of 8 floats
 * take 32K bytes); `perGroup` and `perPanel` set up A and $bp, `inner` runs the k steps.
 */
function tiles(name: string, params: string, locals: string, perGroup: string, perPanel: string, inner: string, emitArgs: string): string {
  return `
  (func $${name} ${params} (param $n i32) (param $c i32) (param $ldc i32) (param $g0 i32) (param $g1 i32) (param $tile i32)
      (local $g i32) (local $rows i32) (local $jp i32) (local $bp i32) (local $k i32) ${locals} ${MICRO_LOCALS}
    local.get $g0 local.set $g
    block $gd loop $gl
      local.get $g local.get $g1 i32.ge_u br_if $gd
      ${perGroup}
      i32.const 0 local.set $jp
      block $jd loop $jl
        local.get $jp local.get $n i32.ge_u br_if $jd
        ${perPanel}
        ${ZERO_ACC}
        ${inner}
        ${TO_TILE}
        local.get $tile
        local.get $c local.get $g i32.const 2 i32.shl local.get $ldc i32.mul i32.add local.get $jp i32.const 2 i32.shl i32.add
        local.get $ldc ${emitArgs}
        call $emit
        local.get $jp i32.const 8 i32.add local.set $jp br $jl
      end end
      local.get $g i32.const 1 i32.add local.set $g br $gl
    end end)`;
}

const cols = min("local.get $n local.get $jp i32.sub", "i32.const 8");

/** gemm_rows(a, sI, sK, bp, K, m, k0, kc, acc, n, c, ldc, g0, g1, tile): C[m, n] (+)= A[:, k0:k0+kc] B[k0:k0+kc, :]. */
const GEMM_ROWS = tiles(
  "gemm_rows",
  "(param $a i32) (param $sI i32) (param $sK i32) (param $bp0 i32) (param $K i32) (param $m i32) (param $k0 i32) (param $kc i32) (param $acc i32)",
  "(local $r0 i32) (local $o1 i32) (local $o2 i32) (local $o3 i32) (local $a0 i32) (local $a1 i32) (local $a2 i32) (local $a3 i32)",
  // rows past m read the last row again; their results are not stored
  `${min("local.get $m local.get $g i32.const 2 i32.shl i32.sub", "i32.const 4")} local.set $rows
      local.get $a local.get $g i32.const 2 i32.shl local.get $sI i32.mul i32.add local.get $k0 local.get $sK i32.mul i32.add local.set $r0
      ${[1, 2, 3].map((r) => `${min(`i32.const ${r}`, "local.get $rows i32.const 1 i32.sub")} local.get $sI i32.mul local.set $o${r}`).join(" ")}`,
  `local.get $r0 local.set $a0 ${[1, 2, 3].map((r) => `local.get $r0 local.get $o${r} i32.add local.set $a${r}`).join(" ")}
        local.get $bp0 local.get $jp local.get $K i32.mul i32.const 2 i32.shl i32.add local.get $k0 i32.const 5 i32.shl i32.add local.set $bp`,
  `i32.const 0 local.set $k
        block $kd loop $kl
          local.get $k local.get $kc i32.ge_u br_if $kd
          ${step((r) => `local.get $a${r} v128.load32_splat`)}
          ${ROWS.map((r) => `local.get $a${r} local.get $sK i32.add local.set $a${r}`).join(" ")}
          local.get $k i32.const 1 i32.add local.set $k br $kl
        end end`,
  `local.get $rows ${cols} local.get $acc`,
);

/** The source address of a table entry in `local`: src + entry, or the zero row for a negative entry. */
const fromTable = (local: string) => `local.get $zero local.get $src local.get ${local} i32.add local.get ${local} i32.const 0 i32.lt_s select local.set ${local}`;

/**
 * conv_rows(ind, src, zero, T, cb, bp, p, n, c, ldc, g0, g1, tile): out[p, n] = sum over taps t and source
 * channels of src[ind[g][t][r]][ci] B[(t, ci), :]; ind holds, for each group of 4 rows (pixels), T x 4 byte
 * offsets of source pixels (cb bytes each) from src, or -1 for the zero row; B is [T cb/4, n] in panels.
 */
const CONV_ROWS = tiles(
  "conv_rows",
  "(param $ind i32) (param $src i32) (param $zero i32) (param $T i32) (param $cb i32) (param $bp0 i32) (param $p i32)",
  "(local $ip i32) (local $t i32) (local $cc i32) (local $a0 i32) (local $a1 i32) (local $a2 i32) (local $a3 i32)",
  `${min("local.get $p local.get $g i32.const 2 i32.shl i32.sub", "i32.const 4")} local.set $rows`,
  `local.get $bp0 local.get $jp local.get $T i32.mul local.get $cb i32.mul i32.add local.set $bp
        local.get $ind local.get $g local.get $T i32.mul i32.const 4 i32.shl i32.add local.set $ip`,
  `i32.const 0 local.set $t
        block $td loop $tl
          local.get $t local.get $T i32.ge_u br_if $td
          ${ROWS.map((r) => `local.get $ip i32.load offset=${4 * r} local.set $a${r} ${fromTable(`$a${r}`)}`).join("\n          ")}
          local.get $ip i32.const 16 i32.add local.set $ip
          i32.const 0 local.set $cc
          block $cd loop $cl
            local.get $cc local.get $cb i32.ge_u br_if $cd
            ${step((r) => `local.get $a${r} local.get $cc i32.add v128.load32_splat`)}
            local.get $cc i32.const 4 i32.add local.set $cc br $cl
          end end
          local.get $t i32.const 1 i32.add local.set $t br $tl
        end end`,
  `local.get $rows ${cols} i32.const 0`,
);

/**
 * dw_rows(spans, src, R, ow, step, cinb, bp, r0, rc, acc, n, c, ldc, g0, g1, tile): dW[(t, ci), :] (+)= sum over
 * output rows r0 <= r < r0 + rc (of R, each of ow pixels) of sum_k x[pixel k of the row's span, ci] dy[k, :].
 * Rows of dW go in groups of 4 channels of one tap (cinb = 4 Cin bytes, Cin a multiple of 4). spans[t][r] is
 * (byte offset from src of the first input pixel tap t reads along output row r, first output column, count):
 * consecutive pixels of a span are `step` bytes apart, and what falls in the padding is never visited. B is
 * dy [R ow, n] in panels.
 */
const DW_ROWS = tiles(
  "dw_rows",
  "(param $spans i32) (param $src i32) (param $R i32) (param $ow i32) (param $step i32) (param $cinb i32) (param $bp0 i32) (param $r0 i32) (param $rc i32) (param $acc i32)",
  "(local $off i32) (local $sp i32) (local $panel i32) (local $r i32) (local $q i32) (local $cnt i32)",
  `i32.const 4 local.set $rows
      ;; row 4g of dW is (tap t, channel ci): byte 16g = t cinb + 4 ci; spans of tap t start at spans + 12 t R
      local.get $g i32.const 4 i32.shl local.get $cinb i32.rem_u local.set $off
      local.get $spans local.get $g i32.const 4 i32.shl local.get $cinb i32.div_u local.get $R i32.mul local.get $r0 i32.add i32.const 12 i32.mul i32.add local.set $sp`,
  `local.get $bp0 local.get $jp local.get $R i32.mul local.get $ow i32.mul i32.const 2 i32.shl i32.add local.set $panel`,
  `i32.const 0 local.set $r
        block $rd loop $rl
          local.get $r local.get $rc i32.ge_u br_if $rd
          local.get $sp local.get $r i32.const 12 i32.mul i32.add local.set $q
          local.get $q i32.load offset=8 local.set $cnt
          ;; B row of the span's first pixel: (r0 + r) ow + first column
          local.get $panel local.get $r0 local.get $r i32.add local.get $ow i32.mul local.get $q i32.load offset=4 i32.add i32.const 5 i32.shl i32.add local.set $bp
          local.get $src local.get $q i32.load i32.add local.get $off i32.add local.set $q
          block $kd loop $kl
            local.get $cnt i32.eqz br_if $kd
            ${step((r) => `local.get $q v128.load32_splat offset=${4 * r}`)}
            local.get $q local.get $step i32.add local.set $q
            local.get $cnt i32.const 1 i32.sub local.set $cnt br $kl
          end end
          local.get $r i32.const 1 i32.add local.set $r br $rl
        end end`,
  `local.get $rows ${cols} local.get $acc`,
);

/**
 * `name`_blocks(fixed..., kc, n, c, ldc, g0, g1, tile): `name` over K in blocks of kc (the first block stores,
 * the others add), so that one call does a thread's whole share. `fixed` are the parameters before k0, kc, acc;
 * one of them is $K.
 */
function kBlocks(name: string, fixed: string[]): string {
  const names = fixed.map((p) => p.split(" ")[0]);
  return `
  (func $${name}_blocks ${fixed.map((p) => `(param ${p})`).join(" ")} (param $kc i32) (param $n i32) (param $c i32) (param $ldc i32) (param $g0 i32) (param $g1 i32) (param $tile i32)
      (local $k0 i32)
    block $d loop $l
      local.get $k0 local.get $K i32.ge_u br_if $d
      ${names.map((n) => `local.get ${n}`).join(" ")}
      local.get $k0 ${min("local.get $kc", "local.get $K local.get $k0 i32.sub")} local.get $k0 i32.const 0 i32.gt_u
      local.get $n local.get $c local.get $ldc local.get $g0 local.get $g1 local.get $tile
      call $${name}
      local.get $k0 local.get $kc i32.add local.set $k0 br $l
    end end)`;
}

const GEMM_FIXED = ["$a i32", "$sI i32", "$sK i32", "$bp0 i32", "$K i32", "$m i32"];
const DW_FIXED = ["$spans i32", "$src i32", "$K i32", "$ow i32", "$step i32", "$cinb i32", "$bp0 i32"];

const TAIL = ["$kc i32", "$n i32", "$c i32", "$ldc i32", "$g0 i32", "$g1 i32", "$tile i32"];
const CONV_PARAMS = ["$ind i32", "$src i32", "$zero i32", "$T i32", "$cb i32", "$bp0 i32", "$p i32", "$n i32", "$c i32", "$ldc i32", "$g0 i32", "$g1 i32", "$tile i32"];

export const GEMM_WAT = [
  EMIT, PACK_B, GEMM_ROWS, CONV_ROWS, DW_ROWS, kBlocks("gemm_rows", GEMM_FIXED), kBlocks("dw_rows", DW_FIXED),
  sharedLoop("conv_rows", CONV_PARAMS), sharedLoop("gemm_rows_blocks", [...GEMM_FIXED, ...TAIL]), sharedLoop("dw_rows_blocks", [...DW_FIXED, ...TAIL]),
].join("\n");

/** Columns of B rounded up to whole panels. */
const panelCols = (n: number) => Math.ceil(n / 8) * 8;
/** K block of the strided and filter-gradient products: its slice of B panels and of A stay in cache. */
const KC = 256;
/** Below this many multiply-adds a product runs on one thread: waking a worker costs tens of microseconds. */
const PARALLEL_MIN = 1 << 20;

/** The same kernels with each multiply-add of the inner step as one relaxed_madd (see relaxedSimd). */
const GEMM_WAT_FMA = GEMM_WAT.replace(/local\.get (\$c\d\d) local\.get \$s local\.get (\$b\d) f32x4\.mul f32x4\.add/g, "local.get $$s local.get $2 local.get $1 f32x4.relaxed_madd");

function gemmInstance(backend: object) {
  return relaxedSimd() ? simdInstance(backend, "gemm_fma", GEMM_WAT_FMA) : simdInstance(backend, "gemm", GEMM_WAT);
}

/**
 * fn_shared over the row groups [0, groups) (see sharedLoop), on all threads when the product has `work`
 * multiply-adds; `args` are fn's arguments without the group range and tile buffer.
 */
function overGroups(backend: object, fn: string, groups: number, work: number, args: number[]): void {
  runShared(backend, gemmInstance(backend), `${fn}_shared`, args, groups, work >= PARALLEL_MIN);
}

/**
 * C[m, n] = A[m, k] B[k, n] for matrices in the engine's memory, addressed in bytes: A[i, k] at a + i aI + k aK,
 * B[k, j] at b + k bK + j bJ, C row-major with rows ldc bytes apart.
 */
export function gemm(backend: object, m: number, n: number, k: number, a: number, aI: number, aK: number, b: number, bK: number, bJ: number, c: number, ldc: number): void {
  if (k === 0) {
    for (let i = 0; i < m; i++) new Float32Array(memoryOf(backend).buffer, c + i * ldc, n).fill(0);
    return;
  }
  const bp = new Scratch(backend, panelCols(n) * k, false);
  try {
    gemmInstance(backend).exports.pack_b(b, bK, bJ, k, n, bp.ptr, 32 * k);
    overGroups(backend, "gemm_rows_blocks", Math.ceil(m / 4), m * n * k, [a, aI, aK, bp.ptr, k, m, KC, n, c, ldc]);
  } finally {
    bp.free();
  }
}

/**
 * Source coordinate along one axis for each (position i, tap a), or -1: forward, the input row i s - pad + a d
 * that output row i reads; transposed, the output row o with o s - pad + a d = i whose gradient reaches input
 * row i.
 */
function axisMap(mode: "forward" | "transposed", size: number, taps: number, stride: number, pad: number, dilation: number, sourceSize: number): Int32Array {
  const map = new Int32Array(size * taps);
  for (let i = 0; i < size; i++) {
    for (let a = 0; a < taps; a++) {
      let src: number;
      if (mode === "forward") src = i * stride - pad + a * dilation;
      else {
        const num = i + pad - a * dilation;
        src = num % stride === 0 ? num / stride : -1;
      }
      map[i * taps + a] = src >= 0 && src < sourceSize ? src : -1;
    }
  }
  return map;
}

/**
 * The pixel table of an implicit GEMM: for pixel p of the product's rows (output pixels forward, input pixels
 * for the input gradient) and tap t, the byte offset from the source tensor's start (x forward, dy transposed)
 * of the source pixel it reads, or -1 where that falls in the padding or between the strides; laid out as
 * conv_rows reads it, [p/4][t][p%4], with rows past the last pixel -1.
 */
function buildTable(info: tf.backend_util.Conv2DInfo, mode: "forward" | "transposed", table: Int32Array): void {
  const { batchSize, inHeight, inWidth, inChannels, outHeight, outWidth, outChannels, filterHeight: kh, filterWidth: kw, padInfo } = info;
  const forward = mode === "forward";
  const [rows, cols, srcRows, srcCols, srcC] = forward ? [outHeight, outWidth, inHeight, inWidth, inChannels] : [inHeight, inWidth, outHeight, outWidth, outChannels];
  const rowMap = axisMap(mode, rows, kh, info.strideHeight, padInfo.top, info.dilationHeight, srcRows);
  const colMap = axisMap(mode, cols, kw, info.strideWidth, padInfo.left, info.dilationWidth, srcCols);
  const taps = kh * kw;
  table.fill(-1);
  let p = 0;
  for (let n = 0; n < batchSize; n++) {
    for (let i = 0; i < rows; i++) {
      for (let j = 0; j < cols; j++, p++) {
        const base = (p >> 2) * taps * 4 + (p & 3);
        for (let a = 0; a < kh; a++) {
          const r = rowMap[i * kh + a];
          if (r < 0) continue;
          for (let b = 0; b < kw; b++) {
            const c = colMap[j * kw + b];
            if (c >= 0) table[base + (a * kw + b) * 4] = ((n * srcRows + r) * srcCols + c) * srcC * 4;
          }
        }
      }
    }
  }
}

/** Built tables by geometry: a training step meets the same few convolutions again and again. */
const tableCache = new WeakMap<WebAssembly.Memory, Map<string, Scratch>>();
/** Bytes of cached tables kept per engine; the least recently used go first. */
const TABLE_CACHE_BYTES = 64 << 20;

function pixelTable(backend: object, info: tf.backend_util.Conv2DInfo, mode: "forward" | "transposed"): Scratch {
  const pixels = info.batchSize * (mode === "forward" ? info.outHeight * info.outWidth : info.inHeight * info.inWidth);
  return cachedTable(backend, info, mode, Math.ceil(pixels / 4) * 4 * info.filterHeight * info.filterWidth, (t) => buildTable(info, mode, t));
}

function spanTable(backend: object, info: tf.backend_util.Conv2DInfo): Scratch {
  return cachedTable(backend, info, "spans", 3 * info.filterHeight * info.filterWidth * info.batchSize * info.outHeight, (t) => buildSpans(info, t));
}

/** The table `kind` of a convolution's geometry, built into `entries` ints by `build` unless cached. */
function cachedTable(backend: object, info: tf.backend_util.Conv2DInfo, kind: string, entries: number, build: (table: Int32Array) => void): Scratch {
  const memory = memoryOf(backend);
  let cache = tableCache.get(memory);
  if (!cache) tableCache.set(memory, (cache = new Map()));
  const key = JSON.stringify([kind, info.inShape, info.outShape, info.filterShape, info.strideHeight, info.strideWidth, info.dilationHeight, info.dilationWidth, info.padInfo]);
  let table = cache.get(key);
  if (table) {
    cache.delete(key);
  } else {
    table = new Scratch(backend, entries, false);
    build(table.i32());
    let bytes = table.floats * 4;
    for (const t of cache.values()) bytes += t.floats * 4;
    for (const [k, t] of cache) {
      if (bytes <= TABLE_CACHE_BYTES) break;
      bytes -= t.floats * 4;
      t.free();
      cache.delete(k);
    }
  }
  cache.set(key, table);
  return table;
}

/**
 * The spans of dw_rows: for tap t and output row r (image n, row oh), the byte offset from x of the first input
 * pixel the tap reads along that row, the first output column that reads inside the image, and how many do.
 */
function buildSpans(info: tf.backend_util.Conv2DInfo, table: Int32Array): void {
  const { batchSize, inHeight: h, inWidth: w, inChannels: c, outHeight: oh, outWidth: ow, strideHeight: sh, strideWidth: sw, filterHeight: kh, filterWidth: kw, padInfo } = info;
  let e = 0;
  for (let a = 0; a < kh; a++) {
    for (let b = 0; b < kw; b++) {
      // output column j reads input column j sw - left + b: inside for lo <= j < hi
      const lo = Math.max(0, Math.ceil((padInfo.left - b) / sw));
      const hi = Math.min(ow, Math.floor((w - 1 + padInfo.left - b) / sw) + 1);
      for (let n = 0; n < batchSize; n++) {
        for (let i = 0; i < oh; i++, e += 3) {
          const ih = i * sh - padInfo.top + a;
          const count = ih >= 0 && ih < h ? Math.max(0, hi - lo) : 0;
          table[e] = count > 0 ? ((n * h + ih) * w + lo * sw - padInfo.left + b) * c * 4 : 0;
          table[e + 1] = lo;
          table[e + 2] = count;
        }
      }
    }
  }
}

/**
 * conv_rows over the pixels of `mode`'s table (output pixels forward, input pixels for the input gradient):
 * out[p, :] = sum over taps t of src[pixel p reads through t, :] B[t], src with cin channels, B ([taps cin, cout])
 * packed into panels by `pack`.
 */
function implicitGemm(backend: object, info: tf.backend_util.Conv2DInfo, mode: "forward" | "transposed", src: tf.TensorInfo, cin: number, cout: number, outShape: number[], pack: (mod: Exports, bp: number) => void): tf.TensorInfo {
  const taps = info.filterHeight * info.filterWidth, pixels = outShape[0] * outShape[1] * outShape[2], groups = Math.ceil(pixels / 4);
  const out = makeOutput(backend, outShape);
  const table = pixelTable(backend, info, mode);
  const bp = new Scratch(backend, panelCols(cout) * taps * cin, false), zero = new Scratch(backend, cin);
  try {
    pack(gemmInstance(backend).exports, bp.ptr);
    const args = [table.ptr, offsetOf(backend, src), zero.ptr, taps, cin * 4, bp.ptr, pixels, cout, offsetOf(backend, out), cout * 4];
    overGroups(backend, "conv_rows", groups, pixels * cout * taps * cin, args);
  } finally {
    bp.free();
    zero.free();
  }
  return out;
}

/** out = conv2d(x, filter) (NHWC, filter [kh, kw, cin, cout], no bias). */
export function conv2dForward(backend: object, x: tf.TensorInfo, filter: tf.TensorInfo, info: tf.backend_util.Conv2DInfo): tf.TensorInfo {
  const { inChannels: c, outChannels: n } = info, k = info.filterHeight * info.filterWidth * c;
  return implicitGemm(backend, info, "forward", x, c, n, info.outShape, (mod, bp) => mod.pack_b(offsetOf(backend, filter), n * 4, 4, k, n, bp, 32 * k));
}

/**
 * dx = the input gradient of conv2d (no dilation), NHWC: dx[p, ci] = sum over taps t and output channels co of
 * dy[pixel whose tap t reads p, co] W[t, ci, co], the forward's implicit GEMM with the pixel table run backwards
 * and B[(t, co), ci] = W[t, ci, co].
 */
export function conv2dInputGradient(backend: object, dy: tf.TensorInfo, filter: tf.TensorInfo, info: tf.backend_util.Conv2DInfo): tf.TensorInfo {
  const { inChannels: c, outChannels: n } = info, taps = info.filterHeight * info.filterWidth, fp = offsetOf(backend, filter);
  return implicitGemm(backend, info, "transposed", dy, n, c, info.inShape, (mod, bp) => {
    // tap t's block of B is W[t] ([ci, co]) transposed: rows co (4 bytes apart), columns ci (4n apart)
    for (let t = 0; t < taps; t++) mod.pack_b(fp + t * c * n * 4, 4, n * 4, n, c, bp + t * n * 32, 32 * taps * n);
  });
}

/**
 * dW = the filter gradient of conv2d (no dilation), [kh, kw, cin, cout], for cin a multiple of 4:
 * dW[(t, ci), co] = sum_p x[pixel p sees through tap t, ci] dy[p, co].
 */
export function conv2dFilterGradient(backend: object, x: tf.TensorInfo, dy: tf.TensorInfo, info: tf.backend_util.Conv2DInfo): tf.TensorInfo {
  const { inChannels: c, outChannels: n, filterHeight: kh, filterWidth: kw, outWidth: ow } = info;
  const taps = kh * kw, rows = info.batchSize * info.outHeight, pixels = rows * ow;
  const out = makeOutput(backend, info.filterShape);
  if (pixels === 0) {
    f32(backend, out).fill(0);
    return out;
  }
  const spans = spanTable(backend, info);
  const bp = new Scratch(backend, panelCols(n) * pixels, false);
  try {
    gemmInstance(backend).exports.pack_b(offsetOf(backend, dy), n * 4, 4, pixels, n, bp.ptr, 32 * pixels);
    const op = offsetOf(backend, out);
    // K blocks of whole output rows, about KC pixels each
    const rowsPerBlock = Math.max(1, Math.round(KC / ow));
    overGroups(backend, "dw_rows_blocks", (taps * c) / 4, pixels * n * taps * c, [spans.ptr, offsetOf(backend, x), rows, ow, info.strideWidth * c * 4, c * 4, bp.ptr, rowsPerBlock, n, op, n * 4]);
  } finally {
    bp.free();
  }
  return out;
}

/** Conv2D on our implicit GEMM (NHWC); other data formats go to tfjs-wasm's kernel. */
export function conv2dKernel(original: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const { inputs, attrs, backend } = args;
    const { x, filter } = inputs as { x: tf.TensorInfo; filter: tf.TensorInfo };
    const { strides, pad, dataFormat, dilations, dimRoundingMode } = attrs as unknown as tf.Conv2DAttrs;
    if (dataFormat === "NCHW" || x.dtype !== "float32") return original(args);
    const info = tf.backend_util.computeConv2DInfo(x.shape as [number, number, number, number], filter.shape as [number, number, number, number], strides, dilations, pad, dimRoundingMode);
    return conv2dForward(backend, x, filter, info);
  };
}

/** Conv2DBackpropFilter for a multiple of 4 input channels; `fallback` for the rest. */
export function conv2dFilterKernel(fallback: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const { inputs, attrs, backend } = args;
    const { x, dy } = inputs as { x: tf.TensorInfo; dy: tf.TensorInfo };
    const { strides, pad, dataFormat, dimRoundingMode, filterShape } = attrs as unknown as tf.Conv2DBackpropFilterAttrs;
    if ((dataFormat !== undefined && dataFormat !== "NHWC") || x.shape[3] % 4 !== 0) return fallback(args);
    const info = tf.backend_util.computeConv2DInfo(x.shape as [number, number, number, number], filterShape, strides, 1, pad, dimRoundingMode);
    return conv2dFilterGradient(backend, x, dy, info);
  };
}

/** BatchMatMul (any transposes; batch dims equal, or one side's batch of 1 shared) on our GEMM. */
export function batchMatMulKernel(original: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const { inputs, attrs, backend } = args;
    const { a, b } = inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
    const { transposeA, transposeB } = attrs as unknown as tf.BatchMatMulAttrs;
    const ra = a.shape.length, rb = b.shape.length;
    const batchA = tf.util.sizeFromShape(a.shape.slice(0, -2)), batchB = tf.util.sizeFromShape(b.shape.slice(0, -2));
    const batch = Math.max(batchA, batchB);
    if (a.dtype !== "float32" || b.dtype !== "float32" || (batchA !== batch && batchA !== 1) || (batchB !== batch && batchB !== 1)) return original(args);
    const m = transposeA ? a.shape[ra - 1] : a.shape[ra - 2], k = transposeA ? a.shape[ra - 2] : a.shape[ra - 1];
    const n = transposeB ? b.shape[rb - 2] : b.shape[rb - 1];
    if ((transposeB ? b.shape[rb - 1] : b.shape[rb - 2]) !== k) return original(args); // tfjs-wasm names the mismatch
    const outer = tf.backend_util.assertAndGetBroadcastShape(a.shape.slice(0, -2), b.shape.slice(0, -2));
    const out = makeOutput(backend, [...outer, m, n]);
    const ap = offsetOf(backend, a), bp = offsetOf(backend, b), op = offsetOf(backend, out);
    for (let i = 0; i < batch; i++) {
      // A[r, c] at a + r aI + c aK: rows k floats apart, or (transposed) m floats apart between columns
      const aOff = ap + (batchA === 1 ? 0 : i * m * k * 4), bOff = bp + (batchB === 1 ? 0 : i * k * n * 4);
      gemm(backend, m, n, k, aOff, transposeA ? 4 : k * 4, transposeA ? m * 4 : 4, bOff, transposeB ? 4 : n * 4, transposeB ? k * 4 : 4, op + i * m * n * 4, n * 4);
    }
    return out;
  };
}

/** Conv2DBackpropInput (NHWC) on the implicit GEMM. */
export function conv2dInputKernel({ inputs, attrs, backend }: Parameters<tf.KernelFunc>[0]): tf.TensorInfo {
  const { dy, filter } = inputs as { dy: tf.TensorInfo; filter: tf.TensorInfo };
  const { strides, pad, dataFormat, dimRoundingMode, inputShape } = attrs as unknown as tf.Conv2DBackpropInputAttrs;
  if (dataFormat !== undefined && dataFormat !== "NHWC") throw new Error(`Conv2DBackpropInput on wasm (lib/backend/gemm.ts): expected dataFormat NHWC, got ${dataFormat}`);
  const info = tf.backend_util.computeConv2DInfo(inputShape, filter.shape as [number, number, number, number], strides, 1, pad, dimRoundingMode);
  return conv2dInputGradient(backend, dy, filter, info);
}
