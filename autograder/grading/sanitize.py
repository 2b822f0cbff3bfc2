"""What may reach a feedback page: results and the checks' messages; no hidden test, no live HTML.

The grading worker cleans the autograded notebook (:func:`clean_autograded`) right after nbgrader's
autograde, before the verdict reads it and before nbgrader's ``generate_feedback`` renders it:

* **Hidden tests.**  A test cell shows the code the student received (its source outside the
  ``### BEGIN/END HIDDEN TESTS`` region) and its outcome: the check's message (``AssertionError: ...``)
  and what the visible part printed; its traceback, which quotes the hidden code, is reduced to the
  ``ename: evalue`` line.  Because the kernel *ran* the hidden code, student code could also print it
  (``inspect``, ``In``, the IPython history): every output of every cell is scrubbed of hidden-test
  lines (:class:`HiddenTests`: a line is matched by its letters and digits, so re-indenting, quoting or
  ``repr`` does not help; an output that still holds a hidden line across line breaks is dropped).
  Lines that are only a string (the hidden tests' messages) and lines the student can see anyway are
  not hidden.
* **Live HTML.**  ``text/html`` outputs are cleaned with bleach (allow-listed tags and attributes,
  ``http``/``https``/``mailto`` links only: no script, event handler, iframe, object/embed, form,
  style or ``javascript:`` URL); ``image/svg+xml``, JavaScript, widget and unknown outputs are dropped;
  ``text/markdown`` becomes plain text; images must be base64 and their metadata numbers; markdown
  cells the student wrote are rendered and cleaned the same way (nbgrader's feedback template renders
  markdown raw); cell and notebook metadata other than nbgrader's are dropped.

What a check or the verdict writes into ``results/<student>.json`` is scrubbed the same way
(:meth:`HiddenTests.scrub_value`).  What is *not* prevented is written down in docs/grading.md.
"""
from __future__ import annotations

import base64
import binascii
import copy
import html
import io
import re
import tokenize

__all__ = ["HiddenTests", "clean_notebook", "clean_autograded", "clean_html", "delimiters", "NOTICE"]

BEGIN, END = "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"
NOTICE = "[autograder: hidden test code removed from the feedback]"
HIDDEN_NOTE = "# (the hidden tests of this cell ran when it was graded; their code is not shown)"
MIN_CHARS = 10  # a hidden line is scrubbed when it has at least this many letters and digits

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_TAG = re.compile(r"<[^>]*>")


def _key(text: str) -> str:
    """Letters and digits only, lower case: how lines are compared."""
    return re.sub(r"[^0-9a-z]+", "", _ANSI.sub("", text).lower())


def _is_message_line(line: str) -> bool:
    """Is ``line`` only string literals (and brackets/commas), i.e. part of an assertion message?"""
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(line.strip() + "\n").readline))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return False
    significant = [t for t in tokens if t.type not in (tokenize.NEWLINE, tokenize.NL, tokenize.ENDMARKER,
                                                        tokenize.COMMENT, tokenize.INDENT, tokenize.DEDENT)]
    return bool(significant) and all(t.type == tokenize.STRING or (t.type == tokenize.OP and t.string in "()+,")
                                     for t in significant) and any(t.type == tokenize.STRING for t in significant)


