"""Row-sparse mini-batch training of :class:`~mflib.models.fm.FactorizationMachine`: a step costs
O(nnz(batch) x k), whatever the number of features.

One step on a mini-batch ``B`` (rows of the feature matrix ``X``)
--------------------------------------------------------------------
1. **Compaction.** ``T`` = the sorted unique column indices of ``X_B``: the features the batch *touches*
   (an argsort of its ``nnz`` column indices, then the runs of equal values). ``X_c`` is ``X_B`` with its
   columns renumbered ``0 .. |T|-1`` (each column gets the number of its run), an ``|B| x |T|`` CSR matrix.
   Only ``V_c = V[T]`` and ``w_c = w[T]`` are read.
2. **Forward**, per row of the batch, with ``q_j = ||v_j||^2``::

       S = X_c V_c,   y_hat = w0 + X_c w_c + 1/2 (rowsum(S∘S) - (X_c∘X_c) q),   g = 2 (y_hat - y) / |B|

3. **Gradient rows** of the touched features: exactly the rows ``T`` of
   :func:`~mflib.models.fm.fm_gradients` on the batch (the rows of the other features would hold only
   their L2 term, which lazy updates skip)::

       dL/dw_T = X_c^T g + 2 lambda_w,T ∘ w_c
       dL/dV_T = X_c^T (g ∘ S) + (2 lambda_V,T - (X_c∘X_c)^T g) ∘ V_c

   A feature present in several rows of the batch accumulates one term per row: the sums over examples are
   sparse products with ``X_c^T`` (no Python loop over examples, no ``param[index] += ...``).
4. **Update** the rows ``T`` of ``w`` and ``V`` (and of Adam's ``m`` and ``v``) by lazy Adam
   (:func:`~mflib.models._optim.adam_update_rows`) or SGD; ``w0`` by dense Adam (or SGD).

The L2 penalty therefore acts on the touched rows, once per step that touches them: the usual convention
for sparse regularisation (a feature that no example of the batch has gets no gradient at all).

Speed
-----
A step costs a sort of the batch's ``nnz`` column indices, O(nnz x k) for the products and O(|T| x k)
for the update: nothing grows with the number of features (the epoch's loss, computed once per epoch,
reads the whole arrays). The rows of a batch are processed in increasing row order (the gradient is a sum
over the batch: the order changes only the rounding; it makes the memory access sequential when ``X`` is
grouped by user, as the MovieLens files are). Forward row blocks and update blocks of ``T`` are independent, so with
``num_threads > 1`` they run on a thread pool (numpy and scipy release the GIL in these kernels) while one
more thread prepares the next batch (step 1). Blocks have fixed sizes (:data:`ROW_BLOCK`,
:data:`FEATURE_BLOCK`), so the result does not depend on the number of threads. Work arrays are allocated
once per fit: fresh multi-megabyte temporaries cost page faults that take longer than the arithmetic.
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ._optim import AdamScratch, adam_update, adam_update_rows, sgd_update

__all__ = ["ROW_BLOCK", "FEATURE_BLOCK", "CompactBatch", "compact_batch", "RowSparseTrainer", "resolve_threads"]

#: Batch rows per forward block and touched features per update block (fixed: results never depend on
#: the thread count).
ROW_BLOCK = 8192
FEATURE_BLOCK = 8192


def resolve_threads(num_threads: int) -> int:
    """``num_threads``, or all cores for 0 (or a negative number)."""
    return (os.cpu_count() or 1) if not num_threads or num_threads < 1 else int(num_threads)


def _row_block(matrix: sp.csr_matrix, start: int, stop: int) -> sp.csr_matrix:
    """Rows ``start:stop`` of a CSR matrix, sharing its data and indices (no copy)."""
    first, last = matrix.indptr[start], matrix.indptr[stop]
    return sp.csr_matrix((matrix.data[first:last], matrix.indices[first:last],
                          matrix.indptr[start:stop + 1] - first), shape=(stop - start, matrix.shape[1]))


def _blocks(n: int, size: int) -> list[tuple[int, int]]:
    return [(start, min(start + size, n)) for start in range(0, n, size)]


@dataclass
class CompactBatch:
    """A mini-batch with its columns renumbered to the features it touches (step 1 of the module docstring).

    ``touched``: sorted unique feature indices (``T``); ``y``: targets; ``matrix``: ``X_c`` (CSR,
    ``|B| x |T|``); ``example``: the batch row of every stored value of ``X_c`` (``matrix.indices`` holds
    its column); ``squares``: the stored values squared (the values of ``X_c∘X_c``); ``row_blocks``: ``X_c``
    cut in blocks of :data:`ROW_BLOCK` rows (just ``[matrix]`` for a small batch).
    """

    touched: np.ndarray
    y: np.ndarray
    matrix: sp.csr_matrix
    example: np.ndarray
    squares: np.ndarray
    row_blocks: list

    @property
    def size(self) -> int:
        return len(self.y)

    def rows_times(self, values: np.ndarray, column_values: np.ndarray) -> np.ndarray:
        """``A @ column_values`` for the matrix ``A`` with ``X_c``'s pattern and stored ``values``."""
        return np.bincount(self.example, values * column_values[self.matrix.indices], minlength=self.size)

    def columns_times(self, values: np.ndarray, row_values: np.ndarray) -> np.ndarray:
        """``A^T @ row_values`` for the matrix ``A`` with ``X_c``'s pattern and stored ``values``."""
        return np.bincount(self.matrix.indices, values * row_values[self.example], minlength=len(self.touched))


