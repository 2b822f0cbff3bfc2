"""The model object the course notebooks wrap around the arrays a student's ``fit_*`` function returns.

The notebooks train with plain functions (``fit_als``, ``fit_bpr``, ``fit_warp``) that return numpy
arrays, while the course's tools -- :func:`mflib.evaluation.evaluate_ranking`, :mod:`autograder.checks`,
:func:`mflib.display.similar_items_table` -- take a *model* with implicit 0.7's API. :class:`LearnedFactors`
is that model, and the only one the notebooks need::

    user_factors, item_factors, item_bias, loss_history = fit_bpr(train)
    model = LearnedFactors(user_factors, item_factors, item_bias)
    ids, scores = model.recommend(0, train[0], N=10)

* ``recommend(userid, user_items, N=10, filter_already_liked_items=True)`` returns the ``N`` items of
  highest score

      score(u, i) = p_u · q_i + b_i      (b_i only when ``item_bias`` is given)

  that are not stored in ``user_items`` (one row per requested user, as in implicit 0.7), best first.
* ``similar_items(itemid, N=10)`` returns the ``N`` items of highest cosine similarity
  ``q_i · q_j / (||q_i|| ||q_j||)`` of the item factors, the query item left out (as everywhere in mflib).
  The biases are not used: they say how popular a film is, not what it is like.

Both are exact (:mod:`mflib.retrieval`). Assignment 02 teaches them: there the student's own functions
plug in through ``recommend=`` and ``similar_items=`` and the wrapper only adapts the API.

This is provided course code, not a solution: it ships in the student bundle.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from . import retrieval

__all__ = ["LearnedFactors"]


class LearnedFactors:
    """Learned factor arrays with implicit 0.7's ``recommend`` / ``similar_items`` API.

    Parameters
    ----------
    user_factors : (n_users, k) array
        ``p_u``, one row per user (kept as given: no copy, no change of dtype).
    item_factors : (n_items, k) array
        ``q_i``, one row per item.
    item_bias : (n_items,) array or None
        ``b_i``, added to every user's score of item ``i``; None for a model without biases.
    recommend : callable, optional
        ``recommend(user_factors, item_factors, users, seen, N) -> (ids, scores)``, two arrays of shape
        ``(len(users), N)``, where ``seen`` is a CSR matrix with one row per entry of ``users``. Replaces
        the exact inner-product search (assignment 02: the student's function). Only for models without
        ``item_bias``.
    similar_items : callable, optional
        ``similar_items(item_factors, itemid, N) -> (ids, scores)`` for ONE item id (1-D arrays).
        Replaces the exact cosine search; an array of ids is answered one id at a time.
    """

    def __init__(self, user_factors, item_factors, item_bias=None, *, recommend=None, similar_items=None):
        user_factors, item_factors = np.asarray(user_factors), np.asarray(item_factors)
        if user_factors.ndim != 2 or item_factors.ndim != 2:
            raise ValueError(f"user_factors and item_factors must be 2-D (rows x factors); got shapes "
                             f"{user_factors.shape} and {item_factors.shape}")
        if user_factors.shape[1] != item_factors.shape[1]:
            raise ValueError(f"user_factors has {user_factors.shape[1]} columns but item_factors has "
                             f"{item_factors.shape[1]}: both need one column per latent factor")
        if item_bias is not None:
            item_bias = np.asarray(item_bias)
            if item_bias.shape != (item_factors.shape[0],):
                raise ValueError(f"item_bias has shape {item_bias.shape}; expected one bias per item: "
                                 f"({item_factors.shape[0]},)")
            if recommend is not None:
                raise ValueError("a recommend function plugs in only for a model without item_bias: its "
                                 "signature recommend(user_factors, item_factors, users, seen, N) has no bias")
        self.user_factors, self.item_factors, self.item_bias = user_factors, item_factors, item_bias
        self._recommend, self._similar_items = recommend, similar_items

    @property
    def n_users(self) -> int:
        return self.user_factors.shape[0]

    @property
    def n_items(self) -> int:
        return self.item_factors.shape[0]

    def __repr__(self) -> str:
        bias = "with" if self.item_bias is not None else "without"
        return (f"LearnedFactors({self.n_users} users, {self.n_items} items, {self.user_factors.shape[1]} "
                f"factors, {self.user_factors.dtype}, {bias} item biases)")

    # ---- recommend ---------------------------------------------------------------------------------
    def recommend(self, userid, user_items=None, N: int = 10, filter_already_liked_items: bool = True):
        """Top-``N`` unseen items of ``userid`` (an id or an array of ids) by ``p_u · q_i (+ b_i)``, best
        first, as ``(ids, scores)``: 1-D arrays for one id, ``(len(userid), N)`` arrays for an array.

        ``user_items`` holds one row per requested user (``X[userid]``); with
        ``filter_already_liked_items`` its stored items are never returned.
        """
        scalar = np.ndim(userid) == 0
        users = np.atleast_1d(np.asarray(userid, dtype=np.int64))
        if filter_already_liked_items:
            if user_items is None:
                raise ValueError("user_items is required when filter_already_liked_items=True: pass the "
                                 "users' rows of the training matrix, e.g. user_items=X[userid]")
            seen = sp.csr_matrix(user_items)
            if seen.shape != (len(users), self.n_items):
                raise ValueError(f"user_items has shape {seen.shape}; expected one row per requested user "
                                 f"and one column per item, ({len(users)}, {self.n_items}): pass X[userid], "
                                 "not the whole matrix (implicit 0.7 API)")
        else:
            seen = sp.csr_matrix((len(users), self.n_items))
        if self._recommend is None:
            ids, scores = retrieval.recommend(self._user_vectors(users), self._item_vectors(), seen, N=N)
        else:
            ids, scores = self._recommend(self.user_factors, self.item_factors, users, seen, N=N)
            ids, scores = np.asarray(ids), np.asarray(scores)
            if ids.shape != (len(users), N) or scores.shape != (len(users), N):
                raise ValueError(f"your recommend(user_factors, item_factors, users, seen, N) must return two "
                                 f"arrays of shape (len(users), N) = ({len(users)}, {N}); it returned ids of "
                                 f"shape {ids.shape} and scores of shape {scores.shape}")
        return (ids[0], scores[0]) if scalar else (ids, scores)

    def _user_vectors(self, users: np.ndarray) -> np.ndarray:
        """``p_u``, with a constant 1 appended when there are biases: ``[p_u, 1] · [q_i, b_i] = x_ui``."""
        vectors = self.user_factors[users]
        if self.item_bias is None:
            return vectors
        return np.hstack([vectors, np.ones((len(vectors), 1), dtype=vectors.dtype)])

    def _item_vectors(self) -> np.ndarray:
        if self.item_bias is None:
            return self.item_factors
        return np.hstack([self.item_factors, self.item_bias[:, None].astype(self.item_factors.dtype)])

    # ---- similar items -------------------------------------------------------------------------------
    def similar_items(self, itemid, N: int = 10):
        """The ``N`` items most similar to ``itemid`` (an id or an array of ids) by cosine of the item
        factors, the query left out, best first: 1-D ``(ids, scores)`` for one id, 2-D for an array."""
        if self._similar_items is None:
            ids, scores = retrieval.similar_items(self.item_factors, itemid, N=N)
            return (ids[0], scores[0]) if np.ndim(itemid) == 0 else (ids, scores)
        if np.ndim(itemid) == 0:
            return self._similar_items(self.item_factors, int(itemid), N=N)
        results = [self._similar_items(self.item_factors, int(item), N=N) for item in np.ravel(itemid)]
        return (np.array([np.asarray(ids) for ids, _ in results]),
                np.array([np.asarray(scores) for _, scores in results]))
