// The ONNX file format written directly: a minimal protobuf encoder and the few messages of onnx.proto an
// exported graph needs (ModelProto, GraphProto, NodeProto, AttributeProto, TensorProto, ValueInfoProto).
// Field numbers are onnx.proto's. A message is kept as a list of byte chunks so that weights are never copied
// into one big buffer: a model is written chunk by chunk.

/** Element types of onnx.proto's TensorProto.DataType that the exporter uses. */
export const ONNX_DTYPE = { float32: 1, uint8: 2, int32: 6, int64: 7, bool: 9 } as const;
export type OnnxDType = keyof typeof ONNX_DTYPE;

export type OnnxData = Float32Array | Int32Array | Uint8Array | BigInt64Array;

export interface OnnxTensor {
  name: string;
  dtype: OnnxDType;
  shape: number[];
  data: OnnxData;
}

/** An attribute value, tagged with its onnx.proto type so that 1 (INT) and 1.0 (FLOAT) stay distinct. */
export type OnnxAttr =
  | { i: number }
  | { f: number }
  | { s: string }
  | { ints: number[] }
  | { floats: number[] }
  | { t: OnnxTensor };

export interface OnnxNode {
  op: string;
  inputs: string[];
  outputs: string[];
  attrs: Record<string, OnnxAttr>;
  /** Where the node came from (the tfjs kernel and op), kept as the node's doc_string. */
  doc?: string;
}

export interface OnnxValueInfo {
  name: string;
  dtype: OnnxDType;
  shape: number[];
}

export interface OnnxGraph {
  name: string;
  nodes: OnnxNode[];
  initializers: OnnxTensor[];
  inputs: OnnxValueInfo[];
  outputs: OnnxValueInfo[];
}

/** Opset 17 (ONNX 1.12), IR version 8: what every onnxruntime since 1.12 reads. */
export const OPSET = 17;
const IR_VERSION = 8;

const WIRE_VARINT = 0;
const WIRE_BYTES = 2;
const WIRE_FIXED32 = 5;

const utf8 = new TextEncoder();

/** One protobuf message under construction: a list of chunks and their total length. */
export class PbMessage {
  readonly chunks: Uint8Array[] = [];
  length = 0;

  private push(b: Uint8Array): void {
    this.chunks.push(b);
    this.length += b.length;
  }

  private varint(v: number | bigint): void {
    // int64 fields: negatives take ten bytes, two's complement
    let x = BigInt.asUintN(64, BigInt(v));
    const out: number[] = [];
    do {
      let byte = Number(x & 0x7fn);
      x >>= 7n;
      if (x !== 0n) byte |= 0x80;
      out.push(byte);
    } while (x !== 0n);
    this.push(Uint8Array.from(out));
  }

  private tag(field: number, wire: number): void {
    this.varint((field << 3) | wire);
  }

  int(field: number, v: number | bigint): this {
    this.tag(field, WIRE_VARINT);
    this.varint(v);
    return this;
  }

  float(field: number, v: number): this {
    this.tag(field, WIRE_FIXED32);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, v, true);
    this.push(b);
    return this;
  }

  bytes(field: number, b: Uint8Array): this {
    this.tag(field, WIRE_BYTES);
    this.varint(b.length);
    this.push(b);
    return this;
  }

  string(field: number, s: string): this {
    return this.bytes(field, utf8.encode(s));
  }

  message(field: number, m: PbMessage): this {
    this.tag(field, WIRE_BYTES);
    this.varint(m.length);
    for (const c of m.chunks) this.push(c);
    return this;
  }

  /** A packed repeated int64 field. */
  packedInts(field: number, vs: number[]): this {
    const inner = new PbMessage();
    for (const v of vs) inner.varint(v);
    return this.message(field, inner);
  }

  /** A packed repeated float field. */
  packedFloats(field: number, vs: number[]): this {
    const b = new Uint8Array(4 * vs.length);
    const dv = new DataView(b.buffer);
    vs.forEach((v, i) => dv.setFloat32(4 * i, v, true));
    return this.bytes(field, b);
  }
}

/** Little-endian bytes of a typed array, without a copy (tfjs runs on little-endian hosts only). */
function rawBytes(data: OnnxData): Uint8Array {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

/** Where the bytes of one initializer went when the weights live in a separate file. */
export interface ExternalPlacement {
  location: string;
  offset: number;
  length: number;
}

function tensorProto(t: OnnxTensor, external?: ExternalPlacement): PbMessage {
  const m = new PbMessage().packedInts(1, t.shape).int(2, ONNX_DTYPE[t.dtype]).string(8, t.name);
  if (!external) return m.bytes(9, rawBytes(t.data));
  for (const [k, v] of [["location", external.location], ["offset", String(external.offset)], ["length", String(external.length)]]) {
    m.message(13, new PbMessage().string(1, k).string(2, v));
  }
  // data_location = EXTERNAL
  return m.int(14, 1);
}

function attributeProto(name: string, a: OnnxAttr): PbMessage {
  const m = new PbMessage().string(1, name);
  // AttributeProto.type: FLOAT 1, INT 2, STRING 3, TENSOR 4, FLOATS 6, INTS 7
  if ("i" in a) return m.int(20, 2).int(3, a.i);
  if ("f" in a) return m.int(20, 1).float(2, a.f);
  if ("s" in a) return m.int(20, 3).string(4, a.s);
  if ("ints" in a) return m.int(20, 7).packedInts(8, a.ints);
  if ("floats" in a) return m.int(20, 6).packedFloats(7, a.floats);
  return m.int(20, 4).message(5, tensorProto(a.t));
}

function nodeProto(n: OnnxNode, index: number): PbMessage {
  const m = new PbMessage();
  for (const i of n.inputs) m.string(1, i);
  for (const o of n.outputs) m.string(2, o);
  m.string(3, `${n.op}_${index}`).string(4, n.op);
  for (const [k, a] of Object.entries(n.attrs)) m.message(5, attributeProto(k, a));
  if (n.doc) m.string(6, n.doc);
  return m;
}

function valueInfoProto(v: OnnxValueInfo): PbMessage {
  const shape = new PbMessage();
  for (const d of v.shape) shape.message(1, new PbMessage().int(1, d));
  const tensorType = new PbMessage().int(1, ONNX_DTYPE[v.dtype]).message(2, shape);
  return new PbMessage().string(1, v.name).message(2, new PbMessage().message(1, tensorType));
}

/**
 * The ModelProto of a graph, as chunks. With `external`, an initializer the callback places (in a side file next
 * to the model) is recorded by where its bytes are instead of holding them, which is how models over protobuf's
 * 2 GiB limit are stored.
 */
export function modelProto(g: OnnxGraph, producer: string, external?: (t: OnnxTensor) => ExternalPlacement | undefined): PbMessage {
  const graph = new PbMessage();
  g.nodes.forEach((n, i) => graph.message(1, nodeProto(n, i)));
  graph.string(2, g.name);
  for (const t of g.initializers) graph.message(5, tensorProto(t, external?.(t)));
  for (const v of g.inputs) graph.message(11, valueInfoProto(v));
  for (const v of g.outputs) graph.message(12, valueInfoProto(v));
  return new PbMessage()
    .int(1, IR_VERSION)
    .string(2, producer)
    .message(7, graph)
    .message(8, new PbMessage().string(1, "").int(2, OPSET));
}

/** The raw bytes of an initializer (for writing them to an external data file). */
export function initializerBytes(t: OnnxTensor): Uint8Array {
  return rawBytes(t.data);
}
