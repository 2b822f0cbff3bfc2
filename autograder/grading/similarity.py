"""Which submissions look copied from each other: ``python -m autograder similarity ASSIGNMENT [SUBMISSIONS]``.

A signal for a human reviewer, never a grade: nothing here reads or changes ``grades.csv``.

**What is compared.**  The *student cells* of each notebook: code cells with nbgrader
``solution: true`` metadata, and code cells without nbgrader metadata (cells the student added).
IPython magics and shell lines (``%...``, ``!...``) are dropped.

**Normalisation** (Python's :mod:`tokenize`; a cell that does not tokenize is split with a regular
expression instead): comments, blank lines and the encoding marker are dropped; every number becomes
``N`` and every string (f-strings and docstrings included) ``S``; a line end or ``;`` becomes ``;``,
an indent ``{`` and a dedent ``}``; an identifier becomes ``V`` unless it is

* a Python keyword or builtin (``for``, ``len``, ``range``, ``ValueError``, ...),
* a module alias the course uses (:data:`KEPT_MODULES`: ``np``, ``numpy``, ``sp``, ``scipy``, ...),
* an attribute (after ``.``) or a keyword argument (``name=`` inside brackets) that is part of the
  numerical API (:data:`API_NAMES`: the public names of numpy, numpy.linalg, numpy.random and its
  Generator, ndarray, scipy.sparse and its CSR/COO matrices, scipy.linalg, math, and the methods of
  list/dict/set/str).

So renaming variables, functions and arguments, changing literals or comments and re-indenting
change nothing, while ``np.argsort`` vs ``np.argpartition`` or ``axis=0`` vs ``axis=1`` still differ.

**Fingerprints** (Schleimer, Wilkerson & Aiken, *Winnowing: local algorithms for document
fingerprinting*, SIGMOD 2003 -- the algorithm of MOSS).  Each token is mapped to a 64-bit id; every
``k`` consecutive tokens of one cell (a *k-gram*) get the polynomial hash
``h = sum_{j<k} t_{i+j} B^(k-1-j) mod 2^64``; in every window of ``w`` consecutive k-gram hashes
of a cell the minimum (the rightmost one on ties) is a fingerprint (a cell with fewer than ``w``
k-grams keeps its minimum).  Any match of at least ``w + k - 1`` tokens therefore shares a
fingerprint, and no match shorter than ``k`` tokens does.  Defaults: ``k = 12``, ``w = 8``.

**Excluded**: every k-gram of the released notebook's code cells (the base code students start
from: signatures, docstrings, helpers, tests), and fingerprints found in more than ``max_common``
submissions (MOSS's ``-m``: code that many students write alike is not evidence; default 10).

**Score** of a pair ``(a, b)`` with fingerprint sets ``F_a``, ``F_b``: ``similarity = |F_a & F_b| /
|F_a | F_b|`` (Jaccard); the report also gives ``|F_a & F_b| / |F_a|`` and ``/ |F_b|`` (how much of
each submission is matched).  Only pairs sharing a fingerprint are scored: an inverted index
fingerprint -> submissions gives them without looking at the other pairs.

The HTML report (:mod:`autograder.grading.similarity_html`) shows the most similar pairs and, per
pair, both submissions' matched cells side by side with the matching regions highlighted.
"""
from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..course.files import find_course_root
from .similarity_tokens import code_cells, doc_from_notebook, normalise

__all__ = ["Params", "Corpus", "compare", "Comparison", "kgram_hashes", "winnow", "main"]

_BASE = np.uint64(0x9E3779B97F4A7C15)
MAX_TOKENS = 200_000       # per submission: more is cut (and noted)


@dataclass(frozen=True)
class Params:
    """Fingerprinting parameters (see the module docstring)."""

    k: int = 12            # tokens per k-gram (noise threshold)
    window: int = 8        # winnowing window, in k-grams (guarantee threshold: window + k - 1 tokens)
    max_common: int = 10   # fingerprints in more submissions than this are ignored

    def __post_init__(self):
        if self.k < 2 or self.window < 1 or self.max_common < 2:
            raise ValueError("need k >= 2, window >= 1 and max_common >= 2")


