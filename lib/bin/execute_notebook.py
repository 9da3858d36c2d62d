"""Execute one notebook with nbclient (what `jupyter nbconvert --execute` runs) and report a failure in full.

usage: /usr/bin/python3 execute_notebook.py NOTEBOOK OUT_DIR KERNEL TIMEOUT_S

Writes OUT_DIR/<name>.ipynb when every cell ran. Exit status: 0 done; 1 a cell failed or the kernel died
(OUT_DIR/<name>.failed.ipynb kept); 130 stopped by SIGINT or SIGTERM (OUT_DIR/<name>.stopped.ipynb kept).

nbconvert's error report is built from the kernel's error reply, which tslab leaves empty: the message of a
failing TypeScript cell only exists in the cell's outputs. So this driver prints the failing cell's source and
every output it produced. The kernel starts in the notebook's folder, as it does under Jupyter.

A stop interrupts the kernel as Jupyter's stop button does, waits up to STOP_GRACE_S for the running cell to end
at its next step boundary (a second signal, or the end of the wait, kills the kernel), runs no further cell, and
shuts the kernel down. nbclient's own execute() is not used: on a signal it shuts the kernel down under the
running cell and then fails its own cleanup, printing three tracebacks. The same stop follows when the process that
started this one dies without passing a signal on (reproduce runs it in a session of its own, so a kill -9 of
reproduce left it running the notebook, beside a rerun).
"""
import signal
import sys

# Until the event loop below handles them, a signal only ends the process, without a traceback.
signal.signal(signal.SIGINT, lambda *_: sys.exit(130))
signal.signal(signal.SIGTERM, lambda *_: sys.exit(130))

import asyncio  # noqa: E402
import os  # noqa: E402
import time  # noqa: E402

import nbformat  # noqa: E402
from nbclient import NotebookClient  # noqa: E402
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError  # noqa: E402
from nbclient.util import ensure_async  # noqa: E402

STOP_GRACE_S = 30


def output_text(out):
    if out.get("output_type") == "stream":
        return out.get("text", "")
    if out.get("output_type") == "error":
        return "\n".join(out.get("traceback") or [f"{out.get('ename')}: {out.get('evalue')}"])
    data = out.get("data", {})
    return data.get("text/plain") or data.get("text/markdown") or f"<{', '.join(data)}>"


class Stop:
    """What the signal handler asked for: nothing yet, a stop (interrupt, then wait), or a kill."""

    def __init__(self, client):
        self.client = client
        self.requested = False
        self.killer = None

    def on_signal(self):
        if not self.requested:
            self.requested = True
            self.killer = asyncio.ensure_future(self._interrupt_then_kill())
        else:
            self.killer.cancel()
            asyncio.ensure_future(self._kill())

    async def _interrupt_then_kill(self):
        await ensure_async(self.client.km.interrupt_kernel())
        await asyncio.sleep(STOP_GRACE_S)
        await self._kill()

    async def _kill(self):
        if await ensure_async(self.client.km.is_alive()):
            await ensure_async(self.client.km.shutdown_kernel(now=True))


async def execute(nb, client, on_cell_done, stop):
    """Run the code cells in order; returns normally when all ran or a stop was asked for between cells."""
    await client.async_start_new_kernel()
    await client.async_start_new_kernel_client()
    try:
        msg_id = await ensure_async(client.kc.kernel_info())
        info = await client.async_wait_for_reply(msg_id)
        if info is not None and "language_info" in info["content"]:
            nb.metadata["language_info"] = info["content"]["language_info"]
        for index, cell in enumerate(nb.cells):
            if stop.requested:
                return
            if cell.cell_type != "code":
                continue
            start = time.time()
            try:
                await client.async_execute_cell(cell, index, execution_count=client.code_cells_executed + 1)
            except (CellExecutionError, DeadKernelError):
                # an interrupted cell ends in an error, a killed kernel in DeadKernelError: both are the stop
                if stop.requested:
                    return
                raise
            if stop.requested:
                return
            on_cell_done(index, time.time() - start)
    finally:
        if stop.killer is not None:
            stop.killer.cancel()
        await ensure_async(client.kc.stop_channels())
        # a graceful shutdown request first: the kernel may be finishing a checkpoint
        if await ensure_async(client.km.is_alive()):
            await ensure_async(client.km.shutdown_kernel())
        await ensure_async(client.km.cleanup_resources())


def watch_parent(loop, stop, parent):
    """Stop as on a signal once this process has been handed to another parent (the one that started it is gone)."""
    if os.getppid() != parent:
        stop.on_signal()
        return
    loop.call_later(1.0, watch_parent, loop, stop, parent)


def main(src, out_dir, kernel, timeout):
    nb = nbformat.read(src, as_version=4)
    name = os.path.basename(src)
    stem = name[: -len(".ipynb")]
    done, failed, stopped = (os.path.join(out_dir, f) for f in (name, f"{stem}.failed.ipynb", f"{stem}.stopped.ipynb"))
    code_cells = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    running = {}

    def on_start(cell, cell_index, **_):
        if cell.cell_type == "code":
            running["index"] = cell_index

    def on_cell_done(index, seconds):
        print(f"  cell {code_cells.index(index) + 1}/{len(code_cells)} ok {seconds:.1f}s", flush=True)

    client = NotebookClient(
        nb, kernel_name=kernel, timeout=timeout, resources={"metadata": {"path": os.path.dirname(os.path.abspath(src))}},
        on_cell_start=on_start,
    )
    client.km = client.create_kernel_manager()
    stop = Stop(client)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.on_signal)
    loop.call_later(1.0, watch_parent, loop, stop, os.getppid())
    for f in (failed, stopped):
        if os.path.exists(f):
            os.remove(f)
    try:
        loop.run_until_complete(execute(nb, client, on_cell_done, stop))
    except (CellExecutionError, CellTimeoutError, DeadKernelError) as e:
        nbformat.write(nb, failed)
        if "index" not in running:
            print(f"{src}: the kernel died before running a cell ({type(e).__name__}: {e})", file=sys.stderr, flush=True)
            return 1
        index = running["index"]
        cell = nb.cells[index]
        why = "failed" if isinstance(e, CellExecutionError) else f"did not finish ({type(e).__name__}: {str(e).strip().splitlines()[0]})"
        report = [f"cell {code_cells.index(index) + 1}/{len(code_cells)} of {src} {why}:", "-" * 18, cell.source, "-" * 18]
        report += [output_text(o).rstrip("\n") for o in cell.outputs] or ["(the cell produced no output)"]
        report.append(f"partly executed notebook: {failed}")
        print("\n".join(report), file=sys.stderr, flush=True)
        return 1
    finally:
        loop.close()
    if stop.requested:
        nbformat.write(nb, stopped)
        return 130
    nbformat.write(nb, done)
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
