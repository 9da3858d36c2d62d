import { execFileSync } from "child_process";

let gpuName: { name?: string } | undefined;

/** Name of the first NVIDIA GPU, or undefined when nvidia-smi is missing or sees none. */
export function nvidiaGpu(): string | undefined {
  if (!gpuName) {
    try {
      const out = execFileSync("nvidia-smi", ["--query-gpu=name", "--format=csv,noheader"], { encoding: "utf8", timeout: 10_000, stdio: ["ignore", "pipe", "ignore"] });
      gpuName = { name: out.split("\n").map((s) => s.trim()).find((s) => s.length > 0) };
    } catch {
      gpuName = {};
    }
  }
  return gpuName.name;
}
