import * as tf from "@tensorflow/tfjs";
import { dropAxes, EmittedValue, Emitter, GraphBuilder, GraphValue, inversePerm, KernelCall, typedOf } from "./onnx_graph";
import { OnnxAttr, OnnxDType } from "./onnx_proto";

// One ONNX translation per tfjs kernel, keyed by the kernel's name. Attribute semantics follow the cpu kernels of
// @tensorflow/tfjs-backend-cpu 4.22, against which the parity tests run. Translations of kernels that do not
// care about axis order work in their input's layout (onnx_graph.ts); convolutions and pools work in NCHW and
// leave their output so; the rest see their inputs in tfjs order.

type Attrs = Record<string, OnnxAttr>;

const ints = (v: number[]): OnnxAttr => ({ ints: v });
const int = (v: number): OnnxAttr => ({ i: v });

/** tfjs kernel attributes are untyped here; read one with the type the kernel documents. */
function attr<T>(k: KernelCall, name: string): T {
  return k.attrs[name] as T;
}

const out0 = (k: KernelCall) => k.outputs[0];

/** An element-wise kernel: one ONNX op over its inputs (in their layout), output shape and dtype from tfjs. */
function ew(op: string, keys: Array<string | number>, attrs: (k: KernelCall) => Attrs = () => ({})): Emitter {
  return (g, k) => [g.elementwise(op, keys.map((key) => k.laid(key)), out0(k).shape, out0(k).dtype, attrs(k))];
}

const unary = (op: string, attrs?: (k: KernelCall) => Attrs): Emitter => ew(op, ["x"], attrs);
const binary = (op: string): Emitter => ew(op, ["a", "b"]);

/** A scalar constant as a graph value. */
function scalarValue(g: GraphBuilder, value: number, dtype: OnnxDType): GraphValue {
  return { name: g.scalar(value, dtype), shape: [], dtype, perm: [] };
}

/** An element-wise op inside a translation of several nodes, on inputs whose shapes broadcast. */
function then(g: GraphBuilder, op: string, inputs: GraphValue[], dtype?: OnnxDType): GraphValue {
  const shape = inputs.map((v) => v.shape).reduce((a, b) => tf.broadcast_util.assertAndGetBroadcastShape(a, b));
  return g.elementwise(op, inputs, shape, dtype ?? inputs[0].dtype);
}

/** The kernel's axes, normalised to [0, rank); none given (null) means all, as in tfjs. */
function axesOf(k: KernelCall, name: string, shape: number[]): number[] {
  return tf.util.parseAxisParam(attr<number | number[]>(k, name), shape).map((d) => (d < 0 ? d + shape.length : d));
}

function normAxis(axis: number, rank: number): number {
  return axis < 0 ? axis + rank : axis;
}

/** A reduction over tfjs axes, on the graph axes that hold them; without keepDims the layout loses those axes. */
function reduceLaid(g: GraphBuilder, op: string, x: GraphValue, ax: number[], keep: boolean, dtype: OnnxDType, shape: number[]): GraphValue {
  const inv = inversePerm(x.perm);
  const graphAxes = ax.map((a) => inv[a]).sort((a, b) => a - b);
  const keepdims = int(keep ? 1 : 0);
  // opset 13 moved ReduceSum's axes to an input; the other reductions follow only at opset 18
  const name = op === "ReduceSum" ? g.node(op, [x.name, g.int64s(graphAxes)], { keepdims }) : g.node(op, [x.name], { axes: ints(graphAxes), keepdims });
  return { name, shape, dtype, perm: keep ? x.perm : dropAxes(x.perm, ax) };
}

function reduce(op: string, axisAttr = "axis"): Emitter {
  return (g, k) => {
    const x = k.laid("x");
    const ax = axesOf(k, axisAttr, x.shape);
    if (ax.length === 0) return [{ name: g.node("Identity", [x.name]), perm: x.perm }];
    return [reduceLaid(g, op, x, ax, attr<boolean>(k, "keepDims"), out0(k).dtype, out0(k).shape)];
  };
}