def compact_batch(X: sp.csr_matrix, y: np.ndarray) -> CompactBatch:
    """Compact the batch ``(X, y)`` (CSR rows of the feature matrix and their targets): sort the column
    indices; ``T`` = the first of each run of equal values; a column's new number is the index of its run."""
    indices = X.indices
    order = np.argsort(indices)
    ordered = indices[order]
    run_starts = np.empty(len(ordered), dtype=bool)
    run_starts[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=run_starts[1:])
    touched = ordered[run_starts].astype(np.intp)
    local = np.empty(len(indices), dtype=np.int32)
    local[order] = np.cumsum(run_starts, dtype=np.int32) - 1
    matrix = sp.csr_matrix((X.data, local, X.indptr), shape=(X.shape[0], len(touched)))
    example = np.repeat(np.arange(X.shape[0], dtype=np.int32), np.diff(X.indptr))
    bounds = _blocks(X.shape[0], ROW_BLOCK)
    row_blocks = [matrix] if len(bounds) == 1 else [_row_block(matrix, a, b) for a, b in bounds]
    return CompactBatch(touched, y, matrix, example, np.square(X.data), row_blocks)


class RowSparseTrainer:
    """The parameters ``w0``, ``w``, ``V`` of a factorization machine, their optimiser state, and one
    :meth:`step` per mini-batch (module docstring). Arrays are updated in place.

    ``reg_w`` / ``reg_V``: per-feature L2 weights (``n_features`` float32); ``optimizer``: ``"adam"`` (lazy
    Adam, :mod:`mflib.models._optim`) or ``"sgd"``; ``max_batch_rows`` / ``max_batch_nnz``: the most rows and
    stored values a batch can have (they size the work arrays).
    """

    def __init__(self, w0, w, V, reg_w, reg_V, optimizer: str, max_batch_rows: int, max_batch_nnz: int,
                 num_threads: int = 1):
        self.w0, self.w, self.V = np.asarray(w0, dtype=V.dtype), w, V
        self.reg_w, self.reg_V = reg_w, reg_V
        self.optimizer = optimizer
        if optimizer == "adam":   # np.zeros, not zeros_like: the pages of rows never touched are never written
            self.moments = {name: (np.zeros(p.shape, p.dtype), np.zeros(p.shape, p.dtype))
                            for name, p in (("w0", self.w0), ("w", w), ("V", V))}
        self.steps = 0
        k = V.shape[1]
        most_touched = min(max_batch_nnz, len(w))
        self._gathered = np.empty((most_touched, k), V.dtype)       # V_c
        self._scaled = np.empty((max_batch_rows, k), V.dtype)       # g ∘ S
        self.threads = resolve_threads(num_threads)
        self._pool = ThreadPoolExecutor(self.threads) if self.threads > 1 else None
        self._local = threading.local()
        self._block = min(FEATURE_BLOCK, most_touched)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def _map(self, work, blocks) -> None:
        if self._pool is None or len(blocks) == 1:
            for block in blocks:
                work(*block)
        else:
            for _ in self._pool.map(lambda block: work(*block), blocks):
                pass

    def _scratch(self):
        """This thread's work arrays for the update of a block of touched features."""
        local = self._local
        if not hasattr(local, "adam"):
            k = self.V.shape[1]
            local.adam = AdamScratch(self._block, (k,), self.V.dtype)
            local.term = np.empty((self._block, k), self.V.dtype)
        return local.adam, local.term

    def step(self, batch: CompactBatch, learning_rate: float) -> float:
        """One update on ``batch``; returns the batch's sum of squared residuals (before the update)."""
        self.steps += 1
        touched, n, data = batch.touched, batch.size, batch.matrix.data
        gathered = np.take(self.V, touched, axis=0, out=self._gathered[:len(touched)], mode="clip")
        linear = self.w[touched]
        norms = np.einsum("ij,ij->i", gathered, gathered)                    # q_j = ||v_j||^2
        # the per-example sums of the linear and self-pair terms at once; the k-wide products by row blocks
        prediction = batch.rows_times(data, linear) - 0.5 * batch.rows_times(batch.squares, norms)
        prediction += float(self.w0)
        g, scaled = np.empty(n), self._scaled[:n]

        def forward(index, start, stop):
            sums = batch.row_blocks[index] @ gathered                        # S = X_c V_c
            block = prediction[start:stop]
            block += 0.5 * np.einsum("ij,ij->i", sums, sums)                 # y_hat
            block -= batch.y[start:stop]                                     # residual, in place
            np.multiply(block, 2.0 / n, out=g[start:stop])                   # g = 2 (y_hat - y) / |B|
            np.multiply(sums, g[start:stop, None].astype(sums.dtype), out=scaled[start:stop])  # g ∘ S

        self._map(forward, [(i, a, b) for i, (a, b) in enumerate(_blocks(n, ROW_BLOCK))])
        residual = prediction
        grad_V = batch.matrix.T @ scaled                                     # X_c^T (g ∘ S), |T| x k
        column_sums = batch.columns_times(data, g)                           # X_c^T g
        coefficient = (2 * self.reg_V[touched] - batch.columns_times(batch.squares, g)).astype(grad_V.dtype)
        grad_w = (column_sums + 2 * self.reg_w[touched] * linear).astype(self.w.dtype)

        def update(start, stop):
            rows, gradient = touched[start:stop], grad_V[start:stop]
            scratch, term = self._scratch()
            term = np.multiply(gathered[start:stop], coefficient[start:stop, None], out=term[:stop - start])
            gradient += term                            # + (2 lambda_V - (X_c∘X_c)^T g) ∘ V_c
            if self.optimizer == "adam":
                adam_update_rows(self.V, *self.moments["V"], rows, gradient, self.steps, learning_rate,
                                 scratch=scratch, current=gathered[start:stop])
            else:
                sgd_update(self.V, gradient, learning_rate, rows=rows)

        self._map(update, _blocks(len(touched), FEATURE_BLOCK))
        grad_w0 = np.asarray(g.sum(), dtype=self.V.dtype)
        if self.optimizer == "adam":
            adam_update_rows(self.w, *self.moments["w"], touched, grad_w, self.steps, learning_rate)
            m, v = self.moments["w0"]
            w0, m, v = adam_update(self.w0, grad_w0, m, v, self.steps, learning_rate)
            self.w0, self.moments["w0"] = np.asarray(w0, dtype=self.V.dtype), (m, v)
        else:
            sgd_update(self.w, grad_w, learning_rate, rows=touched)
            self.w0 = np.asarray(self.w0 - learning_rate * grad_w0, dtype=self.V.dtype)
        return float(residual @ residual)

    def batches(self, X: sp.csr_matrix, y: np.ndarray, order: np.ndarray, batch_size: int):
        """The compacted mini-batches of one epoch: rows ``order[s : s + batch_size]`` (sorted) for
        ``s = 0, batch_size, ...``. With more than one thread the next batch is prepared on a separate thread
        while the current one trains (preparation reads only ``X`` and ``y``: the result is the same)."""
        def prepare(start):
            rows = np.sort(order[start:start + batch_size])
            return compact_batch(X[rows], y[rows])

        starts = range(0, len(order), batch_size)
        if self._pool is None:
            for start in starts:
                yield prepare(start)
            return
        with ThreadPoolExecutor(1) as preparer:
            pending = preparer.submit(prepare, starts[0]) if len(starts) else None
            for following in list(starts[1:]) + [None]:
                batch = pending.result()
                pending = preparer.submit(prepare, following) if following is not None else None
                yield batch
