// Stopping long work cleanly. A stop request (the notebook's stop button, which reaches the tslab kernel as SIGINT;
// Ctrl-C in a terminal) is taken by the running work at its next step boundary: it writes its checkpoint and throws
// Interrupted, whose one-line message says what was kept and how to resume. A loop that never returns to the event
// loop can neither send its progress displays nor see the signal, so every boundary also yields to the event loop
// once YIELD_MS of work has passed since the last yield.

/** Longest stretch of work between two returns to the event loop, when steps are shorter than this. */
export const YIELD_MS = 250;

export class Interrupted extends Error {
  constructor(message: string) {
    super(message);
    this.name = "Interrupted";
    // what the user reads under the cell is this one line, not a stack of library frames
    this.stack = `${this.name}: ${message}`;
  }
}

let running = 0;
let requested = false;
let lastYield = performance.now();

/**
 * Ask the running interruptible work to stop at its next step boundary. False when none is running, or when a
 * request is already pending (a second press): the caller then interrupts its own way.
 */
export function requestInterrupt(): boolean {
  if (running === 0 || requested) return false;
  requested = true;
  return true;
}

/** Return to the event loop (I/O, signals, display messages) if YIELD_MS have passed since the last return. */
export async function yieldIfDue(): Promise<void> {
  if (performance.now() - lastYield < YIELD_MS) return;
  await new Promise<void>((resolve) => setImmediate(resolve));
  lastYield = performance.now();
}

/** At a step boundary of interruptible work: yields when due, then says whether a stop was requested. */
export async function stopRequested(): Promise<boolean> {
  await yieldIfDue();
  return requested;
}

/**
 * For command-line entry points: the first Ctrl-C asks the running work to stop cleanly at its next step boundary,
 * a second one (or one while nothing interruptible runs) quits at once, as Ctrl-C does by default. (In the tslab
 * kernel lib/bin/tslab_kernel.ts routes the notebook's stop button instead. Work never installs a handler itself:
 * Node's vm takes SIGINT listeners away while a notebook cell's script runs, and one added then breaks the
 * kernel's signal handling for good.)
 */
export function stopOnCtrlC(): void {
  process.on("SIGINT", () => {
    if (requestInterrupt()) process.stderr.write("\nstopping at the next step boundary (Ctrl-C again to quit now)\n");
    else process.exit(130);
  });
}

/**
 * Run `body` as interruptible work: stop requests made while it runs are seen by stopRequested() at the boundaries
 * of any loop inside it. Nested calls share one request; it is cleared when the outermost one ends.
 */
export async function interruptible<T>(body: () => Promise<T>): Promise<T> {
  running++;
  try {
    return await body();
  } finally {
    running--;
    if (running === 0) requested = false;
  }
}
