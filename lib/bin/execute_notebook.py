"""Execute one notebook with nbclient (what `jupyter nbconvert --execute` runs) and report a failure in full.

usage: /usr/bin/python3 execute_notebook.py NOTEBOOK OUT_DIR KERNEL TIMEOUT_S

nbconvert's error report is built from the kernel's error reply, which tslab leaves empty: the message of a
failing TypeScript cell only exists in the cell's outputs. So this driver prints the failing cell's source and
every output it produced, and keeps the partly executed notebook as OUT_DIR/<name>.failed.ipynb for inspection.
The kernel starts in the notebook's folder, as it does under Jupyter.
"""
import os
import sys
import time

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError


def output_text(out):
    if out.get("output_type") == "stream":
        return out.get("text", "")
    if out.get("output_type") == "error":
        return "\n".join(out.get("traceback") or [f"{out.get('ename')}: {out.get('evalue')}"])
    data = out.get("data", {})
    return data.get("text/plain") or data.get("text/markdown") or f"<{', '.join(data)}>"


def main(src, out_dir, kernel, timeout):
    nb = nbformat.read(src, as_version=4)
    name = os.path.basename(src)
    done = os.path.join(out_dir, name)
    failed = os.path.join(out_dir, name[: -len(".ipynb")] + ".failed.ipynb")
    code_cells = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    started = {}

    def on_start(cell, cell_index, **_):
        if cell.cell_type == "code":
            started[cell_index] = time.time()

    def on_executed(cell, cell_index, execute_reply, **_):
        k = code_cells.index(cell_index) + 1
        status = execute_reply["content"]["status"]
        print(f"  cell {k}/{len(code_cells)} {status} {time.time() - started[cell_index]:.1f}s", flush=True)

    client = NotebookClient(
        nb, kernel_name=kernel, timeout=timeout, resources={"metadata": {"path": os.path.dirname(os.path.abspath(src))}},
        on_cell_start=on_start, on_cell_executed=on_executed,
    )
    try:
        client.execute()
    except (CellExecutionError, CellTimeoutError, DeadKernelError) as e:
        nbformat.write(nb, failed)
        if not started:
            print(f"{src}: the kernel died before running a cell ({type(e).__name__}: {e})", file=sys.stderr, flush=True)
            return 1
        index = max(started)
        cell = nb.cells[index]
        why = "failed" if isinstance(e, CellExecutionError) else f"did not finish ({type(e).__name__}: {str(e).strip().splitlines()[0]})"
        report = [f"cell {code_cells.index(index) + 1}/{len(code_cells)} of {src} {why}:", "-" * 18, cell.source, "-" * 18]
        report += [output_text(o).rstrip("\n") for o in cell.outputs] or ["(the cell produced no output)"]
        report.append(f"partly executed notebook: {failed}")
        print("\n".join(report), file=sys.stderr, flush=True)
        return 1
    nbformat.write(nb, done)
    if os.path.exists(failed):
        os.remove(failed)
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
