"""WARP: Weighted Approximate-Rank Pairwise loss for implicit feedback (Weston, Bengio & Usunier, IJCAI 2011).

Why another ranking loss
------------------------
A recommender is judged on its first screen: precision and NDCG at 10. BPR (:mod:`mflib.models.bpr`)
maximises a smoothed AUC, which weighs every (positive, negative) pair alike: moving a liked film from
rank 1000 to 999 is worth as much as moving it from 11 to 10. WARP weighs the pairwise hinge loss of a
positive by a function of its **rank**: a positive buried deep in the list gets a large step, a positive
already near the top a small one, and a positive with no violating negative none at all. Precision at the
top is what it optimises.

The model
---------
As in BPR, an inner product plus an (optional) item bias::

    x(u, i) = p_u . q_i + b_i

``p_u`` and ``q_i`` are the rows of ``user_factors`` (n_users x k) and ``item_factors`` (n_items x k);
``b_i = item_bias[i]`` (``item_bias=None``: no bias; a user bias would not change a user's ranking).

The loss
--------
For a positive ``(u, i)`` a non-positive ``j`` *violates the margin* when ``x(u, j) > x(u, i) - 1``. With
``rank(u, i)`` the number of violators, WARP minimises::

    sum_{(u, i) positive}  L(rank(u, i)) * mean_{j violating} |1 - x(u, i) + x(u, j)|_+

where the **rank weight** is the harmonic number (Usunier et al. 2009, ``alpha_r = 1/r``)::

    L(rank) = sum_{r=1}^{rank} 1/r = H_rank       (~ ln(rank) + 0.577)

A positive at rank 1 costs 1, at rank 10 2.9, at rank 1000 7.5: the first mistakes are the expensive
ones. (LightFM uses ``ln(rank)``, the same shape; we keep the paper's harmonic number.)

Rank estimation by sampling
---------------------------
Counting violators needs all ``n_items`` scores. Instead, draw random items until one violates the
margin. If the first violator is the ``N``-th draw, ``N`` is geometric with success probability
``~ rank / (n_items - 1)``, hence the estimate::

    rank ~= max(1, floor((n_items - 1) / N))

and the step on ``L(rank_estimate) |1 - x(u, i) + x(u, j)|_+`` for that violator ``j`` is a stochastic
step on the loss above. After ``max_sampled`` draws without a violator the positive counts as well ranked
and is skipped -- the common case late in training, which makes WARP epochs cheap and focused. A drawn
item that the user liked is never taken as a negative: it counts as a draw but cannot be the violator.

The batch loss (what is differentiated)
---------------------------------------
Given sampled triples ``(u_b, i_b, j_b)`` with weights ``w_b = L(rank_b)`` held fixed::

    loss = sum_b [ w_b |1 - x(u_b, i_b) + x(u_b, j_b)|_+
                   + lambda/2 (||p_u||^2 + ||q_i||^2 + ||q_j||^2 + b_i^2 + b_j^2) ]

(the penalty counted once per triple, as in :mod:`mflib.models.bpr`). With ``a_b = 1`` if the hinge is
active (``1 - x_ui + x_uj > 0``), else 0, one triple contributes::

    dloss/dp_u = a w (q_j - q_i) + lambda p_u
    dloss/dq_i = -a w p_u        + lambda q_i          dloss/db_i = -a w + lambda b_i
    dloss/dq_j =  a w p_u        + lambda q_j          dloss/db_j =  a w + lambda b_j

and a user or item that occurs in several triples of a batch accumulates one term per occurrence.

Regularisation by a norm bound
------------------------------
Weston et al. regularise WARP (WSABIE) by constraining the factor norms, ``||p_u|| <= C``,
``||q_i|| <= C``, rather than by an L2 penalty: after each step a row longer than ``C = max_norm`` is
scaled back onto the ball. Scores stay within ``+-C^2`` (plus the bias), so the margin of 1 keeps its
meaning and the model cannot "win" the hinge by inflating its vectors. On ML-100K this bound is what
stops WARP from over-fitting (without it, NDCG@10 peaks early and then falls); ``lambda`` defaults to 0.

The optimiser: mini-batch AdaGrad, vectorised
---------------------------------------------
LightFM takes one SGD step per positive, in Cython. In numpy we take ``batch_size`` positives at once:
draw a ``(batch, max_sampled)`` matrix of candidate negatives, score them with one batched product, find
the first violator of each row with ``argmax`` on a boolean matrix, and take one summed step for the rows
that found one. Per-coordinate AdaGrad (Duchi, Hazan & Singer 2011; LightFM's default), in
:mod:`mflib.models._optim`'s one convention::

    G <- G + g^2,      theta <- theta - learning_rate * g / (sqrt(G) + eps)       (G starts at 0, eps = 1e-8)

so the first step of every coordinate is about ``learning_rate`` in size and a popular item, which collects
many terms per batch, slows down. ``optimizer="sgd"`` gives ``theta <- theta - learning_rate * g``.

Positives and their lookup (``positive_keys``, ``is_positive``) come from :mod:`mflib.models._sampling`,
accumulation and the updates from :mod:`mflib.models._optim`; BPR uses the same ones.
"""
from __future__ import annotations

