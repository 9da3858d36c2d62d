import * as tf from "@tensorflow/tfjs";
import { InferenceEngineName } from "../backend/onnx_runtime";
import { FrozenForward } from "../nn/frozen";
import { EDM_DEFAULTS, edmDenoise, RawNet } from "./edm";
import { SolverDenoiser } from "./samplers";

// A frozen teacher as the solvers see it. The exported graph holds the whole D(x; sigma, cond) = c_skip x +
// c_out F(c_in x; c_noise, cond), with one sigma per sample as an input, so every network evaluation of an ODE
// solve is one onnxruntime call (onnx_runtime.ts; tfjs when D2G_INFER=tfjs).

export class FrozenEdmDenoiser {
  private readonly conditional: FrozenForward;
  private readonly unconditional: FrozenForward;

  /** `name` labels the exported models; `variables` are the network's (Module.namedVariables()). */
  constructor(name: string, variables: Array<[string, tf.Variable]>, net: RawNet, sigmaData = EDM_DEFAULTS.sigmaData) {
    const outputs = ["denoised"];
    this.conditional = new FrozenForward({
      name: `${name}-edm-cond`, variables, inputs: ["x", "sigma", "cond"], outputs,
      fn: (x, sigma, cond) => edmDenoise(net, x as tf.Tensor4D, sigma as tf.Tensor1D, cond, sigmaData),
    });
    this.unconditional = new FrozenForward({
      name: `${name}-edm`, variables, inputs: ["x", "sigma"], outputs,
      fn: (x, sigma) => edmDenoise(net, x as tf.Tensor4D, sigma as tf.Tensor1D, undefined, sigmaData),
    });
  }

  get engine(): InferenceEngineName {
    return this.conditional.engine;
  }

  /** D(x; sigma, cond) with one sigma for the batch. */
  readonly D: SolverDenoiser = async (x, sigma, cond) => {
    const s = tf.fill([x.shape[0]], sigma) as tf.Tensor1D;
    try {
      return await this.denoise(x, s, cond);
    } finally {
      s.dispose();
    }
  };

  /** D(x; sigma_i, cond) with a sigma per sample. */
  async denoise(x: tf.Tensor4D, sigma: tf.Tensor1D, cond?: tf.Tensor): Promise<tf.Tensor4D> {
    const [y] = cond ? await this.conditional.run([x, sigma, cond]) : await this.unconditional.run([x, sigma]);
    return y as tf.Tensor4D;
  }

  async dispose(): Promise<void> {
    await Promise.all([this.conditional.dispose(), this.unconditional.dispose()]);
  }
}