/** All/Any on bool tensors: a min/max over 0/1 integers. */
function boolReduce(op: "ReduceMin" | "ReduceMax"): Emitter {
  return (g, k) => {
    const x = k.laid("x");
    const ax = axesOf(k, "axis", x.shape);
    if (ax.length === 0) return [{ name: g.node("Identity", [x.name]), perm: x.perm }];
    const asInt = { ...x, name: g.node("Cast", [x.name], { to: int(6) }), dtype: "int32" as const };
    const r = reduceLaid(g, op, asInt, ax, attr<boolean>(k, "keepDims"), "int32", out0(k).shape);
    return [{ name: g.node("Cast", [r.name], { to: int(9) }), perm: r.perm }];
  };
}

/** ArgMax/ArgMin along one axis; ONNX answers int64, tfjs int32. */
function argReduce(op: string): Emitter {
  return (g, k) => {
    const x = k.laid("x");
    const axis = normAxis(attr(k, "axis"), x.shape.length);
    const r = g.node(op, [x.name], { axis: int(inversePerm(x.perm)[axis]), keepdims: int(0) });
    return [{ name: g.node("Cast", [r], { to: int(6) }), perm: dropAxes(x.perm, [axis]) }];
  };
}

/** Softmax and LogSoftmax over one tfjs axis, on the graph axis that holds it. */
function softmax(op: string, axisAttr: string): Emitter {
  return (g, k) => {
    const x = k.laid("logits");
    const axis = normAxis(attr(k, axisAttr), x.shape.length);
    return [{ name: g.node(op, [x.name], { axis: int(inversePerm(x.perm)[axis]) }), perm: x.perm }];
  };
}

const ONNX_CAST: Record<string, number> = { float32: 1, int32: 6, bool: 9 };

function castTo(dtype: string, kernel: string): OnnxAttr {
  const to = ONNX_CAST[dtype];
  if (to === undefined) throw new Error(`ONNX export: ${kernel} to dtype '${dtype}' has no ONNX translation (float32, int32, bool only)`);
  return int(to);
}

/** Graph axis order of an NHWC tensor stored as NCHW. */
const NCHW = [0, 3, 1, 2];

type Padding = "valid" | "same" | number | tf.backend_util.ExplicitPadding;
type Rounding = "floor" | "round" | "ceil" | undefined;

/** A fused kernel's activation applied to y (tfjs backend_util.applyActivation). */
function activation(g: GraphBuilder, k: KernelCall, y: GraphValue): GraphValue {
  const act = attr<string | undefined>(k, "activation") ?? "linear";
  const f32 = (v: number) => scalarValue(g, v, "float32");
  switch (act) {
    case "linear": return y;
    case "relu": return then(g, "Relu", [y]);
    case "relu6": return then(g, "Clip", [y, f32(0), f32(6)]);
    case "elu": return then(g, "Elu", [y]);
    case "sigmoid": return then(g, "Sigmoid", [y]);
    case "leakyrelu": return g.elementwise("LeakyRelu", [y], y.shape, y.dtype, { alpha: { f: attr<number>(k, "leakyreluAlpha") } });
    case "prelu": return then(g, "PRelu", [y, k.laid("preluActivationWeights")]);
    default: throw new Error(`ONNX export: ${k.kernel} activation '${act}' has no ONNX translation`);
  }
}

/**
 * Conv2D, FusedConv2D, DepthwiseConv2dNative, FusedDepthwiseConv2D. tfjs filters are [kh, kw, in, out] (depthwise:
 * [kh, kw, in, multiplier], output channel c * multiplier + m); ONNX weights are [out, in / group, kh, kw]. The
 * weight transposes act on initializers only, so onnxruntime folds them when it loads the model.
 */
