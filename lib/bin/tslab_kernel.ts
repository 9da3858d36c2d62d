// The tslab kernel as Jupyter starts it (lib/bin/tslab-kernel, registered by `npm run setup`): tslab itself, with
// three fixes.
// 1. tslab 1.0.22 sends on its ZeroMQ sockets without waiting for the previous send to finish, and zeromq 6 refuses
//    a second send while one is in flight on the same socket ("Socket is busy writing", EBUSY), which kills the
//    kernel. It struck in long cpu-scale cells: a request from Jupyter arrived while progress displays were still
//    being sent. Sends are queued per socket here, in order.
// 2. Jupyter interrupts a kernel with SIGINT (no interrupt_mode in the kernelspec). tslab's handler only abandons
//    the cell's promise: the work goes on in the background, holding the CPU. Here the signal goes first to the
//    library's interruptible work (lib/core/interrupt.ts), which stops at its next step boundary, keeps its
//    checkpoint and ends the cell with one line; only when none is running (or on a second press) does tslab's own
//    interrupt run.
// 3. tslab knows no comm messages: a frontend that opens a comm (the widget manager of Jupyter, plotly's) gets
//    "unknown msg_type: comm_open" in red under whichever cell is running. Comms are answered here as the messaging
//    protocol asks of a kernel without comm targets: comm_open with an immediate comm_close, comm_msg and
//    comm_close ignored, comm_info_request with an empty list (tslab sends that one as a "complete_reply").
// 4. Jupyter starts a kernel in a session of its own, so a kernel whose launcher dies without shutting it down
//    (reproduce killed with kill -9, a crashed notebook server) ran its cell to the end, writing checkpoints beside
//    those of a rerun. jupyter_client passes the launcher's pid as JPY_PARENT_PID (ipykernel watches it the same
//    way); the kernel exits once that process is gone.
// Then tslab starts exactly as its own binary starts it.
import { createHmac, randomUUID } from "crypto";
import * as path from "path";
import { requestInterrupt } from "../core/interrupt";

type Send = (this: object, message: unknown) => Promise<void>;

/** Make `send` on every socket of this prototype wait for the socket's previous send (zeromq's is not writable). */
export function queueSends(socketPrototype: { send: Send }): void {
  const send = socketPrototype.send;
  const inFlight = new WeakMap<object, Promise<void>>();
  Object.defineProperty(socketPrototype, "send", {
    configurable: true,
    value: function (this: object, message: unknown): Promise<void> {
      const sent = (inFlight.get(this) ?? Promise.resolve()).then(() => send.call(this, message));
      // a failed send fails its own caller, not the ones queued behind it
      inFlight.set(this, sent.catch(() => undefined));
      return sent;
    },
  });
}

/** SIGINT to the running interruptible work first; to the handlers installed so far (tslab's) when none takes it. */
export function routeInterrupts(): void {
  const others = process.listeners("SIGINT");
  process.removeAllListeners("SIGINT");
  process.on("SIGINT", (signal) => {
    if (!requestInterrupt()) for (const h of others) h(signal);
  });
}

const DELIM = "<IDS|MSG>";

interface Socket {
  send(frames: Array<string | Buffer>): Promise<void>;
}

/** The parts of tslab's ZmqServer that answering a message needs. */
interface ShellServer {
  connInfo: { key: string };
  iopub: Socket;
  handleShellMessage(sock: Socket, ...frames: Buffer[]): Promise<void>;
}

export const COMM_MESSAGES = ["comm_open", "comm_msg", "comm_close", "comm_info_request"];

/** Answer comm messages on this server prototype instead of tslab (which calls them unknown). */
export function answerComms(serverPrototype: ShellServer): void {
  const handle = serverPrototype.handleShellMessage;
  serverPrototype.handleShellMessage = async function (this: ShellServer, sock: Socket, ...frames: Buffer[]): Promise<void> {
    const d = frames.findIndex((f) => f.toString() === DELIM);
    if (d < 0) return handle.call(this, sock, ...frames);
    const [hmac, header, parent, metadata, content] = frames.slice(d + 1, d + 6).map((f) => f.toString());
    const head = JSON.parse(header) as { msg_type: string; session: string; username: string };
    if (!COMM_MESSAGES.includes(head.msg_type)) return handle.call(this, sock, ...frames);
    const key = this.connInfo.key;
    // Jupyter signs every message; one that does not verify is dropped, as tslab drops it
    if (createHmac("sha256", key).update(header).update(parent).update(metadata).update(content).digest("hex") !== hmac) return;
    const identities = frames.slice(0, d);
    const reply = (socket: Socket, msgType: string, body: object) => {
      const parts = [
        JSON.stringify({ msg_id: randomUUID(), session: head.session, username: head.username, date: new Date().toISOString(), msg_type: msgType, version: "5.3" }),
        header,
        "{}",
        JSON.stringify(body),
      ];
      const signature = createHmac("sha256", key).update(parts.join("")).digest("hex");
      return socket.send([...identities, DELIM, signature, ...parts]);
    };
    await reply(this.iopub, "status", { execution_state: "busy" });
    if (head.msg_type === "comm_open") await reply(this.iopub, "comm_close", { comm_id: (JSON.parse(content) as { comm_id: string }).comm_id, data: {} });
    if (head.msg_type === "comm_info_request") await reply(sock, "comm_info_reply", { status: "ok", comms: {} });
    await reply(this.iopub, "status", { execution_state: "idle" });
  };
}

/** Exit (status 1) once process `pid` no longer exists; checked every `everyMs`, without keeping the process alive. */
export function exitWithParent(pid: number, everyMs = 1000): void {
  const timer = setInterval(() => {
    try {
      process.kill(pid, 0);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ESRCH") process.exit(1);
    }
  }, everyMs);
  timer.unref();
}

if (require.main === module) {
  const parent = Number(process.env.JPY_PARENT_PID);
  if (Number.isInteger(parent) && parent > 1) exitWithParent(parent);
  const tslabDir = path.dirname(require.resolve("tslab/package.json"));
  // the zeromq instance tslab itself loads
  const zmq = require(require.resolve("zeromq", { paths: [tslabDir] })) as { Socket: { prototype: { send: Send } } };
  queueSends(zmq.Socket.prototype);
  answerComms((require(path.join(tslabDir, "dist", "jupyter.js")) as { ZmqServer: { prototype: ShellServer } }).ZmqServer.prototype);
  (require(path.join(tslabDir, "dist", "main.js")) as { main(): void }).main();
  // tslab installed its SIGINT handler while starting, synchronously
  routeInterrupts();
}
