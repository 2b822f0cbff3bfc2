"""Optimisation pieces shared by the reference models: index checks, duplicate-safe scatter-add, SGD, AdaGrad.

Conventions (every model that uses this module follows them)
-------------------------------------------------------------
* **Gradients are sums.** A mini-batch gradient is the sum of its examples' gradients; a row of a parameter
  matrix that several examples touch *accumulates* one term per occurrence (:func:`scatter_add` for a
  full-size gradient, :func:`sum_rows_by_index` for a row-sparse one). ``param[index] += rows`` would keep
  only the last term of a repeated index: never use it for gradients.
* **Updates are in place** on the parameter (and optimiser-state) arrays; nothing is returned.
* **Row-sparse updates** take ``rows``, *unique* row indices, and a gradient with one row per index
  (what :func:`sum_rows_by_index` returns); rows not listed do not move. Dense updates take ``rows=None``.
* **SGD**::

      theta <- theta - learning_rate * g

* **AdaGrad** (Duchi, Hazan & Singer 2011), per coordinate, ONE convention for every model::

      G <- G + g^2
      theta <- theta - learning_rate * g / (sqrt(G) + eps)          eps = ADAGRAD_EPS = 1e-8

  with the accumulator ``G`` **starting at 0** (``ADAGRAD_INITIAL_ACCUMULATOR``; :func:`adagrad_accumulators`
  builds the state). The first step of every coordinate is then ``learning_rate * g / (|g| + eps)``, about
  ``learning_rate`` in size whatever the scale of ``g``; later steps shrink as ``G`` grows, fastest for a
  coordinate that keeps receiving large gradients (a popular item, which collects many terms per batch).
  ``eps`` keeps ``0 / 0`` out for a coordinate whose gradient has always been 0 (it does not move).
  BPR and WARP both train with it.
* **L2 penalty of a batch of triples** ``(u, i, j)`` counted once per triple::

      sum_{(u,i,j)} ||p_u||^2 + ||q_i||^2 + ||q_j||^2 (+ b_i^2 + b_j^2)
        = sum_u n_u ||p_u||^2 + sum_t n_t (||q_t||^2 + b_t^2)

  with ``n_u`` / ``n_t`` the occurrence counts (:func:`triple_penalty`): row norms weighted by counts, no
  gather of the triples' rows.

Adam (dense and row-sparse lazy) is at the end of this module.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

__all__ = ["ADAGRAD_EPS", "ADAGRAD_INITIAL_ACCUMULATOR", "as_index", "check_index", "scatter_add",
           "sum_rows_by_index", "occurrence_counts", "triple_occurrences", "triple_penalty", "sgd_update",
           "adagrad_accumulators", "adagrad_update", "clip_row_norms"]

ADAGRAD_EPS = 1e-8
ADAGRAD_INITIAL_ACCUMULATOR = 0.0


# ---- indices -----------------------------------------------------------------------------------------------
def as_index(array) -> np.ndarray:
    """A 1-D integer index array: int32 / int64 kept as they are (no copy), anything else as int64."""
    array = np.asarray(array).ravel()
    return array if array.dtype in (np.int32, np.int64) else array.astype(np.int64)


def check_index(index, n: int, name: str = "index") -> np.ndarray:
    """:func:`as_index` of ``index``, after checking that it is integer and every entry lies in ``[0, n)``.

    Raises ``ValueError`` naming ``name``, the offending value and the valid range (numpy would either wrap
    a negative index around silently or raise an ``IndexError`` that does not say which argument is wrong).
    """
    array = np.asarray(index)
    if array.size and not np.issubdtype(array.dtype, np.integer):
        if not np.all(np.equal(np.mod(array, 1), 0)):
            raise ValueError(f"{name} must hold integer row indices, got values like {array.ravel()[:3].tolist()}")
    array = as_index(array)
    if array.size:
        low, high = int(array.min()), int(array.max())
        if low < 0 or high >= n:
            bad = low if low < 0 else high
            raise ValueError(f"{name} holds {bad}, outside [0, {n}): it indexes an array of {n} rows "
                             "(a user index where an item index belongs, or a matrix of the wrong shape?)")
    return array


# ---- accumulation --------------------------------------------------------------------------------------------
def scatter_add(index, rows, n: int, weights=None, *, indptr=None, check: bool = True) -> np.ndarray:
    """``out[r] = sum_{e: index[e] = r} weights[e] * rows[e // m]`` for ``r < n``: duplicate-safe accumulation.

    ``rows`` is ``(B, k)`` or ``(B,)``; ``index`` has ``m * B`` entries, ``m >= 1``: entries ``m b .. m b + m - 1``
    all receive row ``b`` (BPR sends ``p_u`` to the positive *and* the negative item of a triple with
    ``m = 2``). ``weights`` (default 1) has one entry per index entry. The result is a new ``(n, k)``
    (or ``(n,)``) array of ``rows``' dtype, zero on rows no index entry names.

    One sparse product: ``S`` (``n x B``) holds ``weights[e]`` at ``(index[e], e // m)`` and ``out = S @ rows``
    (exact, what ``np.add.at`` does, much faster). ``indptr`` may pass the precomputed column pointers
    ``arange(0, m B + 1, m)`` of ``S`` (a training loop builds them once); ``check=False`` skips
    :func:`check_index` when the caller knows the indices are valid.
    """
    rows = np.asarray(rows)
    index = check_index(index, n, "index") if check else as_index(index)
    batch = len(rows)
    if batch == 0:
        return np.zeros((n,) + rows.shape[1:], dtype=rows.dtype)
    if len(index) % batch:
        raise ValueError(f"index has {len(index)} entries for {batch} rows: it needs m entries per row (m >= 1)")
    per_row = len(index) // batch
    if weights is None:
        weights = np.ones(len(index), dtype=rows.dtype)
    weights = np.asarray(weights)
    if len(weights) != len(index):
        raise ValueError(f"weights has {len(weights)} entries, index {len(index)}: one weight per index entry")
    if rows.ndim == 1:  # a vector: a weighted bincount is the same sum
        return np.bincount(index, weights * np.repeat(rows, per_row), minlength=n).astype(rows.dtype, copy=False)
    if indptr is None:
        indptr = np.arange(0, len(index) + 1, per_row, dtype=index.dtype)
    # built as the CSR of S^T (B x n): its transpose is S in CSC form, without a copy
    scatter = sp.csr_matrix((weights, index, indptr[:batch + 1]), shape=(batch, n)).T
    return np.asarray(scatter @ rows)


def sum_rows_by_index(index, rows) -> tuple[np.ndarray, np.ndarray]:
    """Sum the rows of ``rows`` that share an ``index``: returns ``(unique_index, summed_rows)`` (row-sparse).

    ``unique_index`` is sorted; ``summed_rows[r] = sum_{b: index[b] = unique_index[r]} rows[b]``. Sort the
    indices; the ``r``-th run of equal indices becomes row ``r`` of a 0/1 CSR matrix ``S`` and the sums are
    one sparse product ``S @ rows`` (``np.add.at`` gives the same sums, more slowly). ``rows`` may be 1-D.
    """
    index = as_index(index)
    rows = np.asarray(rows)
    if len(index) != len(rows):
        raise ValueError(f"index has {len(index)} entries but rows has {len(rows)}: one index per row")
    order = np.argsort(index, kind="stable")
    sorted_index = index[order]
    run_starts = np.flatnonzero(np.r_[True, sorted_index[1:] != sorted_index[:-1]]) if len(index) else order
    scatter = sp.csr_matrix((np.ones(len(index), dtype=rows.dtype), order, np.r_[run_starts, len(index)]),
                            shape=(len(run_starts), len(index)))
    return sorted_index[run_starts], np.asarray(scatter @ rows)


def occurrence_counts(index, n: int) -> np.ndarray:
    """How often each of ``0 .. n-1`` occurs in ``index`` (int64, length ``n``)."""
    return np.bincount(as_index(index), minlength=n)


def triple_occurrences(users, positives, negatives, n_users: int, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """``(n_u, n_t)`` of a batch of triples ``(u, i, j)``: how often each user occurs, and each item (as a
    positive or as a negative); what :func:`triple_penalty` weighs the row norms by."""
    return (occurrence_counts(users, n_users),
            occurrence_counts(positives, n_items) + occurrence_counts(negatives, n_items))


def triple_penalty(user_factors, item_factors, item_bias, user_counts, item_counts) -> float:
    """``sum_u n_u ||p_u||^2 + sum_t n_t (||q_t||^2 + b_t^2)`` (module docstring): the L2 penalty of a batch
    of triples counted once per triple, from the occurrence counts of its users and items (an item counts
    once as a positive and once as a negative)."""
    total = (user_counts @ np.einsum("ij,ij->i", user_factors, user_factors)
             + item_counts @ np.einsum("ij,ij->i", item_factors, item_factors))
    if item_bias is not None:
        total += item_counts @ np.square(item_bias)
    return float(total)


# ---- updates -----------------------------------------------------------------------------------------------
def sgd_update(param, gradient, learning_rate, rows=None) -> None:
    """``theta <- theta - learning_rate * g``, in place; on the (unique) ``rows`` only when given."""
    if rows is None:
        param -= learning_rate * gradient
    else:
        param[rows] = np.take(param, rows, axis=0) - learning_rate * gradient


def adagrad_accumulators(params: dict) -> dict:
    """AdaGrad's state for a dict of parameter arrays: ``G`` arrays of the same shapes and dtypes, filled with
    :data:`ADAGRAD_INITIAL_ACCUMULATOR` (the module's one convention); ``None`` values are skipped."""
    return {name: np.full_like(value, ADAGRAD_INITIAL_ACCUMULATOR) for name, value in params.items()
            if value is not None}


def adagrad_update(param, gradient, accumulator, learning_rate, rows=None, eps: float = ADAGRAD_EPS) -> None:
    """``G <- G + g^2; theta <- theta - learning_rate * g / (sqrt(G) + eps)``, in place (param and ``G``).

    Dense (``rows=None``: ``gradient`` has ``param``'s shape) or row-sparse (``gradient`` has one row per
    entry of the *unique* ``rows``; other rows of ``param`` and ``G`` do not move). ``gradient`` is not
    modified.
    """
    if rows is None:
        step = np.square(gradient)
        accumulator += step
        np.sqrt(accumulator, out=step)
        step += eps
        np.divide(gradient, step, out=step)
        step *= learning_rate
        param -= step
    else:
        accumulated = np.take(accumulator, rows, axis=0) + gradient * gradient
        accumulator[rows] = accumulated
        param[rows] = np.take(param, rows, axis=0) - learning_rate * gradient / (np.sqrt(accumulated) + eps)


def clip_row_norms(matrix, max_norm: float, rows=None) -> None:
    """Project rows of a 2-D ``matrix`` onto the ball ``||v|| <= max_norm``, in place: a longer row is scaled
    by ``max_norm / ||v||`` (shorter rows are left alone). Only the (unique) ``rows`` when given."""
    block = matrix if rows is None else np.take(matrix, rows, axis=0)
    norms = np.sqrt(np.einsum("bk,bk->b", block, block))
    scale = (max_norm / np.maximum(norms, max_norm)).astype(matrix.dtype, copy=False)
    if rows is None:
        matrix *= scale[:, None]
    else:
        matrix[rows] = block * scale[:, None]


# ---- Adam (dense and row-sparse lazy) ----
# Adam (Kingma & Ba 2015), ONE convention for every model, dense or row-sparse. At step t = 1, 2, ...
# (t counts the optimiser steps of the whole training, never a row's own updates), per coordinate:
#
#     m     <- beta1 m + (1 - beta1) g                      running mean of the gradient
#     v     <- beta2 v + (1 - beta2) g^2                    running mean of its square
#     theta <- theta - learning_rate * m_hat / (sqrt(v_hat) + eps),
#              m_hat = m / (1 - beta1^t),  v_hat = v / (1 - beta2^t)     (bias corrections; m, v start at 0)
#
# eps is added to sqrt(v_hat) as in the paper (torch adds it to sqrt(v)); beta1 = 0.9, beta2 = 0.999,
# eps = 1e-8 by default.
#
# Row-sparse "lazy" Adam (torch.optim.SparseAdam's convention, TF-Addons' LazyAdam): a step that receives
# the gradient of the (sorted, unique) ``rows`` only applies the three lines above to those rows, with the
# global t; every other row keeps its theta, m and v. For that step it equals dense Adam restricted to the
# listed rows. Over many steps it differs from dense Adam on the rows a batch does not touch: their
# moments do not decay and they do not keep moving with their momentum until touched again. That is what
# makes a step cost O(|rows| x k) rather than O(n x k). A model whose loss has an L2 term applies it, with
# lazy updates, to the touched rows only (the usual sparse-regularisation convention).
ADAM_BETA1, ADAM_BETA2, ADAM_EPS = 0.9, 0.999, 1e-8
__all__ += ["ADAM_BETA1", "ADAM_BETA2", "ADAM_EPS", "adam_update", "AdamScratch", "adam_update_rows"]


def adam_update(param, grad, m, v, step, learning_rate, beta1=ADAM_BETA1, beta2=ADAM_BETA2, eps=ADAM_EPS):
    """One Adam step on one parameter array; returns the new ``(param, m, v)`` (inputs untouched).

    ``step`` counts from 1::

        m      <- beta1 m + (1 - beta1) grad              (running mean of the gradient)
        v      <- beta2 v + (1 - beta2) grad^2            (running mean of its square)
        m_hat  =  m / (1 - beta1^step),  v_hat = v / (1 - beta2^step)     (bias corrections)
        param  <- param - learning_rate * m_hat / (sqrt(v_hat) + eps)

    The dense form the course teaches (notebook 05); :func:`adam_update_rows` is the in-place, row-sparse
    form the reference factorization machine trains with.
    """
    m = beta1 * m + (1 - beta1) * grad
    v = beta2 * v + (1 - beta2) * grad * grad
    m_hat = m / (1 - beta1 ** step)
    v_hat = v / (1 - beta2 ** step)
    return param - learning_rate * m_hat / (np.sqrt(v_hat) + eps), m, v


class AdamScratch:
    """Reusable work arrays for :func:`adam_update_rows`: room for ``capacity`` rows of shape ``row_shape``.

    A training loop makes one per thread and passes it to every step, so that no step allocates (fresh
    multi-megabyte temporaries cost page faults that can take longer than the arithmetic)."""

    def __init__(self, capacity: int, row_shape: tuple = (), dtype=np.float32):
        self.capacity = int(capacity)
        self.param, self.m, self.v, self.work = (np.empty((self.capacity,) + tuple(row_shape), dtype)
                                                 for _ in range(4))

    def views(self, n: int):
        if n > self.capacity:
            raise ValueError(f"AdamScratch holds {self.capacity} rows, the step needs {n}: make a larger one")
        return self.param[:n], self.m[:n], self.v[:n], self.work[:n]


def adam_update_rows(param, m, v, rows, gradient, step: int, learning_rate: float, beta1=ADAM_BETA1,
                     beta2=ADAM_BETA2, eps=ADAM_EPS, scratch: AdamScratch | None = None, current=None) -> None:
    """Lazy Adam (section comment above), in place: rows ``rows`` of ``param``, ``m`` and ``v`` take one Adam
    step with ``gradient`` (one row per entry of ``rows``); no other row changes.

    ``rows`` must be sorted and unique (what ``np.unique`` gives) and inside ``param``; ``step`` is the
    global step count (from 1). Computed as ``param_r -= (lr sqrt(c2) / c1) m_r / (sqrt(v_r) + eps sqrt(c2))``
    with ``c1 = 1 - beta1^step``, ``c2 = 1 - beta2^step``: the same number as :func:`adam_update`'s
    ``lr m_hat / (sqrt(v_hat) + eps)``, without the divisions of whole arrays. ``gradient`` is not modified.
    ``scratch``: reusable work arrays (an :class:`AdamScratch` with room for ``len(rows)`` rows), else
    temporaries are allocated. ``current``: ``param[rows]`` if the caller has already gathered it (saves a
    gather); it is updated in place too.
    """
    rows = np.asarray(rows)
    n = len(rows)
    if len(gradient) != n:
        raise ValueError(f"gradient has {len(gradient)} rows for {n} row indices: one gradient row per index")
    if n == 0:
        return
    if step < 1:
        raise ValueError(f"step counts from 1, got {step}")
    if rows[0] < 0 or rows[-1] >= len(param) or (n > 1 and not np.all(rows[1:] > rows[:-1])):
        raise ValueError(f"rows must be sorted, unique indices in [0, {len(param)}) (np.unique of the batch's rows)")
    if scratch is None:
        scratch = AdamScratch(n, param.shape[1:], param.dtype)
    theta, first, second, work = scratch.views(n)
    # mode="clip" skips numpy's buffered bounds check (the bounds were checked above)
    if current is None:
        np.take(param, rows, axis=0, out=theta, mode="clip")
    else:
        theta = current
    np.take(m, rows, axis=0, out=first, mode="clip")
    np.take(v, rows, axis=0, out=second, mode="clip")
    beta1, beta2 = float(beta1), float(beta2)
    first *= beta1                                    # m <- beta1 m + (1 - beta1) g
    np.multiply(gradient, 1 - beta1, out=work)
    first += work
    second *= beta2                                   # v <- beta2 v + (1 - beta2) g^2
    np.multiply(gradient, gradient, out=work)
    work *= 1 - beta2
    second += work
    # python floats, not numpy float64 scalars: those would make float32 arithmetic run in float64
    correction1, root_correction2 = float(1 - beta1 ** step), float(np.sqrt(1 - beta2 ** step))
    np.sqrt(second, out=work)                         # sqrt(v) + eps sqrt(c2) = sqrt(c2) (sqrt(v_hat) + eps)
    work += float(eps) * root_correction2
    np.divide(first, work, out=work)
    work *= float(learning_rate) * root_correction2 / correction1
    theta -= work
    param[rows] = theta
    m[rows] = first
    v[rows] = second
