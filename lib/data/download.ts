import { writeVerified, WriteTarget } from "./verified_write";

// The network side of fetching: one GET, streamed through writeVerified, with failures that name the file, the
// URL and the cause (DNS, refused connection, HTTP status) instead of fetch()'s bare "fetch failed".

function describeCause(e: unknown): string {
  const err = e as { message?: string; cause?: { code?: string; message?: string } };
  const c = err.cause;
  if (!c) return String(err.message ?? e);
  return c.message && c.code && !c.message.includes(c.code) ? `${c.code} ${c.message}` : (c.message ?? c.code ?? String(err.message));
}

async function* bodyChunks(body: ReadableStream<Uint8Array>, url: string): AsyncGenerator<Uint8Array> {
  const reader = body.getReader();
  try {
    for (;;) {
      let r: ReadableStreamReadResult<Uint8Array>;
      try {
        r = await reader.read();
      } catch (e) {
        throw new Error(`network failure while reading ${url}: ${describeCause(e)}`);
      }
      if (r.done) return;
      yield r.value;
    }
  } finally {
    reader.releaseLock();
  }
}

/** Download url into t; `hint` ends every failure message (e.g. how to work offline). Returns the sha256. */
export async function download(url: string, t: WriteTarget, hint: string): Promise<string> {
  let res: Response;
  try {
    res = await fetch(url, { redirect: "follow" });
  } catch (e) {
    throw new Error(`network failure fetching ${t.label} from ${url}: ${describeCause(e)}${hint}`);
  }
  if (!res.ok || !res.body) {
    await res.body?.cancel().catch(() => undefined);
    throw new Error(`network failure fetching ${t.label}: GET ${url} answered HTTP ${res.status} ${res.statusText}${hint}`);
  }
  const length = Number(res.headers.get("content-length"));
  return writeVerified(bodyChunks(res.body, url), t, length > 0 ? length : null);
}
