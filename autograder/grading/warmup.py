"""Warm the fork server once, so that no grading worker pays for it (imported last in
:data:`autograder.grading.worker.PRELOAD`).

A worker is forked from the fork server and grades one notebook; whatever a library computes lazily on
first use and keeps for the life of the process would otherwise be computed again by every worker.
Importing this module computes it once in the fork server:

* nbformat's JSON-schema validator (compiled from the schema on the first validation);
* SQLAlchemy's mapper configuration of nbgrader's gradebook models;
* the Pygments lexers of Python / IPython code (their token regexes compile on first use) and the
  Markdown renderer and HTML post-processing of nbconvert's HTML exporter (a tiny notebook is exported);
* nbgrader's feedback templates, compiled to Jinja bytecode: every worker's feedback exporter
  (:class:`CachedHTMLExporter`, which the worker's nbgrader configuration names for
  ``generate_feedback``) loads them from this in-memory :data:`TEMPLATE_BYTECODE` instead of parsing
  and compiling them again (Jinja checks each template's source checksum, so a changed template is
  compiled afresh).

Nothing here depends on a course or a student: only the libraries' own caches are filled, and the page
nbgrader renders is the same.
"""
from __future__ import annotations

import os

import jinja2
from nbconvert.exporters import HTMLExporter

__all__ = ["warm", "CachedHTMLExporter", "TEMPLATE_BYTECODE", "feedback_template_config"]


class _MemoryBytecodeCache(jinja2.BytecodeCache):
    """Jinja's bytecode cache in a dict (inherited by every process forked after it is filled)."""

    def __init__(self):
        self.store: dict[str, bytes] = {}

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        data = self.store.get(bucket.key)
        if data is not None:
            bucket.bytecode_from_string(data)

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        self.store[bucket.key] = bucket.bytecode_to_string()


TEMPLATE_BYTECODE = _MemoryBytecodeCache()


class CachedHTMLExporter(HTMLExporter):
    """nbconvert's HTMLExporter whose Jinja environment uses :data:`TEMPLATE_BYTECODE`."""

    def _create_environment(self):
        environment = super()._create_environment()
        environment.bytecode_cache = TEMPLATE_BYTECODE
        return environment


def feedback_template_config():
    """The HTMLExporter settings nbgrader's ``GenerateFeedback`` uses (its template and static paths)."""
    import nbgrader.converters.generate_feedback as gf
    from traitlets.config import Config

    base = os.path.join(os.path.dirname(gf.__file__), "..", "server_extensions", "formgrader")
    c = Config()
    c.Exporter.default_preprocessors = []
    c.HTMLExporter.template_name = "feedback"
    c.HTMLExporter.extra_template_basedirs = [os.path.abspath(os.path.join(base, "templates"))]
    c.HTMLExporter.extra_template_paths = [os.path.abspath(os.path.join(base, "static", "node_modules",
                                                                        "bootstrap", "dist", "css"))]
    return c


def warm() -> None:
    """Fill the caches listed in the module docstring (idempotent; a few hundred ms, once)."""
    import nbformat
    import sqlalchemy.orm
    from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor
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
    feedback = CachedHTMLExporter(config=feedback_template_config())
    feedback.register_preprocessor(CSSHTMLHeaderPreprocessor, enabled=True)
    feedback.from_notebook_node(nb, resources={"nbgrader": {"notebook": "warm-up", "score": 0.0, "max_score": 1.0,
                                                            "late_penalty": 0}})


warm()
