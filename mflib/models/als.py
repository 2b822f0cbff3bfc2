"""Implicit-feedback Alternating Least Squares (Hu, Koren & Volinsky, ICDM 2008).

The idea
--------
Implicit feedback (clicks, plays, "rated >= 4") has no negatives: a missing cell may mean "not
interested" or "never saw it". Hu, Koren & Volinsky split each cell of the users x items matrix ``R``
into a binary **preference** and a **confidence** in it::

    p_ui = 1 if r_ui > 0 else 0             (did u show interest in i?)
    c_ui = 1 + alpha * r_ui                 (how sure are we? missing cells: c_ui = 1)

and fit *every* cell, observed or not, by a confidence-weighted least-squares loss::

    L(X, Y) = sum_{u,i} c_ui (p_ui - x_u . y_i)^2 + lambda (sum_u ||x_u||^2 + sum_i ||y_i||^2)

``x_u`` (a row of ``user_factors``, ``X``) and ``y_i`` (a row of ``item_factors``, ``Y``) have
``factors = k`` entries. Missing cells pull the scores towards 0 with weight 1; observed cells pull them
towards 1 with weight ``1 + alpha r_ui``.

Our confidence and implicit's
-----------------------------
We use the paper's ``c_ui = 1 + alpha * r_ui`` on observed cells (so ``c_ui - 1 = alpha r_ui`` and
``alpha = 0`` weighs every cell alike). The ``implicit`` library (0.7) uses ``c_ui = alpha * r_ui`` on
observed cells instead, also with preference 1 there and weight 1 on missing cells. On 0/1 data the two
models are the same when ``alpha_ours = alpha_implicit - 1``: implicit's ``alpha=2`` is our ``alpha=1``.
(On weighted data there is no exact mapping: ours adds 1 to ``alpha r``, implicit does not.) The
``regularization`` is the same plain ``lambda`` in both (not scaled by the number of ratings).

Alternating closed-form steps
-----------------------------
With ``Y`` fixed the loss is a sum of independent weighted ridge regressions, one per user. Setting the
gradient in ``x_u`` to zero gives the **normal equations**::

    (Y^T C_u Y + lambda I) x_u = Y^T C_u p_u          C_u = diag(c_u1, ..., c_un)

``Y^T C_u Y`` costs ``O(n_items k^2)`` per user, for *every* user: too much. The **Y^T Y trick** writes
``C_u = I + (C_u - I)`` where ``C_u - I`` is zero on the missing cells::

    A_u = Y^T Y + Y^T (C_u - I) Y + lambda I = Y^T Y + sum_{i in N(u)} (c_ui - 1) y_i y_i^T + lambda I
    b_u = Y^T C_u p_u = sum_{i in N(u)} c_ui y_i

``Y^T Y`` (k x k) is the same for all users and computed once per half-iteration; the rest only touches
the ``|N(u)|`` items of the user. Then the items are solved the same way with ``X`` fixed (the roles of
``X`` and ``Y`` swap; pass ``user_items.T``). Each half-step solves its least-squares problem exactly, so
the loss never increases.

Two solvers
-----------
* ``solver="cholesky"`` (:func:`solve_exact`): build all the ``A_u`` at once (batched products) and solve
  them with a batched Cholesky factorisation ``A_u = L_u L_u^T``. ``O(nnz k^2 + n k^3)`` per half-step.
* ``solver="cg"`` (:func:`solve_cg`, the default, as in implicit): a few steps of conjugate gradient on
  ``A_u x_u = b_u``, warm-started from the current ``x_u``. CG never forms ``A_u``; it only needs the
  product ``A_u p = Y^T Y p + sum_{i in N(u)} (c_ui - 1) (y_i . p) y_i + lambda p``, which costs
  ``O(|N(u)| k + k^2)``. Three steps per half-iteration are enough because the start is already close
  (Takacs, Pilaszy & Tikk, RecSys 2011).

How the solvers avoid a Python loop over users
----------------------------------------------
A :class:`SolverPlan` sorts the rows (users) by their number of entries, rounds it up to a few lengths
``L`` (at most 12.5% padding) and lays the entries of all rows of one length out as an ``(n, L)`` block.
Per chunk of rows (a few MB, so the data stay in cache) the fixed factors of the entries are gathered once
into ``G`` (``n, L, k``), then every CG step is two batched products:
``q = G @ p`` (the ``y_i . p`` of every entry) and ``A_sparse p = (w * q) @ G`` (``w = c - 1``, zero on the
padding). The exact solver builds ``A_u`` with ``G^T diag(w) G`` the same way.

Two more savings in :meth:`ALS.fit`: the scores ``s_ui = x_u . y_i`` of the observed cells are carried
from one half-step to the next (``s <- s + a (y_i . p)`` at every CG step), so the first residual
``b_u - A_u x_u`` and the loss need no extra pass over the entries; and the chunks, which own disjoint
rows, run on ``num_threads`` threads (numpy releases the GIL in the batched products), with results
that do not depend on the number of threads.

Speed (ML-1M-sized synthetic matrix, 6,040 x 3,706, 575k positives, 64 factors, 15 iterations, BLAS on
one thread; see :func:`synthetic_implicit`): about the CPU time of implicit 0.7's Cython CG on one
thread. The classic tutorial loop with one ``scipy.sparse.linalg.spsolve`` per user
(:func:`naive_als_spsolve`) is ~250x slower on ML-100K.
"""
from __future__ import annotations

