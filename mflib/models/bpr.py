"""Bayesian Personalised Ranking (Rendle, Freudenthaler, Gantner & Schmidt-Thieme, UAI 2009), by mini-batch SGD.

The idea
--------
Implicit feedback has no negatives: a missing ``(u, j)`` is either "not interested" or "never saw it".
BPR does not try to predict the missing cells. It learns an *order*: a user should prefer an item she
interacted with (a positive ``i``) to one she did not (``j``). The model scores items as usual::

    x_ui = p_u . q_i + b_i                  (b_i: optional item bias, "how liked is i overall")

and the training data are triples ``(u, i, j)`` with ``i`` a positive and ``j`` not a positive of ``u``::

    x_uij = x_ui - x_uj = p_u . (q_i - q_j) + b_i - b_j

BPR-Opt
-------
With ``P(i >_u j) = sigma(x_uij)`` (``sigma(x) = 1 / (1 + e^-x)``) and a Gaussian prior on the
parameters, the maximum-a-posteriori estimate minimises, over a set ``B`` of triples (one mini-batch, or
all of them)::

    L(B) = sum_{(u,i,j) in B} [ -ln sigma(x_uij)
                                + lambda/2 (||p_u||^2 + ||q_i||^2 + ||q_j||^2 + b_i^2 + b_j^2) ]

``-ln sigma(x) = ln(1 + e^-x)`` is a smooth upper bound of the 0/1 loss ``1[x_uij < 0]``, so minimising it
maximises a smoothed AUC: the fraction of (positive, negative) pairs ranked in the right order. As in SVD
(:mod:`mflib.models.svd`) the penalty is counted once per triple, so the batch gradient is the sum of the
per-triple SGD gradients of Rendle's LearnBPR.

The gradient
------------
``d(-ln sigma(x))/dx = -sigma(-x)``. Writing ``s = sigma(-x_uij)`` (large when the pair is mis-ordered,
near 0 when it is already right), one triple contributes::

    dL/dp_u = -s (q_i - q_j) + lambda p_u
    dL/dq_i = -s p_u         + lambda q_i
    dL/dq_j = +s p_u         + lambda q_j
    dL/db_i = -s             + lambda b_i
    dL/db_j = +s             + lambda b_j

and a user or item that occurs several times in a batch *accumulates* one term per occurrence. We
scatter-add with one sparse product per side (``S @ rows``, ``S`` holding ``-s`` at ``(u, triple)``):
exact accumulation, and much faster than ``np.add.at``. The penalty terms are ``lambda * n_u * p_u`` with
``n_u`` the number of occurrences (``np.bincount``), computed on the whole parameter matrix.

Sampling
--------
LearnBPR draws triples uniformly *with replacement* ("bootstrap sampling"): ``(u, i)`` a uniformly random
training positive, ``j`` a uniformly random item that is **not** a positive of ``u``. The negatives are
rejection-sampled for the whole batch at once: draw candidates, look the pairs up in a
:class:`PositiveLookup` (a flat boolean mask of the ``n_users * n_items`` cells when that fits in
``max_dense_cells`` bytes, else sorted keys ``u * n_items + i`` and ``np.searchsorted``), redraw only the
rejected ones (:mod:`mflib.models._sampling`, shared with WARP). An epoch is ``nnz`` triples.

The step
--------
``sgd_step`` applies ``theta <- theta - learning_rate * dL(B)/dtheta`` (plain SGD) or AdaGrad
(Duchi et al. 2011), ``G <- G + g^2``; ``theta <- theta - learning_rate * g / (sqrt(G) + eps)``, per
coordinate, ``G`` starting at 0 (:mod:`mflib.models._optim`'s one convention, shared with WARP).
AdaGrad is the default: with mini-batches, a popular item collects hundreds of terms in one
batch and an unpopular one a single term; AdaGrad's per-coordinate step sizes tame the first without
starving the second (LightFM uses it for BPR too).

Defaults and speed
------------------
The defaults (64 factors, AdaGrad, learning rate 0.1, lambda 0.02, 100 epochs, batches of 16384 triples)
come from a grid over factors, learning rate, lambda, epochs and batch size on ML-100K (the protocol of
:mod:`mflib.evaluation`); with AdaGrad, quality is flat in the batch size from 1024 to 16384. What they
reach next to popularity and implicit's BPR is measured by ``make bench`` (``docs/benchmarks.md``).

An epoch is ~8 passes over ``(nnz, k)`` arrays (gathers into pre-allocated buffers, one ``einsum``, two
sparse scatter products) plus a few passes over the parameter matrices per batch (dense AdaGrad: on
ML-100K a batch touches nearly every row). Its time next to implicit's compiled BPR, both on one thread,
is in ``docs/benchmarks.md``.
"""
from __future__ import annotations