# --- fingerprints ----------------------------------------------------------------------------------

class _Vocabulary:
    """Token text -> stable 64-bit id (BLAKE2b), cached."""

    def __init__(self):
        self.ids: dict[str, int] = {}

    def __call__(self, tokens) -> np.ndarray:
        ids = self.ids
        for t in tokens:
            if t not in ids:
                ids[t] = int.from_bytes(hashlib.blake2b(t.encode(), digest_size=8).digest(), "big")
        return np.fromiter((ids[t] for t in tokens), dtype=np.uint64, count=len(tokens))


_VOCAB = _Vocabulary()


def _tokenize_cells(sources: list[str]) -> list[tuple[np.ndarray, np.ndarray, bool]]:
    """(token ids, token lines, regex fallback used) per cell source."""
    out = []
    for src in sources:
        tokens, lines, fallback = normalise(src)
        out.append((_VOCAB(tokens), np.asarray(lines, dtype=np.int32), fallback))
    return out


def _tokenize_all(per_doc: list[list[str]], workers: int) -> list:
    """:func:`_tokenize_cells` of every doc, in ``workers`` forked processes when it pays."""
    import multiprocessing

    n_cells = sum(len(d) for d in per_doc)
    if workers <= 1 or n_cells < 200 or "fork" not in multiprocessing.get_all_start_methods():
        return [_tokenize_cells(d) for d in per_doc]
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        return pool.map(_tokenize_cells, per_doc, chunksize=max(1, len(per_doc) // (workers * 8)))


def kgram_hashes(tok: np.ndarray, tok_cell: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(hash, start token index) of every k-gram that lies inside one cell:
    ``h_i = sum_{j<k} t_{i+j} B^(k-1-j) mod 2^64`` (numpy's uint64 arithmetic wraps modulo 2^64)."""
    n = len(tok) - k + 1
    if n <= 0:
        return np.zeros(0, np.uint64), np.zeros(0, np.int64)
    h = np.zeros(n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(k):
            h = h * _BASE + tok[j:j + n]
    start = np.arange(n, dtype=np.int64)
    inside = tok_cell[:n] == tok_cell[k - 1:]
    return h[inside], start[inside]


def winnow(h: np.ndarray, cell: np.ndarray, w: int) -> np.ndarray:
    """Indices (into ``h``) of the winnowed fingerprints: in every window of ``w`` consecutive hashes of
    one cell, the rightmost minimum; a cell with fewer than ``w`` hashes keeps its (rightmost) minimum."""
    m = len(h)
    if m == 0:
        return np.zeros(0, np.int64)
    chosen = []
    if m >= w:
        n = m - w + 1
        low = h[:n].copy()
        for j in range(1, w):
            np.minimum(low, h[j:j + n], out=low)
        pos = np.full(n, -1, dtype=np.int64)
        for j in range(w - 1, -1, -1):
            hit = (pos < 0) & (h[j:j + n] == low)
            pos[hit] = np.arange(n)[hit] + j
        full = cell[:n] == cell[w - 1:]
        chosen.append(pos[full])
    starts = np.flatnonzero(np.r_[True, cell[1:] != cell[:-1]])
    sizes = np.diff(np.r_[starts, m])
    short = starts[sizes < w]
    if len(short):
        cell_min = np.minimum.reduceat(h, starts)[sizes < w]
        seg = np.repeat(np.arange(len(starts)), sizes)        # segment number of every hash
        is_short = np.zeros(len(starts), bool)
        is_short[sizes < w] = True
        seg_min = np.zeros(len(starts), np.uint64)
        seg_min[sizes < w] = cell_min
        cand = np.flatnonzero(is_short[seg] & (h == seg_min[seg]))
        last = np.r_[seg[cand][1:] != seg[cand][:-1], True]   # rightmost candidate of each segment
        chosen.append(cand[last])
    return np.unique(np.concatenate(chosen))


@dataclass
class Corpus:
    """The class's tokens, k-grams and fingerprints (arrays over all submissions at once)."""

    docs: list
    params: Params
    cells: list           # (doc index, Cell) per global cell index
    tok_line: np.ndarray  # line in its cell, per token
    tok_cell: np.ndarray  # global cell index, per token
    fp_hash: np.ndarray   # kept fingerprints: hash
    fp_pos: np.ndarray    #                    first token
    fp_doc: np.ndarray    #                    submission
    dropped_base: int = 0
    dropped_common: int = 0
    notes: dict = field(default_factory=dict)    # doc name -> notes

    @classmethod
    def build(cls, docs: list, base_sources: list[str], params: Params = Params(), workers: int = 1) -> "Corpus":
        """Tokenize every doc's cells (in ``workers`` processes), fingerprint them and drop the base and
        common fingerprints.  A cell identical to a code cell of the base is skipped (all its k-grams
        would be dropped anyway)."""
        base_text = {src.strip() for src in base_sources}
        for doc in docs:
            doc.cells = [c for c in doc.cells if c.source.strip() and c.source.strip() not in base_text]
        tokenized = _tokenize_all([[c.source for c in doc.cells] for doc in docs], workers)
        ids, lines, cellidx, cells, notes = [], [], [], [], {}
        for d, (doc, per_cell) in enumerate(zip(docs, tokenized)):
            count = 0
            for cell, (tok, tlines, fallback) in zip(doc.cells, per_cell):
                if fallback:
                    doc.notes.append(f"{cell.label} does not tokenize as Python: split with a regular expression")
                if count + len(tok) > MAX_TOKENS:
                    doc.notes.append(f"more than {MAX_TOKENS} tokens: the rest is not compared")
                    break
                count += len(tok)
                ids.append(tok)
                lines.append(tlines)
                cellidx.append(np.full(len(tok), len(cells), dtype=np.int64))
                cells.append((d, cell))
            if doc.notes:
                notes[doc.name] = doc.notes
        tok = np.concatenate(ids) if ids else np.zeros(0, np.uint64)
        tok_line = np.concatenate(lines) if lines else np.zeros(0, np.int32)
        tok_cell = np.concatenate(cellidx) if cellidx else np.zeros(0, np.int64)
        h, start = kgram_hashes(tok, tok_cell, params.k)
        chosen = winnow(h, tok_cell[start], params.window)
        fp_hash, fp_pos = h[chosen], start[chosen]
        cell_doc = np.asarray([d for d, _ in cells], dtype=np.int64)
        fp_doc = cell_doc[tok_cell[fp_pos]] if len(fp_pos) else np.zeros(0, np.int64)
        base = _base_hashes(base_sources, params.k)
        keep = ~np.isin(fp_hash, base)
        dropped_base = int((~keep).sum())
        fp_hash, fp_pos, fp_doc = fp_hash[keep], fp_pos[keep], fp_doc[keep]
        common = _common_hashes(fp_hash, fp_doc, params.max_common)
        keep = ~np.isin(fp_hash, common)
        return cls(docs, params, cells, tok_line, tok_cell, fp_hash[keep], fp_pos[keep], fp_doc[keep],
                   dropped_base, int((~keep).sum()), notes)

    def doc_sets(self) -> tuple[np.ndarray, np.ndarray]:
        """Unique (hash, doc) pairs sorted by hash then doc."""
        order = np.lexsort((self.fp_doc, self.fp_hash))
        hs, ds = self.fp_hash[order], self.fp_doc[order]
        first = np.r_[True, (hs[1:] != hs[:-1]) | (ds[1:] != ds[:-1])][:len(hs)]
        return hs[first], ds[first]


def _base_hashes(sources: list[str], k: int) -> np.ndarray:
    ids, cells = [], []
    for i, (tok, _, _) in enumerate(_tokenize_cells(sources)):
        ids.append(tok)
        cells.append(np.full(len(tok), i, dtype=np.int64))
    if not ids:
        return np.zeros(0, np.uint64)
    h, _ = kgram_hashes(np.concatenate(ids), np.concatenate(cells), k)
    return np.unique(h)


def _common_hashes(fp_hash: np.ndarray, fp_doc: np.ndarray, max_common: int) -> np.ndarray:
    pairs = np.unique(np.stack([fp_hash, fp_doc.astype(np.uint64)]), axis=1) if len(fp_hash) else \
        np.zeros((2, 0), np.uint64)
    hashes, counts = np.unique(pairs[0], return_counts=True)
    return hashes[counts > max_common]


# --- scoring ---------------------------------------------------------------------------------------

@dataclass
class Comparison:
    """Scores of every pair that shares a fingerprint, most similar first."""

    corpus: Corpus
    a: np.ndarray          # doc index (a < b)
    b: np.ndarray
    shared: np.ndarray     # |F_a & F_b|
    size: np.ndarray       # |F_d| per doc
    similarity: np.ndarray
    seconds: float = 0.0

    def rows(self, top: int | None = None) -> list[dict]:
        """The scored pairs (the ``top`` first, or all) as dicts: names, similarity, share of each submission
        matched, shared fingerprints and both submissions' fingerprint counts."""
        names = [d.name for d in self.corpus.docs]
        n = len(self.a) if top is None else min(top, len(self.a))
        return [{"a": names[self.a[i]], "b": names[self.b[i]], "similarity": round(float(self.similarity[i]), 4),
                 "matched_a": round(float(self.shared[i] / self.size[self.a[i]]), 4),
                 "matched_b": round(float(self.shared[i] / self.size[self.b[i]]), 4),
                 "shared": int(self.shared[i]), "fingerprints_a": int(self.size[self.a[i]]),
                 "fingerprints_b": int(self.size[self.b[i]])} for i in range(n)]


def compare(corpus: Corpus) -> Comparison:
    """Score every pair of submissions that share a fingerprint (inverted index hash -> submissions)."""
    t0 = time.perf_counter()
    n_docs = len(corpus.docs)
    hs, ds = corpus.doc_sets()
    size = np.bincount(ds, minlength=n_docs).astype(np.int64)
    starts = np.flatnonzero(np.r_[True, hs[1:] != hs[:-1]]) if len(hs) else np.zeros(0, np.int64)
    group = np.diff(np.r_[starts, len(hs)])
    codes = []
    for g in range(2, int(group.max(initial=0)) + 1):
        members = ds[starts[group == g][:, None] + np.arange(g)]   # docs of each fingerprint shared by g docs
        for i, j in itertools.combinations(range(g), 2):
            codes.append(members[:, i] * n_docs + members[:, j])
    if codes:
        code, shared = np.unique(np.concatenate(codes), return_counts=True)
    else:
        code, shared = np.zeros(0, np.int64), np.zeros(0, np.int64)
    a, b = code // max(n_docs, 1), code % max(n_docs, 1)
    sim = shared / (size[a] + size[b] - shared) if len(code) else np.zeros(0)
    order = np.lexsort((b, a, -sim))
    return Comparison(corpus, a[order], b[order], shared[order], size, sim[order], time.perf_counter() - t0)


# --- command line ------------------------------------------------------------------------------------

def _base_sources(course: Path, assignment: str, base: str | None) -> tuple[list[str], str]:
    """Code cells of the released notebook (or ``base``); without a release, the source notebook as nbgrader
    releases it: solution regions replaced by the course's ``ClearSolutions.code_stub`` (nbgrader's default
    stub otherwise), hidden tests removed.  Folder names come from the course's nbgrader_config.py."""
    import re

    from .options import config_value, load_course_config

    if base:
        return code_cells(json.loads(Path(base).read_text())), str(base)
    cfg = load_course_config(course)
    released = sorted((course / config_value(cfg, "CourseDirectory", "release_directory", "release")
                       / assignment).glob("*.ipynb"))
    if released:
        return code_cells(json.loads(released[0].read_text())), str(released[0])
    sources = sorted((course / config_value(cfg, "CourseDirectory", "source_directory", "source")
                      / assignment).glob("*.ipynb"))
    if not sources:
        raise FileNotFoundError(f"no released or source notebook of {assignment!r} in {course}; pass --base")
    stub = (config_value(cfg, "ClearSolutions", "code_stub", None) or {}).get(
        "python", "# YOUR CODE HERE\nraise NotImplementedError()")

    def clear(m):
        return "".join(m["indent"] + line + "\n" for line in stub.splitlines())

    solution = re.compile(r"^(?P<indent>[ \t]*)### BEGIN SOLUTION.*?### END SOLUTION[^\n]*\n?", re.S | re.M)
    hidden = re.compile(r"^[ \t]*### BEGIN HIDDEN TESTS.*?### END HIDDEN TESTS[^\n]*\n?", re.S | re.M)
    cells = [hidden.sub("", solution.sub(clear, src)) for src in code_cells(json.loads(sources[0].read_text()))]
    return cells, f"{sources[0]} (solutions replaced by nbgrader's stub)"


def _known_assignments(course: Path) -> list[str]:
    from .options import config_value, load_course_config

    source = course / config_value(load_course_config(course), "CourseDirectory", "source_directory", "source")
    return sorted(d.name for d in source.iterdir() if d.is_dir()) if source.is_dir() else []


def main(argv=None) -> int:
    """``python -m autograder similarity ASSIGNMENT [SUBMISSIONS] --out DIR``; exit 0, or 2 on errors."""
    p = argparse.ArgumentParser(prog="python -m autograder similarity",
                                description="Report pairs of submissions whose student cells look alike (MOSS-style "
                                            "winnowed fingerprints of normalised tokens). A signal for a human, "
                                            "never a grade change.")
    p.add_argument("assignment", help="assignment name, e.g. 02-als")
    p.add_argument("submissions", nargs="?", help="folder or .zip as for `grade` (default COURSE/submitted)")
    p.add_argument("--course-dir", help="course root (default: nearest folder with nbgrader_config.py)")
    p.add_argument("--out", help="report folder (default COURSE/grading/ASSIGNMENT/similarity)")
    p.add_argument("--base", help="notebook whose code is excluded (default: the released notebook)")
    p.add_argument("--top", type=int, default=50, help="pairs shown in the report (default 50)")
    p.add_argument("-k", type=int, default=Params.k, help=f"tokens per k-gram (default {Params.k})")
    p.add_argument("--window", type=int, default=Params.window, help=f"winnowing window (default {Params.window})")
    p.add_argument("--max-common", type=int, default=Params.max_common,
                   help=f"ignore fingerprints in more submissions than this (default {Params.max_common})")
    p.add_argument("--workers", type=int, default=2, help="processes that tokenize (default 2)")
    args = p.parse_args(argv)
    from .discovery import discover

    t0 = time.perf_counter()
    course = Path(args.course_dir).resolve() if args.course_dir else find_course_root()
    subs_path = Path(args.submissions) if args.submissions else course / "submitted"
    try:
        params = Params(args.k, args.window, args.max_common)
        base, base_label = _base_sources(course, args.assignment, args.base)
        found = discover(subs_path, args.assignment, _known_assignments(course))
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    docs = [doc_from_notebook(s.student, s.data) for s in found.submissions]
    t1 = time.perf_counter()
    corpus = Corpus.build(docs, base, params, workers=args.workers)
    t2 = time.perf_counter()
    comp = compare(corpus)
    t3 = time.perf_counter()
    out = Path(args.out) if args.out else course / "grading" / args.assignment / "similarity"
    phases = {"read": t1 - t0, "fingerprint": t2 - t1, "compare": t3 - t2}
    from .similarity_html import write_report

    summary = write_report(comp, out, args.assignment, args.top, phases)
    seconds = time.perf_counter() - t0
    print(f"{len(docs)} submissions, {summary['pairs_scored']} pairs share a fingerprint (base: {base_label}); "
          f"{seconds:.1f} s")
    for r in summary["pairs"][:10]:
        print(f"  {r['similarity']:.2f}  {r['a']}  {r['b']}")
    print(f"-> {out / 'index.html'}  (a signal for a human reviewer, never a grade change)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
