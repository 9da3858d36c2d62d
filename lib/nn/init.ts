import * as tf from "@tensorflow/tfjs";
import { Rng } from "../core/random";
import { Conv2d, Linear } from "./layers";
import { Module } from "./module";

// Initialisations beyond PyTorch's layer defaults (module.ts torchUniform). The defaults shrink a ReLU signal's
// variance about 6x per layer: after eight convolutions a network's features no longer depend on its input.

/** torchvision's VGG init: conv weights N(0, 2 / fan_out) (kaiming_normal_, mode fan_out), biases 0; Linear N(0, 0.01). */
export function torchvisionInit(modules: Module[], rng: Rng): void {
  const convs: Conv2d[] = [];
  const linears: Linear[] = [];
  const walk = (m: Module): void => {
    if (m instanceof Conv2d) convs.push(m);
    else if (m instanceof Linear) linears.push(m);
    for (const [, c] of m.children()) if (c instanceof Module) walk(c);
  };
  modules.forEach(walk);
  tf.tidy(() => {
    for (const c of convs) {
      c.weight.assign(tf.randomNormal(c.weight.shape, 0, Math.sqrt(2 / (c.outC * c.k * c.k)), "float32", rng.seed()));
      c.bias?.assign(tf.zerosLike(c.bias));
    }
    for (const l of linears) {
      l.weight.assign(tf.randomNormal(l.weight.shape, 0, 0.01, "float32", rng.seed()));
      l.bias?.assign(tf.zerosLike(l.bias));
    }
  });
}