class HiddenTests:
    """The hidden tests of one assignment (from its source notebook)."""

    def __init__(self, visible: dict, lines: list[str]):
        self.visible = visible          # grade_id -> the cell's source without its hidden region
        self.lines = lines              # the hidden lines that are scrubbed (raw text)
        self.keys = sorted({_key(line) for line in lines}, key=len, reverse=True)
        self._pattern = re.compile("|".join(re.escape(k) for k in self.keys)) if self.keys else None

    @classmethod
    def from_notebook(cls, source, begin: str = BEGIN, end: str = END) -> "HiddenTests":
        """From the source (instructor) notebook; ``begin``/``end`` as nbgrader's ``ClearHiddenTests``."""
        visible, hidden, shown = {}, [], set()
        for cell in source.cells:
            inside, kept, had = False, [], False
            for line in cell.source.split("\n"):
                if begin in line:
                    inside, had = True, True
                    hidden.append(line)
                elif end in line:
                    inside = False
                    hidden.append(line)
                elif inside:
                    hidden.append(line)
                else:
                    kept.append(line)
            if had:
                gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
                if gid:
                    visible[gid] = "\n".join(kept).rstrip()
            shown.update(_key(line) for line in kept)
        lines = [line for line in hidden if len(_key(line)) >= MIN_CHARS and _key(line) not in shown
                 and not _is_message_line(line)]
        return cls(visible, lines)

    def found_in(self, text: str) -> bool:
        """Does ``text`` hold a hidden line (compared by letters and digits, across line breaks too)?"""
        return bool(self._pattern and text and self._pattern.search(_key(text)))

    def scrub(self, text: str) -> str:
        """``text`` with every line that holds a hidden line replaced by :data:`NOTICE`."""
        if not self._pattern or not text:
            return text
        lines = text.split("\n")
        changed = False
        for i, line in enumerate(lines):
            if self._pattern.search(_key(line)):
                lines[i], changed = NOTICE, True
        return "\n".join(lines) if changed else text

    def scrub_value(self, value):
        """Every string inside ``value`` (dicts, lists: a result's reason and details) scrubbed; a string
        that still holds a hidden line across its line breaks becomes :data:`NOTICE`."""
        if isinstance(value, str):
            text = self.scrub(value)
            return NOTICE if self.found_in(text) else text
        if isinstance(value, dict):
            return {k: self.scrub_value(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(self.scrub_value(v) for v in value)
        return value


# --- HTML ---------------------------------------------------------------------------------------

TAGS = ["a", "abbr", "b", "blockquote", "br", "caption", "code", "dd", "del", "details", "div", "dl", "dt", "em",
        "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "ins", "kbd", "li", "ol", "p", "pre", "s", "samp",
        "small", "span", "strong", "sub", "summary", "sup", "table", "tbody", "td", "tfoot", "th", "thead", "tr",
        "tt", "u", "ul", "var"]
ATTRIBUTES = {"a": ["href", "title"], "img": ["src", "alt", "title", "width", "height"], "abbr": ["title"],
              "td": ["colspan", "rowspan", "align"], "th": ["colspan", "rowspan", "align"],
              "table": ["border", "class"], "ol": ["start"]}
PROTOCOLS = ["http", "https", "mailto"]


def clean_html(text: str) -> str:
    """``text`` (an HTML fragment) with only allow-listed tags and attributes; everything else escaped,
    the content of ``script``/``style``/``iframe``... dropped."""
    import bleach

    text = re.sub(r"<(script|style|iframe|object|embed|template|noscript|svg|math)\b.*?</\1\s*>", "", text,
                  flags=re.I | re.S)
    return bleach.clean(text, tags=TAGS, attributes=ATTRIBUTES, protocols=PROTOCOLS, strip=True,
                        strip_comments=True)


def _html_text(fragment: str) -> str:
    return html.unescape(_TAG.sub("", fragment))


def clean_markdown(source: str) -> str:
    """A student's markdown as cleaned HTML, in one block that markdown renders as it is (no blank line
    ends it, so nothing in it is read as markdown a second time)."""
    from nbconvert.filters.markdown import markdown2html

    cleaned = clean_html(markdown2html(source))
    cleaned = re.sub(r"\n[ \t]*(?=\n)", "\n&#8203;", cleaned)  # no blank line inside the block
    return f'<div class="mf-student-markdown">\n{cleaned.strip()}\n</div>'


# --- outputs ------------------------------------------------------------------------------------

_BASE64 = re.compile(r"^[A-Za-z0-9+/=\s]*$")
KEEP_AS_IS = ("text/plain", "text/latex", "application/json")
IMAGES = ("image/png", "image/jpeg", "image/gif")


def _valid_base64(data) -> bool:
    if not isinstance(data, str) or not _BASE64.match(data):
        return False
    try:
        base64.b64decode("".join(data.split()), validate=True)
        return True
    except (binascii.Error, ValueError):
        return False


def _clean_data(data: dict, hidden: HiddenTests) -> dict:
    out = {}
    for mime, value in data.items():
        if mime in KEEP_AS_IS:
            text = value if isinstance(value, str) else "".join(value) if isinstance(value, list) else None
            if text is None and mime == "application/json":
                continue  # structured JSON is not rendered in the feedback
            out[mime] = hidden.scrub(text) if text is not None else ""
        elif mime in IMAGES and _valid_base64(value):
            out[mime] = value
        elif mime == "text/html" and isinstance(value, (str, list)):
            fragment = clean_html(value if isinstance(value, str) else "".join(value))
            if not hidden.found_in(_html_text(fragment)):
                out[mime] = fragment
        elif mime == "text/markdown" and isinstance(value, str) and "text/plain" not in data:
            out["text/plain"] = hidden.scrub(value)
    if "text/plain" in out and hidden.found_in(out["text/plain"]):
        out["text/plain"] = NOTICE
    if not out:
        out["text/plain"] = "[autograder: output of type " + ", ".join(sorted(data))[:200] + " not shown]"
    return out


def _clean_metadata(metadata, data: dict) -> dict:
    out = {}
    for mime in IMAGES:
        m = metadata.get(mime) if isinstance(metadata, dict) else None
        if mime in data and isinstance(m, dict):
            sizes = {k: int(m[k]) for k in ("width", "height")
                     if isinstance(m.get(k), (int, float)) and not isinstance(m.get(k), bool) and 0 < m[k] < 10**5}
            if sizes:
                out[mime] = sizes
    return out


def clean_output(output, hidden: HiddenTests, test_cell: bool):
    """One output of a code cell, cleaned (see the module docstring)."""
    from nbformat.notebooknode import NotebookNode

    kind = output.get("output_type")
    if kind == "stream":
        text = hidden.scrub(str(output.get("text", "")))
        if hidden.found_in(text):
            text = NOTICE + "\n"
        return NotebookNode(output_type="stream", name="stderr" if output.get("name") == "stderr" else "stdout",
                            text=text)
    if kind == "error":
        ename, evalue = hidden.scrub(str(output.get("ename", "Error"))), hidden.scrub(str(output.get("evalue", "")))
        if hidden.found_in(ename + "\n" + evalue):
            ename, evalue = "Error", NOTICE
        if test_cell:
            traceback = [f"{ename}: {evalue}" if evalue else ename]
        else:
            traceback = [hidden.scrub(str(line)) for line in output.get("traceback", [])]
            if hidden.found_in("\n".join(traceback)):
                traceback = [f"{ename}: {evalue}"]
        return NotebookNode(output_type="error", ename=ename, evalue=evalue, traceback=traceback)
    if kind in ("display_data", "execute_result"):
        data = _clean_data(dict(output.get("data", {})), hidden)
        node = NotebookNode(output_type=kind, data=data, metadata=_clean_metadata(output.get("metadata", {}), data))
        if kind == "execute_result":
            node["execution_count"] = output.get("execution_count") if isinstance(output.get("execution_count"),
                                                                                  int) else None
        return node
    return NotebookNode(output_type="stream", name="stdout", text=f"[autograder: {str(kind)[:40]} output not shown]\n")


# --- whole notebooks --------------------------------------------------------------------------------

def clean_notebook(nb, hidden: HiddenTests, instructor_markdown: set, metadata: dict | None = None):
    """A cleaned copy of the autograded notebook ``nb`` (see the module docstring).
    ``instructor_markdown``: the sources of the assignment's own markdown cells (left as they are);
    ``metadata``: the notebook metadata to keep (the release's kernelspec and language_info)."""
    from nbformat.notebooknode import NotebookNode

    nb = copy.deepcopy(nb)
    nb.metadata = NotebookNode(metadata or {})
    for cell in nb.cells:
        meta = cell.get("metadata", {}) or {}
        nbgrader = meta.get("nbgrader")
        cell.metadata = NotebookNode({"nbgrader": nbgrader} if isinstance(nbgrader, dict) else {})
        if cell.cell_type != "markdown" or cell.source not in instructor_markdown:
            cell.pop("attachments", None)
        gid = nbgrader.get("grade_id") if isinstance(nbgrader, dict) else None
        test_cell = bool(isinstance(nbgrader, dict) and nbgrader.get("grade") and not nbgrader.get("solution"))
        if cell.cell_type == "code":
            if gid in hidden.visible:
                cell.source = (hidden.visible[gid] + "\n" if hidden.visible[gid] else "") + HIDDEN_NOTE
            cell.outputs = [clean_output(o, hidden, test_cell) for o in cell.get("outputs", [])]
        elif cell.cell_type == "markdown":
            if gid in hidden.visible:
                cell.source = hidden.visible[gid]
            if cell.source not in instructor_markdown:
                cell.source = clean_markdown(hidden.scrub(cell.source))
        else:  # raw cells are not rendered: keep nothing a template could pass through
            cell.source = hidden.scrub(cell.source)
    return nb


def instructor_markdown_of(source, hidden: HiddenTests) -> set:
    """The markdown cell sources of the assignment as students receive them (hidden regions removed)."""
    out = set()
    for cell in source.cells:
        if cell.cell_type == "markdown":
            gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
            out.add(hidden.visible.get(gid, cell.source))
    return out


def delimiters(config) -> tuple[str, str]:
    """The hidden-test markers a course's nbgrader config sets (``ClearHiddenTests``), else nbgrader's."""
    section = config["ClearHiddenTests"] if "ClearHiddenTests" in config else {}
    return section.get("begin_test_delimeter", BEGIN), section.get("end_test_delimeter", END)


def clean_autograded(path, source_path, begin: str = BEGIN, end: str = END):
    """Clean the autograded notebook at ``path`` in place (its assignment's source notebook is at
    ``source_path``); returns ``(cleaned notebook, HiddenTests)``."""
    import nbformat

    source = nbformat.read(str(source_path), as_version=4)
    hidden = HiddenTests.from_notebook(source, begin, end)
    nb = nbformat.read(str(path), as_version=4)
    keep = {k: source.metadata[k] for k in ("kernelspec", "language_info") if k in source.metadata}
    cleaned = clean_notebook(nb, hidden, instructor_markdown_of(source, hidden), keep)
    nbformat.write(cleaned, str(path))
    return cleaned, hidden


# --- for nbconvert itself: nbgrader's formgrader and feedback (nbgrader_config.py) -------------------

def _preprocessor_base():
    from nbconvert.preprocessors import Preprocessor

    return Preprocessor


class SanitizeCells(_preprocessor_base()):
    """nbconvert preprocessor for pages made from untrusted notebooks (``c.HTMLExporter.preprocessors``
    in ``nbgrader_config.py``): every markdown cell rendered and cleaned (:func:`clean_markdown`: nbgrader's
    formgrade and feedback templates render markdown without nbconvert's ``sanitize_html``), every output
    cleaned as in the feedback (:func:`clean_output`; tracebacks kept: the formgrader is the instructor's)."""

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type == "markdown":
            cell.source = clean_markdown(cell.source)
            cell.pop("attachments", None)
        elif cell.cell_type == "code":
            nothing = HiddenTests({}, [])
            cell.outputs = [clean_output(o, nothing, test_cell=False) for o in cell.get("outputs", [])]
        return cell, resources