function conv(depthwise: boolean): Emitter {
  return (g, k) => {
    const x = k.laid("x");
    const f = k.input("filter");
    const last = attr<string>(k, "dataFormat") !== "NCHW";
    const info = tf.backend_util.computeConv2DInfo(
      x.shape as [number, number, number, number], f.shape as [number, number, number, number], attr(k, "strides"), attr(k, "dilations"),
      attr<Padding>(k, "pad"), attr<Rounding>(k, "dimRoundingMode"), depthwise, last ? "channelsLast" : "channelsFirst",
    );
    const [kh, kw, cin, cout] = f.shape;
    const w = depthwise ? g.transpose(g.reshape(f.name, [kh, kw, cin * cout, 1]), [2, 3, 0, 1]) : g.transpose(f.name, [3, 2, 0, 1]);
    const p = info.padInfo;
    const attrs: Attrs = {
      kernel_shape: ints([kh, kw]),
      strides: ints([info.strideHeight, info.strideWidth]),
      dilations: ints([info.dilationHeight, info.dilationWidth]),
      pads: ints([p.top, p.left, p.bottom, p.right]),
      group: int(depthwise ? cin : 1),
    };
    // a per-channel bias rides in Conv's third input; any other broadcastable bias is added afterwards
    const bias = k.has("bias") ? k.laid("bias") : undefined;
    const inConv = bias !== undefined && bias.shape.length === 1 && bias.shape[0] === info.outChannels;
    const xin = last ? g.layout(x, NCHW) : g.plain(x).name;
    const y = g.node("Conv", [xin, w, ...(inConv ? [bias.name] : [])], attrs);
    let out: GraphValue = { name: y, shape: out0(k).shape, dtype: "float32", perm: last ? NCHW : [0, 1, 2, 3] };
    if (bias && !inConv) out = then(g, "Add", [out, bias]);
    return [activation(g, k, out)];
  };
}

/** MaxPool, AvgPool, in NCHW. tfjs averages over the window's pixels inside the image only: count_include_pad = 0. */
function pool(op: "MaxPool" | "AveragePool"): Emitter {
  return (g, k) => {
    const x = k.laid("x");
    const info = tf.backend_util.computePool2DInfo(
      x.shape as [number, number, number, number], attr(k, "filterSize"), attr(k, "strides"), 1, attr<Padding>(k, "pad"), attr<Rounding>(k, "dimRoundingMode"),
    );
    const p = info.padInfo;
    const attrs: Attrs = {
      kernel_shape: ints([info.filterHeight, info.filterWidth]),
      strides: ints([info.strideHeight, info.strideWidth]),
      pads: ints([p.top, p.left, p.bottom, p.right]),
    };
    if (op === "AveragePool") attrs.count_include_pad = int(0);
    return [{ name: g.node(op, [g.layout(x, NCHW)], attrs), perm: NCHW }];
  };
}

/**
 * ResizeNearestNeighbor and ResizeBilinear by output size, in the input's layout. The coordinate maps of the cpu
 * kernels: source = dst * in / out (asymmetric), (dst + 0.5) * in / out [- 0.5] (half-pixel centres), or
 * dst * (in - 1) / (out - 1) (align corners); nearest takes floor, or round with align corners.
 */
function resize(mode: "nearest" | "linear"): Emitter {
  return (g, k) => {
    const x = k.laid("images");
    const align = attr<boolean>(k, "alignCorners");
    const half = attr<boolean>(k, "halfPixelCenters");
    const attrs: Attrs = { mode: { s: mode } };
    if (mode === "nearest") {
      attrs.coordinate_transformation_mode = { s: align ? "align_corners" : half ? "tf_half_pixel_for_nn" : "asymmetric" };
      attrs.nearest_mode = { s: align ? "round_prefer_ceil" : "floor" };
    } else {
      attrs.coordinate_transformation_mode = { s: align ? "align_corners" : half ? "half_pixel" : "asymmetric" };
    }
    const sizes = out0(k).shape;
    return [{ name: g.node("Resize", [x.name, "", "", g.int64s(x.perm.map((a) => sizes[a]))], attrs), perm: x.perm }];
  };
}

