import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { fromRoot } from "../lib/core/paths";

// The kernel as Jupyter drives it: our tslab launcher (lib/bin/tslab_kernel.ts) started by jupyter_client from a
// kernelspec of its own, a cell running a long training loop, Jupyter's interrupt (SIGINT to the kernel), then
// another cell; and a frontend's comm_open, which tslab alone calls unknown. The driver is Python because that is
// what Jupyter is.

const DRIVER = String.raw`
import json, os, sys, time
from jupyter_client.manager import KernelManager

root, ckpt = sys.argv[1], sys.argv[2]
km = KernelManager(kernel_name="d2g-interrupt-test")
km.start_kernel(cwd=root)
kc = km.client()
kc.start_channels()
out = {}
try:
    kc.wait_for_ready(timeout=60)

    def run(code, timeout, on_output=None):
        """Execute code; collect its stream text until the reply, calling on_output(text) as output arrives."""
        msg_id = kc.execute(code)
        text = ""
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                msg = kc.get_iopub_msg(timeout=0.2)
            except Exception:
                continue
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "stream":
                text += msg["content"]["text"]
                if on_output:
                    on_output(text)
            elif msg["msg_type"] in ("execute_result", "display_data"):
                text += msg["content"]["data"].get("text/plain", "")
            elif msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                break
        while True:
            reply = kc.get_shell_msg(timeout=10)
            if reply["parent_header"].get("msg_id") == msg_id:
                return reply["content"]["status"], text

    loop = (
        'import { runTraining } from "d2g/lib/train/loop";\n'
        'await runTraining({ label: "long loop", totalSteps: 1000000, ckptEvery: 1000000, ckptDir: %s, vars: {}, rngs: {},\n'
        '  step() { const t = Date.now(); while (Date.now() - t < 20) {} return {}; } });\n' % json.dumps(ckpt)
    )
    sent = {}
    def interrupt_once_running(text):
        # the loop has started once its progress bar shows; let it run a little, then press stop
        if "long loop" in text and "at" not in sent:
            time.sleep(1.0)
            sent["at"] = time.time()
            km.interrupt_kernel()
    status, text = run(loop, 60, interrupt_once_running)
    out["loop"] = {"status": status, "text": text, "stop_s": time.time() - sent["at"] if "at" in sent else None}
    # tslab aborts what arrives within 200 ms of a failed cell (the cells queued behind it); the user comes later
    time.sleep(0.5)
    status, text = run("const answer: number = 6 * 7;\nconsole.log(answer);", 60)
    out["next"] = {"status": status, "text": text}

    comm = kc.session.msg("comm_open", {"comm_id": "d2g-test-comm", "target_name": "jupyter.widget", "data": {}})
    kc.shell_channel.send(comm)
    # every iopub message for two seconds: tslab alone prints "unknown msg_type" on the last cell's stderr stream
    seen = []
    deadline = time.time() + 2
    while time.time() < deadline:
        try:
            msg = kc.get_iopub_msg(timeout=0.2)
        except Exception:
            continue
        if msg["parent_header"].get("msg_id") == comm["header"]["msg_id"] or msg["msg_type"] == "stream":
            seen.append((msg["msg_type"], msg["content"]))
    out["comm"] = seen
finally:
    kc.stop_channels()
    km.shutdown_kernel(now=True)
print(json.dumps(out))
`;

test("Jupyter's interrupt stops a long cell at a step boundary, keeps its checkpoint, and the kernel runs the next cell", { timeout: 120_000 }, () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "d2g-kernel-"));
  const spec = path.join(tmp, "kernels", "d2g-interrupt-test");
  fs.mkdirSync(spec, { recursive: true });
  const launcher = fromRoot("node_modules", "d2g", "lib", "bin", "tslab_kernel.js");
  fs.writeFileSync(path.join(spec, "kernel.json"), JSON.stringify({ argv: [process.execPath, launcher, "kernel", "--config-path", "{connection_file}"], display_name: "d2g test", language: "typescript" }));
  const ckpt = path.join(tmp, "ckpt");
  // the kernel is a user's, not a test's: under NODE_TEST_CONTEXT its progress display would stay silent
  const env: NodeJS.ProcessEnv = { ...process.env, JUPYTER_PATH: tmp };
  delete env.NODE_TEST_CONTEXT;
  const r = spawnSync("/usr/bin/python3", ["-c", DRIVER, fromRoot(), ckpt], { encoding: "utf8", env, timeout: 110_000 });
  assert.equal(r.status, 0, `the Jupyter driver failed (is jupyter_client installed for /usr/bin/python3? npm run setup):\n${r.stderr}`);
  const out = JSON.parse(r.stdout.trim().split("\n").pop()!);

  assert.ok(out.loop.stop_s !== null, `the loop never showed its progress: ${JSON.stringify(out.loop)}`);
  assert.ok(out.loop.stop_s < 5, `the cell ended ${out.loop.stop_s} s after the interrupt`);
  assert.equal(out.loop.status, "error", "an interrupted cell ends as an error, so Jupyter aborts the cells queued after it");
  assert.match(out.loop.text, /long loop stopped at step \d+ of 1000000; checkpoint kept in/);
  assert.doesNotMatch(out.loop.text, /Interrupted asynchronously/, "tslab's own interrupt (which abandons the work) did not run");
  assert.equal(fs.readdirSync(ckpt).filter((f) => f.startsWith("ckpt-")).length, 1, "the checkpoint was written where the loop stopped");

  assert.equal(out.next.status, "ok");
  assert.match(out.next.text, /42/);

  const types = out.comm.map(([t]: [string]) => t);
  assert.ok(types.includes("comm_close"), `comm_open was not answered with comm_close: ${JSON.stringify(out.comm)}`);
  assert.ok(!JSON.stringify(out.comm).includes("unknown msg_type"), JSON.stringify(out.comm));
  fs.rmSync(tmp, { recursive: true });
});
