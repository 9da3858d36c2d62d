import * as tf from "@tensorflow/tfjs";
import { ADAM_KERNELS } from "./adam_update";
import { BROADCAST_OPS, broadcastBinary } from "./broadcast";
import { concatKernel, splitKernel } from "./concat";
import { DROPOUT_KERNELS } from "./dropout";
import { batchMatMulKernel, conv2dFilterKernel, conv2dInputKernel, conv2dKernel } from "./gemm";
import { GROUP_NORM_KERNELS } from "./group_norm";
import { columnReduce } from "./reduce";
import { RESAMPLE_KERNELS } from "./resample";
import { castKernel, identityKernel, unaryKernel } from "./unary";

// The kernels the wasm engine registers for training. tfjs-backend-wasm 4.22 has no Conv2DBackpropFilter,
// DepthwiseConv2dNativeBackpropFilter/-Input or UnsortedSegmentSum (the gradient of tf.gather); its
// Conv2DBackpropInput and batched or transposed matMul are plain loops; element-wise, normalisation and
// broadcasting ops run one small kernel each. Our WebAssembly SIMD kernels (lib/backend/gemm.ts and the files it
// names) replace the convolutions, matMul and the hot element-wise work; the kernels in this file are written
// with public ops: inside a kernel the engine records no gradient tape, and a tf.Tensor returned by a kernelFunc
// is used as the kernel's output as is.

type Pads = [top: number, bottom: number, left: number, right: number];

function requireNHWC(kernel: string, dataFormat: unknown): void {
  if (dataFormat !== undefined && dataFormat !== "NHWC") {
    throw new Error(`${kernel} on wasm (lib/backend/wasm_kernels.ts): expected dataFormat NHWC, got ${String(dataFormat)}`);
  }
}

/** Pads (positive) or crops (negative) the spatial axes; returns the cropped tensor and the padding left to apply. */
function cropForPadding(x: tf.Tensor4D, [t, b, l, r]: Pads): [tf.Tensor4D, [[0, 0], [number, number], [number, number], [0, 0]]] {
  const [n, h, w, c] = x.shape;
  const ct = Math.max(0, -t), cb = Math.max(0, -b), cl = Math.max(0, -l), cr = Math.max(0, -r);
  const cropped = ct + cb + cl + cr === 0 ? x : tf.slice(x, [0, ct, cl, 0], [n, h - ct - cb, w - cl - cr, c]);
  return [cropped, [[0, 0], [Math.max(0, t), Math.max(0, b)], [Math.max(0, l), Math.max(0, r)], [0, 0]]];
}

/** Puts s-1 zeros between neighbouring pixels: [N,H,W,C] -> [N,H*sh,W*sw,C] (trailing zeros included). */
function spreadOut(x: tf.Tensor4D, sh: number, sw: number): tf.Tensor4D {
  if (sh === 1 && sw === 1) return x;
  const [n, h, w, c] = x.shape;
  const holes = tf.pad(tf.reshape(x, [n, h, 1, w, 1, c]), [[0, 0], [0, 0], [0, sh - 1], [0, 0], [0, sw - 1], [0, 0]]);
  return tf.reshape(holes, [n, h * sh, w * sw, c]);
}

/**
 * Padding that turns the gradient of a strided conv into a stride-1 correlation of the spread-out dy
 * (length OH*s, see spreadOut) with the spatially flipped filter, whose output has the input's size.
 */
function transposedPads(info: tf.backend_util.Conv2DInfo): Pads {
  const { padInfo, inHeight, inWidth, outHeight, outWidth, strideHeight: sh, strideWidth: sw } = info;
  const reachH = (info.filterHeight - 1) * info.dilationHeight, reachW = (info.filterWidth - 1) * info.dilationWidth;
  // x row h receives dy row oh through tap kh when oh*s - top + kh*d = h; the flipped filter reads the
  // spread-out dy from reach - top rows above, and the last output row must see to its end.
  const top = reachH - padInfo.top, left = reachW - padInfo.left;
  return [top, inHeight + reachH - top - outHeight * sh, left, inWidth + reachW - left - outWidth * sw];
}

