"""Biased matrix factorisation ("Funk SVD") for explicit ratings, trained by mini-batch SGD.

The model
---------
A rating is the global mean, plus how generous the user is, plus how well liked the item is, plus the
match of their ``k`` latent factors::

    r_hat(u, i) = mu + b_u + b_i + p_u . q_i

``mu`` is the mean training rating (fixed, not learned); ``b_u``, ``b_i`` are the user and item biases;
``p_u``, ``q_i`` the rows of ``user_factors`` (n_users x k) and ``item_factors`` (n_items x k).

The loss (regularisation counted per rating)
--------------------------------------------
Over a set ``B`` of observed ratings (the whole training set, or one mini-batch)::

    L(B) = sum_{(u,i,r) in B} [ (r - r_hat(u,i))^2 + lambda (b_u^2 + b_i^2 + ||p_u||^2 + ||q_i||^2) ]

The penalty sits *inside* the sum: a user with 300 ratings has her parameters penalised 300 times, an
item with 2 ratings twice. That is the classic SGD formulation (Funk 2006; Koren, Bell & Volinsky 2009;
Surprise's ``SVD``), and it is what makes the mini-batch gradient an unbiased piece of the full gradient:
``L(train) = sum over batches of L(batch)``. ``mu`` is not penalised.

The gradient (of L exactly as written: no factor 1/2 anywhere)
-------------------------------------------------------------
With the residual ``e_ui = r - r_hat(u, i)``, one rating contributes::

    dL/db_u = -2 e_ui + 2 lambda b_u          dL/dp_u = -2 e_ui q_i + 2 lambda p_u
    dL/db_i = -2 e_ui + 2 lambda b_i          dL/dq_i = -2 e_ui p_u + 2 lambda q_i

and the gradient of ``L(B)`` is the sum of these over the ratings of ``B``: a user (or item) that occurs
several times in a batch accumulates one term per occurrence.

SGD step: ``theta <- theta - learning_rate * dL(B)/dtheta`` for every parameter, all gradients taken at
the parameters *before* the step. For a batch of one rating this is exactly Surprise's update
``b_u += gamma (e - lambda b_u)`` etc. with ``gamma = 2 learning_rate`` (Surprise differentiates
``1/2 L``); our ``learning_rate=0.005`` is Surprise's ``lr_all=0.01``.

Speed
-----
Per-rating SGD is a Python loop over 80,000 ratings per epoch: too slow in numpy. We take mini-batches
(``batch_size=1024`` ratings, reshuffled every epoch) and compute each batch's summed gradient with
array operations. The scatter-add of per-rating terms into per-user rows (users repeat within a batch)
is one sparse product: ``S @ Q_batch`` where ``S[row, j] = -2 e_j`` if rating ``j`` belongs to that row.
This is exact accumulation, the same sums as ``np.add.at`` without its per-element overhead. Because
the ratings of one batch are spread over hundreds of users and items, a batch step is close to
``batch_size`` per-rating steps; with ``batch_size=1`` ``fit`` *is* per-rating SGD (``tests/test_svd.py``
checks it against a textbook loop).

Defaults (tuned on ML-100K): 100 factors, learning_rate 0.005, regularization 0.1, 50 epochs,
init_std 0.05. Their test RMSE and fit time, next to Surprise's SVD, are in the README's tables and
``docs/benchmarks.md``, written by one ``make bench`` run (never copied here by hand).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .base import FactorModel, progress

__all__ = ["SVD", "predict_ratings", "svd_loss", "svd_gradients", "sgd_step"]


# ---- the model as pure functions of (parameters, batch) ---------------------------------------------
def predict_ratings(global_mean, user_bias, item_bias, user_factors, item_factors, users, items,
                    rating_scale=None) -> np.ndarray:
    """``r_hat = mu + b_u + b_i + p_u . q_i`` for each pair ``(users[j], items[j])``.

    Clipped to ``rating_scale = (low, high)`` if given (for reporting); training uses the unclipped
    value, whose gradient is the one above.
    """
    users = np.asarray(users, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64)
    interaction = np.einsum("ij,ij->i", user_factors[users], item_factors[items])
    prediction = global_mean + user_bias[users] + item_bias[items] + interaction
    if rating_scale is not None:
        prediction = np.clip(prediction, rating_scale[0], rating_scale[1])
    return prediction


def svd_loss(global_mean, user_bias, item_bias, user_factors, item_factors, users, items, ratings,
             regularization) -> float:
    """``sum_j (r_j - r_hat_j)^2 + lambda (b_u^2 + b_i^2 + ||p_u||^2 + ||q_i||^2)`` over the ratings ``j``.

    The penalty is counted once per rating (see the module docstring).
    """
    users = np.asarray(users, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64)
    residual = ratings - predict_ratings(global_mean, user_bias, item_bias, user_factors, item_factors,
                                         users, items)
    penalty = (user_bias[users] ** 2 + item_bias[items] ** 2
               + np.einsum("ij,ij->i", user_factors[users], user_factors[users])
               + np.einsum("ij,ij->i", item_factors[items], item_factors[items]))
    return float(np.sum(residual ** 2) + regularization * np.sum(penalty))


def _row_gradients(index, weights, other_factors, bias, factors, regularization):
    """The summed gradient of one side (users or items) for the rows a batch touches.

    ``index[j]`` is the row of rating ``j``, ``weights[j] = -2 e_j`` and ``other_factors[j]`` the factor
    vector of its partner (``q_i`` for a user row, ``p_u`` for an item row). For each distinct row::

        g_bias[row]    = sum_{j: index[j]=row} (-2 e_j)         + 2 lambda n_row b_row
        g_factors[row] = sum_{j: index[j]=row} (-2 e_j) other_j + 2 lambda n_row factors_row

    with ``n_row`` the row's number of ratings in the batch. Returns a dict with the distinct ``rows``,
    their ``counts``, their current values ``bias_rows`` / ``factor_rows`` and the gradients ``g_bias`` /
    ``g_factors``.
    """
    rows, position = np.unique(index, return_inverse=True)
    counts = np.bincount(position, minlength=len(rows)).astype(factors.dtype)
    bias_rows, factor_rows = bias[rows], factors[rows]
    # scatter matrix S (distinct rows x ratings): column j holds -2 e_j in the row of rating j, so that
    # (S @ other)[row] = sum_{j in row} -2 e_j other_j: exact accumulation of repeated rows
    scatter = sp.csc_array((weights, position, np.arange(len(index) + 1)), shape=(len(rows), len(index)))
    g_bias = (np.bincount(position, weights=weights, minlength=len(rows)).astype(bias.dtype)
              + (2 * regularization) * counts * bias_rows)
    g_factors = scatter @ other_factors + (2 * regularization) * counts[:, None] * factor_rows
    return {"rows": rows, "counts": counts, "bias_rows": bias_rows, "factor_rows": factor_rows,
            "g_bias": g_bias, "g_factors": g_factors}


def _batch_gradients(global_mean, user_bias, item_bias, user_factors, item_factors, users, items, ratings,
                     regularization):
    """Residuals and the per-row gradients of both sides for one batch (parameters are not changed)."""
    users = np.asarray(users, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64)
    user_rows_factors = user_factors[users]            # p_u for every rating of the batch
    item_rows_factors = item_factors[items]            # q_i
    prediction = (global_mean + user_bias[users] + item_bias[items]
                  + np.einsum("ij,ij->i", user_rows_factors, item_rows_factors))
    residual = ratings - prediction                    # e_ui
    weights = -2 * residual                            # d(e^2)/d(r_hat)
    user_side = _row_gradients(users, weights, item_rows_factors, user_bias, user_factors, regularization)
    item_side = _row_gradients(items, weights, user_rows_factors, item_bias, item_factors, regularization)
    return residual, user_side, item_side


def svd_gradients(global_mean, user_bias, item_bias, user_factors, item_factors, users, items, ratings,
                  regularization) -> dict[str, np.ndarray]:
    """The gradient of :func:`svd_loss` w.r.t. every learned parameter, as full-size arrays.

    Returns ``{"user_bias", "item_bias", "user_factors", "item_factors"}`` (same shapes as the parameters;
    rows not in the batch are zero). Terms of repeated users / items accumulate::

        dL/db_u = sum_{i: (u,i) in B} (-2 e_ui + 2 lambda b_u)
        dL/dp_u = sum_{i: (u,i) in B} (-2 e_ui q_i + 2 lambda p_u)     (items alike)
    """
    _, user_side, item_side = _batch_gradients(global_mean, user_bias, item_bias, user_factors, item_factors,
                                               users, items, ratings, regularization)
    gradients = {"user_bias": np.zeros_like(user_bias), "item_bias": np.zeros_like(item_bias),
                 "user_factors": np.zeros_like(user_factors), "item_factors": np.zeros_like(item_factors)}
    for side, name in ((user_side, "user"), (item_side, "item")):
        gradients[f"{name}_bias"][side["rows"]] = side["g_bias"]
        gradients[f"{name}_factors"][side["rows"]] = side["g_factors"]
    return gradients


def sgd_step(global_mean, user_bias, item_bias, user_factors, item_factors, users, items, ratings,
             learning_rate, regularization) -> float:
    """One SGD step on a batch, **in place**: ``theta <- theta - learning_rate * dL(batch)/dtheta``.

    All four gradients are taken at the parameters before the step (a Jacobi step over the batch), only
    the rows the batch touches are read and written. Returns the batch loss ``L(batch)`` *before* the
    step (summed, as :func:`svd_loss`), which the training loop accumulates into the epoch's loss.
    """
    residual, user_side, item_side = _batch_gradients(
        global_mean, user_bias, item_bias, user_factors, item_factors, users, items, ratings, regularization)
    # the loss before the step; each row's penalty counted once per rating it has in the batch
    loss = float(residual @ residual)
    for side in (user_side, item_side):
        loss += regularization * float(side["counts"] @ (side["bias_rows"] ** 2 + np.einsum(
            "ij,ij->i", side["factor_rows"], side["factor_rows"])))
    # theta <- theta - learning_rate * gradient, on the touched rows only (the rows are distinct)
    for side, bias, factors in ((user_side, user_bias, user_factors), (item_side, item_bias, item_factors)):
        bias[side["rows"]] = side["bias_rows"] - learning_rate * side["g_bias"]
        factors[side["rows"]] = side["factor_rows"] - learning_rate * side["g_factors"]
    return loss


# ---- the estimator ------------------------------------------------------------------------------------
def predict_fitted(model, users, items) -> np.ndarray:
    """:func:`predict_ratings` with a fitted biased-MF model's arrays (``global_mean``, ``user_bias``,
    ``item_bias``, ``user_factors``, ``item_factors``, ``rating_scale``), for index arrays of any broadcastable
    shapes; an index outside the fitted users / items raises ``IndexError``.  ``SVD`` and ``ExplicitALS``
    (same model, other optimiser) predict with it."""
    users_arr = np.asarray(users, dtype=np.int64)
    items_arr = np.asarray(items, dtype=np.int64)
    for name, index, size in (("user", users_arr, len(model.user_bias)), ("item", items_arr, len(model.item_bias))):
        if index.size and (index.min() < 0 or index.max() >= size):
            raise IndexError(f"{name} index out of range [0, {size}): the model was fitted on {size} {name}s")
    prediction = predict_ratings(model.global_mean, model.user_bias, model.item_bias, model.user_factors,
                                 model.item_factors, np.atleast_1d(users_arr).ravel(),
                                 np.atleast_1d(items_arr).ravel(), rating_scale=model.rating_scale)
    return prediction.astype(np.float32, copy=False).reshape(np.broadcast(users_arr, items_arr).shape)


class SVD(FactorModel):
    """Biased matrix factorisation of explicit ratings, ``r_hat = mu + b_u + b_i + p_u . q_i``, by SGD.

    Parameters
    ----------
    factors : int
        Latent dimension ``k``.
    learning_rate : float
        SGD step size on the loss of the module docstring (no 1/2: Surprise's ``lr_all`` is twice it).
    regularization : float
        ``lambda``, applied to biases and factors, counted once per rating.
    iterations : int
        Epochs: passes over the shuffled training ratings.
    init_std : float
        Factors start as ``N(0, init_std^2)``; biases start at 0; ``mu`` is the training mean.
    batch_size : int
        Ratings per SGD step (their gradients are summed, repeated users / items accumulate).
    random_state : int, numpy Generator or None
        Seeds the initialisation and the per-epoch shuffles.
    show_progress : bool
        A tqdm bar over epochs.
    rating_scale : (float, float)
        ``predict`` clips to this range.

    Attributes (after ``fit``)
    --------------------------
    global_mean : float
    user_bias, item_bias : float32 arrays, ``(n_users,)`` and ``(n_items,)``
    user_factors, item_factors : float32 arrays, ``(n_users, k)`` and ``(n_items, k)``
    loss_history_ : list of float, the training loss per epoch divided by the number of ratings
        (accumulated over the epoch's batches, each measured before its step)

    ``recommend`` ranks by predicted rating: the base class scores ``p_u . q_i + b_i``; ``mu + b_u`` is the
    same for every item of a user, so the order is that of ``r_hat``, and we add it back so that the
    returned scores *are* the (unclipped) predicted ratings. ``similar_items`` is the cosine of
    ``item_factors`` (biases left out: they say how liked an item is, not what it is like).
    """

    def __init__(self, factors: int = 100, learning_rate: float = 0.005, regularization: float = 0.1,
                 iterations: int = 50, init_std: float = 0.05, batch_size: int = 1024, random_state=None,
                 show_progress: bool = False, rating_scale: tuple[float, float] = (1.0, 5.0)):
        self.factors = factors
        self.learning_rate = learning_rate
        self.regularization = regularization
        self.iterations = iterations
        self.init_std = init_std
        self.batch_size = batch_size
        self.random_state = random_state
        self.show_progress = show_progress
        self.rating_scale = rating_scale

    _fitted_attributes = ("global_mean", "user_bias", "item_bias", "user_factors", "item_factors")
    global_mean: float | None = None
    user_bias: np.ndarray | None = None

    # ---- training ------------------------------------------------------------------------------------
    def fit(self, users, items=None, ratings=None, n_users: int | None = None, n_items: int | None = None):
        """Learn from ratings ``(users[j], items[j], ratings[j])``; returns ``self``.

        ``users``, ``items`` are integer indices (0-based), ``ratings`` floats. ``n_users`` / ``n_items``
        default to the largest index + 1. A users x items sparse matrix of ratings may be passed alone
        instead (``model.fit(dataset.explicit())``): its stored entries are the ratings, its shape gives
        ``n_users`` / ``n_items``.
        """
        shape = users.shape if sp.issparse(users) else (None, None)
        users, items, ratings = _triples(users, items, ratings)
        n_users = int(n_users if n_users is not None else shape[0] if shape[0] is not None else users.max() + 1)
        n_items = int(n_items if n_items is not None else shape[1] if shape[1] is not None else items.max() + 1)
        if users.max() >= n_users or items.max() >= n_items:
            raise ValueError(f"indices exceed n_users={n_users} / n_items={n_items}")
        if self.batch_size < 1 or self.iterations < 0 or self.factors < 1:
            raise ValueError("batch_size and factors must be >= 1, iterations >= 0")
        rng = np.random.default_rng(self.random_state)

        self.global_mean = float(ratings.mean())
        self.user_bias = np.zeros(n_users, dtype=np.float32)
        self._init_factors(rng, n_users, n_items, self.init_std, item_bias=True)
        self.loss_history_ = []

        n_ratings = len(ratings)
        lr, reg = float(self.learning_rate), float(self.regularization)
        for _ in progress(range(self.iterations), self.show_progress, desc="SVD", unit="epoch"):
            order = rng.permutation(n_ratings)
            epoch_users, epoch_items, epoch_ratings = users[order], items[order], ratings[order]
            epoch_loss = 0.0
            for start in range(0, n_ratings, self.batch_size):
                batch = slice(start, start + self.batch_size)
                epoch_loss += sgd_step(self.global_mean, self.user_bias, self.item_bias, self.user_factors,
                                       self.item_factors, epoch_users[batch], epoch_items[batch],
                                       epoch_ratings[batch], lr, reg)
            self.loss_history_.append(epoch_loss / n_ratings)
        return self

    # ---- prediction ----------------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if self.user_factors is None or self.global_mean is None:
            raise RuntimeError("SVD is not fitted yet: call fit(users, items, ratings) first")

    def predict(self, users, items) -> np.ndarray:
        """Predicted ratings ``mu + b_u + b_i + p_u . q_i``, clipped to ``rating_scale`` (float32 array;
        a scalar pair gives a 0-d result)."""
        self._check_fitted()
        return predict_fitted(self, users, items)

    def score(self, userid, itemids=None) -> np.ndarray:
        """Unclipped predicted ratings of user(s) ``userid`` for all items (or ``itemids``)."""
        scores = super().score(userid, itemids)
        return scores + self._user_offset(userid)

    def recommend(self, userid, user_items=None, N: int = 10, filter_already_liked_items: bool = True):
        """Top-``N`` items by predicted rating, as ``(ids, scores)``; scores are unclipped predicted
        ratings (see the class docstring). Same call as the implicit-style models."""
        ids, scores = super().recommend(userid, user_items, N=N,
                                        filter_already_liked_items=filter_already_liked_items)
        return ids, scores + self._user_offset(userid)

    def _user_offset(self, userid):
        offset = self.global_mean + self.user_bias[np.asarray(userid, dtype=np.int64)]
        return offset if np.ndim(userid) == 0 else offset[:, None]


def _triples(users, items, ratings):
    """``(users int64, items int64, ratings float32)`` from three arrays or one sparse rating matrix."""
    if items is None and ratings is None:
        if not sp.issparse(users):
            raise TypeError("fit(users, items, ratings) needs three arrays, or one sparse users x items "
                            "matrix of ratings")
        coo = sp.coo_matrix(users)
        users, items, ratings = coo.row, coo.col, coo.data
    elif items is None or ratings is None:
        raise TypeError("fit(users, items, ratings): pass all three arrays")
    users = np.asarray(users, dtype=np.int64).ravel()
    items = np.asarray(items, dtype=np.int64).ravel()
    ratings = np.asarray(ratings, dtype=np.float32).ravel()
    if not (len(users) == len(items) == len(ratings)):
        raise ValueError(f"users, items and ratings differ in length: {len(users)}, {len(items)}, {len(ratings)}")
    if len(ratings) == 0:
        raise ValueError("no ratings to fit")
    if users.min() < 0 or items.min() < 0:
        raise ValueError("user and item indices must be >= 0")
    if not np.all(np.isfinite(ratings)):
        raise ValueError("ratings contain NaN or infinite values")
    return users, items, ratings
