// Every experiment runs at one of three scales, chosen by the single setting D2G_SCALE.
//   smoke: seconds to two minutes, for CI;  cpu (default): under an hour on a 2-core laptop;
//   paper: the paper's configuration (GPU, official weights, full data).

export const SCALES = ["smoke", "cpu", "paper"] as const;
export type Scale = (typeof SCALES)[number];

export function currentScale(env: Record<string, string | undefined> = process.env): Scale {
  const s = env.D2G_SCALE ?? "cpu";
  if (!(SCALES as readonly string[]).includes(s)) {
    throw new Error(`D2G_SCALE=${JSON.stringify(s)} is not a scale; expected one of ${SCALES.join(", ")}`);
  }
  return s as Scale;
}

/** The config of the current scale from a per-scale table. */
export function byScale<T>(configs: Record<Scale, T>, scale: Scale = currentScale()): T {
  return configs[scale];
}
