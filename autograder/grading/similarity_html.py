"""The similarity report's files (the method is in :mod:`autograder.grading.similarity`):
``DIR/index.html`` (the most similar pairs), ``DIR/pairs/NNNN.html`` (one pair: the two submissions'
matched cells side by side, matching regions highlighted), ``DIR/pairs.csv`` (every scored pair) and
``DIR/similarity.json`` (parameters, counts, timings and the pairs shown).

Every piece of student code and every name is escaped with :func:`html.escape`; the pages contain no
script at all and forbid one (``Content-Security-Policy: default-src 'none'``), so a submission cannot
run code in the reviewer's browser.
"""
from __future__ import annotations

import csv
import html
import io
import json
import time
from pathlib import Path

import numpy as np

from ..course.files import atomic_write

__all__ = ["regions", "write_report", "SIGNAL_NOTICE"]

SIGNAL_NOTICE = ("This report is a signal for a human reviewer, never a grade change: it does not read or alter "
                 "grades.csv. Similar code can be legitimate (the course's hints, a common idiom, permitted "
                 "collaboration); look at the matched regions and talk to the students before concluding anything.")
COLOURS = ("#ffe08a", "#a8e6cf", "#ffb3ba", "#bae1ff", "#e0bbff", "#ffdfba", "#c7f0a8", "#f7c6e0")
STYLE = """body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse}td,th{border:1px solid #ccc;
padding:2px 8px;text-align:left}.notice{background:#fff4d6;border:1px solid #e0b84a;padding:.6em}
.side{display:flex;gap:1em}.side>div{flex:1;min-width:0}pre{background:#f7f7f7;padding:4px;overflow-x:auto;
margin:0 0 1em 0}.ln{color:#999;user-select:none}h3{margin:.6em 0 .2em 0;font-size:1em}"""


def regions(corpus, a: int, b: int) -> list[dict]:
    """The matching regions of docs ``a`` and ``b`` of a :class:`~autograder.grading.similarity.Corpus`:
    runs of shared fingerprints that advance together in both (same cell pair, gaps of at most
    ``window + k`` tokens), longest first where they overlap; each with both cells and line ranges."""
    k, gap = corpus.params.k, corpus.params.window + corpus.params.k
    in_a, in_b = corpus.fp_doc == a, corpus.fp_doc == b
    shared = set(np.intersect1d(corpus.fp_hash[in_a], corpus.fp_hash[in_b]).tolist())
    pos_a: dict[int, list[int]] = {}
    for h, p in zip(corpus.fp_hash[in_a].tolist(), corpus.fp_pos[in_a].tolist()):
        if h in shared:
            pos_a.setdefault(h, []).append(p)
    pairs = []
    for h, p in zip(corpus.fp_hash[in_b].tolist(), corpus.fp_pos[in_b].tolist()):
        for q in pos_a.get(h, []):
            pairs.append((q, p))
    pairs.sort()
    found: list[dict] = []
    for pa, pb in pairs:
        ca, cb = int(corpus.tok_cell[pa]), int(corpus.tok_cell[pb])
        r = found[-1] if found else None
        if r and r["cell_a"] == ca and r["cell_b"] == cb and 0 < pa - r["last_a"] <= gap \
                and 0 < pb - r["last_b"] <= gap:
            r["last_a"], r["last_b"], r["count"] = pa, pb, r["count"] + 1
            continue
        found.append({"cell_a": ca, "cell_b": cb, "first_a": pa, "last_a": pa, "first_b": pb, "last_b": pb,
                      "count": 1})
    # repeated code pairs a fingerprint with several places: keep the longest runs whose token spans do not
    # overlap a longer run on either side (greedy tiling, as JPlag does), then show them in the order of a
    kept, taken = [], {"a": [], "b": []}
    for r in sorted(found, key=lambda r: (-r["count"], r["first_a"], r["first_b"])):
        spans = {side: (r[f"first_{side}"], r[f"last_{side}"] + k - 1) for side in ("a", "b")}
        if any(lo <= s[1] and s[0] <= hi for side, (lo, hi) in spans.items() for s in taken[side]):
            continue
        for side, span in spans.items():
            taken[side].append(span)
            r[f"lines_{side}"] = (int(corpus.tok_line[span[0]]), int(corpus.tok_line[span[1]]))
        kept.append(r)
    return sorted(kept, key=lambda r: (r["first_a"], r["first_b"]))


def _page(title: str, body: str) -> str:
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">"
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>\n{body}\n</body></html>\n")


def _code(cell_source: str, marks: dict[int, int], side: str) -> str:
    """A cell's source with line numbers; lines in ``marks`` (line -> region) highlighted."""
    out = []
    anchors = set()
    for n, line in enumerate(cell_source.splitlines() or [""], 1):
        text = f"<span class=\"ln\">{n:4d} </span>{html.escape(line)}"
        if n in marks:
            r = marks[n]
            anchor = "" if r in anchors else f" id=\"{side}{r}\""
            anchors.add(r)
            text = f"<span{anchor} style=\"background:{COLOURS[r % len(COLOURS)]}\">{text}</span>"
        out.append(text)
    return "<pre>" + "\n".join(out) + "</pre>"


