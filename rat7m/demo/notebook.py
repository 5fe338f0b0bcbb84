"""Run ``visualization.ipynb`` headless with a real Jupyter kernel, parameters injected.

The notebook's first code cell tagged ``parameters`` holds plain assignments; we append the given
values as a new cell right after it (as papermill does), execute top to bottom with nbclient, and
write the executed notebook (and an HTML copy) so a person can look at it.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

import nbformat

__all__ = ["execute_notebook"]


def execute_notebook(
    notebook: str | os.PathLike,
    output: str | os.PathLike,
    parameters: Mapping[str, object],
    *,
    cwd: str | os.PathLike | None = None,
    timeout: int = 300,
    html: bool = True,
) -> nbformat.NotebookNode:
    """Execute ``notebook`` with ``parameters`` and save it to ``output`` (``.ipynb``; ``.html`` beside it).

    Raises:
        nbclient.exceptions.CellExecutionError: a cell failed (the message shows the cell and traceback).
    """
    from nbclient import NotebookClient  # lazily: only the demo and tests need Jupyter

    nb = nbformat.read(notebook, as_version=4)
    index = next(
        (i for i, cell in enumerate(nb.cells) if "parameters" in cell.get("metadata", {}).get("tags", [])), None
    )
    if index is None:
        raise ValueError(f"{notebook}: no cell tagged 'parameters'")
    source = "# Injected parameters\n" + "".join(f"{k} = {v!r}\n" for k, v in parameters.items())
    injected = nbformat.v4.new_code_cell(source)
    injected.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(index + 1, injected)
    workdir = str(cwd if cwd is not None else Path(notebook).resolve().parent)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": workdir}})
    # The kernel's own stderr only carries start-up chatter (e.g. a warning about TCP transport on
    # loopback); errors in cells arrive as cell outputs and raise CellExecutionError.
    client.execute(stderr=subprocess.DEVNULL)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, output)
    if html:
        from nbconvert import HTMLExporter

        body, _ = HTMLExporter().from_notebook_node(nb)
        output.with_suffix(".html").write_text(body, encoding="utf-8")
    return nb
