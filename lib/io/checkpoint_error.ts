// The one error type of the loaders (safetensors, .pth, .npy/.npz, zip): whatever is wrong with a file (missing,
// truncated, corrupt, hostile, or just not what the model expects), the loader throws this, naming the file and,
// where known, the zip entry and the tensor, and saying what it expected. Callers can tell a bad file from a bug
// by the type; anything else escaping a loader is a bug in the loader.

export interface CheckpointErrorWhere {
  /** The zip member (e.g. `archive/data.pkl`, `x.npy`). */
  entry?: string;
  /** The tensor's name, as the file names it. */
  tensor?: string;
}

export class CheckpointError extends Error {
  override name = "CheckpointError";
  readonly entry?: string;
  readonly tensor?: string;
  constructor(readonly file: string, problem: string, where: CheckpointErrorWhere = {}) {
    const at = `${where.entry !== undefined ? `entry '${where.entry}': ` : ""}${where.tensor !== undefined ? `tensor '${where.tensor}': ` : ""}`;
    super(`${file}: ${at}${problem}`);
    this.entry = where.entry;
    this.tensor = where.tensor;
  }
}
