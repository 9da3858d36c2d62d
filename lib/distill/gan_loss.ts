import * as tf from "@tensorflow/tfjs";
// R1 is a gradient of a gradient: it needs the gradients tfjs gets wrong at second order registered again
import "../backend/second_order_grads";
import { Rng } from "../core/random";

// The GAN side of Diffusion2GAN: non-saturating losses, single-sample R1 and mix-and-match pairs.

/** Non-saturating discriminator loss over heads: mean softplus(-D(real)) + mean softplus(D(fake)). */
export function discriminatorLoss(real: tf.Tensor1D[], fake: tf.Tensor1D[]): tf.Scalar {
  return tf.tidy(() => {
    const r = tf.addN(real.map((l) => tf.mean(tf.softplus(tf.neg(l)))));
    const f = tf.addN(fake.map((l) => tf.mean(tf.softplus(l))));
    return tf.div(tf.add(r, f), real.length) as tf.Scalar;
  });
}

/** A discriminator as the losses see it: logits of x given its noise z and condition c, one [N] tensor per head. */
export type LogitsFn<C extends tf.Tensor> = (x: tf.Tensor4D, z: tf.Tensor4D, c: C) => tf.Tensor1D[];

/**
 * The discriminator's loss on a batch: real (x | z, c) against fake (G(z, c) | z, c), and the mix-and-match pairs
 * [i, j] (real x_i shown with z_j and c_j) on the fake side.
 */
export function discriminatorBatchLoss<C extends tf.Tensor>(
  logits: LogitsFn<C>, x: tf.Tensor4D, fake: tf.Tensor4D, z: tf.Tensor4D, c: C, mixAndMatch: Array<[number, number]>,
): tf.Scalar {
  return tf.tidy(() => {
    const real = logits(x, z, c);
    let fakeLogits = logits(fake, z, c);
    if (mixAndMatch.length) {
      const rows = tf.tensor1d(mixAndMatch.map(([i]) => i), "int32");
      const cols = tf.tensor1d(mixAndMatch.map(([, j]) => j), "int32");
      const mm = logits(tf.gather(x, rows), tf.gather(z, cols), tf.gather(c, cols) as C);
      fakeLogits = fakeLogits.map((l, h) => tf.concat([l, mm[h]]));
    }
    return discriminatorLoss(real, fakeLogits);
  });
}

/** Non-saturating generator loss over heads: mean softplus(-D(G(z))). */
export function generatorGanLoss(fake: tf.Tensor1D[]): tf.Scalar {
  return tf.tidy(() => tf.div(tf.addN(fake.map((l) => tf.mean(tf.softplus(tf.neg(l))))), fake.length) as tf.Scalar);
}

/**
 * R1 = gamma/2 |grad_x sum_heads D(x)|^2 on real samples; Diffusion2GAN applies it to a single sample of the batch.
 * Differentiable w.r.t. the discriminator's parameters (a gradient of a gradient).
 */
export function r1Penalty(logitsOf: (x: tf.Tensor4D) => tf.Tensor1D[], xReal: tf.Tensor4D, gamma: number): tf.Scalar {
  return tf.tidy(() => {
    const g = tf.grad((x: tf.Tensor) => tf.addN(logitsOf(x as tf.Tensor4D).map((l) => tf.sum(l))) as tf.Scalar)(xReal);
    return tf.mul(tf.sum(tf.square(g)), gamma / 2) as tf.Scalar;
  });
}

/** How many mix-and-match pairs a batch gets: round(fraction x batch), none in a batch of one. */
export function mixAndMatchCount(batch: number, fraction: number): number {
  return batch < 2 ? 0 : Math.min(Math.max(Math.round(fraction * batch), 0), batch);
}

/**
 * Mix-and-match: `count` real samples re-paired with the (z, c) of other samples of the batch, to be scored as
 * fake, so the discriminator must check that x belongs to *its* noise and condition, not only that x is real.
 * Returns pairs [i, j] with i != j: real x_i shown with z_j, c_j.
 */
export function mixAndMatchPairs(batch: number, count: number, rng: Rng): Array<[number, number]> {
  if (batch < 2 || count <= 0) return [];
  const rows = rng.permutation(batch).subarray(0, Math.min(count, batch));
  return Array.from(rows, (i) => {
    // a uniformly chosen partner other than i
    const j = (i + 1 + rng.int(batch - 1)) % batch;
    return [i, j] as [number, number];
  });
}