def _side(corpus, doc: int, found: list[dict], side: str) -> str:
    marks: dict[int, dict[int, int]] = {}
    for i, r in enumerate(found):
        lo, hi = r[f"lines_{side}"]
        cell_marks = marks.setdefault(r[f"cell_{side}"], {})
        for line in range(lo, hi + 1):
            cell_marks.setdefault(line, i)
    parts = [f"<h2>{html.escape(corpus.docs[doc].name)}</h2>"]
    shown = 0
    for c, (d, cell) in enumerate(corpus.cells):
        if d == doc and c in marks:
            parts.append(f"<h3>{html.escape(cell.label)}</h3>" + _code(cell.source, marks[c], side))
            shown += 1
    others = sum(1 for d, _ in corpus.cells if d == doc) - shown
    if others:
        parts.append(f"<p>{others} other cell(s) without a match are not shown.</p>")
    return "<div>" + "\n".join(parts) + "</div>"


def _pair_page(comp, i: int) -> str:
    corpus = comp.corpus
    a, b = int(comp.a[i]), int(comp.b[i])
    na, nb = corpus.docs[a].name, corpus.docs[b].name
    found = regions(corpus, a, b)
    table = ["<table><tr><th>region</th><th>" + html.escape(na) + "</th><th>" + html.escape(nb)
             + "</th><th>fingerprints</th></tr>"]
    for r_i, r in enumerate(found):
        la, lb = r["lines_a"], r["lines_b"]
        table.append(f"<tr style=\"background:{COLOURS[r_i % len(COLOURS)]}\"><td>{r_i + 1}</td>"
                     f"<td><a href=\"#a{r_i}\">{html.escape(corpus.cells[r['cell_a']][1].label)} lines {la[0]}-{la[1]}"
                     f"</a></td><td><a href=\"#b{r_i}\">{html.escape(corpus.cells[r['cell_b']][1].label)} lines "
                     f"{lb[0]}-{lb[1]}</a></td><td>{r['count']}</td></tr>")
    table.append("</table>")
    head = (f"<p><a href=\"../index.html\">all pairs</a></p><h1>{html.escape(na)} &amp; {html.escape(nb)}</h1>"
            f"<p class=\"notice\">{html.escape(SIGNAL_NOTICE)}</p>"
            f"<p>similarity {comp.similarity[i]:.2f} (shared fingerprints {int(comp.shared[i])}; "
            f"{html.escape(na)}: {int(comp.size[a])}, {html.escape(nb)}: {int(comp.size[b])})</p>")
    side = f"<div class=\"side\">{_side(corpus, a, found, 'a')}{_side(corpus, b, found, 'b')}</div>"
    return _page(f"{na} & {nb}", head + "\n".join(table) + side)


def write_report(comp, out: Path, assignment: str, top: int = 50, phases: dict | None = None) -> dict:
    """Write index.html, pairs/*.html (the ``top`` pairs), pairs.csv and similarity.json into ``out``
    for a :class:`~autograder.grading.similarity.Comparison`; returns the similarity.json summary."""
    t_report = time.perf_counter()
    out = Path(out)
    (out / "pairs").mkdir(parents=True, exist_ok=True)
    rows = comp.rows()
    shown = min(top, len(rows))
    for i in range(shown):
        atomic_write(out / "pairs" / f"{i + 1:04d}.html", _pair_page(comp, i))
    c = comp.corpus
    table = ["<table><tr><th>#</th><th>student</th><th>student</th><th>similarity</th><th>matched of first</th>"
             "<th>matched of second</th><th>shared fingerprints</th></tr>"]
    for i, r in enumerate(rows[:shown]):
        table.append(f"<tr><td><a href=\"pairs/{i + 1:04d}.html\">{i + 1}</a></td><td>{html.escape(r['a'])}</td>"
                     f"<td>{html.escape(r['b'])}</td><td>{r['similarity']:.2f}</td><td>{r['matched_a']:.2f}</td>"
                     f"<td>{r['matched_b']:.2f}</td><td>{r['shared']}</td></tr>")
    table.append("</table>")
    notes = "".join(f"<li>{html.escape(name)}: {html.escape('; '.join(n))}</li>" for name, n in sorted(c.notes.items()))
    p = c.params
    body = (f"<h1>Similarity of {html.escape(assignment)}: {len(c.docs)} submissions</h1>"
            f"<p class=\"notice\">{html.escape(SIGNAL_NOTICE)}</p>"
            f"<p>{len(rows)} pairs share at least one fingerprint; the {shown} most similar are listed. Student "
            f"cells normalised (names, literals, comments), {p.k}-token k-grams winnowed with windows of {p.window}; "
            f"{c.dropped_base} fingerprints of the released notebook's code and {c.dropped_common} found in more than "
            f"{p.max_common} submissions ignored. similarity = shared / union of the two fingerprint sets.</p>"
            + "\n".join(table) + (f"<h2>Notes</h2><ul>{notes}</ul>" if notes else ""))
    atomic_write(out / "index.html", _page(f"Similarity of {assignment}", body))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else ["a", "b", "similarity"], lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    atomic_write(out / "pairs.csv", buf.getvalue())
    summary = {"assignment": assignment, "submissions": len(c.docs), "pairs_scored": len(rows), "shown": shown,
               "params": {"k": p.k, "window": p.window, "max_common": p.max_common},
               "dropped_base": c.dropped_base, "dropped_common": c.dropped_common, "notes": c.notes,
               "notice": SIGNAL_NOTICE, "pairs": rows[:shown]}
    if phases is not None:
        phases["report"] = time.perf_counter() - t_report
        summary["seconds"] = {k: round(v, 2) for k, v in phases.items()}
    atomic_write(out / "similarity.json", json.dumps(summary, indent=1))
    return summary
