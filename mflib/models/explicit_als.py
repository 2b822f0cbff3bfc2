"""Biased matrix factorisation of explicit ratings trained by Alternating Least Squares.

The model and the loss are those of :mod:`mflib.models.svd`::

    r_hat(u, i) = mu + b_u + b_i + p_u . q_i

    L = sum_{(u,i,r) observed} [ (r - r_hat(u,i))^2 + lambda (b_u^2 + b_i^2 + ||p_u||^2 + ||q_i||^2) ]

(``mu`` is the mean training rating, fixed; the penalty is counted once per rating, so a user with
``n_u`` ratings pays ``lambda n_u (b_u^2 + ||p_u||^2)``: the "weighted-lambda" regularisation of
Zhou et al., *Large-scale Parallel Collaborative Filtering for the Netflix Prize*, 2008). Only the
optimiser differs: instead of SGD, ALS alternates two exact minimisations.

One side in closed form
-----------------------
With the items' ``(b_i, q_i)`` fixed, the loss splits into one ridge regression per user. Stack the
user's unknowns ``z_u = (b_u, p_u)`` (``k + 1`` numbers) and give every rated item the row
``f_i = (1, q_i)`` and the target ``t_ui = r_ui - mu - b_i`` (what is left to explain once the fixed
terms are taken out)::

    min_z  sum_{i in I(u)} (t_ui - f_i . z)^2 + lambda n_u ||z||^2

Setting the gradient to zero gives the normal equations, one ``(k+1) x (k+1)`` system per user::

    (F_u^T F_u + lambda n_u I) z_u = F_u^T t_u,      F_u^T F_u = sum_{i in I(u)} f_i f_i^T,  F_u^T t_u = sum_i t_ui f_i

The item half-step is the same with the roles swapped (``f_u = (1, p_u)``, ``t_ui = r_ui - mu - b_u``).
:func:`solve_biased` solves one side for every row at once (rows grouped by their number of ratings,
batched products and one batched ``np.linalg.solve`` per group: no Python loop over users). A row
without ratings gets ``b = 0, p = 0``. Every half-step minimises the loss exactly in its half of the
parameters, so ``loss_history_`` never increases: no learning rate, no epochs of noisy steps.

Cost per iteration: ``O(nnz k^2 + (n_users + n_items) k^3)``, against ``O(nnz k)`` for one SGD epoch;
ALS needs far fewer iterations. ``benchmarks/beyond.py`` measures both on the course split.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ._rowsolve import solve_rows
from .base import FactorModel, progress
from .svd import _triples, predict_fitted, svd_loss

__all__ = ["ExplicitALS", "fit_explicit_als", "solve_biased", "explicit_als_loss", "ratings_matrix"]


def ratings_matrix(users, items, ratings, n_users: int, n_items: int) -> sp.csr_matrix:
    """The ``n_users x n_items`` CSR matrix of the ratings, one stored entry per rating (a repeated
    ``(user, item)`` pair stays two entries, as it is two terms of the loss), float64."""
    users = np.asarray(users, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64)
    order = np.lexsort((items, users))
    indptr = np.concatenate([[0], np.cumsum(np.bincount(users, minlength=n_users))])
    return sp.csr_matrix((np.asarray(ratings, dtype=np.float64)[order], items[order], indptr),
                         shape=(n_users, n_items))


def explicit_als_loss(global_mean, user_bias, item_bias, user_factors, item_factors, users, items, ratings,
                      regularization) -> float:
    """The loss ALS minimises; it is :func:`mflib.models.svd.svd_loss` (penalty once per rating)."""
    return svd_loss(global_mean, user_bias, item_bias, user_factors, item_factors, users, items, ratings,
                    regularization)


def solve_biased(global_mean, fixed_bias, fixed_factors, ratings, regularization) -> tuple[np.ndarray, np.ndarray]:
    """The exact bias and factors of every row of ``ratings`` with the other side fixed.

    ``ratings`` is a CSR matrix, rows = the side being solved (users x items for the user step,
    ``.T.tocsr()`` for the item step), stored entries = the ratings. ``fixed_bias`` (``n_columns``) and
    ``fixed_factors`` (``n_columns x k``) belong to the columns. For every row ``u``, with
    ``f_j = (1, q_j)``, ``t_uj = r_uj - mu - b_j`` and ``n_u`` its number of ratings::

        (sum_j f_j f_j^T + lambda n_u I) (b_u, p_u) = sum_j t_uj f_j

    Returns ``(bias (n_rows,), factors (n_rows, k))`` in float64; rows without ratings get zeros.
    """
    matrix = sp.csr_matrix(ratings)
    fixed_bias = np.asarray(fixed_bias, dtype=np.float64).ravel()
    fixed_factors = np.asarray(fixed_factors, dtype=np.float64)
    if fixed_factors.ndim != 2 or len(fixed_bias) != fixed_factors.shape[0]:
        raise ValueError(f"fixed_bias {fixed_bias.shape} and fixed_factors {fixed_factors.shape} must describe "
                         "the same columns: shapes (n_columns,) and (n_columns, k)")
    if regularization < 0:
        raise ValueError("regularization must be >= 0")
    augmented = np.hstack([np.ones((len(fixed_bias), 1)), fixed_factors])   # f_j = (1, q_j)
    targets = matrix.data.astype(np.float64) - global_mean - fixed_bias[matrix.indices]
    counts = np.diff(matrix.indptr).astype(np.float64)
    solution = solve_rows(matrix, augmented, np.ones(matrix.nnz), targets, ridge=regularization * counts)
    return solution[:, 0], solution[:, 1:]


def fit_explicit_als(users, items, ratings, n_users: int, n_items: int, factors: int = 50,
                     regularization: float = 0.12, iterations: int = 10, random_state=None, init_std: float = 0.1,
                     show_progress: bool = False):
    """Alternating exact solves from ratings ``(users[j], items[j], ratings[j])``; the training loop of
    :class:`ExplicitALS` as a pure function.

    ``mu`` = the mean rating (fixed); biases and user factors start at 0, item factors at
    ``default_rng(random_state).normal(0, init_std, (n_items, factors))``. Every iteration solves all users
    (:func:`solve_biased`, items fixed), then all items from the new users, and records
    :func:`explicit_als_loss` divided by the number of ratings. Returns ``(global_mean, user_bias, item_bias,
    user_factors, item_factors, loss_history)`` in float64.
    """
    users, items, ratings = _triples(users, items, ratings)
    if users.max() >= n_users or items.max() >= n_items:
        raise ValueError(f"indices exceed n_users={n_users} / n_items={n_items}")
    if int(factors) < 1 or int(iterations) < 0:
        raise ValueError("factors must be >= 1 and iterations >= 0")
    if regularization <= 0:
        raise ValueError("regularization must be > 0: a user with fewer ratings than factors + 1 has a "
                         "singular system without it")
    rng = np.random.default_rng(random_state)
    ratings = ratings.astype(np.float64)
    user_matrix = ratings_matrix(users, items, ratings, n_users, n_items)
    item_matrix = ratings_matrix(items, users, ratings, n_items, n_users)
    mu = float(ratings.mean())
    user_bias, item_bias = np.zeros(n_users), np.zeros(n_items)
    user_factors = np.zeros((n_users, factors))
    item_factors = rng.normal(0.0, init_std, (n_items, factors))
    reg = float(regularization)
    history = []
    for _ in progress(range(iterations), show_progress, desc="ExplicitALS", unit="it"):
        user_bias, user_factors = solve_biased(mu, item_bias, item_factors, user_matrix, reg)
        item_bias, item_factors = solve_biased(mu, user_bias, user_factors, item_matrix, reg)
        history.append(svd_loss(mu, user_bias, item_bias, user_factors, item_factors, users, items, ratings, reg)
                       / len(ratings))
    return mu, user_bias, item_bias, user_factors, item_factors, history


class ExplicitALS(FactorModel):
    """Biased MF of explicit ratings, ``r_hat = mu + b_u + b_i + p_u . q_i``, by alternating exact solves.

    Same model, loss and API as :class:`mflib.SVD` (``fit(users, items, ratings)``, ``predict``,
    ``recommend``); the optimiser is ALS (module docstring) instead of SGD.

    Parameters
    ----------
    factors : int
        Latent dimension ``k``.
    regularization : float
        ``lambda``, on biases and factors, counted once per rating (as SVD's).
    iterations : int
        Sweeps: all users, then all items.
    init_std : float
        Item factors start as ``N(0, init_std^2)`` (the first half-step solves the users from them);
        biases start at 0; ``mu`` is the training mean.
    random_state : int, numpy Generator or None
        Seeds the initial factors (the solves themselves are deterministic).
    show_progress : bool
        A tqdm bar over iterations.
    rating_scale : (float, float)
        ``predict`` clips to this range.

    Attributes (after ``fit``)
    --------------------------
    global_mean : float
    user_bias, item_bias : float32 arrays ``(n_users,)``, ``(n_items,)``
    user_factors, item_factors : float32 arrays ``(n_users, k)``, ``(n_items, k)``
    loss_history_ : list of float, the training loss after every iteration divided by the number of
        ratings (never increases)

    The defaults were tuned on ML-100K's explicit split; ``benchmarks/beyond.py`` measures them against SGD.
    """

    _fitted_attributes = ("global_mean", "user_bias", "item_bias", "user_factors", "item_factors")
    global_mean: float | None = None
    user_bias: np.ndarray | None = None

    def __init__(self, factors: int = 50, regularization: float = 0.12, iterations: int = 10,
                 init_std: float = 0.1, random_state=None, show_progress: bool = False,
                 rating_scale: tuple[float, float] = (1.0, 5.0)):
        self.factors = factors
        self.regularization = regularization
        self.iterations = iterations
        self.init_std = init_std
        self.random_state = random_state
        self.show_progress = show_progress
        self.rating_scale = rating_scale

    def fit(self, users, items=None, ratings=None, n_users: int | None = None, n_items: int | None = None):
        """Learn from ratings ``(users[j], items[j], ratings[j])``, or one sparse users x items rating
        matrix; ``n_users`` / ``n_items`` default to the largest index + 1 (or the matrix's shape).
        Trains with :func:`fit_explicit_als`; returns ``self``."""
        shape = users.shape if sp.issparse(users) else (None, None)
        users, items, ratings = _triples(users, items, ratings)
        n_users = int(n_users if n_users is not None else shape[0] if shape[0] is not None else users.max() + 1)
        n_items = int(n_items if n_items is not None else shape[1] if shape[1] is not None else items.max() + 1)
        mu, user_bias, item_bias, user_factors, item_factors, history = fit_explicit_als(
            users, items, ratings, n_users, n_items, self.factors, self.regularization, self.iterations,
            self.random_state, self.init_std, self.show_progress)
        self.global_mean, self.loss_history_ = mu, history
        self.user_bias, self.item_bias = user_bias.astype(np.float32), item_bias.astype(np.float32)
        self.user_factors = user_factors.astype(np.float32)
        self.item_factors = item_factors.astype(np.float32)
        return self

    # ---- prediction (as SVD) -------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if self.user_factors is None or self.global_mean is None:
            raise RuntimeError("ExplicitALS is not fitted yet: call fit(users, items, ratings) first")

    def predict(self, users, items) -> np.ndarray:
        """Predicted ratings ``mu + b_u + b_i + p_u . q_i``, clipped to ``rating_scale`` (float32; a scalar
        pair gives a 0-d result)."""
        self._check_fitted()
        return predict_fitted(self, users, items)

    def score(self, userid, itemids=None) -> np.ndarray:
        """Unclipped predicted ratings of user(s) ``userid`` for all items (or ``itemids``)."""
        return super().score(userid, itemids) + self._user_offset(userid)

    def recommend(self, userid, user_items=None, N: int = 10, filter_already_liked_items: bool = True):
        """Top-``N`` items by predicted rating, ``(ids, scores)``; scores are unclipped predicted ratings."""
        ids, scores = super().recommend(userid, user_items, N=N,
                                        filter_already_liked_items=filter_already_liked_items)
        return ids, scores + self._user_offset(userid)

    def _user_offset(self, userid):
        offset = self.global_mean + self.user_bias[np.asarray(userid, dtype=np.int64)]
        return offset if np.ndim(userid) == 0 else offset[:, None]
