"""The feedback page a student gets: ``feedback/<student>.html``.

When nbgrader's ``generate_feedback`` worked, the page is its HTML -- rendered from the autograded
notebook *after* :mod:`.sanitize` cleaned it (hidden tests removed, outputs sanitised) -- with, first in
the body, a banner (status, score, reason) and a summary table (each test's name, points and the
check's message) (:func:`inject_banner`); otherwise, and for submissions that never ran (invalid,
wrong assignment, tampering), a minimal page with the banner and the table (:func:`simple_feedback`).
Everything taken from a result or a notebook is HTML-escaped here.

Every page carries a Content-Security-Policy that allows no inline script, no event handler, no
frame, no form and no plugin: should student HTML ever get past the sanitiser, the browser still does
not run it.  Scripts are allowed only from the MathJax folder of the CDN nbconvert uses (the course's
formulas); ``unsafe-eval`` is needed by MathJax 2 for its configuration block.
"""
from __future__ import annotations

import html

from .types import Result

__all__ = ["fmt_score", "banner_html", "summary_html", "test_messages", "inject_banner", "simple_feedback",
           "CSP"]

MATHJAX = "https://cdnjs.cloudflare.com/ajax/libs/mathjax/"
CSP = ("default-src 'none'; "
       f"script-src {MATHJAX} 'unsafe-eval'; "
       f"style-src 'unsafe-inline' {MATHJAX}; "
       f"font-src data: {MATHJAX}; "
       "img-src data:; "
       "base-uri 'none'; form-action 'none'; frame-src 'none'; object-src 'none'")
CSP_META = f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
SUMMARY_CSS = ("<style>table.mf-summary{border-collapse:collapse;margin:0 1em 1em 1em;font-family:sans-serif;"
               "font-size:14px}table.mf-summary th,table.mf-summary td{border:1px solid #bbb;padding:0.3em 0.6em;"
               "text-align:left;vertical-align:top}table.mf-summary td.pts{white-space:nowrap;text-align:right}"
               "table.mf-summary tr.fail td{background:#fdecea}table.mf-summary tr.ok td{background:#edf7ed}"
               "table.mf-summary td.msg{white-space:pre-wrap;max-width:70em}</style>")
MAX_MESSAGE = 600


def fmt_score(x) -> str:
    """Points as grades.csv and the banner print them: ``2`` not ``2.0``, ``1.5``; '' for None."""
    if x is None:
        return ""
    x = float(x)
    return str(int(x)) if x == int(x) else f"{x:g}"


def banner_html(result: Result) -> str:
    """A framed box: 'Autograder: <status> -- score <total> / <max>' and the reason."""
    color = "#2e7d32" if result.status == "graded" else "#c62828"
    score = f"{fmt_score(result.total)} / {fmt_score(result.max_total)}"
    return (f'<div style="border:2px solid {color};padding:0.8em;margin:1em;font-family:sans-serif">'
            f'<b>Autograder: {html.escape(result.status)}</b> &mdash; score {score}<br>'
            f'{html.escape(result.reason)}</div>')


def test_messages(nb) -> dict:
    """``{grade_id: message}`` of the graded cells of the (cleaned) autograded notebook ``nb``: the last
    error's ``ename: evalue`` (the check's message), or that the cell wrote to stderr."""
    out = {}
    for cell in nb.cells if nb is not None else ():
        meta = cell.get("metadata", {}).get("nbgrader", {}) or {}
        gid = meta.get("grade_id")
        if not gid or not meta.get("grade") or cell.cell_type != "code":
            continue
        outputs = cell.get("outputs", [])
        errors = [o for o in outputs if o.get("output_type") == "error"]
        if errors:
            ename, evalue = errors[-1].get("ename", "Error"), " ".join(str(errors[-1].get("evalue", "")).split())
            out[gid] = f"{ename}: {evalue}" if evalue else str(ename)
        elif any(o.get("output_type") == "stream" and o.get("name") == "stderr" for o in outputs):
            out[gid] = "the cell wrote to stderr (a test cell that does scores 0)"
    return out


def _row_message(gid: str, result: Result, messages: dict) -> tuple[str, str]:
    score, best = result.scores.get(gid), result.max_scores.get(gid, 0.0)
    if gid in result.details.get("zeroed", ()):
        return "fail", f"scored 0 ({result.status})" + (f": {messages[gid]}" if gid in messages else "")
    if score is None:
        return "", "graded by hand"
    if gid in messages and score < best:
        return "fail", messages[gid]
    if score >= best:
        return "ok", "passed"
    if score == 0:
        return "fail", "failed" + (f" ({result.status})" if result.status != "graded" else "")
    return "fail", "partial credit"


def summary_html(result: Result, nb=None) -> str:
    """The table of every graded cell: name (a link to the cell), points, message."""
    if not result.max_scores:
        return ""
    messages = test_messages(nb)
    in_notebook = [c.get("metadata", {}).get("nbgrader", {}).get("grade_id") for c in (nb.cells if nb else ())]
    order = [g for g in in_notebook if g in result.max_scores]
    rows = []
    for gid in order + [g for g in result.max_scores if g not in order]:
        css, message = _row_message(gid, result, messages)
        if len(message) > MAX_MESSAGE:
            message = message[:MAX_MESSAGE] + " ..."
        points = f"{fmt_score(result.scores.get(gid))} / {fmt_score(result.max_scores[gid])}"
        name = html.escape(gid)
        link = f'<a href="#{name}">{name}</a>' if nb is not None else name
        rows.append(f'<tr class="{css}"><td>{link}</td><td class="pts">{points}</td>'
                    f'<td class="msg">{html.escape(message)}</td></tr>')
    return (SUMMARY_CSS + '<table class="mf-summary"><thead><tr><th>test</th><th>points</th><th>message</th></tr>'
            "</thead><tbody>" + "".join(rows) + "</tbody></table>")


def _with_csp(page: str) -> str:
    i = page.lower().find("<head")
    if i >= 0:
        j = page.find(">", i)
        if j >= 0:
            return page[: j + 1] + CSP_META + page[j + 1:]
    return CSP_META + page


def inject_banner(page: str, result: Result, nb=None) -> str:
    """``page`` (an HTML document) with the CSP in its head and :func:`banner_html` and
    :func:`summary_html` (messages read from the cleaned autograded notebook ``nb``) first in its body."""
    top = banner_html(result) + summary_html(result, nb)
    page = _with_csp(page)
    i = page.find("<body")
    if i >= 0:
        j = page.find(">", i)
        if j >= 0:
            return page[: j + 1] + top + page[j + 1:]
    return top + page


def simple_feedback(student: str, assignment: str, result: Result) -> str:
    """A whole page holding only the title, :func:`banner_html` and the points of each test."""
    return (f"<!DOCTYPE html><html><head>{CSP_META}<meta charset='utf-8'><title>{html.escape(assignment)} "
            f"feedback for {html.escape(student)}</title></head><body>"
            f"<h1>{html.escape(assignment)}: {html.escape(student)}</h1>{banner_html(result)}"
            f"{summary_html(result)}</body></html>")