import numpy as np
from scipy.special import expit

from ._optim import adagrad_accumulators, adagrad_update, as_index, scatter_add, sgd_update, triple_occurrences, \
    triple_penalty
from ._sampling import PositiveLookup, sample_negatives, sample_positive_pairs
from .base import FactorModel, check_user_items, progress

__all__ = ["BPR", "PositiveLookup", "Workspace", "bpr_difference", "bpr_loss", "bpr_gradients",
           "bpr_loss_and_gradients", "sample_negatives", "sample_triples", "sgd_step"]


# ---- sampling (the positives and the negatives come from mflib.models._sampling) -------------------------
def sample_triples(user_items, n, rng, lookup: PositiveLookup | None = None):
    """``n`` LearnBPR triples ``(users, positives, negatives)``: ``(u, i)`` a uniformly random positive of
    ``user_items`` (with replacement), ``j`` a uniformly random non-positive of ``u`` (:func:`sample_negatives`)."""
    if lookup is None:
        lookup = PositiveLookup(user_items)
    users, positives = sample_positive_pairs(lookup, n, rng)
    return users, positives, sample_negatives(None, users, rng, lookup)


# ---- the model as pure functions of (parameters, batch) ----------------------------------------------
def bpr_difference(user_factors, item_factors, item_bias, users, positives, negatives) -> np.ndarray:
    """``x_uij = p_u . (q_i - q_j) + b_i - b_j`` for each triple (``item_bias=None``: no bias terms)."""
    users, positives, negatives = as_index(users), as_index(positives), as_index(negatives)
    difference = item_factors[positives] - item_factors[negatives]
    x = np.einsum("bk,bk->b", user_factors[users], difference)
    if item_bias is not None:
        x = x + (item_bias[positives] - item_bias[negatives])
    return x


def _neg_log_sigmoid_sum(x) -> float:
    """``sum -ln sigma(x) = sum ln(1 + e^-x)``, stably: ``max(-x, 0) + log1p(e^-|x|)`` (faster than
    ``np.logaddexp``), accumulated in float64."""
    return float(np.sum(np.log1p(np.exp(-np.abs(x))), dtype=np.float64)
                 + np.sum(np.maximum(-x, 0), dtype=np.float64))


def bpr_loss(user_factors, item_factors, item_bias, users, positives, negatives, regularization) -> float:
    """BPR-Opt on a batch of triples (a sum, not a mean)::

        L = sum_{(u,i,j)} [ -ln sigma(x_uij) + lambda/2 (||p_u||^2 + ||q_i||^2 + ||q_j||^2 + b_i^2 + b_j^2) ]

    ``-ln sigma(x) = ln(1 + e^-x)`` is computed without overflow as ``max(-x, 0) + log1p(e^-|x|)``.
    """
    users, positives, negatives = as_index(users), as_index(positives), as_index(negatives)
    x = bpr_difference(user_factors, item_factors, item_bias, users, positives, negatives)
    counts = triple_occurrences(users, positives, negatives, len(user_factors), len(item_factors))
    penalty = triple_penalty(user_factors, item_factors, item_bias, *counts)
    return _neg_log_sigmoid_sum(x) + 0.5 * regularization * penalty