import os
import threading

import numpy as np
import scipy.sparse as sp

from .base import FactorModel, check_user_items, progress

__all__ = [
    "ALS", "preference", "confidence", "als_loss", "observed_scores", "normal_equations",
    "solve_exact", "solve_cg", "SolverPlan", "synthetic_implicit", "naive_als_spsolve",
]

# Bytes of gathered factors per chunk: small enough for the CPU cache, large enough to amortise Python.
_CHUNK_BYTES = 4 << 20
# Rows per chunk (bounds the (rows, k, k) systems of the exact solver).
_CHUNK_ROWS = 1024


# ---- data ---------------------------------------------------------------------------------------------
def _as_matrix(user_items, name: str = "user_items") -> sp.csr_matrix:
    """``user_items`` as float CSR with sorted indices, no duplicates and no stored zeros; r >= 0."""
    matrix = check_user_items(user_items, name)
    if matrix.nnz and matrix.data.min() < 0:
        raise ValueError(f"{name} has negative entries: ALS expects r_ui >= 0 (interaction counts or 1.0)")
    if matrix.nnz and not matrix.data.all():
        matrix = matrix.copy()
        matrix.eliminate_zeros()
    return matrix


def preference(user_items) -> sp.csr_matrix:
    """``p_ui = 1`` where ``r_ui > 0`` (the observed cells), ``0`` elsewhere (not stored). float32 CSR."""
    matrix = _as_matrix(user_items)
    return sp.csr_matrix((np.ones(matrix.nnz, np.float32), matrix.indices.copy(), matrix.indptr.copy()),
                         shape=matrix.shape)


def confidence(user_items, alpha: float) -> sp.csr_matrix:
    """``c_ui = 1 + alpha * r_ui`` on the observed cells (float32 CSR); every missing cell has ``c_ui = 1``.

    implicit 0.7 uses ``alpha * r_ui`` instead (see the module docstring).
    """
    matrix = _as_matrix(user_items)
    return sp.csr_matrix((1.0 + alpha * matrix.data, matrix.indices.copy(), matrix.indptr.copy()),
                         shape=matrix.shape, dtype=np.float32)


