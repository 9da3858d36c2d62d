import * as tf from "@tensorflow/tfjs";

// A feature extractor for distribution metrics. FID and KID are only comparable between numbers computed with
// the same extractor, so every reported metric carries the extractor's label: the standard InceptionV3 with its
// official weights prints as "FID"; anything else (a CIFAR-10 classifier, a random or test-width Inception)
// prints as e.g. "FID-C10", and can never be mistaken for the standard number.

export interface FeatureNet {
  /** Identifies extractor, weights and preprocessing: cached reference statistics are keyed by it. */
  readonly name: string;
  /** Suffix of every metric name: "" is reserved for the official FID Inception; e.g. "C10" gives "FID-C10". */
  readonly label: string;
  readonly dim: number;
  /**
   * NHWC images in [-1, 1] -> [N, dim] features; the caller disposes both. Asynchronous because a frozen
   * extractor runs on the inference engine (onnxruntime, lib/backend/onnx_runtime.ts).
   */
  features(images: tf.Tensor4D): Promise<tf.Tensor2D>;
}

export type MetricName = "FID" | "KID";

/** "FID", "KID", "FID-C10", ...: the only way metric names are formed for printing and logging. */
export function metricLabel(metric: MetricName, net: Pick<FeatureNet, "label">): string {
  return net.label === "" ? metric : `${metric}-${net.label}`;
}