/** A matrix operand in tfjs order, or with its last two axes swapped: one Transpose at most, from any layout. */
function matrix(g: GraphBuilder, x: GraphValue, swap: boolean): string {
  const perm = x.shape.map((_, i) => i);
  const r = perm.length;
  if (swap) [perm[r - 2], perm[r - 1]] = [perm[r - 1], perm[r - 2]];
  return g.layout(x, perm);
}

/** BatchMatMul and _FusedMatMul: numpy-style batched matrix products, so ONNX MatMul broadcasts as tfjs does. */
const matMul: Emitter = (g, k) => {
  const a = matrix(g, k.laid("a"), attr<boolean>(k, "transposeA"));
  const b = matrix(g, k.laid("b"), attr<boolean>(k, "transposeB"));
  let y: GraphValue = { name: g.node("MatMul", [a, b]), shape: out0(k).shape, dtype: "float32", perm: out0(k).shape.map((_, i) => i) };
  if (k.has("bias")) y = then(g, "Add", [y, k.laid("bias")]);
  return [activation(g, k, y)];
};

/** tfjs computes (x - mean) * scale / sqrt(var + eps) + offset; here as x * a + b with per-channel a and b. */
const batchNorm: Emitter = (g, k) => {
  const eps = scalarValue(g, attr<number>(k, "varianceEpsilon"), "float32");
  const inv = then(g, "Reciprocal", [then(g, "Sqrt", [then(g, "Add", [k.laid("variance"), eps])])]);
  const a = k.has("scale") ? then(g, "Mul", [inv, k.laid("scale")]) : inv;
  const ma = then(g, "Mul", [k.laid("mean"), a]);
  const b = k.has("offset") ? then(g, "Sub", [k.laid("offset"), ma]) : then(g, "Neg", [ma]);
  return [then(g, "Add", [then(g, "Mul", [k.laid("x"), a]), b])];
};

/** Kernels whose result depends only on the (static) shape of their input: a constant of the output. */
const constantOutput: Emitter = (g, k) => [g.constant(out0(k).dtype, out0(k).shape, k.outputValues(0))];

/** The same values under the output's shape (Reshape, ExpandDims; tfjs runs squeeze as Reshape). */
const reshape: Emitter = (g, k) => [g.reshapeLaid(k.laid(k.has("x") ? "x" : "input"), out0(k).shape)];

const positional = (k: KernelCall, laid: boolean): GraphValue[] => Array.from({ length: k.inputCount }, (_, i) => (laid ? k.laid(i) : k.input(i)));

/** Concatenation along a tfjs axis, in the layout of the largest input. */
function concatLaid(g: GraphBuilder, xs: GraphValue[], axis: number): EmittedValue {
  if (xs.length === 1) return { name: g.node("Identity", [xs[0].name]), perm: xs[0].perm };
  const size = (v: GraphValue) => v.shape.reduce((p, q) => p * q, 1);
  const target = xs.reduce((a, b) => (size(b) > size(a) ? b : a)).perm;
  return { name: g.node("Concat", xs.map((v) => g.layout(v, target)), { axis: int(inversePerm(target)[axis]) }), perm: target };
}

/** Per-axis values (starts, ends, repeats, paddings) in the graph's axis order. */
const byGraphAxis = <T>(perm: number[], values: T[]): T[] => perm.map((a) => values[a]);

/** ONNX Pad's pads: every axis's begin, then every axis's end. */
const onnxPads = (p: Array<[number, number]>): number[] => [...p.map((q) => q[0]), ...p.map((q) => q[1])];

/** Element-wise kernels of one input that are one ONNX op. */
const UNARY: Record<string, string> = {
  Abs: "Abs", Acos: "Acos", Acosh: "Acosh", Asin: "Asin", Asinh: "Asinh", Atan: "Atan", Atanh: "Atanh", Ceil: "Ceil",
  Cos: "Cos", Cosh: "Cosh", Elu: "Elu", Erf: "Erf", Exp: "Exp", Floor: "Floor", Identity: "Identity", IsNan: "IsNaN",
  Log: "Log", LogicalNot: "Not", Neg: "Neg", Reciprocal: "Reciprocal", Relu: "Relu", Round: "Round", Sigmoid: "Sigmoid",
  Sign: "Sign", Sin: "Sin", Sinh: "Sinh", Softplus: "Softplus", Sqrt: "Sqrt", Tan: "Tan", Tanh: "Tanh", Selu: "Selu",
};

