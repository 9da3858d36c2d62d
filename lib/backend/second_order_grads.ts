import * as tf from "@tensorflow/tfjs";

// Gradients that a gradient of a gradient can see through. tfjs 4.22 builds the gradients of Sigmoid, Tanh, Exp and
// Softmax from a saved copy of the op's output, and makes that copy before the op itself joins the tape: a second
// differentiation (R1 differentiates the discriminator's input gradient in its weights) then takes the copy for a
// constant and silently drops every term through it (tfjs issue #3252 reports the error form of the same fault).
// Registered again here, through the public tf.registerGradient, to save the input instead and recompute the output
// from it with the same kernel: first-order gradients stay bit for bit what tfjs computes, second-order ones become
// right, at the cost of one more elementwise op (or softmax) per backward pass. Importing this module registers them.

/** `kernelName`'s gradient as grad(dy, y), with y = f(x) recomputed from the saved input x. */
function fromInput(kernelName: string, f: (x: tf.Tensor) => tf.Tensor, grad: (dy: tf.Tensor, y: tf.Tensor) => tf.Tensor): void {
  tf.registerGradient({ kernelName, inputsToSave: ["x"], gradFunc: (dy, saved) => ({ x: () => grad(dy as tf.Tensor, f(saved[0])) }) });
}

// dy y (1 - y)
fromInput("Sigmoid", tf.sigmoid, (dy, y) => tf.mul(dy, tf.mul(y, tf.sub(tf.scalar(1), y))));
// (1 - y^2) dy
fromInput("Tanh", tf.tanh, (dy, y) => tf.mul(tf.sub(tf.scalar(1), tf.square(y)), dy));
// dy y
fromInput("Exp", tf.exp, (dy, y) => tf.mul(dy, y));

tf.registerGradient({
  kernelName: "Softmax",
  inputsToSave: ["logits"],
  gradFunc: (dy, saved, attrs) => {
    const dim = (attrs as unknown as { dim: number }).dim;
    const y = tf.softmax(saved[0], dim);
    const dyTimesY = tf.mul(dy as tf.Tensor, y);
    // dy y - sum(dy y) y over the softmax axis
    return { logits: () => tf.sub(dyTimesY, tf.mul(tf.sum(dyTimesY, [dim], true), y)) };
  },
});
