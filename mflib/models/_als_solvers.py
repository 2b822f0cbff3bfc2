"""The machinery behind :mod:`mflib.models.als`: padded row blocks, batched kernels, the chunked exact
(Cholesky) and conjugate-gradient solvers, and the loss from carried scores.

The formulas and the layout are explained in :mod:`mflib.models.als` ("How the solvers avoid a Python loop
over users"); the public functions (``solve_exact``, ``solve_cg``, ``normal_equations``, ``als_loss``) live
there and call the functions here.
"""
from __future__ import annotations

import os
import threading

import numpy as np
import scipy.sparse as sp

from .base import check_user_items

__all__ = ["SolverPlan"]

# Bytes of gathered factors per chunk: small enough for the CPU cache, large enough to amortise Python.
_CHUNK_BYTES = 4 << 20
# Rows per chunk (bounds the (rows, k, k) systems of the exact solver).
_CHUNK_ROWS = 1024


_BLAS = None


def one_blas_thread():
    """A context in which BLAS runs on one thread (threadpoolctl; the library scan is done once).

    ALS's products are small and many (one chunk at a time, and the chunks already run on ``num_threads``
    Python threads): a BLAS thread pool on top only oversubscribes the cores, and on a busy machine its
    spinning threads make a fit many times slower. implicit asks for ``OPENBLAS_NUM_THREADS=1`` for the
    same reason."""
    global _BLAS
    if _BLAS is None:
        from threadpoolctl import ThreadpoolController

        _BLAS = ThreadpoolController()
    return _BLAS.limit(limits=1, user_api="blas")


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
        # entry e of row u goes to slot  slot_start[position of u] + (e - indptr[u])
        row_offset = np.empty(n_rows, np.int64)
        row_offset[self.order] = self.slot_start[:-1]
        row_offset -= matrix.indptr[:-1]
        self.entry_slot = np.repeat(row_offset, counts)
        self.entry_slot += np.arange(matrix.nnz, dtype=np.int64)
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
    """``Y^T Y + lambda I`` (accumulated in float64, converted a block of rows at a time)."""
    fixed = np.asarray(fixed_factors)
    block = max(1, _CHUNK_BYTES // (8 * max(1, fixed.shape[1])))
    gram = np.zeros((fixed.shape[1], fixed.shape[1]))
    for start in range(0, fixed.shape[0], block):
        rows = fixed[start:start + block].astype(np.float64, copy=False)
        gram += rows.T @ rows
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


# ---- loss from scores ---------------------------------------------------------------------------------
def _loss(user_factors, item_factors, confidences, scores, regularization) -> float:
    """``sum((X^T X) * (Y^T Y)) + sum_obs [c (1 - s)^2 - s^2] + lambda (||X||^2 + ||Y||^2)`` in float64
    (``||X||_F^2 = trace(X^T X)``); ``confidences`` and ``scores`` list the observed cells."""
    scores = np.asarray(scores, dtype=np.float64)
    errors = 1.0 - scores
    observed = float(np.dot(confidences, errors * errors) - np.dot(scores, scores))
    return _gram_terms(user_factors, item_factors, regularization) + observed


def _gram_terms(user_factors, item_factors, regularization) -> float:
    """``sum((X^T X) * (Y^T Y)) + lambda (trace(X^T X) + trace(Y^T Y))`` in float64 (the all-cells ``s^2`` sum
    and the penalty)."""
    user_gram, item_gram = _gram(user_factors, 0.0), _gram(item_factors, 0.0)
    return float(np.sum(user_gram * item_gram)) + regularization * float(np.trace(user_gram) + np.trace(item_gram))


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


# ---- carrying scores between the two sides --------------------------------------------------------------
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
    """:func:`als_loss` from slot-order scores, without reordering them: on an observed slot ``t = c`` and
    ``w = c - 1`` (both 0 on padding), so ``c (1 - s)^2 - s^2 = t - 2 t s + w s^2`` and the observed part is
    ``sum(c) - 2 t . s + w . s^2`` over all slots. Accumulated in float64, a cache-sized block at a time."""
    observed = float(np.sum(plan.entry_confidence))
    step = _CHUNK_BYTES // 8
    for start in range(0, plan.n_slots, step):
        scores = slot_scores[start:start + step].astype(np.float64)
        observed -= 2.0 * float(np.dot(plan._target64[start:start + step], scores))
        np.multiply(scores, scores, out=scores)
        observed += float(np.dot(plan._weight64[start:start + step], scores))
    return _gram_terms(user_factors, item_factors, regularization) + observed