class Workspace:
    """Pre-allocated ``(batch_size, k)`` buffers for :func:`bpr_loss_and_gradients` in a training loop.

    A fresh multi-megabyte temporary per batch costs page faults that take longer than the arithmetic;
    the training loop therefore gathers rows into these buffers (``np.take(..., out=)``).
    """

    def __init__(self, batch_size: int, factors: int, dtype=np.float32):
        self.user_rows = np.empty((batch_size, factors), dtype=dtype)
        self.difference = np.empty((batch_size, factors), dtype=dtype)
        self.scratch = np.empty((batch_size, factors), dtype=dtype)
        # CSC column pointers of the scatter matrices (one / two entries per triple), built once
        self.indptr = {1: np.arange(batch_size + 1, dtype=np.int32),
                       2: np.arange(0, 2 * batch_size + 1, 2, dtype=np.int32)}


def _gather(matrix, index, out):
    """``matrix[index]``; into ``out`` (a workspace buffer, indices already known to be valid) if given."""
    if out is None:
        return matrix[index]
    return np.take(matrix, index, axis=0, out=out[:len(index)], mode="clip")


def _scatter_rows(index, weights, rows, n, workspace: Workspace | None = None) -> np.ndarray:
    """:func:`mflib.models._optim.scatter_add` (``out[r] = sum_{e: index[e] = r} weights[e] rows[e // m]``),
    with the workspace's precomputed column pointers and no index check inside the training loop."""
    per_row = len(index) // len(rows) if len(rows) else 1
    if workspace is not None and index.dtype == np.int32:
        return scatter_add(index, rows, n, weights, indptr=workspace.indptr[per_row], check=False)
    return scatter_add(index, rows, n, weights)


def bpr_loss_and_gradients(user_factors, item_factors, item_bias, users, positives, negatives, regularization,
                           compute_loss: bool = True, workspace: Workspace | None = None):
    """``(loss, gradients)`` of :func:`bpr_loss` on one batch: the kernel that training runs.

    ``gradients`` has keys ``user_factors``, ``item_factors`` (and ``item_bias`` when it is not None),
    full-size arrays of the parameters' shapes and dtypes, zero on rows the batch does not touch::

        s_b = sigma(-x_b)                                       one number per triple b = (u, i, j)
        dL/dp_u = sum_{b: u_b = u} -s_b (q_i - q_j)       + lambda n_u p_u
        dL/dq_t = sum_{b: i_b = t} -s_b p_u + sum_{b: j_b = t} s_b p_u + lambda n_t q_t
        dL/db_t = sum_{b: i_b = t} -s_b     + sum_{b: j_b = t} s_b     + lambda n_t b_t

    ``n_u`` (``n_t``) counts the occurrences of user ``u`` (item ``t``, as positive or negative) in the batch.
    ``loss`` is None when ``compute_loss`` is False. ``workspace`` (training only: it skips index checks)
    holds the per-triple buffers.
    """
    users, positives, negatives = as_index(users), as_index(positives), as_index(negatives)
    n_users, n_items = len(user_factors), len(item_factors)
    batch = len(users)
    ws = workspace
    user_rows = _gather(user_factors, users, ws and ws.user_rows)          # p_u, one row per triple
    difference = _gather(item_factors, positives, ws and ws.difference)    # q_i - q_j
    difference -= _gather(item_factors, negatives, ws and ws.scratch)
    x = np.einsum("bk,bk->b", user_rows, difference)                       # x_uij
    if item_bias is not None:
        x += item_bias[positives] - item_bias[negatives]
    weight = expit(-x)
    np.negative(weight, out=weight)                                        # d(-ln sigma(x))/dx = -sigma(-x)

    user_counts, item_counts = triple_occurrences(users, positives, negatives, n_users, n_items)
    user_decay = (regularization * user_counts).astype(user_factors.dtype)[:, None]
    item_decay = (regularization * item_counts).astype(item_factors.dtype)

    gradients = {}
    # users: sum_b -s_b (q_i - q_j) over the user's triples, plus lambda n_u p_u
    gradients["user_factors"] = _scatter_rows(users, weight, difference, n_users, ws)
    gradients["user_factors"] += user_decay * user_factors
    # items: -s_b p_u to the positive, +s_b p_u to the negative (two entries per column of S)
    item_index = np.empty(2 * batch, dtype=np.result_type(positives, negatives))
    item_index[0::2], item_index[1::2] = positives, negatives
    item_weight = np.empty(2 * batch, dtype=weight.dtype)
    item_weight[0::2], item_weight[1::2] = weight, -weight
    gradients["item_factors"] = _scatter_rows(item_index, item_weight, user_rows, n_items, ws)
    gradients["item_factors"] += item_decay[:, None] * item_factors
    if item_bias is not None:
        bias_grad = np.bincount(positives, weight, n_items) - np.bincount(negatives, weight, n_items)
        gradients["item_bias"] = (bias_grad + item_decay * item_bias).astype(item_bias.dtype)

    loss = None
    if compute_loss:
        penalty = triple_penalty(user_factors, item_factors, item_bias, user_counts, item_counts)
        loss = _neg_log_sigmoid_sum(x) + 0.5 * regularization * penalty
    return loss, gradients


