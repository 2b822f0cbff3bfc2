"""The feedback page a student gets: ``feedback/<student>.html``.

When nbgrader's ``generate_feedback`` worked, the page is its HTML with a banner (status, score,
reason) put first in the body (:func:`inject_banner`); otherwise, and for submissions that never
ran (invalid, wrong assignment, tampering), a minimal page with the banner only
(:func:`simple_feedback`).  Everything taken from a result is HTML-escaped.
"""
from __future__ import annotations

import html

from .types import Result

__all__ = ["fmt_score", "banner_html", "inject_banner", "simple_feedback"]


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


def inject_banner(page: str, result: Result) -> str:
    """``page`` (an HTML document) with :func:`banner_html` first in its body."""
    i = page.find("<body")
    if i >= 0:
        j = page.find(">", i)
        if j >= 0:
            return page[: j + 1] + banner_html(result) + page[j + 1:]
    return banner_html(result) + page


def simple_feedback(student: str, assignment: str, result: Result) -> str:
    """A whole page holding only the title and :func:`banner_html`."""
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(assignment)} "
            f"feedback for {html.escape(student)}</title></head><body>"
            f"<h1>{html.escape(assignment)}: {html.escape(student)}</h1>{banner_html(result)}</body></html>")