/** Element-wise kernels of two inputs that are one ONNX op. */
const BINARY: Record<string, string> = {
  Add: "Add", Sub: "Sub", Multiply: "Mul", RealDiv: "Div", Maximum: "Max", Minimum: "Min", Pow: "Pow", Equal: "Equal",
  Greater: "Greater", GreaterEqual: "GreaterOrEqual", Less: "Less", LessEqual: "LessOrEqual", LogicalAnd: "And",
  LogicalOr: "Or",
};

/** Kernels whose output is bool whatever their input. */
const BOOL_RESULT = new Set(["Equal", "NotEqual", "Greater", "GreaterEqual", "Less", "LessEqual", "LogicalAnd", "LogicalOr", "LogicalNot", "IsNan"]);

const EMITTERS: Record<string, Emitter> = {
  ...Object.fromEntries(Object.entries(UNARY).map(([kernel, op]) => [kernel, unary(op)])),
  ...Object.fromEntries(Object.entries(BINARY).map(([kernel, op]) => [kernel, binary(op)])),
  LeakyRelu: unary("LeakyRelu", (k) => ({ alpha: { f: attr<number>(k, "alpha") } })),
  Cast: unary("Cast", (k) => ({ to: castTo(attr<string>(k, "dtype"), k.kernel) })),
  // rsqrt(x) = 1 / sqrt(x)
  Rsqrt: (g, k) => [then(g, "Reciprocal", [then(g, "Sqrt", [k.laid("x")])])],
  Square: (g, k) => [then(g, "Mul", [k.laid("x"), k.laid("x")])],
  Expm1: (g, k) => [then(g, "Sub", [then(g, "Exp", [k.laid("x")]), scalarValue(g, 1, "float32")])],
  Log1p: (g, k) => [then(g, "Log", [then(g, "Add", [k.laid("x"), scalarValue(g, 1, "float32")])])],
  Relu6: (g, k) => [then(g, "Clip", [k.laid("x"), scalarValue(g, 0, "float32"), scalarValue(g, 6, "float32")])],
  ClipByValue: (g, k) => {
    const x = k.laid("x");
    return [then(g, "Clip", [x, scalarValue(g, attr(k, "clipValueMin"), x.dtype), scalarValue(g, attr(k, "clipValueMax"), x.dtype)])];
  },
  Prelu: ew("PRelu", ["x", "alpha"]),

  NotEqual: (g, k) => [then(g, "Not", [then(g, "Equal", [k.laid("a"), k.laid("b")], "bool")])],
  // (a - b)^2
  SquaredDifference: (g, k) => {
    const d = then(g, "Sub", [k.laid("a"), k.laid("b")]);
    return [then(g, "Mul", [d, d])];
  },
  // floor(a / b); integers divide as floats so that negative quotients round down as in tfjs
  FloorDiv: (g, k) => {
    const [a, b] = [k.laid("a"), k.laid("b")];
    if (a.dtype === "float32") return [then(g, "Floor", [then(g, "Div", [a, b])])];
    const f = (v: GraphValue) => g.elementwise("Cast", [v], v.shape, "float32", { to: int(1) });
    const q = then(g, "Floor", [then(g, "Div", [f(a), f(b)])]);
    return [g.elementwise("Cast", [q], q.shape, "int32", { to: int(6) })];
  },
  AddN: (g, k) => [g.elementwise("Sum", positional(k, true), out0(k).shape, out0(k).dtype)],
  Select: ew("Where", ["condition", "t", "e"]),

  // reductions
  Mean: reduce("ReduceMean"), Sum: reduce("ReduceSum"), Max: reduce("ReduceMax", "reductionIndices"),
  Min: reduce("ReduceMin"), Prod: reduce("ReduceProd"), All: boolReduce("ReduceMin"), Any: boolReduce("ReduceMax"),
  ArgMax: argReduce("ArgMax"), ArgMin: argReduce("ArgMin"),
  Softmax: softmax("Softmax", "dim"), LogSoftmax: softmax("LogSoftmax", "axis"),
  Cumsum: (g, k) => {
    const x = k.laid("x");
    const axis = inversePerm(x.perm)[normAxis(attr(k, "axis"), x.shape.length)];
    return [{ name: g.node("CumSum", [x.name, g.int64s([axis])], { exclusive: int(attr(k, "exclusive") ? 1 : 0), reverse: int(attr(k, "reverse") ? 1 : 0) }), perm: x.perm }];
  },

  // layout and indexing
  Reshape: reshape, ExpandDims: reshape,
  // a transpose only relabels which tfjs axis each graph axis holds: no node
  Transpose: (g, k) => {
    const x = k.laid("x");
    const inv = inversePerm(attr<number[]>(k, "perm"));
    return [{ name: x.name, perm: x.perm.map((a) => inv[a]) }];
  },
  Concat: (g, k) => {
    const xs = positional(k, true);
    return [concatLaid(g, xs, tf.util.parseAxisParam(attr<number>(k, "axis"), xs[0].shape)[0])];
  },
  Pack: (g, k) => {
    const xs = positional(k, true);
    const axis = normAxis(attr<number>(k, "axis"), xs[0].shape.length + 1);
    const shape = [...xs[0].shape.slice(0, axis), 1, ...xs[0].shape.slice(axis)];
    return [concatLaid(g, xs.map((v) => g.reshapeLaid(v, shape)), axis)];
  },
  Unpack: (g, k) => {
    const x = k.laid("value");
    const axis = normAxis(attr<number>(k, "axis"), x.shape.length);
    const n = x.shape[axis];
    const gAxis = inversePerm(x.perm)[axis];
    const parts = n === 1 ? [x.name] : g.nodeN("Split", [x.name, g.int64s(new Array(n).fill(1))], { axis: int(gAxis) }, n);
    return parts.map((p) => ({ name: g.node("Squeeze", [p, g.int64s([gAxis])]), perm: dropAxes(x.perm, [axis]) }));
  },
  SplitV: (g, k) => {
    const x = k.laid("x");
    const axis = tf.util.parseAxisParam(attr<number>(k, "axis"), x.shape)[0];
    const sizes = k.outputs.map((o) => o.shape[axis]);
    if (sizes.length === 1) return [{ name: g.node("Identity", [x.name]), perm: x.perm }];
    const names = g.nodeN("Split", [x.name, g.int64s(sizes)], { axis: int(inversePerm(x.perm)[axis]) }, sizes.length);
    return names.map((name) => ({ name, perm: x.perm }));
  },
  Slice: (g, k) => {
    const x = k.laid("x");
    const [begin] = tf.slice_util.parseSliceParams({ shape: x.shape } as tf.TensorInfo, attr(k, "begin"), attr(k, "size"));
    const size = out0(k).shape;
    const starts = byGraphAxis(x.perm, begin);
    const ends = byGraphAxis(x.perm, begin.map((b, i) => b + size[i]));
    return [{ name: g.node("Slice", [x.name, g.int64s(starts), g.int64s(ends), g.int64s(x.perm.map((_, i) => i))]), perm: x.perm }];
  },
  Tile: (g, k) => {
    const x = k.laid("x");
    return [{ name: g.node("Tile", [x.name, g.int64s(byGraphAxis(x.perm, attr<number[]>(k, "reps")))]), perm: x.perm }];
  },
  BroadcastTo: (g, k) => {
    const x = k.input("x");
    return [g.node("Expand", [x.name, g.int64s(out0(k).shape)])];
  },
  PadV2: (g, k) => {
    const x = k.laid("x");
    const pads = g.int64s(onnxPads(byGraphAxis(x.perm, attr<Array<[number, number]>>(k, "paddings"))));
    return [{ name: g.node("Pad", [x.name, pads, g.scalar(attr(k, "constantValue"), x.dtype)], { mode: { s: "constant" } }), perm: x.perm }];
  },
  MirrorPad: (g, k) => {
    if (attr(k, "mode") !== "reflect") throw new Error(`ONNX export: MirrorPad mode '${attr(k, "mode")}' has no ONNX translation (reflect only)`);
    const x = k.laid("x");
    const pads = g.int64s(onnxPads(byGraphAxis(x.perm, attr<Array<[number, number]>>(k, "paddings"))));
    return [{ name: g.node("Pad", [x.name, pads], { mode: { s: "reflect" } }), perm: x.perm }];
  },
  GatherV2: (g, k) => {
    const x = k.input("x");
    if (attr<number>(k, "batchDims") !== 0) throw new Error("ONNX export: GatherV2 with batchDims has no ONNX translation");
    const axis = tf.util.parseAxisParam(attr<number>(k, "axis"), x.shape)[0];
    return [g.node("Gather", [x.name, k.input("indices").name], { axis: int(axis) })];
  },
  // one_hot(i)[..., j] = on if i == j else off
  OneHot: (g, k) => {
    const { dtype } = out0(k);
    const depth = attr<number>(k, "depth");
    const range = g.constant("int32", [depth], typedOf("int32", Array.from({ length: depth }, (_, j) => j)));
    const idx = g.node("Unsqueeze", [k.input("indices").name, g.int64s([-1])]);
    const hit = g.node("Equal", [g.node("Cast", [idx], { to: int(6) }), range]);
    return [g.node("Where", [hit, g.scalar(attr(k, "onValue"), dtype), g.scalar(attr(k, "offValue"), dtype)])];
  },
  Einsum: (g, k) => [g.node("Einsum", positional(k, false).map((v) => v.name), { equation: { s: attr(k, "equation") } })],
  ZerosLike: constantOutput, OnesLike: constantOutput,

  // convolution, pooling, resampling, normalisation, matrix products
  Conv2D: conv(false), FusedConv2D: conv(false), DepthwiseConv2dNative: conv(true), FusedDepthwiseConv2D: conv(true),
  MaxPool: pool("MaxPool"), AvgPool: pool("AveragePool"),
  ResizeNearestNeighbor: resize("nearest"), ResizeBilinear: resize("linear"),
  FusedBatchNorm: batchNorm,
  BatchMatMul: matMul, _FusedMatMul: matMul,
};