def bpr_gradients(user_factors, item_factors, item_bias, users, positives, negatives,
                  regularization) -> dict[str, np.ndarray]:
    """The gradient of :func:`bpr_loss` w.r.t. every parameter, as full-size arrays (see
    :func:`bpr_loss_and_gradients` for the formulas); keys ``user_factors``, ``item_factors`` and, if
    ``item_bias`` is not None, ``item_bias``. Repeated users / items accumulate."""
    return bpr_loss_and_gradients(user_factors, item_factors, item_bias, users, positives, negatives,
                                  regularization, compute_loss=False)[1]


def sgd_step(user_factors, item_factors, item_bias, users, positives, negatives, learning_rate, regularization,
             accumulators: dict | None = None, workspace: Workspace | None = None) -> float:
    """One step on a batch of triples, **in place**; returns the batch loss *before* the step.

    Plain SGD (``accumulators=None``)::   theta <- theta - learning_rate * dL(B)/dtheta
    AdaGrad (``accumulators`` = a dict of arrays ``G`` shaped like the parameters, same keys as the
    gradients, updated in place)::        G <- G + g^2;  theta <- theta - learning_rate * g / (sqrt(G) + eps)

    (:mod:`mflib.models._optim`'s one convention; ``fit`` starts ``G`` at 1 with
    :func:`~mflib.models._optim.adagrad_accumulators`.)

    All gradients are taken at the parameters before the step.
    """
    loss, gradients = bpr_loss_and_gradients(user_factors, item_factors, item_bias, users, positives,
                                             negatives, regularization, workspace=workspace)
    params = {"user_factors": user_factors, "item_factors": item_factors, "item_bias": item_bias}
    for name, param in params.items():
        if param is None:
            continue
        if accumulators is None:
            sgd_update(param, gradients[name], learning_rate)
        else:
            adagrad_update(param, gradients[name], accumulators[name], learning_rate)
    return loss


