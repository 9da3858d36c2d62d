import { Rng } from "../core/random";

/**
 * Indices of step `step`'s batch: epoch-wise permutations, each seeded by (seed, epoch). A pure function of
 * (seed, step), so a resumed run sees exactly the batches the interrupted one would have.
 */
export function batchIndices(seed: number, size: number, batch: number, step: number, cache = new Map<number, Int32Array>()): Int32Array {
  const out = new Int32Array(batch);
  for (let j = 0; j < batch; j++) {
    const k = step * batch + j;
    const epoch = Math.floor(k / size);
    let perm = cache.get(epoch);
    if (!perm) {
      perm = new Rng((seed * 1_000_003 + epoch) >>> 0).permutation(size);
      cache.clear();
      cache.set(epoch, perm);
    }
    out[j] = perm[k % size];
  }
  return out;
}
