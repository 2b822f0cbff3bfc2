"""Warm the fork server once, so that no grading worker pays for it (imported last in
:data:`autograder.grading.worker.PRELOAD`).

A worker is forked from the fork server and grades one notebook; whatever a library computes lazily on
first use and keeps for the life of the process would otherwise be computed again by every worker.
Importing this module computes it once in the fork server:

* nbformat's JSON-schema validator (compiled from the schema on the first validation);
* SQLAlchemy's mapper configuration of nbgrader's gradebook models;
* the Pygments lexers of Python / IPython code (their token regexes compile on first use) and the
  Markdown renderer and HTML post-processing of nbconvert's HTML exporter (a tiny notebook is exported).

Nothing here depends on a course or a student: only the libraries' own caches are filled.
"""
from __future__ import annotations

__all__ = ["warm"]


def warm() -> None:
    """Fill the caches listed in the module docstring (idempotent; a few hundred ms, once)."""
    import nbformat
    import sqlalchemy.orm
    from nbconvert.exporters import HTMLExporter
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

    import nbgrader.api  # noqa: F401 - the gradebook's models, configured below

    code = "import numpy as np\n%matplotlib inline\nx = np.zeros(3)  # a comment\nprint(f'{x!r}', 1.5e-3)"
    nb = new_notebook(cells=[
        new_markdown_cell("# Title\n\nSome *text* with $x^2$, `code` and a [link](https://example.org).\n\n- a\n- b"),
        new_code_cell(code, outputs=[new_output("stream", name="stdout", text="[0. 0. 0.] 0.0015\n"),
                                     new_output("error", ename="AssertionError", evalue="no", traceback=["x"])]),
    ])
    nb.metadata["language_info"] = {"name": "python", "pygments_lexer": "ipython3"}
    nbformat.validate(nbformat.reads(nbformat.writes(nb), as_version=4))
    sqlalchemy.orm.configure_mappers()
    HTMLExporter().from_notebook_node(nb)


warm()
