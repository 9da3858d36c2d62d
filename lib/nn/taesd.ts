import * as tf from "@tensorflow/tfjs";
import { Rng } from "../core/random";
import { Conv2d, GroupNorm, ReLU } from "./layers";
import { Layer, Sequential } from "./module";

// TAESD, the tiny autoencoder of madebyollin/taesd: conv + ReLU residual blocks, stride-2 convs down, nearest 2x
// upsampling up, 8x spatial factor. Encoder input and decoder output are RGB in [0, 1], NHWC here.
// The nets are plain Sequentials, so parameter names are the official numbered keys ("3.conv.0.weight").
// TAEF2 (the FLUX.2 latent space, 32 channels) adds a GroupNorm "pool" branch to the three blocks nearest the
// latent: the last three encoder blocks and the first three decoder blocks.

export interface TaesdConfig {
  latentChannels: number;
  /** Feature width of every block: 64 in the official nets; the test fixtures use a narrower one. */
  width: number;
  /** TAEF2's mid-block branch x + (1x1 -> GroupNorm(4) -> ReLU -> 1x1)(x). */
  midBlockGroupNorm: boolean;
}

export const TAESD_SD1: TaesdConfig = { latentChannels: 4, width: 64, midBlockGroupNorm: false };
export const TAEF2: TaesdConfig = { latentChannels: 32, width: 64, midBlockGroupNorm: true };

/** Soft clamp of the decoder's input to (-3, 3): tanh(x / 3) * 3. */
export class Clamp extends Layer {
  forward(x: tf.Tensor4D): tf.Tensor4D {
    return tf.tidy(() => tf.mul(tf.tanh(tf.div(x, 3)), 3));
  }
}

/** nn.Upsample(scale_factor=2), mode 'nearest': output pixel (i, j) copies input (floor(i/2), floor(j/2)). */
export class Upsample2x extends Layer {
  forward(x: tf.Tensor4D): tf.Tensor4D {
    const [, h, w] = x.shape;
    return tf.image.resizeNearestNeighbor(x, [2 * h, 2 * w]);
  }
}

/** Residual block; the skip is the identity since every block keeps the width. */
export class Block extends Layer {
  conv: Sequential;
  pool?: Sequential;
  constructor(n: number, pool: boolean, rng: Rng) {
    super();
    this.conv = new Sequential([new Conv2d(n, n, 3, rng), new ReLU(), new Conv2d(n, n, 3, rng), new ReLU(), new Conv2d(n, n, 3, rng)]);
    if (pool) {
      const wide = 4 * n;
      this.pool = new Sequential([
        new Conv2d(n, wide, 1, rng, { bias: false }),
        new GroupNorm(4, wide),
        new ReLU(),
        new Conv2d(wide, n, 1, rng, { bias: false }),
      ]);
    }
  }
  forward(x: tf.Tensor4D): tf.Tensor4D {
    return tf.tidy(() => {
      // TAEF2 mid blocks first add the pool branch, x <- x + pool(x); then y = relu(conv(x) + x)
      const h: tf.Tensor4D = this.pool ? tf.add(x, this.pool.forward(x)) : x;
      return tf.relu(tf.add(this.conv.forward(h), h)) as tf.Tensor4D;
    });
  }
}

/**
 * A Sequential whose forward frees each intermediate as soon as the next layer has used it: at 768x512 one
 * 64-channel activation is 100 MB, and an enclosing tf.tidy would otherwise hold all ~20 of them.
 * Freeing is safe under tf.grad too, since the tape keeps its own copies of what backprop needs.
 */
export class StreamingSequential extends Sequential {
  override forward(x: tf.Tensor4D): tf.Tensor4D {
    let h = x;
    for (const layer of this.layers) {
      const next = layer.forward(h);
      if (h !== x) h.dispose();
      h = next;
    }
    return h;
  }
}

function blocks(n: number, w: number, pool: boolean, rng: Rng): Block[] {
  return Array.from({ length: n }, () => new Block(w, pool, rng));
}

/** RGB in [0, 1], [N, H, W, 3] -> latents [N, H/8, W/8, latentChannels]. */
export function taesdEncoder(cfg: TaesdConfig, rng: Rng): StreamingSequential {
  const w = cfg.width;
  const down = () => new Conv2d(w, w, 3, rng, { stride: 2, bias: false });
  return new StreamingSequential([
    new Conv2d(3, w, 3, rng),
    ...blocks(1, w, false, rng),
    down(),
    ...blocks(3, w, false, rng),
    down(),
    ...blocks(3, w, false, rng),
    down(),
    ...blocks(3, w, cfg.midBlockGroupNorm, rng),
    new Conv2d(w, cfg.latentChannels, 3, rng),
  ]);
}

/** Latents [N, h, w, latentChannels] -> RGB, approximately [0, 1] (not clamped), [N, 8h, 8w, 3]. */
export function taesdDecoder(cfg: TaesdConfig, rng: Rng): StreamingSequential {
  const w = cfg.width;
  const up = () => [new Upsample2x(), new Conv2d(w, w, 3, rng, { bias: false })];
  return new StreamingSequential([
    new Clamp(),
    new Conv2d(cfg.latentChannels, w, 3, rng),
    new ReLU(),
    ...blocks(3, w, cfg.midBlockGroupNorm, rng),
    ...up(),
    ...blocks(3, w, false, rng),
    ...up(),
    ...blocks(3, w, false, rng),
    ...up(),
    ...blocks(1, w, false, rng),
    new Conv2d(w, 3, 3, rng),
  ]);
}
