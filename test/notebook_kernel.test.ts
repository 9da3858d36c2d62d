import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "child_process";
import { queueSends } from "../lib/bin/tslab_kernel";

// zeromq is tslab's dependency, not ours: load the instance tslab loads.
const zmq = require(require.resolve("zeromq", { paths: [require.resolve("tslab/package.json")] }));

test("the kernel's queued sends let tslab send back to back, as zeromq alone refuses (EBUSY), and keep their order", async () => {
  const pub = new zmq.Publisher();
  await pub.bind("tcp://127.0.0.1:*");
  const sub = new zmq.Subscriber({ receiveTimeout: 300 });
  sub.connect(pub.lastEndpoint);
  sub.subscribe();
  await new Promise((r) => setTimeout(r, 300));
  // progress displays are messages of this size (an HTML table) sent in bursts
  const burst = (n: number): number => {
    let refused = 0;
    for (let i = 0; i < n; i++) {
      try {
        pub.send([String(i), "x".repeat(100_000)]).catch(() => undefined);
      } catch (e) {
        assert.match((e as Error).message, /busy writing/);
        refused++;
      }
    }
    return refused;
  };
  const receiveAll = async (): Promise<string[]> => {
    const ids: string[] = [];
    for (;;) {
      try {
        ids.push((await sub.receive())[0].toString());
      } catch {
        return ids; // receive timed out: nothing more is coming
      }
    }
  };
  const send = zmq.Socket.prototype.send;
  try {
    assert.ok(burst(1000) > 0, "zeromq accepted 1000 back-to-back sends: this test no longer shows the failure mode");
    await receiveAll();
    queueSends(zmq.Socket.prototype);
    assert.equal(burst(300), 0);
    assert.deepEqual(await receiveAll(), Array.from({ length: 300 }, (_, i) => String(i)));
  } finally {
    Object.defineProperty(zmq.Socket.prototype, "send", { configurable: true, writable: false, value: send });
    pub.close();
    sub.close();
  }
});

test("a kernel exits when the process that launched it (JPY_PARENT_PID) is gone, and not before", { timeout: 20_000 }, async () => {
  const launcher = spawn("sleep", ["1.5"]);
  // a stand-in kernel: busy forever unless its launcher's death ends it
  const kernel = spawn(process.execPath, ["-e", `require(${JSON.stringify(require.resolve("../lib/bin/tslab_kernel"))}).exitWithParent(${launcher.pid}, 100); setInterval(() => {}, 1000);`]);
  const t0 = Date.now();
  const launcherDied = new Promise<number>((resolve) => launcher.on("exit", () => resolve(Date.now() - t0)));
  const code = await new Promise<number | null>((resolve) => kernel.on("exit", (c) => resolve(c)));
  const kernelMs = Date.now() - t0;
  const launcherMs = await launcherDied;
  assert.equal(code, 1);
  assert.ok(kernelMs >= launcherMs && kernelMs < launcherMs + 2000, `kernel exited ${kernelMs} ms after start, launcher ${launcherMs} ms`);
});