import numpy as np
from scipy.special import digamma

from ._optim import adagrad_accumulators, adagrad_update, as_index, clip_row_norms, sgd_update, sum_rows_by_index, \
    triple_occurrences, triple_penalty
from ._sampling import PositiveLookup, keys_contain as is_positive, positive_keys
from .base import FactorModel, check_user_items, progress

__all__ = ["WARP", "positive_keys", "is_positive", "warp_rank_weight", "warp_scores", "sample_violators",
           "warp_loss", "warp_row_gradients", "warp_gradients", "adagrad_step", "warp_step"]

_EULER_GAMMA = 0.57721566490153286


def _contains(positives, users, items, n_items: int) -> np.ndarray:
    """Membership test on sorted keys (:func:`positive_keys`) or on a
    :class:`~mflib.models._sampling.PositiveLookup`."""
    if isinstance(positives, PositiveLookup):
        return positives.contains(users, items)
    return is_positive(positives, users, items, n_items)


# ---- the rank weight -----------------------------------------------------------------------------------
def warp_rank_weight(n_draws, n_items: int) -> np.ndarray:
    """``L(rank) = sum_{r=1}^{rank} 1/r`` with ``rank = max(1, floor((n_items - 1) / n_draws))``.

    ``n_draws`` (>= 1) is the number of draws it took to find the first violator. The harmonic number is
    ``H_n = digamma(n + 1) + euler_gamma`` (exact, no loop). Returns float64 of ``n_draws``' shape.
    """
    n_draws = as_index(n_draws)
    if np.any(n_draws < 1):
        raise ValueError("n_draws counts the draws up to and including the violator: it must be >= 1")
    rank = np.maximum(1, (n_items - 1) // n_draws)
    return digamma(rank + 1.0) + _EULER_GAMMA


# ---- scores and sampling -------------------------------------------------------------------------------
def warp_scores(user_factors, item_factors, item_bias, users, items) -> np.ndarray:
    """``x(u, i) = p_u . q_i + b_i`` for each pair ``(users[b], items[b])`` (no ``b_i`` if ``item_bias`` is None)."""
    users, items = as_index(users), as_index(items)
    scores = np.einsum("bk,bk->b", np.take(user_factors, users, axis=0), np.take(item_factors, items, axis=0))
    return scores if item_bias is None else scores + np.take(item_bias, items)


def sample_violators(user_factors, item_factors, item_bias, users, positives, keys, max_sampled, rng,
                     margin: float = 1.0):
    """For each positive ``(users[b], positives[b])``, the first of ``max_sampled`` random items that is not
    a positive of the user and violates the margin, ``x(u, j) > x(u, i) - margin``.

    The candidates are drawn at once, ``candidates = rng.integers(0, n_items, size=(len(users),
    max_sampled))``, and scored with one batched product; the first violator of row ``b`` is the
    ``argmax`` of the boolean row ``violates[b]``. Positives of the user (looked up in ``keys``: the sorted
    keys of :func:`positive_keys`, or a :class:`~mflib.models._sampling.PositiveLookup`) never count as
    violators.

    Returns ``(negatives, n_draws, found)``: ``found[b]`` is True when row ``b`` has a violator,
    ``negatives[b]`` is it (-1 otherwise) and ``n_draws[b]`` is its 1-based position among the draws
    (``max_sampled`` when none was found).
    """
    users, positives = as_index(users), as_index(positives)
    n_items = item_factors.shape[0]
    candidates = rng.integers(0, n_items, size=(len(users), max_sampled))
    user_vectors = np.take(user_factors, users, axis=0)                                # (batch, k)
    positive_scores = np.einsum("bk,bk->b", user_vectors, np.take(item_factors, positives, axis=0))
    # one batched product: (batch, max_sampled, k) @ (batch, k, 1) -> (batch, max_sampled)
    candidate_scores = np.matmul(np.take(item_factors, candidates, axis=0), user_vectors[:, :, None])[:, :, 0]
    if item_bias is not None:
        positive_scores = positive_scores + np.take(item_bias, positives)
        candidate_scores += np.take(item_bias, candidates)
    violates = candidate_scores > (positive_scores - margin)[:, None]
    batch = np.arange(len(users))
    first = np.argmax(violates, axis=1)                  # the first True of each row (0 if there is none)
    # A liked item is never a negative. Only the current first violators are looked up: a row whose first
    # violator is liked drops it and moves on to its next one (a few rounds, on fewer rows each time).
    rows = np.flatnonzero(violates[batch, first])
    while rows.size:
        liked = _contains(keys, users[rows], candidates[rows, first[rows]], n_items)
        rows = rows[liked]
        violates[rows, first[rows]] = False
        first[rows] = np.argmax(violates[rows], axis=1)
        rows = rows[violates[rows, first[rows]]]
    found = violates[batch, first]
    negatives = np.where(found, candidates[batch, first], -1)
    n_draws = np.where(found, first + 1, max_sampled)
    return negatives, n_draws, found


# ---- the loss of a batch of sampled triples and its gradient --------------------------------------------
def _penalty(user_factors, item_factors, item_bias, users, positives, negatives) -> float:
    """``sum_b ||p_u||^2 + ||q_i||^2 + ||q_j||^2 (+ b_i^2 + b_j^2)`` over the triples (from occurrence counts)."""
    counts = triple_occurrences(users, positives, negatives, len(user_factors), len(item_factors))
    return triple_penalty(user_factors, item_factors, item_bias, *counts)


def warp_loss(user_factors, item_factors, item_bias, users, positives, negatives, weights,
              regularization) -> float:
    """``sum_b w_b |1 - x(u_b, i_b) + x(u_b, j_b)|_+ + lambda/2 sum_b (||p_u||^2 + ||q_i||^2 + ||q_j||^2
    + b_i^2 + b_j^2)`` over the triples ``(users[b], positives[b], negatives[b])``, weights ``w_b`` fixed."""
    users, positives, negatives = as_index(users), as_index(positives), as_index(negatives)
    hinge = np.maximum(0.0, 1.0 - warp_scores(user_factors, item_factors, item_bias, users, positives)
                       + warp_scores(user_factors, item_factors, item_bias, users, negatives))
    data = float(np.dot(np.asarray(weights, dtype=np.float64), hinge))
    return data + 0.5 * regularization * _penalty(user_factors, item_factors, item_bias, users, positives, negatives)


def warp_row_gradients(user_factors, item_factors, item_bias, users, positives, negatives, weights,
                       regularization) -> dict[str, np.ndarray]:
    """The per-triple terms of the gradient of :func:`warp_loss`, before accumulation (row ``b``)::

        "user"     = a w (q_j - q_i) + lambda p_u
        "positive" = -a w p_u + lambda q_i           "positive_bias" = -a w + lambda b_i
        "negative" =  a w p_u + lambda q_j           "negative_bias" =  a w + lambda b_j

    with ``a = [1 - x_ui + x_uj > 0]``; the bias terms only when ``item_bias`` is not None. Also returns
    ``"hinge"``, the hinge values ``|1 - x_ui + x_uj|_+`` of the triples.
    """
    users, positives, negatives = as_index(users), as_index(positives), as_index(negatives)
    p_u = np.take(user_factors, users, axis=0)
    q_i = np.take(item_factors, positives, axis=0)
    q_j = np.take(item_factors, negatives, axis=0)
    margin = 1.0 - np.einsum("bk,bk->b", p_u, q_i - q_j)
    if item_bias is not None:
        b_i, b_j = np.take(item_bias, positives), np.take(item_bias, negatives)
        margin = margin - b_i + b_j
    hinge = np.maximum(margin, 0.0)
    scale = np.where(hinge > 0, np.asarray(weights, dtype=p_u.dtype), 0).astype(p_u.dtype)   # a_b w_b
    lam = regularization
    terms = {"user": scale[:, None] * (q_j - q_i) + lam * p_u,
             "positive": -scale[:, None] * p_u + lam * q_i,
             "negative": scale[:, None] * p_u + lam * q_j,
             "hinge": hinge}
    if item_bias is not None:
        terms["positive_bias"] = -scale + lam * b_i
        terms["negative_bias"] = scale + lam * b_j
    return terms


def _item_terms(terms, has_bias: bool) -> np.ndarray:
    """The item-side terms of the positives then the negatives, the bias term as an extra last column."""
    if not has_bias:
        return np.vstack([terms["positive"], terms["negative"]])
    return np.vstack([np.column_stack([terms["positive"], terms["positive_bias"]]),
                      np.column_stack([terms["negative"], terms["negative_bias"]])])


def warp_gradients(user_factors, item_factors, item_bias, users, positives, negatives, weights,
                   regularization) -> dict[str, np.ndarray]:
    """The gradient of :func:`warp_loss` as full-size arrays ``{"user_factors", "item_factors"[, "item_bias"]}``.

    The terms of :func:`warp_row_gradients` summed per user and per item (rows outside the batch are 0; an
    item that is the positive of one triple and the negative of another receives both terms).
    """
    terms = warp_row_gradients(user_factors, item_factors, item_bias, users, positives, negatives, weights,
                               regularization)
    has_bias = item_bias is not None
    gradients = {"user_factors": np.zeros_like(user_factors), "item_factors": np.zeros_like(item_factors)}
    rows, summed = sum_rows_by_index(users, terms["user"])
    gradients["user_factors"][rows] = summed
    rows, summed = sum_rows_by_index(np.concatenate([as_index(positives), as_index(negatives)]),
                               _item_terms(terms, has_bias))
    gradients["item_factors"][rows] = summed[:, :item_factors.shape[1]]
    if has_bias:
        gradients["item_bias"] = np.zeros_like(item_bias)
        gradients["item_bias"][rows] = summed[:, -1]
    return gradients


# ---- the step ------------------------------------------------------------------------------------------
def adagrad_step(parameter, accumulator, rows, gradient, learning_rate, max_norm=None) -> None:
    """In place, on the given (unique) ``rows``: ``G <- G + g^2; theta <- theta - learning_rate g / (sqrt(G) + eps)``
    (:func:`mflib.models._optim.adagrad_update`); ``accumulator=None`` gives plain SGD. With ``max_norm``
    (2-D parameters) every updated row longer than ``max_norm`` is scaled back to norm ``max_norm``."""
    if accumulator is None:
        sgd_update(parameter, gradient, learning_rate, rows)
    else:
        adagrad_update(parameter, gradient, accumulator, learning_rate, rows)
    if max_norm is not None:
        clip_row_norms(parameter, max_norm, rows)


def warp_step(user_factors, item_factors, item_bias, users, positives, negatives, weights, learning_rate,
              regularization, max_norm=None, accumulators=None) -> float:
    """One step on the batch loss of the sampled triples, **in place**; returns :func:`warp_loss` before it.

    Every gradient is taken before any parameter moves; repeated users / items accumulate (one sorted
    sparse product per side). ``max_norm``: after the step, the updated factor rows are projected onto the
    ball ``||v|| <= max_norm``. ``accumulators``: None (plain SGD) or a dict of AdaGrad sums shaped like the
    parameters, ``{"user_factors", "item_factors"[, "item_bias"]}``, updated in place.
    """
    users, positives, negatives = as_index(users), as_index(positives), as_index(negatives)
    terms = warp_row_gradients(user_factors, item_factors, item_bias, users, positives, negatives, weights,
                               regularization)
    loss = float(np.dot(np.asarray(weights, dtype=np.float64), terms["hinge"]))
    if regularization:
        loss += 0.5 * regularization * _penalty(user_factors, item_factors, item_bias, users, positives, negatives)
    accumulators = accumulators or {}
    user_rows, user_gradient = sum_rows_by_index(users, terms["user"])
    item_rows, item_gradient = sum_rows_by_index(np.concatenate([positives, negatives]),
                                           _item_terms(terms, item_bias is not None))
    k = item_factors.shape[1]
    adagrad_step(user_factors, accumulators.get("user_factors"), user_rows, user_gradient, learning_rate, max_norm)
    adagrad_step(item_factors, accumulators.get("item_factors"), item_rows, item_gradient[:, :k], learning_rate,
                 max_norm)
    if item_bias is not None:
        adagrad_step(item_bias, accumulators.get("item_bias"), item_rows, item_gradient[:, k], learning_rate)
    return loss


# ---- the estimator -------------------------------------------------------------------------------------
class WARP(FactorModel):
    """Matrix factorisation trained with the WARP ranking loss on implicit feedback (mini-batch AdaGrad).

    Parameters
    ----------
    factors : int
        Latent dimension ``k``.
    learning_rate : float
        AdaGrad (or SGD) step size; AdaGrad's first step of a coordinate is about ``learning_rate`` in size.
    regularization : float
        ``lambda`` of the L2 penalty ``lambda/2 (||p_u||^2 + ||q_i||^2 + ||q_j||^2 + b_i^2 + b_j^2)``,
        counted once per sampled triple. 0 by default: ``max_norm`` regularises.
    iterations : int
        Epochs: passes over the shuffled training positives.
    max_sampled : int
        At most this many draws per positive when looking for a margin violator (LightFM's default, 10).
    max_norm : float or None
        Norm bound ``C`` on every user and item factor vector (Weston et al.'s regulariser); None: no bound.
    batch_size : int
        Positives per step; their gradients are summed (repeated users / items accumulate).
    optimizer : {"adagrad", "sgd"}
        Per-coordinate AdaGrad steps, or plain SGD.
    use_bias : bool
        Learn an item bias ``b_i``; ``recommend`` then ranks by ``p_u . q_i + b_i``. ``similar_items`` uses
        the factors only.
    init_std : float
        Factors start as ``N(0, init_std^2)``; biases at 0.
    random_state : int, numpy Generator or None
        Seeds initialisation, shuffling and sampling: the same seed gives the same factors.
    show_progress : bool
        A tqdm bar over epochs.

    The defaults are tuned on ML-100K (``mflib.evaluation.implicit_split``, seeds 0-2); the quality they
    reach next to popularity and LightFM's WARP is measured by ``make bench`` (``docs/benchmarks.md``).

    Attributes (after ``fit``)
    --------------------------
    user_factors, item_factors : float32 arrays ``(n_users, k)``, ``(n_items, k)``
    item_bias : float32 array ``(n_items,)`` or None
    loss_history_ : list of float
        Per epoch, :func:`warp_loss` of the sampled triples (each batch before its step) divided by the
        number of training positives -- positives without a violator contribute 0.
    violator_rate_ : list of float
        Per epoch, the fraction of positives for which a violator was found within ``max_sampled`` draws
        (it falls as the positives climb to the top of their users' lists).
    """

    def __init__(self, factors: int = 64, learning_rate: float = 0.05, regularization: float = 0.0,
                 iterations: int = 30, max_sampled: int = 10, max_norm: float | None = 1.5,
                 batch_size: int = 1024, optimizer: str = "adagrad", use_bias: bool = True,
                 init_std: float = 0.01, random_state=None, show_progress: bool = False):
        self._set_init_params(locals())

    def fit(self, user_items, show_progress: bool | None = None):
        """Learn from a users x items CSR matrix of positives (any stored non-zero); returns ``self``."""
        if self.optimizer not in ("adagrad", "sgd"):
            raise ValueError(f"optimizer must be 'adagrad' or 'sgd', got {self.optimizer!r}")
        if self.factors < 1 or self.batch_size < 1 or self.max_sampled < 1 or self.iterations < 0:
            raise ValueError("factors, batch_size and max_sampled must be >= 1, iterations >= 0")
        matrix = check_user_items(user_items)
        n_users, n_items = matrix.shape
        lookup = PositiveLookup(matrix)  # the positives: stored non-zeros, on a canonical copy
        pair_users, pair_items = lookup.users, lookup.items

        rng = np.random.default_rng(self.random_state)
        self._init_factors(rng, n_users, n_items, self.init_std, item_bias=self.use_bias)
        accumulators = adagrad_accumulators(self._factor_parameters()) if self.optimizer == "adagrad" else None
        self.loss_history_, self.violator_rate_ = [], []

        n_pairs = max(len(pair_users), 1)
        lr, lam = float(self.learning_rate), float(self.regularization)
        max_norm = None if self.max_norm is None else float(self.max_norm)
        show = self.show_progress if show_progress is None else show_progress
        for _ in progress(range(self.iterations), show, desc="WARP", unit="epoch"):
            order = rng.permutation(len(pair_users))
            epoch_loss, n_found = 0.0, 0
            for start in range(0, len(order), self.batch_size):
                batch = order[start:start + self.batch_size]
                users, positives = pair_users[batch], pair_items[batch]
                negatives, n_draws, found = sample_violators(self.user_factors, self.item_factors, self.item_bias,
                                                             users, positives, lookup, self.max_sampled, rng)
                if not found.any():
                    continue
                weights = warp_rank_weight(n_draws[found], n_items).astype(np.float32)
                epoch_loss += warp_step(self.user_factors, self.item_factors, self.item_bias, users[found],
                                        positives[found], negatives[found], weights, lr, lam, max_norm,
                                        accumulators)
                n_found += int(found.sum())
            self.loss_history_.append(epoch_loss / n_pairs)
            self.violator_rate_.append(n_found / n_pairs)
        return self