/** Element-wise kernels built from several ONNX ops, and those with attributes: output shaped as input x. */
const SAME_SHAPE = new Set([...Object.keys(UNARY), "LeakyRelu", "Cast", "Rsqrt", "Square", "Expm1", "Log1p", "Relu6", "ClipByValue", "Prelu", "FusedBatchNorm"]);
const BROADCAST = new Set([...Object.keys(BINARY), "NotEqual", "SquaredDifference", "FloorDiv"]);
const REDUCTIONS: Record<string, string> = { Mean: "axis", Sum: "axis", Max: "reductionIndices", Min: "axis", Prod: "axis" };

type Shape4 = [number, number, number, number];
type Inputs = Record<string, tf.TensorInfo>;

/**
 * The output shape and dtype of a kernel, worked out without running it, for the kernels whose cost grows with
 * the size of their input (element-wise, reductions, convolutions, pools, resizes, matrix products, layout
 * changes); undefined for the rest. The trace runs no kernel it can answer here on graph values, since only
 * shapes matter downstream, which keeps the trace of a large network at a large batch cheap.
 */
export function outputOf(kernel: string, i: Inputs, a: Record<string, unknown>): { shape: number[]; dtype: tf.DataType } | undefined {
  const bool = BOOL_RESULT.has(kernel);
  if (SAME_SHAPE.has(kernel)) return { shape: i.x.shape, dtype: kernel === "Cast" ? (a.dtype as tf.DataType) : bool ? "bool" : i.x.dtype };
  if (BROADCAST.has(kernel)) return { shape: tf.broadcast_util.assertAndGetBroadcastShape(i.a.shape, i.b.shape), dtype: bool ? "bool" : i.a.dtype };
  const reduction = REDUCTIONS[kernel];
  if (reduction && i.x.dtype === "float32") {
    const axes = tf.util.parseAxisParam(a[reduction] as number | number[], i.x.shape);
    const [shape] = tf.backend_util.computeOutAndReduceShapes(i.x.shape, axes);
    return { shape: a.keepDims ? tf.backend_util.expandShapeToKeepDim(shape, axes) : shape, dtype: "float32" };
  }
  type Pad = "valid" | "same" | number | tf.backend_util.ExplicitPadding;
  const conv = (depthwise: boolean) =>
    tf.backend_util.computeConv2DInfo(
      i.x.shape as Shape4, i.filter.shape as Shape4, a.strides as number, a.dilations as number, a.pad as Pad,
      a.dimRoundingMode as "floor" | undefined, depthwise, a.dataFormat === "NCHW" ? "channelsFirst" : "channelsLast",
    ).outShape;
  switch (kernel) {
    case "Select": return { shape: i.t.shape, dtype: i.t.dtype };
    case "Softmax": case "LogSoftmax": return { shape: i.logits.shape, dtype: "float32" };
    case "Conv2D": case "FusedConv2D": return { shape: conv(false), dtype: "float32" };
    case "DepthwiseConv2dNative": case "FusedDepthwiseConv2D": return { shape: conv(true), dtype: "float32" };
    case "MaxPool": case "AvgPool": {
      const info = tf.backend_util.computePool2DInfo(i.x.shape as Shape4, a.filterSize as number, a.strides as number, 1, a.pad as Pad, a.dimRoundingMode as "floor" | undefined);
      return { shape: info.outShape, dtype: "float32" };
    }
    case "ResizeNearestNeighbor": case "ResizeBilinear": {
      const [n, , , c] = i.images.shape;
      const [h, w] = a.size as [number, number];
      return { shape: [n, h, w, c], dtype: kernel === "ResizeBilinear" ? "float32" : i.images.dtype };
    }
    case "BatchMatMul": case "_FusedMatMul": {
      const [sa, sb] = [i.a.shape, i.b.shape];
      const batch = tf.broadcast_util.assertAndGetBroadcastShape(sa.slice(0, -2), sb.slice(0, -2));
      return { shape: [...batch, a.transposeA ? sa[sa.length - 1] : sa[sa.length - 2], a.transposeB ? sb[sb.length - 2] : sb[sb.length - 1]], dtype: "float32" };
    }
    case "Transpose": return { shape: (a.perm as number[]).map((p) => i.x.shape[p]), dtype: i.x.dtype };
    case "PadV2": return { shape: i.x.shape.map((d, k) => d + (a.paddings as Array<[number, number]>)[k][0] + (a.paddings as Array<[number, number]>)[k][1]), dtype: i.x.dtype };
    default: return undefined;
  }
}

/** The translation of a tfjs kernel, or undefined when there is none. */
export function emitterFor(kernel: string): Emitter | undefined {
  return EMITTERS[kernel];
}

/** Kernel names with a translation (for error messages and documentation). */
export const SUPPORTED_KERNELS: readonly string[] = Object.keys(EMITTERS).sort();

/** ONNX element type of a tfjs dtype; complex64 and string tensors cannot be exported. */
export function onnxDType(dtype: string, what: string): "float32" | "int32" | "bool" {
  if (dtype === "float32" || dtype === "int32" || dtype === "bool") return dtype;
  throw new Error(`ONNX export: ${what} has dtype ${dtype}; only float32, int32 and bool tensors can be exported`);
}

