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

Where the time goes, and implicit's CG
-------------------------------------
implicit 0.7's CPU solver runs the same CG (``Y^T Y + lambda I`` precomputed, 3 steps, warm start) one user
at a time in Cython under OpenMP: per step, a ``symv`` with ``Y^T Y`` and one level-1 BLAS ``dot`` and
``axpy`` per entry, reading ``y_i`` straight from the factor matrix. Ours does the same arithmetic
(``2 |N(u)| k`` multiply-adds per entry and CG step, plus ``k^2`` per row) as batched products over a
chunk, after gathering the chunk's ``y_i`` once. A profile of a fit splits its time between the two
batched products of every CG step (most of it), the gather of the fixed factors (once per half-step: it
grows with the fixed side, which no longer fits in the CPU cache at ML-20M size), the element-wise updates
of the ``(rows, k)`` arrays, and, once per fit, building the two plans. Python's own overhead is a few
dozen numpy calls per chunk. The measured times next to implicit (ML-1M and ML-20M sizes, one thread and
all cores) and next to the classic tutorial loop with one ``scipy.sparse.linalg.spsolve`` per user are in
``docs/benchmarks.md``, written by ``make bench`` (``benchmarks/bench.py``; the synthetic matrices and the
loop are in ``benchmarks/synthetic.py``).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ._als_solvers import (_CHUNK_BYTES, SolverPlan, _as_matrix, _cg_rows, _chunk_systems, _exact_rows, _gram,
                           _loss, _matching_slots, _plan_loss, _prepare, _resolve_threads, one_blas_thread)
from .base import FactorModel, progress

__all__ = [
    "ALS", "preference", "confidence", "als_loss", "observed_scores", "normal_equations",
    "solve_exact", "solve_cg", "SolverPlan",
]


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


# ---- the exact solver ----------------------------------------------------------------------------------
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
    with one_blas_thread():
        for row_lo, row_hi, slot_lo, slot_hi, pieces in plan.chunks(k, fixed.itemsize):
            gathered = np.take(fixed, plan.slot_column[slot_lo:slot_hi], axis=0)
            a, b = _chunk_systems(gathered, weight[slot_lo:slot_hi], target[slot_lo:slot_hi], pieces, gram,
                                  row_hi - row_lo)
            rows = plan.order[row_lo:row_hi]
            systems[rows], rhs[rows] = a, b
    return systems, rhs


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
    with one_blas_thread():
        solution = _exact_rows(fixed, plan, regularization, slot_scores, num_threads)
    if scores is not None:
        scores[:] = slot_scores[plan.entry_slot]
    return solution


# ---- conjugate gradient -------------------------------------------------------------------------------
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
    with one_blas_thread():
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
        BLAS itself is held to one thread during ``fit`` (its products are small, one chunk at a time).

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
        appends :func:`als_loss` to ``loss_history_``. BLAS runs on one thread meanwhile
        (:func:`~mflib.models._als_solvers.one_blas_thread`); ``num_threads`` sets the parallelism.
        """
        self._validate()
        with one_blas_thread():
            return self._fit(user_items, show_progress)

    def _fit(self, user_items, show_progress):
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
        # x_u . y_i of the stored entries, kept up to date in both plans' slot orders (the first user step
        # computes them from the initial factors, chunk by chunk)
        item_from_user, user_from_item = _matching_slots(user_items, user_plan, item_plan)
        user_scores = np.zeros(user_plan.n_slots, np.float32)
        item_scores = np.zeros(item_plan.n_slots, np.float32)
        threads = _resolve_threads(self.num_threads)
        bar = progress(range(self.iterations), show, desc="ALS", unit="it")
        for iteration in bar:
            if self.solver == "cg":
                self.user_factors = _cg_rows(self.item_factors, user_plan, self.user_factors, self.regularization,
                                             self.cg_steps, user_scores if iteration else None, user_scores,
                                             threads)
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

    def recalculate_user(self, userid, user_items):
        """Fold-in: the exact factors of user(s) ``userid`` from their rows ``user_items``, item factors
        fixed (implicit 0.7's ``recalculate_user``); the model is not modified.

        ``user_items`` is a CSR matrix with one row per requested user (``1 x n_items`` for a scalar
        ``userid``, which may be a new user's id: only the rows are used). Returns ``(k,)`` for a scalar
        ``userid``, else ``(len(userid), k)``; see :func:`mflib.models._foldin.fold_in` for the formula.
        """
        from ._foldin import fold_in

        self._check_fitted()
        count = 1 if np.ndim(userid) == 0 else len(np.asarray(userid))
        rows = getattr(user_items, "shape", (None,))[0]
        if rows != count:
            raise ValueError(f"user_items has {rows} rows for {count} user(s): pass one row per user, "
                             "e.g. user_items=X[userid] (implicit 0.7 API)")
        factors = fold_in(self.item_factors, user_items, self.regularization, self.alpha)
        return factors[0] if np.ndim(userid) == 0 else factors
