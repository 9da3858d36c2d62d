// Entry point of each pthread worker of the multithreaded wasm engine (see wasm_threads.ts).
//
// tfjs-backend-wasm hands Emscripten this worker as a blob: URL and the module source as a Blob. Browsers
// load both; Node's worker_threads cannot, so Node gets this file instead. It runs the worker script that
// ships with tfjs-backend-wasm unchanged and only swaps how it loads the module source: from the file on
// disk that the Blob was made from, not from the Blob.
const { wasmWorkerContents } = require("@tensorflow/tfjs-backend-wasm/wasm-out/tfjs-backend-wasm-threaded-simd.worker.js") as {
  wasmWorkerContents: string;
};
const moduleSource = require.resolve("@tensorflow/tfjs-backend-wasm/wasm-out/tfjs-backend-wasm-threaded-simd.js");
const g = globalThis as unknown as Record<string, unknown>;

// The worker script is written for a classic script scope, where these are globals rather than module locals.
g.require = require;
g.__filename = __filename;
// tfjs escapes newlines the same way before it makes its Blob: the source holds "\n" inside string literals.
(0, eval)(wasmWorkerContents.replace(/\n/g, "\\n"));

const importScripts = g.importScripts as (url: string) => void;
g.importScripts = (url: string) => {
  if (String(url).startsWith("blob:")) g.WasmBackendModuleThreadedSimd = require(moduleSource);
  else importScripts(url);
};