# ---- the plan: rows grouped by length, entries laid out in padded blocks -------------------------------
def _padded_length(counts: np.ndarray) -> np.ndarray:
    """Round each count up to a multiple of ``2**floor(log2 count) / 8``: at most 12.5% padding."""
    counts = np.asarray(counts, dtype=np.int64)
    step = np.maximum(1, (1 << np.floor(np.log2(np.maximum(counts, 1))).astype(np.int64)) // 8)
    return -(-counts // step) * step


class SolverPlan:
    """The layout of one side's normal equations, reused by every half-step on the same matrix.

    Rows (the side being solved: users for ``user_items``, items for ``user_items.T``) are ordered by
    their padded length ``L``; row ``order[j]`` owns the *slots* ``slot_start[j] : slot_start[j] + L``,
    filled with its entries and then padding. Per slot: ``slot_column`` (the fixed-side index; 0 on
    padding), ``weight = c - 1 = alpha r`` and ``target = c p = 1 + alpha r`` (both 0 on padding, so
    padding never contributes). ``entry_slot[e]`` is the slot of the ``e``-th stored entry of the matrix.
    """

    def __init__(self, user_items, alpha: float):
        matrix = _as_matrix(user_items)
        n_rows, n_columns = matrix.shape
        counts = np.diff(matrix.indptr)
        lengths = _padded_length(counts)
        lengths[counts == 0] = 0
        self.shape = matrix.shape
        self.nnz = matrix.nnz
        self.alpha = float(alpha)
        self.order = np.argsort(lengths, kind="stable")
        self.lengths = lengths[self.order]
        self.slot_start = np.concatenate([[0], np.cumsum(self.lengths)])
        self.n_slots = int(self.slot_start[-1])
        position = np.empty(n_rows, np.int64)
        position[self.order] = np.arange(n_rows)
        entry_row = np.repeat(np.arange(n_rows), counts)
        rank_in_row = np.arange(matrix.nnz) - matrix.indptr[entry_row]
        self.entry_slot = self.slot_start[position[entry_row]] + rank_in_row
        self.slot_column = np.zeros(self.n_slots, np.intp)
        self.slot_column[self.entry_slot] = matrix.indices
        ratings = np.zeros(self.n_slots, np.float64)
        ratings[self.entry_slot] = matrix.data
        self._weight64 = self.alpha * ratings
        self.observed = ratings > 0
        self._target64 = np.where(self.observed, 1.0 + self.alpha * ratings, 0.0)
        self.entry_confidence = 1.0 + self.alpha * matrix.data.astype(np.float64)  # c of each stored entry
        self._cast: dict = {}
        self._chunks: dict = {}

    def matches(self, user_items) -> bool:
        return tuple(user_items.shape) == tuple(self.shape) and user_items.nnz == self.nnz

    def weights(self, dtype) -> tuple[np.ndarray, np.ndarray]:
        """``(weight, target)`` per slot in ``dtype``."""
        dtype = np.dtype(dtype)
        if dtype not in self._cast:
            self._cast[dtype] = (self._weight64.astype(dtype), self._target64.astype(dtype))
        return self._cast[dtype]

    def chunks(self, factors: int, itemsize: int = 4) -> list[tuple]:
        """Row ranges ``(row_lo, row_hi, slot_lo, slot_hi, pieces)`` of at most ``_CHUNK_BYTES`` gathered
        factors; ``pieces`` are ``(row_lo, row_hi, L, slot_lo)`` blocks of equal length, relative to the
        chunk."""
        key = (factors, itemsize)
        if key in self._chunks:
            return self._chunks[key]
        max_slots = max(1, _CHUNK_BYTES // (factors * itemsize))
        chunks, pieces = [], []
        chunk_row, chunk_slot = 0, 0
        n_rows = len(self.lengths)
        bounds = np.flatnonzero(np.diff(self.lengths)) + 1
        for lo, hi in zip(np.concatenate([[0], bounds]), np.concatenate([bounds, [n_rows]])):
            length = int(self.lengths[lo])
            row = int(lo)
            while row < hi:
                used_slots = int(self.slot_start[row]) - chunk_slot
                used_rows = row - chunk_row
                room_rows = _CHUNK_ROWS - used_rows
                room_slots = (max_slots - used_slots) // length if length else room_rows
                take = min(hi - row, room_rows, room_slots)
                if take <= 0:
                    if used_rows == 0:  # a single row longer than a chunk: a chunk of its own
                        take = 1
                    else:
                        chunks.append((chunk_row, row, chunk_slot, int(self.slot_start[row]), pieces))
                        pieces, chunk_row, chunk_slot = [], row, int(self.slot_start[row])
                        continue
                pieces.append((row - chunk_row, row + take - chunk_row, length,
                               int(self.slot_start[row]) - chunk_slot))
                row += take
        if n_rows:
            chunks.append((chunk_row, n_rows, chunk_slot, self.n_slots, pieces))
        self._chunks[key] = chunks
        return chunks


def _plan_for(user_items, alpha, plan: SolverPlan | None) -> SolverPlan:
    if plan is None:
        return SolverPlan(user_items, alpha)
    if not plan.matches(user_items) or plan.alpha != float(alpha):
        raise ValueError("plan was built for another matrix or alpha: build it with SolverPlan(user_items, alpha)")
    return plan


# ---- batched kernels over one chunk --------------------------------------------------------------------
def _entry_dots(gathered, vectors, pieces, out):
    """``out[slot] = gathered[slot] . vectors[row(slot)]`` (``y_i . p_u`` for every entry)."""
    k = gathered.shape[1]
    for lo, hi, length, slot in pieces:
        if length:
            n = hi - lo
            np.matmul(gathered[slot:slot + n * length].reshape(n, length, k), vectors[lo:hi, :, None],
                      out=out[slot:slot + n * length].reshape(n, length, 1))
    return out


def _weighted_sums(coefficients, gathered, pieces, out):
    """``out[row] = sum_{slots of row} coefficients[slot] * gathered[slot]`` (``sum_i w_ui y_i``)."""
    k = gathered.shape[1]
    for lo, hi, length, slot in pieces:
        n = hi - lo
        if length:
            np.matmul(coefficients[slot:slot + n * length].reshape(n, 1, length),
                      gathered[slot:slot + n * length].reshape(n, length, k), out=out[lo:hi].reshape(n, 1, k))
        else:
            out[lo:hi] = 0
    return out


def _add_row_scaled(slot_values, row_scale, slot_terms, pieces):
    """``slot_values[slot] += row_scale[row(slot)] * slot_terms[slot]``."""
    for lo, hi, length, slot in pieces:
        if length:
            n = hi - lo
            block = slot_values[slot:slot + n * length].reshape(n, length)
            block += row_scale[lo:hi, None] * slot_terms[slot:slot + n * length].reshape(n, length)


def _gram(fixed_factors, regularization) -> np.ndarray:
    """``Y^T Y + lambda I`` (accumulated in float64)."""
    fixed = np.asarray(fixed_factors, dtype=np.float64)
    gram = fixed.T @ fixed
    gram[np.diag_indices_from(gram)] += regularization
    return gram


def _prepare(fixed_factors, user_items, alpha, plan):
    """Validate the inputs of a solver; the fixed factors as a contiguous float array, and the plan."""
    fixed = np.ascontiguousarray(fixed_factors)
    if fixed.dtype not in (np.float32, np.float64):
        fixed = fixed.astype(np.float32)
    plan = _plan_for(user_items, alpha, plan)
    if fixed.ndim != 2 or fixed.shape[0] != plan.shape[1]:
        raise ValueError(f"fixed_factors has shape {fixed.shape} but user_items has {plan.shape[1]} columns: "
                         "were the factors or the matrix transposed? To solve the items pass "
                         "item_users = user_items.T.tocsr() and the user factors")
    return fixed, plan


# ---- loss ----------------------------------------------------------------------------------------------
def observed_scores(user_factors, item_factors, user_items) -> np.ndarray:
    """``x_u . y_i`` for every stored entry of ``user_items``, in CSR (``.data``) order."""
    matrix = _as_matrix(user_items)
    dtype = np.result_type(user_factors, item_factors, np.float32)
    users = np.asarray(user_factors, dtype)
    items = np.asarray(item_factors, dtype)
    rows = np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr))
    out = np.empty(matrix.nnz, dtype)
    step = max(1, _CHUNK_BYTES // (max(1, users.shape[1]) * 8))
    for start in range(0, matrix.nnz, step):
        stop = min(start + step, matrix.nnz)
        np.einsum("ij,ij->i", users[rows[start:stop]], items[matrix.indices[start:stop]], out=out[start:stop])
    return out


def _loss(user_factors, item_factors, confidences, scores, regularization) -> float:
    """``sum((X^T X) * (Y^T Y)) + sum_obs [c (1 - s)^2 - s^2] + lambda (||X||^2 + ||Y||^2)`` in float64
    (``||X||_F^2 = trace(X^T X)``); ``confidences`` and ``scores`` list the observed cells."""
    users = np.asarray(user_factors, dtype=np.float64)
    items = np.asarray(item_factors, dtype=np.float64)
    user_gram, item_gram = users.T @ users, items.T @ items
    scores = np.asarray(scores, dtype=np.float64)
    errors = 1.0 - scores
    observed = float(np.dot(confidences, errors * errors) - np.dot(scores, scores))
    all_cells = float(np.sum(user_gram * item_gram))
    return all_cells + observed + regularization * float(np.trace(user_gram) + np.trace(item_gram))


def als_loss(user_factors, item_factors, user_items, regularization: float, alpha: float,
             scores: np.ndarray | None = None) -> float:
    """The weighted squared loss plus the L2 penalty, over *all* ``n_users x n_items`` cells::

        L = sum_{u,i} c_ui (p_ui - x_u . y_i)^2 + lambda (||X||_F^2 + ||Y||_F^2)

    without visiting the missing cells (there ``c = 1``, ``p = 0``): with ``s_ui = x_u . y_i``,

        sum_{u,i} s_ui^2 = ||X Y^T||_F^2 = sum((X^T X) * (Y^T Y))           (k x k matrices)
        L = sum((X^T X) * (Y^T Y)) + sum_{observed} [c_ui (1 - s_ui)^2 - s_ui^2] + lambda (...)

    ``scores`` may hold the ``s_ui`` of the stored entries (CSR order) when they are already known.
    Computed in float64.
    """
    matrix = _as_matrix(user_items)
    if np.shape(user_factors)[0] != matrix.shape[0] or np.shape(item_factors)[0] != matrix.shape[1]:
        raise ValueError(f"factor shapes {np.shape(user_factors)} and {np.shape(item_factors)} do not match "
                         f"user_items {matrix.shape} (users x items): was the matrix transposed?")
    if scores is None:
        scores = observed_scores(np.asarray(user_factors, np.float64), np.asarray(item_factors, np.float64), matrix)
    return _loss(user_factors, item_factors, 1.0 + alpha * matrix.data.astype(np.float64), scores, regularization)


# ---- running the chunks -------------------------------------------------------------------------------
class _Buffers:
    """Scratch arrays of one worker, sized for the largest chunk (re-used: no allocation per chunk)."""

    def __init__(self, chunks, k, dtype):
        most_slots = max((c[3] - c[2] for c in chunks), default=0)
        most_rows = max((c[1] - c[0] for c in chunks), default=0)
        self.gathered = np.empty((most_slots, k), dtype)
        self.dots, self.coef = np.empty(most_slots, dtype), np.empty(most_slots, dtype)
        self.x, self.residual, self.direction, self.product, self.scratch = (
            np.empty((most_rows, k), dtype) for _ in range(5))


def _for_each_chunk(work, chunks, k, dtype, num_threads: int) -> None:
    """``work(chunk, buffers)`` for every chunk; chunks are independent (they own disjoint rows and slots),
    so with ``num_threads > 1`` they run on a thread pool (numpy releases the GIL in the heavy kernels).
    The result does not depend on the number of threads."""
    threads = min(_resolve_threads(num_threads), len(chunks))
    if threads <= 1:
        buffers = _Buffers(chunks, k, dtype)
        for chunk in chunks:
            work(chunk, buffers)
        return
    from concurrent.futures import ThreadPoolExecutor

    local = threading.local()

    def run(chunk):
        if not hasattr(local, "buffers"):
            local.buffers = _Buffers(chunks, k, dtype)
        work(chunk, local.buffers)

    with ThreadPoolExecutor(max_workers=threads) as pool:
        for _ in pool.map(run, chunks):
            pass


def _resolve_threads(num_threads: int) -> int:
    return (os.cpu_count() or 1) if not num_threads or num_threads < 1 else int(num_threads)


# ---- the exact solver ----------------------------------------------------------------------------------
def _chunk_systems(gathered, weight, target, pieces, gram, n_rows, dtype=None):
    """``A_u = gram + G_u^T diag(w_u) G_u`` and ``b_u = G_u^T t_u`` for the rows of one chunk."""
    k = gathered.shape[1]
    systems = np.empty((n_rows, k, k), dtype or gathered.dtype)
    systems[:] = gram
    for lo, hi, length, slot in pieces:
        if length:
            n = hi - lo
            block = gathered[slot:slot + n * length].reshape(n, length, k)
            weighted = block * weight[slot:slot + n * length].reshape(n, length, 1)
            systems[lo:hi] += np.matmul(weighted.transpose(0, 2, 1), block)
    rhs = _weighted_sums(target, gathered, pieces, np.empty((n_rows, k), gathered.dtype))
    return systems, rhs


def normal_equations(fixed_factors, user_items, regularization: float, alpha: float,
                     plan: SolverPlan | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(A, b)`` with ``A[u] = Y^T Y + Y^T (C_u - I) Y + lambda I`` (``n_rows, k, k``) and
    ``b[u] = Y^T C_u p_u`` (``n_rows, k``), for every row ``u`` of ``user_items`` (``Y = fixed_factors``).

    For teaching and testing: it materialises all ``n_rows`` k x k systems (``solve_exact`` works chunk
    by chunk instead).
    """
    fixed, plan = _prepare(fixed_factors, user_items, alpha, plan)
    k = fixed.shape[1]
    weight, target = plan.weights(fixed.dtype)
    gram = _gram(fixed, regularization).astype(fixed.dtype)
    systems = np.empty((plan.shape[0], k, k), fixed.dtype)
    rhs = np.empty((plan.shape[0], k), fixed.dtype)
    for row_lo, row_hi, slot_lo, slot_hi, pieces in plan.chunks(k, fixed.itemsize):
        gathered = np.take(fixed, plan.slot_column[slot_lo:slot_hi], axis=0)
        a, b = _chunk_systems(gathered, weight[slot_lo:slot_hi], target[slot_lo:slot_hi], pieces, gram,
                              row_hi - row_lo)
        rows = plan.order[row_lo:row_hi]
        systems[rows], rhs[rows] = a, b
    return systems, rhs


def _cholesky_solve(systems, rhs) -> np.ndarray:
    """Solve every ``systems[j] x = rhs[j]`` (symmetric positive definite) by ``A = L L^T``, in float64.

    ``np.linalg.cholesky`` factorises the whole batch (LAPACK ``potrf`` per matrix, no Python loop);
    numpy has no batched triangular solve, so the two substitutions run column by column, a loop over
    the k factors with every step vectorised over all rows::

        L z = b:    z_j = b_j / L_jj,   then  b_m -= L_mj z_j  for m > j
        L^T x = z:  x_j = z_j / L_jj,   then  z_m -= L_jm x_j  for m < j
    """
    try:
        lower = np.linalg.cholesky(np.asarray(systems, dtype=np.float64))
    except np.linalg.LinAlgError as error:
        raise np.linalg.LinAlgError("an ALS normal-equation matrix is not positive definite: use "
                                    "regularization > 0") from error
    x = np.array(rhs, dtype=np.float64)
    k = x.shape[1]
    for j in range(k):
        x[:, j] /= lower[:, j, j]
        x[:, j + 1:] -= lower[:, j + 1:, j] * x[:, j, None]
    for j in range(k - 1, -1, -1):
        x[:, j] /= lower[:, j, j]
        x[:, :j] -= lower[:, j, :j] * x[:, j, None]
    return x


def _exact_rows(fixed, plan: SolverPlan, regularization, slot_scores_out=None, num_threads: int = 1) -> np.ndarray:
    """The exact solve of every row, chunk by chunk (see :func:`solve_exact`); slot-order scores out."""
    k = fixed.shape[1]
    weight, target = plan.weights(fixed.dtype)
    gram = _gram(fixed, regularization)
    solution = np.empty((plan.shape[0], k), fixed.dtype)

    def work(chunk, buffers: _Buffers):
        row_lo, row_hi, slot_lo, slot_hi, pieces = chunk
        gathered = np.take(fixed, plan.slot_column[slot_lo:slot_hi], axis=0,
                           out=buffers.gathered[:slot_hi - slot_lo], mode="clip")
        systems, rhs = _chunk_systems(gathered, weight[slot_lo:slot_hi], target[slot_lo:slot_hi], pieces, gram,
                                      row_hi - row_lo, np.float64)
        x = _cholesky_solve(systems, rhs).astype(fixed.dtype)
        solution[plan.order[row_lo:row_hi]] = x
        if slot_scores_out is not None:
            _entry_dots(gathered, x, pieces, slot_scores_out[slot_lo:slot_hi])

    _for_each_chunk(work, plan.chunks(k, fixed.itemsize), k, fixed.dtype, num_threads)
    return solution


def solve_exact(fixed_factors, user_items, regularization: float, alpha: float, plan: SolverPlan | None = None,
                scores: np.ndarray | None = None, num_threads: int = 1) -> np.ndarray:
    """The exact least-squares factors of every row of ``user_items`` with ``fixed_factors`` held fixed::

        x_u = (Y^T Y + Y^T (C_u - I) Y + lambda I)^{-1} Y^T C_u p_u

    ``fixed_factors`` is ``Y`` (``n_columns x k``). Returns ``(n_rows, k)`` in ``fixed_factors``' dtype.
    Users: ``solve_exact(item_factors, user_items, ...)``; items: ``solve_exact(user_factors,
    user_items.T.tocsr(), ...)``. ``scores``, if given (length ``nnz``, CSR order), is overwritten with
    ``x_u . y_i`` of the new factors. ``plan`` (a :class:`SolverPlan` of ``user_items``) saves its set-up.
    ``num_threads`` > 1 (0: all cores) solves chunks of rows in parallel; the result is the same.
    """
    fixed, plan = _prepare(fixed_factors, user_items, alpha, plan)
    slot_scores = np.zeros(plan.n_slots, fixed.dtype) if scores is not None else None
    solution = _exact_rows(fixed, plan, regularization, slot_scores, num_threads)
    if scores is not None:
        scores[:] = slot_scores[plan.entry_slot]
    return solution


# ---- conjugate gradient --------------------------------------------------------------------------------
def _cg_rows(fixed, plan: SolverPlan, current, regularization, cg_steps, slot_scores_in=None,
             slot_scores_out=None, num_threads: int = 1) -> np.ndarray:
    """Batched CG on every row, chunk by chunk (see :func:`solve_cg`). ``slot_scores_in``: ``x . y`` of
    ``current`` per slot (else computed); ``slot_scores_out`` receives those of the solution."""
    k = fixed.shape[1]
    dtype = fixed.dtype
    current = np.asarray(current, dtype=dtype)
    weight, target = plan.weights(dtype)
    gram = _gram(fixed, regularization).astype(dtype)
    solution = np.empty((plan.shape[0], k), dtype)

    def work(chunk, buffers: _Buffers):
        row_lo, row_hi, slot_lo, slot_hi, pieces = chunk
        n_rows, n_slots = row_hi - row_lo, slot_hi - slot_lo
        rows = plan.order[row_lo:row_hi]
        x = np.take(current, rows, axis=0, out=buffers.x[:n_rows])
        gathered = np.take(fixed, plan.slot_column[slot_lo:slot_hi], axis=0, out=buffers.gathered[:n_slots],
                           mode="clip")
        w, t = weight[slot_lo:slot_hi], target[slot_lo:slot_hi]
        dots, coef = buffers.dots[:n_slots], buffers.coef[:n_slots]
        residual, direction = buffers.residual[:n_rows], buffers.direction[:n_rows]
        product, scratch = buffers.product[:n_rows], buffers.scratch[:n_rows]
        # r = b - A x = sum_i (c_ui - (c_ui - 1) s_ui) y_i - (Y^T Y + lambda I) x,   s_ui = x_u . y_i
        scores = slot_scores_in[slot_lo:slot_hi] if slot_scores_in is not None else \
            _entry_dots(gathered, x, pieces, dots)
        # in place (fit): s <- s + a (y_i . p) at every step instead of recomputing y_i . x at the end
        track = slot_scores_out is not None and slot_scores_out is slot_scores_in
        np.multiply(w, scores, out=coef)
        np.subtract(t, coef, out=coef)
        _weighted_sums(coef, gathered, pieces, residual)
        residual -= np.matmul(x, gram, out=scratch)
        direction[:] = residual
        rs_old = np.einsum("ij,ij->i", residual, residual)
        for step_number in range(cg_steps):
            # A p = (Y^T Y + lambda I) p + sum_i (c_ui - 1) (y_i . p) y_i
            _entry_dots(gathered, direction, pieces, dots)
            np.multiply(w, dots, out=coef)
            _weighted_sums(coef, gathered, pieces, product)
            product += np.matmul(direction, gram, out=scratch)
            curvature = np.einsum("ij,ij->i", direction, product)
            step = np.divide(rs_old, curvature, out=np.zeros_like(rs_old), where=curvature > 0)[:, None]
            x += np.multiply(direction, step, out=scratch)
            if track:
                _add_row_scaled(scores, step[:, 0], dots, pieces)
            if step_number + 1 == cg_steps:
                break
            residual -= np.multiply(product, step, out=scratch)
            rs_new = np.einsum("ij,ij->i", residual, residual)
            ratio = np.divide(rs_new, rs_old, out=np.zeros_like(rs_new), where=rs_old > 0)
            direction *= ratio[:, None]
            direction += residual
            rs_old = rs_new
        solution[rows] = x
        if slot_scores_out is not None and not track:
            _entry_dots(gathered, x, pieces, slot_scores_out[slot_lo:slot_hi])

    _for_each_chunk(work, plan.chunks(k, fixed.itemsize), k, dtype, num_threads)
    return solution


def solve_cg(fixed_factors, user_items, current, regularization: float, alpha: float, cg_steps: int = 3,
             plan: SolverPlan | None = None, scores: np.ndarray | None = None,
             num_threads: int = 1) -> np.ndarray:
    """``cg_steps`` steps of conjugate gradient on every row's normal equations, warm-started at ``current``.

    For each row ``u`` (all rows at once), with ``A_u x = Y^T Y x + sum_{i in N(u)} (c_ui - 1)(y_i . x) y_i
    + lambda x`` and ``b_u = sum_{i in N(u)} c_ui y_i``::

        r = b_u - A_u x;  p = r
        repeat cg_steps times:
            a = (r . r) / (p . A_u p);   x <- x + a p;   r' = r - a A_u p
            p <- r' + (r' . r') / (r . r) p;   r <- r'

    (a row whose residual is already 0 stays put). With enough steps (``cg_steps >= k``) this is the
    exact solution. ``scores``, if given (``x_u . y_i`` of ``current`` at the stored entries, CSR order),
    saves the products of the first residual and is overwritten with the new factors' scores. Returns
    the new ``(n_rows, k)`` factors in ``fixed_factors``' dtype; ``current`` is not modified.
    ``num_threads`` > 1 (0: all cores) runs chunks of rows in parallel; the result is the same.
    """
    fixed, plan = _prepare(fixed_factors, user_items, alpha, plan)
    k = fixed.shape[1]
    if np.shape(current) != (plan.shape[0], k):
        raise ValueError(f"current has shape {np.shape(current)}, expected {(plan.shape[0], k)}")
    slot_scores = None
    if scores is not None:
        slot_scores = np.zeros(plan.n_slots, fixed.dtype)
        slot_scores[plan.entry_slot] = scores
    solution = _cg_rows(fixed, plan, current, regularization, cg_steps, slot_scores, slot_scores, num_threads)
    if scores is not None:
        scores[:] = slot_scores[plan.entry_slot]
    return solution


# ---- the estimator -------------------------------------------------------------------------------------
class ALS(FactorModel):
    """Implicit ALS (Hu, Koren & Volinsky 2008) with the implicit 0.7 API.

    Parameters
    ----------
    factors : int
        ``k``, the length of every user and item vector.
    regularization : float
        ``lambda`` of the L2 penalty ``lambda (||X||^2 + ||Y||^2)``.
    alpha : float
        Confidence ``c_ui = 1 + alpha r_ui`` on observed cells (1 on missing ones). implicit's ``alpha``
        is ours plus one on 0/1 data (it uses ``c = alpha r``).
    iterations : int
        Full sweeps (users, then items).
    random_state : int or None
        Seeds the initial factors (``N(0, 0.01^2)`` entries).
    show_progress : bool
        A tqdm bar over the iterations (with the loss).
    solver : {"cg", "cholesky"}
        Conjugate gradient warm-started from the previous factors (fast, as implicit), or the exact
        batched Cholesky solve.
    cg_steps : int
        CG steps per half-iteration.
    num_threads : int
        Worker threads (0: one per CPU core, as implicit). Rows are solved in independent chunks, and
        numpy releases the GIL in the heavy kernels; the factors do not depend on the number of threads.

    Attributes
    ----------
    user_factors, item_factors : float32 arrays ``(n_users, k)``, ``(n_items, k)``.
    loss_history_ : list of float
        :func:`als_loss` after every iteration.
    """

    def __init__(self, factors: int = 64, regularization: float = 25.0, alpha: float = 2.0,
                 iterations: int = 15, random_state=None, show_progress: bool = False,
                 solver: str = "cg", cg_steps: int = 3, num_threads: int = 0):
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.random_state = random_state
        self.show_progress = show_progress
        self.solver = solver
        self.cg_steps = cg_steps
        self.num_threads = num_threads

    def _validate(self) -> None:
        if self.solver not in ("cg", "cholesky"):
            raise ValueError(f"solver must be 'cg' or 'cholesky', got {self.solver!r}")
        if int(self.factors) < 1 or int(self.iterations) < 0 or int(self.cg_steps) < 1:
            raise ValueError("factors and cg_steps must be >= 1 and iterations >= 0")
        if self.regularization < 0 or self.alpha < 0:
            raise ValueError("regularization and alpha must be >= 0")

    def fit(self, user_items, show_progress: bool | None = None):
        """Factorise the users x items matrix ``user_items`` (CSR, ``r_ui >= 0``); returns ``self``.

        Each iteration solves the users with the items fixed, then the items with the users fixed, and
        appends :func:`als_loss` to ``loss_history_``.
        """
        self._validate()
        show = self.show_progress if show_progress is None else show_progress
        user_items = _as_matrix(user_items)
        item_users = user_items.T.tocsr()
        n_users, n_items = user_items.shape
        rng = np.random.default_rng(self.random_state)
        self.user_factors = (rng.standard_normal((n_users, self.factors)) * 0.01).astype(np.float32)
        self.item_factors = (rng.standard_normal((n_items, self.factors)) * 0.01).astype(np.float32)
        self.loss_history_ = []
        user_plan = SolverPlan(user_items, self.alpha)
        item_plan = SolverPlan(item_users, self.alpha)
        # x_u . y_i of the stored entries, kept up to date in both plans' slot orders
        item_from_user, user_from_item = _matching_slots(user_items, user_plan, item_plan)
        user_scores = np.zeros(user_plan.n_slots, np.float32)
        user_scores[user_plan.entry_slot] = observed_scores(self.user_factors, self.item_factors, user_items)
        item_scores = np.take(user_scores, item_from_user, mode="clip")
        threads = _resolve_threads(self.num_threads)
        bar = progress(range(self.iterations), show, desc="ALS", unit="it")
        for _ in bar:
            if self.solver == "cg":
                self.user_factors = _cg_rows(self.item_factors, user_plan, self.user_factors, self.regularization,
                                             self.cg_steps, user_scores, user_scores, threads)
                np.take(user_scores, item_from_user, out=item_scores, mode="clip")
                self.item_factors = _cg_rows(self.user_factors, item_plan, self.item_factors, self.regularization,
                                             self.cg_steps, item_scores, item_scores, threads)
            else:
                self.user_factors = _exact_rows(self.item_factors, user_plan, self.regularization, None, threads)
                self.item_factors = _exact_rows(self.user_factors, item_plan, self.regularization, item_scores,
                                                threads)
            np.take(item_scores, user_from_item, out=user_scores, mode="clip")
            loss = _plan_loss(self.user_factors, self.item_factors, item_plan, item_scores, self.regularization)
            self.loss_history_.append(loss)
            if show:
                bar.set_postfix(loss=f"{loss:.4g}")
        return self


def _matching_slots(user_items: sp.csr_matrix, user_plan: SolverPlan, item_plan: SolverPlan):
    """``(item_from_user, user_from_item)``: for every slot of one plan, the slot of the same cell in the
    other plan (0 on padding slots, whose values never count)."""
    index = sp.csr_matrix((np.arange(1, user_items.nnz + 1, dtype=np.float64), user_items.indices,
                           user_items.indptr), shape=user_items.shape)
    user_entry = index.T.tocsr().data.astype(np.int64) - 1  # entry e of item_users is entry user_entry[e]
    user_slots, item_slots = user_plan.entry_slot[user_entry], item_plan.entry_slot
    item_from_user = np.zeros(item_plan.n_slots, np.intp)
    item_from_user[item_slots] = user_slots
    user_from_item = np.zeros(user_plan.n_slots, np.intp)
    user_from_item[user_slots] = item_slots
    return item_from_user, user_from_item


def _plan_loss(user_factors, item_factors, plan: SolverPlan, slot_scores, regularization) -> float:
    """:func:`als_loss` from slot-order scores (only the slots of stored entries count)."""
    return _loss(user_factors, item_factors, plan.entry_confidence,
                 np.take(slot_scores, plan.entry_slot, mode="clip"), regularization)


# ---- data for benchmarks -------------------------------------------------------------------------------
def synthetic_implicit(n_users: int = 6040, n_items: int = 3706, nnz: int = 575_000,
                       random_state=0) -> sp.csr_matrix:
    """A random 0/1 users x items CSR matrix with exactly ``nnz`` positives, shaped like MovieLens.

    Item popularity follows a power law (``weight_i ~ (rank_i + 20)^-1.1``, ranks shuffled over the item
    ids) and user activity is log-normal (``sigma = 0.9``); cells are drawn with probability
    ``~ activity_u * popularity_i`` and duplicates are dropped until ``nnz`` distinct cells remain. With
    the defaults it matches ML-1M's positives (ratings >= 4): 6,040 x 3,706, 575k cells, the busiest item
    has ~3,600 users and the median one ~60, median user ~70 items.
    """
    if nnz > n_users * n_items:
        raise ValueError(f"nnz={nnz} exceeds the {n_users * n_items} cells")
    rng = np.random.default_rng(random_state)
    item_weight = (np.arange(1, n_items + 1) + 20.0) ** -1.1
    item_weight = item_weight[rng.permutation(n_items)]
    user_weight = rng.lognormal(0.0, 0.9, n_users)
    keys = np.zeros(0, np.int64)
    while len(keys) < nnz:
        draw = int((nnz - len(keys)) * 1.3) + 1000
        users = rng.choice(n_users, draw, p=user_weight / user_weight.sum())
        items = rng.choice(n_items, draw, p=item_weight / item_weight.sum())
        keys = np.concatenate([keys, users.astype(np.int64) * n_items + items])
        _, first = np.unique(keys, return_index=True)
        keys = keys[np.sort(first)]  # distinct cells, in order of first draw
    keys = keys[:nnz]
    return sp.csr_matrix((np.ones(nnz, np.float32), (keys // n_items, keys % n_items)), shape=(n_users, n_items))


# ---- baseline for the benchmark: the classic per-user spsolve loop -------------------------------------
def naive_als_spsolve(user_items, factors: int = 64, regularization: float = 25.0, alpha: float = 2.0,
                      iterations: int = 15, random_state=0) -> tuple[np.ndarray, np.ndarray]:
    """BASELINE FOR THE BENCHMARK ONLY: implicit ALS the way many tutorials write it, one
    ``scipy.sparse.linalg.spsolve`` per user and per item, with sparse diagonal confidence matrices.

    Same model and convention as :class:`ALS` (``c = 1 + alpha r``); returns ``(user_factors,
    item_factors)``. Slow on purpose: it shows what the vectorised solvers above save. Do not use it.
    """
    from scipy.sparse.linalg import spsolve

    matrix = _as_matrix(user_items).astype(np.float64)
    rng = np.random.default_rng(random_state)
    n_users, n_items = matrix.shape
    user_factors = rng.standard_normal((n_users, factors)) * 0.01
    item_factors = rng.standard_normal((n_items, factors)) * 0.01

    def half_step(fixed, rows_matrix, solved):
        n_columns = fixed.shape[0]
        fixed_sparse = sp.csr_matrix(fixed)
        gram = fixed_sparse.T @ fixed_sparse
        penalty = regularization * sp.eye(factors)
        for row in range(rows_matrix.shape[0]):
            ratings = rows_matrix[row].toarray().ravel()
            conf_minus_one = sp.diags(alpha * ratings, shape=(n_columns, n_columns))
            pref_conf = (1.0 + alpha * ratings) * (ratings > 0)
            lhs = gram + fixed_sparse.T @ conf_minus_one @ fixed_sparse + penalty
            rhs = fixed_sparse.T @ pref_conf
            solved[row] = spsolve(sp.csc_matrix(lhs), rhs)

    item_users = matrix.T.tocsr()
    for _ in range(iterations):
        half_step(item_factors, matrix, user_factors)
        half_step(user_factors, item_users, item_factors)
    return user_factors.astype(np.float32), item_factors.astype(np.float32)