function conv2dBackpropFilter({ inputs, attrs }: Parameters<tf.KernelFunc>[0]): tf.Tensor {
  const x = inputs.x as tf.Tensor4D, dy = inputs.dy as tf.Tensor4D;
  const { strides, pad, dataFormat, dimRoundingMode, filterShape } = attrs as unknown as tf.Conv2DBackpropFilterAttrs;
  requireNHWC("Conv2DBackpropFilter", dataFormat);
  const info = tf.backend_util.computeConv2DInfo(x.shape, filterShape, strides, 1, pad, dimRoundingMode);
  const { padInfo, filterHeight: kh, filterWidth: kw, inHeight: h, inWidth: w, strideHeight: sh, strideWidth: sw } = info;
  return tf.tidy(() => {
    // dW[kh,kw,ci,co] = sum_{n,oh,ow} x_pad[n, oh*s + kh, ow*s + kw, ci] * dy[n,oh,ow,co]
    // is itself a convolution: batch = ci, channels = n, filter = dy with its taps s apart (dilation s);
    // its output pixels are the kernel offsets. That runs on XNNPACK's conv instead of a loop.
    const bottom = kh + (info.outHeight - 1) * sh - h - padInfo.top;
    const right = kw + (info.outWidth - 1) * sw - w - padInfo.left;
    const [xc, pads] = cropForPadding(x, [padInfo.top, bottom, padInfo.left, right]);
    const batchIsChannel = tf.transpose(xc, [3, 1, 2, 0]);
    const dyAsFilter = tf.transpose(dy, [1, 2, 0, 3]);
    const dw = tf.conv2d(batchIsChannel, dyAsFilter, 1, pads, "NHWC", [sh, sw]);
    return tf.transpose(dw, [1, 2, 0, 3]);
  });
}

function depthwiseBackpropInput({ inputs, attrs }: Parameters<tf.KernelFunc>[0]): tf.Tensor {
  const dy = inputs.dy as tf.Tensor4D, filter = inputs.filter as tf.Tensor4D;
  const { strides, pad, dilations, dimRoundingMode, inputShape } = attrs as unknown as tf.DepthwiseConv2dNativeBackpropInputAttrs;
  const info = tf.backend_util.computeConv2DInfo(inputShape, filter.shape, strides, dilations, pad, dimRoundingMode, true);
  const [kh, kw, c, mult] = filter.shape;
  return tf.tidy(() => {
    // dx[n,h,w,c] = sum_m sum over oh*s - top + kh*d = h of dy[n,oh,ow,c*mult+m] * W[kh,kw,c,m]: a depthwise
    // correlation of the spread-out dy with the flipped filter, one output per dy channel, then a sum over m.
    const flipped = tf.reshape(tf.reverse(filter, [0, 1]), [kh, kw, c * mult, 1]) as tf.Tensor4D;
    const [spread, pads] = cropForPadding(spreadOut(dy, info.strideHeight, info.strideWidth), transposedPads(info));
    const perChannel = tf.depthwiseConv2d(spread, flipped, 1, pads, "NHWC", [info.dilationHeight, info.dilationWidth]);
    if (mult === 1) return perChannel;
    const [n, h, w] = perChannel.shape;
    return tf.sum(tf.reshape(perChannel, [n, h, w, c, mult]), 4);
  });
}

function depthwiseBackpropFilter({ inputs, attrs }: Parameters<tf.KernelFunc>[0]): tf.Tensor {
  const x = inputs.x as tf.Tensor4D, dy = inputs.dy as tf.Tensor4D;
  const { strides, pad, dilations, dimRoundingMode, filterShape } = attrs as unknown as tf.DepthwiseConv2dNativeBackpropFilterAttrs;
  const info = tf.backend_util.computeConv2DInfo(x.shape, filterShape, strides, dilations, pad, dimRoundingMode, true);
  const { padInfo, outHeight: oh, outWidth: ow, strideHeight: sh, strideWidth: sw, dilationHeight: dh, dilationWidth: dw } = info;
  const [kh, kw, c, mult] = filterShape;
  const n = x.shape[0];
  return tf.tidy(() => {
    const spanH = (oh - 1) * sh + 1, spanW = (ow - 1) * sw + 1;
    const [xc, pads] = cropForPadding(x, [padInfo.top, (kh - 1) * dh + spanH - x.shape[1] - padInfo.top, padInfo.left, (kw - 1) * dw + spanW - x.shape[2] - padInfo.left]);
    const xp = tf.pad(xc, pads);
    const dy5 = tf.reshape(dy, [n, oh, ow, c, mult]);
    const taps: tf.Tensor[] = [];
    for (let i = 0; i < kh; i++) {
      for (let j = 0; j < kw; j++) {
        // dW[i,j,c,m] = sum_{n,oh,ow} x_pad[n, oh*s + i*d, ow*s + j*d, c] * dy[n,oh,ow,c*mult+m]
        const seen = tf.stridedSlice(xp, [0, i * dh, j * dw, 0], [n, i * dh + spanH, j * dw + spanW, c], [1, sh, sw, 1]);
        taps.push(tf.sum(tf.mul(tf.expandDims(seen, 4), dy5), [0, 1, 2]));
      }
    }
    return tf.reshape(tf.stack(taps), filterShape);
  });
}