# ---- the estimator ---------------------------------------------------------------------------------------
class BPR(FactorModel):
    """Bayesian Personalised Ranking by mini-batch SGD or AdaGrad on uniformly sampled triples.

    Parameters
    ----------
    factors : int
        Latent dimension ``k``.
    learning_rate : float
        Step size (of AdaGrad by default: the first step of every coordinate is about ``learning_rate``).
    regularization : float
        ``lambda`` of BPR-Opt, for factors and biases, counted once per triple (module docstring).
    iterations : int
        Epochs; an epoch draws as many triples as there are training positives.
    batch_size : int
        Triples per step; their gradients are summed (repeated users / items accumulate).
    optimizer : {"adagrad", "sgd"}
        Per-coordinate AdaGrad steps, or plain SGD.
    use_bias : bool
        Learn an item bias ``b_i`` (popularity) next to the factors; ``recommend`` then ranks by
        ``p_u . q_i + b_i``. ``similar_items`` always uses ``item_factors`` only.
    init_std : float
        Factors start as ``N(0, init_std^2)``, biases at 0.
    random_state : int, numpy Generator or None
        Seeds initialisation and sampling: the same seed gives the same factors.
    show_progress : bool
        A tqdm bar over epochs.

    Attributes (after ``fit``)
    --------------------------
    user_factors, item_factors : float32 arrays ``(n_users, k)``, ``(n_items, k)``
    item_bias : float32 array ``(n_items,)`` or None
    loss_history_ : list of float, per epoch the mean over its triples of
        ``-ln sigma(x_uij) + lambda/2 (...)`` (each batch measured before its step)
    """

    def __init__(self, factors: int = 64, learning_rate: float = 0.1, regularization: float = 0.02,
                 iterations: int = 100, batch_size: int = 16384, optimizer: str = "adagrad",
                 use_bias: bool = True, init_std: float = 0.0125, random_state=None, show_progress: bool = False):
        self._set_init_params(locals())

    def fit(self, user_items, show_progress: bool | None = None):
        """Learn from a users x items CSR of positives (any stored non-zero); returns ``self``."""
        if self.optimizer not in ("adagrad", "sgd"):
            raise ValueError(f"optimizer must be 'adagrad' or 'sgd', got {self.optimizer!r}")
        if self.factors < 1 or self.batch_size < 1 or self.iterations < 0:
            raise ValueError("factors and batch_size must be >= 1, iterations >= 0")
        matrix = check_user_items(user_items)
        n_users, n_items = matrix.shape
        lookup = PositiveLookup(matrix)  # the positives: stored non-zeros, on a canonical copy
        # users who liked every item have no negative: leave their positives out of the sampling
        trainable = np.repeat(lookup.counts < n_items, lookup.counts)
        index_dtype = np.int32 if max(n_users, n_items) < 2**31 else np.int64  # half the memory traffic
        pair_users = lookup.users.astype(index_dtype)[trainable]
        pair_items = lookup.items.astype(index_dtype)[trainable]
        if len(pair_users) == 0:
            raise ValueError("user_items has no positive with a possible negative: nothing to learn")

        rng = np.random.default_rng(self.random_state)
        self._init_factors(rng, n_users, n_items, self.init_std, item_bias=self.use_bias)
        accumulators = adagrad_accumulators(self._factor_parameters()) if self.optimizer == "adagrad" else None
        self.loss_history_ = []

        n_samples = len(pair_users)
        workspace = Workspace(min(self.batch_size, n_samples), self.factors)
        lr, reg = float(self.learning_rate), float(self.regularization)
        show = self.show_progress if show_progress is None else show_progress
        for _ in progress(range(self.iterations), show, desc="BPR", unit="epoch"):
            picks = rng.integers(0, n_samples, size=n_samples, dtype=np.int64)  # bootstrap sampling
            epoch_loss = 0.0
            for start in range(0, n_samples, self.batch_size):
                batch = picks[start:start + self.batch_size]
                users, positives = pair_users[batch], pair_items[batch]
                negatives = sample_negatives(matrix, users, rng, lookup, dtype=index_dtype)
                epoch_loss += sgd_step(self.user_factors, self.item_factors, self.item_bias, users, positives,
                                       negatives, lr, reg, accumulators, workspace)
            self.loss_history_.append(epoch_loss / n_samples)
        return self
