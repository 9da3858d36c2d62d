import * as fs from "fs";
import * as path from "path";
import { ONNX_PRODUCER } from "../backend/onnx_export";
import { ExternalPlacement, initializerBytes, modelProto, OnnxGraph, OnnxTensor } from "../backend/onnx_proto";
import { writeAll, writeAtomic } from "./file_bytes";

// An exported graph (lib/backend/onnx_export.ts) as an .onnx file, written chunk by chunk so that the weights
// are never copied into one buffer.

/** Models whose weights would take more than this go to an external data file (protobuf stops at 2 GiB). */
const INLINE_LIMIT = 1 << 30;
/** Smaller tensors stay in the model even then: onnxruntime reads shapes and axes from the file itself. */
const EXTERNAL_MIN_BYTES = 1024;

/**
 * Write a graph as an .onnx file, atomically. Weights over 1 GiB in all go to `<file>.data` beside it (ONNX
 * external data, read by onnxruntime when the model is loaded from its path); `externalData` forces either way.
 * Only tensors of 1 KiB or more go there.
 */
export function writeOnnx(file: string, graph: OnnxGraph, opts: { externalData?: boolean } = {}): void {
  const total = graph.initializers.reduce((n, t) => n + t.data.byteLength, 0);
  const external = opts.externalData ?? total > INLINE_LIMIT;
  fs.mkdirSync(path.dirname(file), { recursive: true });
  let place: ((t: OnnxTensor) => ExternalPlacement | undefined) | undefined;
  if (external) {
    const dataFile = `${file}.data`;
    const location = path.basename(dataFile);
    const placements = new Map<string, ExternalPlacement>();
    writeAtomic(dataFile, (fd) => {
      let offset = 0;
      for (const t of graph.initializers) {
        const b = initializerBytes(t);
        if (b.length < EXTERNAL_MIN_BYTES) continue;
        writeAll(fd, b);
        placements.set(t.name, { location, offset, length: b.length });
        offset += b.length;
      }
    });
    place = (t) => placements.get(t.name);
  }
  const proto = modelProto(graph, ONNX_PRODUCER, place);
  writeAtomic(file, (fd) => proto.chunks.forEach((c) => writeAll(fd, c)));
}
