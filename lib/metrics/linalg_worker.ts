// A linalg pool thread (see linalg_pool.ts): bound to a set of shared arrays by a message, it then runs one job per
// bump of the generation counter until told to end the session.
import { parentPort, workerData } from "worker_threads";
import { JOB_PARAMS, OP_END, runJob } from "./linalg_kernels";
import { CTL_DONE, CTL_ERR, CTL_GEN, CTL_READY } from "./linalg_pool";

const { ctl, params, index } = workerData as { ctl: Int32Array; params: Float64Array; index: number };
const row = params.subarray(index * JOB_PARAMS, (index + 1) * JOB_PARAMS);

parentPort!.on("message", (msg: { arrays: Float64Array[]; gen: number }) => {
  let gen = msg.gen;
  for (;;) {
    Atomics.wait(ctl, CTL_GEN, gen);
    gen = Atomics.load(ctl, CTL_GEN);
    const end = row[0] === OP_END;
    if (!end) {
      try {
        runJob(row, msg.arrays);
      } catch (e) {
        Atomics.store(ctl, CTL_ERR, 1);
        console.error(`linalg worker ${index}:`, e);
      }
    }
    Atomics.add(ctl, CTL_DONE, 1);
    Atomics.notify(ctl, CTL_DONE);
    if (end) return;
  }
});
Atomics.add(ctl, CTL_READY, 1);
Atomics.notify(ctl, CTL_READY);
