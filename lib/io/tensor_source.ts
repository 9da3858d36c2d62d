import * as fs from "fs";
import * as path from "path";
import { CheckpointError } from "./checkpoint_error";
import { DType, HostTensor, numel, shapeStr } from "./host_tensor";
import { readJsonFile } from "./json_file";
import { SafetensorsFile } from "./safetensors";
import { TorchCheckpointFile } from "./pth";

// Named tensors that are read one at a time. Loading a big network streams weight by weight from a source into
// the module's variables, so the host never holds a second full copy: safetensors files (one byte range per get),
// torch checkpoints (one storage per get), sharded checkpoints (an index over either), and views that rename,
// select or reshape another source's tensors (checkpoint layout conversions).

export interface TensorInfo {
  dtype: DType;
  shape: number[];
}

export interface TensorSource {
  /** The file (or a description of the view), for messages. */
  readonly source: string;
  names(): string[];
  has(name: string): boolean;
  /** Dtype and shape without reading the data. */
  info(name: string): TensorInfo;
  /** The tensor's data, read now; the source keeps no copy. */
  get(name: string): HostTensor;
  /** Release open files (torch checkpoints keep theirs open between reads). */
  close?(): void;
}

function noTensor(source: string, name: string, names: string[]): Error {
  const some = names.slice(0, 5).join(", ");
  return new CheckpointError(source, `no such tensor (the source has ${names.length}: ${some}${names.length > 5 ? ", ..." : ""})`, { tensor: name });
}

/** Tensors already in memory (e.g. a state dict read whole) as a source. */
export function recordSource(tensors: Record<string, HostTensor>, source: string): TensorSource {
  const get = (name: string): HostTensor => {
    if (!Object.prototype.hasOwnProperty.call(tensors, name)) throw noTensor(source, name, Object.keys(tensors));
    return tensors[name];
  };
  return {
    source,
    names: () => Object.keys(tensors),
    has: (name) => Object.prototype.hasOwnProperty.call(tensors, name),
    info: (name) => ({ dtype: get(name).dtype, shape: get(name).shape }),
    get,
  };
}

/** Where a view's tensor comes from: a name in the underlying source, optionally reshaped (same element count). */
export interface ViewEntry {
  from: string;
  shape?: number[];
}

/**
 * A source whose names are the keys of `entries`, each reading `from` in `src`. Reshapes are checked when the view
 * is made, so a wrong conversion fails early and names the tensor.
 */
export function viewSource(src: TensorSource, entries: Map<string, ViewEntry>, source = src.source): TensorSource {
  for (const [name, e] of entries) {
    if (!src.has(e.from)) throw noTensor(src.source, e.from, src.names());
    const have = src.info(e.from).shape;
    if (e.shape && numel(e.shape) !== numel(have)) {
      throw new CheckpointError(src.source, `cannot view '${e.from}' ${shapeStr(have)} as '${name}' ${shapeStr(e.shape)}`);
    }
  }
  const entry = (name: string): ViewEntry => {
    const e = entries.get(name);
    if (!e) throw noTensor(source, name, [...entries.keys()]);
    return e;
  };
  return {
    source,
    names: () => [...entries.keys()],
    has: (name) => entries.has(name),
    info: (name) => {
      const e = entry(name);
      const i = src.info(e.from);
      return { dtype: i.dtype, shape: e.shape ? [...e.shape] : i.shape };
    },
    get: (name) => {
      const e = entry(name);
      const t = src.get(e.from);
      return e.shape ? { ...t, shape: [...e.shape] } : t;
    },
    close: () => src.close?.(),
  };
}

/** The tensors of `src` whose names start with `prefix`, under the rest of their names. */
export function prefixSource(src: TensorSource, prefix: string): TensorSource {
  const entries = new Map<string, ViewEntry>();
  for (const n of src.names()) if (n.startsWith(prefix)) entries.set(n.slice(prefix.length), { from: n });
  return viewSource(src, entries, `${src.source} [${prefix}*]`);
}

/**
 * A sharded checkpoint: `<name>.safetensors.index.json` or `<name>.bin.index.json`, JSON
 * {"metadata": {...}, "weight_map": {tensor name: shard file name}}, shards beside the index. Shards are opened
 * on first use.
 */
export class ShardedSource implements TensorSource {
  readonly weightMap = new Map<string, string>();
  private readonly shards = new Map<string, TensorSource>();

  constructor(readonly source: string) {
    const index = readJsonFile(source);
    const map = (index as { weight_map?: unknown })?.weight_map;
    if (typeof map !== "object" || map === null || Array.isArray(map)) throw new CheckpointError(source, `shard index without a "weight_map" object`);
    for (const [name, file] of Object.entries(map as Record<string, unknown>)) {
      if (typeof file !== "string" || file.includes("/") || file.includes("\\")) throw new CheckpointError(source, `weight_map entry '${name}' should name a file beside the index, got ${JSON.stringify(file)}`);
      this.weightMap.set(name, file);
    }
    for (const file of new Set(this.weightMap.values())) {
      const p = path.join(path.dirname(source), file);
      if (!fs.existsSync(p)) throw new CheckpointError(source, `shard '${file}' is missing (expected at ${p})`);
    }
  }

  private shard(name: string): TensorSource {
    const file = this.weightMap.get(name);
    if (file === undefined) throw noTensor(this.source, name, this.names());
    let s = this.shards.get(file);
    if (!s) {
      s = openTensorFile(path.join(path.dirname(this.source), file));
      this.shards.set(file, s);
    }
    if (!s.has(name)) throw new CheckpointError(this.source, `the index puts '${name}' in '${file}', which does not hold it`);
    return s;
  }

  names(): string[] {
    return [...this.weightMap.keys()];
  }
  has(name: string): boolean {
    return this.weightMap.has(name);
  }
  info(name: string): TensorInfo {
    return this.shard(name).info(name);
  }
  get(name: string): HostTensor {
    return this.shard(name).get(name);
  }
  close(): void {
    for (const s of this.shards.values()) s.close?.();
    this.shards.clear();
  }
}

/**
 * Open a weights file lazily by its name: `*.index.json` (sharded), `*.safetensors`, or a torch.save checkpoint
 * (`.bin`, `.ckpt`, `.pt`, `.pth`; `torchKey` picks the state dict inside, as CheckpointOptions.key does).
 */
export function openTensorFile(file: string, torchKey?: string): TensorSource {
  if (!fs.existsSync(file)) throw new CheckpointError(file, `no such file`);
  if (file.endsWith(".index.json")) return new ShardedSource(file);
  if (file.endsWith(".safetensors")) return new SafetensorsFile(file);
  if (/\.(bin|ckpt|pt|pth)$/.test(file)) return new TorchCheckpointFile(file, { key: torchKey });
  throw new CheckpointError(file, `unknown weights format (expected .safetensors, .bin, .ckpt, .pt, .pth or a *.index.json shard index)`);
}
