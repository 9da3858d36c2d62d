// A worker thread of lib/backend/simd_threads.ts. It shares the wasm engine's memory, instantiates our SIMD
// modules as the main thread announces them, and runs one function call per job: it sleeps on the control word
// until a job is posted (state 1), claims it (4; the main thread may have withdrawn it first), runs it, and
// posts state 2 (done) or 3 (failed).
import { MessagePort, receiveMessageOnPort, workerData } from "worker_threads";

const { memory, control, port } = workerData as { memory: WebAssembly.Memory; control: number; port: MessagePort };
// shared memory never detaches, so this view stays valid when the memory grows
const ctl = new Int32Array(memory.buffer, control, 64);
const modules = new Map<number, { exports: Record<string, (...args: number[]) => number>; functions: string[] }>();

for (;;) {
  let state: number;
  while ((state = Atomics.load(ctl, 0)) !== 1) Atomics.wait(ctl, 0, state);
  if (Atomics.compareExchange(ctl, 0, 1, 4) !== 1) continue;
  for (let m = receiveMessageOnPort(port); m; m = receiveMessageOnPort(port)) {
    const { id, module, functions } = m.message as { id: number; module: WebAssembly.Module; functions: string[] };
    modules.set(id, { exports: new WebAssembly.Instance(module, { env: { memory } }).exports as never, functions });
  }
  let done = 2;
  try {
    const mod = modules.get(ctl[1])!;
    mod.exports[mod.functions[ctl[2]]](...Array.from(ctl.subarray(4, 4 + ctl[3])));
  } catch {
    done = 3;
  }
  Atomics.store(ctl, 0, done);
  Atomics.notify(ctl, 0);
}
