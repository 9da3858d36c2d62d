// Round trip of the 24 Kodak photos through the default latent codec (TAEF2) at 256 px (centre crop, Lanczos)
// and at full size (768x512 or 512x768): mean 8-bit PSNR and encode / decode milliseconds per image on the
// engine the notebooks use (initEngine: D2G_BACKEND, D2G_WASM_THREADS).
// Usage: npm run codec-report -- [--photos N]   (default all 24)
import * as tf from "@tensorflow/tfjs";
import { initEngine } from "../backend/engine";
import { Progress } from "../core/progress";
import { ensureDataAll } from "../data/fetch";
import { loadImages } from "../data/images";
import { LatentCodec, psnr8bit, taef2Codec } from "../nn/latent_codec";
import { runCli } from "./args";

const SPEC = {
  command: "npm run codec-report --",
  summary: "TAEF2 round trip of the Kodak photographs at 256 px and full size: mean PSNR, encode and decode time per image.",
  flags: { photos: { type: "int", min: 1, max: 24, default: 24, help: "how many of the 24 photographs" } },
} as const;

interface RoundTrip {
  psnr: number;
  encodeMs: number;
  decodeMs: number;
}

async function roundTrip(codec: LatentCodec, image: tf.Tensor4D): Promise<RoundTrip> {
  const t0 = performance.now();
  const z = codec.encode(image);
  await z.data();
  const t1 = performance.now();
  const y = codec.decode(z);
  await y.data();
  const t2 = performance.now();
  const [psnr] = await psnr8bit(y, image);
  tf.dispose([z, y]);
  return { psnr, encodeMs: t1 - t0, decodeMs: t2 - t1 };
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

runCli(SPEC, async ({ flags: { photos: count } }) => {
  await initEngine();
  const files = (await ensureDataAll(["kodak"])).slice(0, count);
  const codec = await taef2Codec();
  console.log(`codec ${codec.name}: ${codec.channels} channels, 1/${codec.factor} resolution`);
  for (const size of [256, undefined]) {
    const label = size ? `${size}x${size}` : "full size";
    const load = (f: string) => loadImages(f, size ? { size, kernel: "lanczos3" } : {});
    // the first call compiles and allocates; time only warm runs
    const warm = await load(files[0]);
    await roundTrip(codec, warm);
    warm.dispose();
    const bar = new Progress(label, files.length);
    const runs: RoundTrip[] = [];
    for (const f of files) {
      const image = await load(f);
      runs.push(await roundTrip(codec, image));
      image.dispose();
      bar.tick(1, { psnr: runs[runs.length - 1].psnr });
    }
    bar.finish();
    const psnr = mean(runs.map((r) => r.psnr));
    const enc = mean(runs.map((r) => r.encodeMs));
    const dec = mean(runs.map((r) => r.decodeMs));
    console.log(`${label}: mean PSNR ${psnr.toFixed(2)} dB over ${runs.length} photos; encode ${enc.toFixed(0)} ms, decode ${dec.toFixed(0)} ms per image`);
  }
  codec.dispose();
});