function unsortedSegmentSum({ inputs, attrs }: Parameters<tf.KernelFunc>[0]): tf.Tensor {
  const x = inputs.x as tf.Tensor, ids = inputs.segmentIds as tf.Tensor1D;
  const { numSegments } = attrs as unknown as tf.UnsortedSegmentSumAttrs;
  if (ids.rank !== 1 || ids.shape[0] !== x.shape[0]) {
    throw new Error(`UnsortedSegmentSum on wasm (lib/backend/wasm_kernels.ts): expected 1-D segment ids of length ${x.shape[0]}, got shape [${ids.shape}]`);
  }
  return tf.tidy(() => {
    // out[s] = sum_{i: ids[i] = s} x[i]; ids outside [0, numSegments) are dropped, as in TensorFlow. ScatterNd
    // adds up rows that share an index, so invalid ids point at row 0 with their rows zeroed.
    const valid = tf.logicalAnd(tf.greaterEqual(ids, 0), tf.less(ids, numSegments));
    const safeIds = tf.where(valid, ids, tf.zerosLike(ids));
    const keep = tf.reshape(tf.cast(valid, x.dtype), [ids.shape[0], ...x.shape.slice(1).map(() => 1)]);
    return tf.scatterND(tf.expandDims(safeIds, 1), tf.mul(x, keep), [numSegments, ...x.shape.slice(1)]);
  });
}

const kernels: Array<[string, tf.KernelFunc]> = [
  ["Conv2DBackpropFilter", conv2dFilterKernel(conv2dBackpropFilter)],
  ["Conv2DBackpropInput", conv2dInputKernel as tf.KernelFunc],
  ["DepthwiseConv2dNativeBackpropFilter", depthwiseBackpropFilter],
  ["DepthwiseConv2dNativeBackpropInput", depthwiseBackpropInput],
  ["UnsortedSegmentSum", unsortedSegmentSum],
  ...GROUP_NORM_KERNELS,
  ...ADAM_KERNELS,
  ...DROPOUT_KERNELS,
  ...RESAMPLE_KERNELS,
];

/** Kernels of tfjs-wasm replaced by ours for the cases ours handle faster; the rest go to the original. */
const overrides: Array<[string, (original: tf.KernelFunc) => tf.KernelFunc]> = [
  ["Conv2D", conv2dKernel],
  ["BatchMatMul", batchMatMulKernel],
  ["Identity", identityKernel],
  ["Concat", concatKernel],
  ["SplitV", splitKernel],
  ["Cast", castKernel],
  ["Relu", (original) => unaryKernel("relu", original)],
  ["Step", (original) => unaryKernel("step", original)],
  ["Sum", (original) => columnReduce("Sum", original)],
  ["Mean", (original) => columnReduce("Mean", original)],
  ...BROADCAST_OPS.map((op): [string, (original: tf.KernelFunc) => tf.KernelFunc] => [op, (original) => broadcastBinary(op, original)]),
];
const wrappers = new Set<tf.KernelFunc>();

/** Registers the training kernels for the 'wasm' backend; a second call does nothing. */
export function registerWasmTrainingKernels(): void {
  for (const [kernelName, kernelFunc] of kernels) {
    const existing = tf.getKernel(kernelName, "wasm");
    if (existing?.kernelFunc === kernelFunc) continue;
    if (existing) tf.unregisterKernel(kernelName, "wasm");
    tf.registerKernel({ kernelName, backendName: "wasm", kernelFunc });
  }
  for (const [kernelName, wrap] of overrides) {
    const existing = tf.getKernel(kernelName, "wasm");
    if (!existing) throw new Error(`lib/backend/wasm_kernels.ts: tfjs-wasm has no ${kernelName} kernel to extend`);
    if (wrappers.has(existing.kernelFunc)) continue;
    const kernelFunc = wrap(existing.kernelFunc);
    wrappers.add(kernelFunc);
    tf.unregisterKernel(kernelName, "wasm");
    // the original's setupFunc binds its C++ entry point when the backend starts
    tf.registerKernel({ ...existing, kernelFunc });
  }
}
