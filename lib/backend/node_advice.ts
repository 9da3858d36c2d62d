import * as tf from "@tensorflow/tfjs";

/**
 * tfjs's cpu backend prints "Hi, looks like you are running TensorFlow.js in Node.js ... install our node backend"
 * on its first tensor in Node (tfjs-backend-cpu's backend_cpu.js, through tfjs's own warn(), which the public PROD
 * flag silences). The advice is noise here: initEngine already tries tfjs-node first and prints which engine runs.
 * The warning is spent on a one-element write with PROD on, and PROD is put back, so every other tfjs warning
 * still shows. Call it once the engine's backend is chosen: tfjs makes a fresh cpu instance when it picks its
 * default, so this picks the default itself when nothing has chosen a backend yet, as the first tensor would.
 */
export function silenceNodeBackendAdvice(): void {
  const prod = tf.env().getBool("PROD");
  tf.env().set("PROD", true);
  try {
    try {
      tf.backend();
    } catch {
      // the default backend is still starting (wasm): a later setBackend("cpu") reuses the instance found below
    }
    const cpu = tf.findBackend("cpu");
    if (cpu) cpu.disposeData(cpu.write(new Float32Array(1), [1], "float32"), true);
  } finally {
    tf.env().set("PROD", prod);
  }
}
