// The tslab kernel as Jupyter starts it (lib/bin/tslab-kernel, registered by `npm run setup`): tslab itself, with
// one fix. tslab 1.0.22 sends on its ZeroMQ sockets without waiting for the previous send to finish, and zeromq 6
// refuses a second send while one is in flight on the same socket ("Socket is busy writing", EBUSY), which kills
// the kernel. It struck in long cpu-scale cells: a request from Jupyter arrived while progress displays were still
// being sent. Sends are queued per socket here, in order; then tslab starts exactly as its own binary starts it.
import * as path from "path";

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

if (require.main === module) {
  const tslabDir = path.dirname(require.resolve("tslab/package.json"));
  // the zeromq instance tslab itself loads
  const zmq = require(require.resolve("zeromq", { paths: [tslabDir] })) as { Socket: { prototype: { send: Send } } };
  queueSends(zmq.Socket.prototype);
  (require(path.join(tslabDir, "dist", "main.js")) as { main(): void }).main();
}
