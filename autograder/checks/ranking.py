"""Checks of a model's top-N lists: ``check_recommend`` (the implicit 0.7 ``recommend`` API, the N
highest-scoring unseen items by the model's own scores) and ``check_ranking`` (NDCG@k with the course
protocol, against the popularity baseline and optionally a reference).

Popularity and :mod:`mflib.evaluation` are imported inside the functions; mflib's reference models are
never imported (the student bundle ships without them).
"""
from __future__ import annotations

import math

from ..feedback import CheckFailure, _np, as_float_array, fmt
from ._common import _call, _fail, _is_sparse, _ok
from .training import _factor_problem

__all__ = ["check_recommend", "check_ranking"]

def _user_row_items(user_items, user) -> set:
    row = user_items[user]
    if _is_sparse(row):
        return set(int(i) for i in row.tocsr().indices)
    return set(int(i) for i in _np.flatnonzero(_np.asarray(row).ravel()))


def _validate_list(ids, scores, n_items: int, N: int, what: str):
    """Common checks of one (ids, scores) list; returns (ids int64, scores float64) or fails."""
    ids_array = _np.asarray(ids)
    scores_array = as_float_array(scores)
    if ids_array.ndim != 1:
        _fail(f"{what}: for a single id, return 1-D arrays (got ids of shape {ids_array.shape}): "
              "e.g. return ids[0], scores[0]")
    if scores_array.shape != ids_array.shape:
        _fail(f"{what}: ids has shape {ids_array.shape} but scores {scores_array.shape}; one score per id")
    if len(ids_array) != N:
        _fail(f"{what} returned {len(ids_array)} items, expected N={N}")
    if not (_np.issubdtype(ids_array.dtype, _np.integer)):
        if bool(_np.all(_np.isfinite(as_float_array(ids_array)))) and bool(
                _np.all(as_float_array(ids_array) == _np.round(as_float_array(ids_array)))):
            ids_array = ids_array.astype(_np.int64)
        else:
            _fail(f"{what}: ids must be integer item indices, got dtype {ids_array.dtype} (did you return "
                  "the scores in place of the ids?)")
    ids_array = ids_array.astype(_np.int64)
    if len(ids_array) and (int(_np.min(ids_array)) < 0 or int(_np.max(ids_array)) >= n_items):
        _fail(f"{what}: ids must be item indices in [0, {n_items}), got {int(_np.min(ids_array))}.."
              f"{int(_np.max(ids_array))}")
    unique, counts = _np.unique(ids_array, return_counts=True)
    if len(unique) < len(ids_array):
        _fail(f"{what} returned item {int(unique[_np.argmax(counts)])} {int(_np.max(counts))} times: each "
              "item at most once")
    if not bool(_np.all(_np.isfinite(scores_array))):
        _fail(f"{what}: scores contain NaN/inf (a filtered item set to -inf got into the top N? fewer "
              "candidates than N?)")
    steps = _np.diff(scores_array)
    if len(steps) and bool(_np.any(steps > 1e-6 * max(1.0, float(_np.max(_np.abs(scores_array)))))):
        if bool(_np.all(steps >= 0)):
            _fail(f"{what}: scores are sorted worst first: sort descending (np.argsort(-scores)) and take "
                  "the first N")
        _fail(f"{what}: scores are not sorted best first: sort by descending score (np.argsort(-scores))")
    return ids_array, scores_array


def _pick_users(user_items, n_users: int, count: int = 5) -> list[int]:
    counts = _np.diff(user_items.tocsr().indptr) if _is_sparse(user_items) else _np.sum(
        _np.asarray(user_items) != 0, axis=1)
    picks = [0, int(_np.argmax(counts))]
    active = _np.flatnonzero(counts > 0)
    if len(active):
        picks.append(int(active[_np.argsort(counts[active], kind="stable")[0]]))  # lightest active user
    picks += [n_users // 2, n_users - 1]
    out = []
    for u in picks:
        if 0 <= u < n_users and u not in out:
            out.append(u)
    return out[:count]


def _model_scores(model, users, what: str):
    """``p_u · q_i (+ b_i)`` for every user in ``users`` and every item, an array of shape
    ``(len(users), n_items)``, from the model's ``user_factors``, ``item_factors`` and ``item_bias`` (when
    it has one). Fails the check, never returns None: without these scores the top-N test cannot run."""
    users = _np.asarray(users, dtype=_np.int64)
    try:
        scores = as_float_array(model.user_factors)[users] @ as_float_array(model.item_factors).T
        bias = getattr(model, "item_bias", None)
        if bias is not None:
            scores = scores + as_float_array(bias).reshape(1, -1)
    except (AttributeError, TypeError, ValueError, IndexError) as error:
        shapes = ", ".join(f"{name} {_np.shape(getattr(model, name, None))}"
                           for name in ("user_factors", "item_factors", "item_bias"))
        raise CheckFailure(f"{what}: cannot check that recommend returns the highest-scoring items: the "
                           f"model's scores p_u · q_i (+ b_i) cannot be computed from its arrays ({shapes}): "
                           f"{type(error).__name__}: {error}") from error
    return scores


def _ranked_users(n_users: int, picks: list[int], count: int) -> list[int]:
    """``picks`` plus about ``count`` users spread evenly over all ids, sorted."""
    count = max(1, min(count, n_users))
    spread = (_np.arange(count, dtype=_np.int64) * (n_users - 1)) // max(count - 1, 1)
    return sorted(set(int(u) for u in spread) | set(picks))


def _top_n_problem(users, ids, scores, full, seen, N: int, has_bias: bool) -> str | None:
    """How the lists ``ids`` / ``scores`` (one row per user) differ from the ``N`` highest-scoring unseen
    items by the model's scores ``full``, or None. ``seen``: boolean (users × items) mask of user_items."""
    rows = _np.arange(len(users))[:, None]
    own = full[rows, ids]
    bias = " + b_i" if has_bias else ""
    off = _np.abs(own - scores) > 1e-3 * (1 + _np.abs(own))
    if bool(_np.any(off)):
        row, col = (int(i[0]) for i in _np.nonzero(off))
        return (f"recommend(userid={users[row]}) returned scores that are not the model's scores "
                f"p_u · q_i{bias} of the returned items: item {int(ids[row, col])} has score "
                f"{fmt(scores[row, col])}, but user_factors and item_factors give {fmt(own[row, col])} — "
                "return, for each item, the score you ranked it by")
    candidates = ~seen
    candidates[rows, ids] = False
    left = _np.where(candidates, full, -_np.inf)
    best_left = _np.argmax(left, axis=1)
    best_score = left[rows[:, 0], best_left]
    worst = _np.argmin(own, axis=1)
    worst_score = own[rows[:, 0], worst]
    beaten = _np.flatnonzero(best_score > worst_score + 1e-4 * (1 + _np.abs(worst_score)))
    if not len(beaten):
        return None
    row = int(beaten[0])
    better, dropped = int(best_left[row]), int(ids[row, worst[row]])
    message = (f"recommend(userid={users[row]}) returned items that are not the {N} highest-scoring unseen "
               f"items: item {better} (score {fmt(full[row, better])}) was left out while item {dropped} "
               f"(score {fmt(worst_score[row])}) was returned")
    unseen = _np.where(seen[row], -_np.inf, full[row])
    top = set(int(i) for i in _np.argsort(-unseen, kind="stable")[:N + 1])
    if set(int(i) for i in ids[row]) <= top:
        return (message + f" — your list is {N} items out of the top {N + 1}: np.argpartition(-scores, kth) "
                "puts the item of rank kth (from 0) at position kth and better ones before it, in no particular "
                f"order, so the first {N} positions hold the top {N} only with kth = N - 1")
    return (message + " — set the scores of the items in user_items to -inf, then take the N largest "
            "(np.argpartition(-scores, N - 1)[:N]) and sort them, best first")


def check_recommend(model, user_items, n_users=None, *, N: int = 10, n_ranked: int = 100):
    """``model.recommend(userid, user_items[userid], N)`` follows the implicit 0.7 API and returns the top N.

    * For a few users, one scalar call each: 1-D ``(ids, scores)``, ``N`` distinct valid items, best first,
      none already in ``user_items`` (the user's training row).
    * One batch call with an array of about ``n_ranked`` user ids (those users included): ``(n, N)``
      arrays, the same lists as the scalar calls, and on every row the ``N`` highest-scoring unseen items
      by the model's own scores ``p_u · q_i (+ b_i)`` (``user_factors``, ``item_factors``, ``item_bias``),
      with those scores.

    The model must expose ``user_factors`` and ``item_factors``: without them the top-N test cannot run,
    and the check fails rather than pass untested.
    """
    __tracebackhide__ = True
    if not _is_sparse(user_items):
        _fail("check_recommend: user_items must be the users × items training matrix (scipy CSR)")
    user_items = user_items.tocsr()
    n_rows, n_items = user_items.shape
    n_users = int(n_users) if n_users is not None else n_rows
    if n_rows != n_users:
        _fail(f"check_recommend: user_items has {n_rows} rows but there are {n_users} users")
    problem = _factor_problem(model, n_users, n_items)
    if problem:
        _fail(f"check_recommend: {problem} (the check needs the factors to verify the top {N})")
    picks = _pick_users(user_items, n_users)
    scalar_results = {}
    for user in picks:
        result = _call(model.recommend, "recommend", user, user_items[user], N=N)
        if not isinstance(result, (tuple, list)) or len(result) != 2:
            _fail(f"recommend must return a tuple (ids, scores), got {type(result).__name__}")
        what = f"recommend(userid={user})"
        ids, scores = _validate_list(result[0], result[1], n_items, N, what)
        seen = _user_row_items(user_items, user)
        already = [int(i) for i in ids if int(i) in seen]
        if already:
            _fail(f"{what} returned {len(already)} items the user already rated — filter user_items "
                  f"(set the scores of the user's items to -inf before taking the top N); e.g. item "
                  f"{already[0]}")
        scalar_results[user] = (ids, scores)
    users = _ranked_users(n_users, picks, n_ranked)
    batch = _np.asarray(users, dtype=_np.int64)
    result = _call(model.recommend, "recommend", batch, user_items[batch], N=N)
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        _fail(f"recommend(array of {len(batch)} ids) must return a tuple (ids, scores)")
    ids_batch, scores_batch = _np.asarray(result[0]), _np.asarray(result[1])
    if ids_batch.shape != (len(batch), N) or scores_batch.shape != (len(batch), N):
        _fail(f"recommend with an array of {len(batch)} user ids must return arrays of shape "
              f"({len(batch)}, {N}); got ids {ids_batch.shape}, scores {scores_batch.shape} (one row per "
              "user, user_items holding one row per requested user)")
    rows_ids, rows_scores = [], []
    seen_mask = _np.asarray(user_items[batch].toarray() != 0)
    for row, user in enumerate(users):
        what = f"recommend(userids) row {row} (user {user})"
        ids, scores = _validate_list(ids_batch[row], scores_batch[row], n_items, N, what)
        if bool(_np.any(seen_mask[row, ids])):
            _fail(f"{what} holds items the user already rated (e.g. item {int(ids[seen_mask[row, ids]][0])}): "
                  "filter user_items[r], the row of the r-th requested user")
        rows_ids.append(ids)
        rows_scores.append(scores)
        if user in scalar_results:
            ids_one, scores_one = scalar_results[user]
            same_scores = bool(_np.all(_np.abs(scores - scores_one) <= 1e-4 * (1 + _np.abs(scores_one))))
            if not (same_scores and set(int(i) for i in ids) == set(int(i) for i in ids_one)):
                _fail(f"recommend: the batch call and the scalar call disagree for user {user} (batch ids "
                      f"{[int(i) for i in ids[:5]]}..., scalar ids {[int(i) for i in ids_one[:5]]}...): "
                      "row r of the batch must be the recommendations of userid[r] given user_items[r]")
    full = _model_scores(model, batch, "check_recommend")
    problem = _top_n_problem(users, _np.stack(rows_ids), _np.stack(rows_scores), full, seen_mask, N,
                             getattr(model, "item_bias", None) is not None)
    if problem:
        _fail(problem)
    _ok(f"recommend: the {N} highest-scoring unseen items, best first, for each of {len(users)} users; "
        f"batch and scalar calls agree ({len(picks)} users)")


_POPULARITY_CACHE: dict = {}


def _popularity_metrics(train, test, k: int) -> dict:
    from mflib.evaluation import evaluate_ranking
    from mflib.models.popularity import Popularity

    key = (id(train), id(test), train.shape, train.nnz, test.nnz, k)
    if key not in _POPULARITY_CACHE:
        _POPULARITY_CACHE.clear()
        _POPULARITY_CACHE[key] = (train, test, evaluate_ranking(Popularity().fit(train), train, test, k=k))
    return _POPULARITY_CACHE[key][2]


def check_ranking(model, train, test, k: int = 10, reference_ndcg=None, fraction: float = 0.8,
                  min_ndcg=None):
    """Ranking quality with the course protocol (``mflib.evaluation.evaluate_ranking``).

    NDCG@k must beat the popularity baseline on the same split; with ``reference_ndcg`` it must reach
    ``fraction × reference_ndcg``; with ``min_ndcg`` it must reach that absolute value.
    """
    __tracebackhide__ = True
    from mflib.evaluation import evaluate_ranking

    key = f"ndcg@{k}"
    n_users, n_items = train.shape
    if getattr(model, "user_factors", None) is not None:
        problem = _factor_problem(model, n_users, n_items)
        if problem:
            _fail(f"check_ranking: {problem}")
    try:  # evaluate_ranking calls the model's recommend: its errors become messages (_call)
        result = _call(evaluate_ranking, "check_ranking: evaluating the model's recommend", model, train, test,
                       k=k)
    except CheckFailure as failure:
        if type(failure.__cause__) is AssertionError:  # evaluate_ranking found already-seen items
            raise CheckFailure(f"check_ranking: {failure.__cause__} — filter user_items") from failure.__cause__
        raise
    ndcg = float(result[key])
    popularity = float(_popularity_metrics(train, test, k)[key])
    label = f"NDCG@{k} {fmt(ndcg)}"
    if not math.isfinite(ndcg) or not ndcg > popularity:
        _fail(f"{label} is below popularity's {fmt(popularity)}: the model ranks no better than recommending "
              "the most popular items to everyone — train longer, check the loss and its gradient, and that "
              "you fit on the users × items training matrix")
    if reference_ndcg is not None:
        needed = fraction * float(reference_ndcg)
        if ndcg < needed:
            _fail(f"{label} is below {100 * fraction:.0f}% of the reference's {fmt(reference_ndcg)} "
                  f"({fmt(needed)} needed; popularity gets {fmt(popularity)}): train longer or revisit the "
                  "hyper-parameters (regularization, learning rate, factors)")
    if min_ndcg is not None and ndcg < float(min_ndcg):
        _fail(f"{label} is below the {fmt(min_ndcg)} required (popularity gets {fmt(popularity)})")
    extra = f", reference {fmt(reference_ndcg)}" if reference_ndcg is not None else ""
    _ok(f"{label} (precision@{k} {fmt(result[f'precision@{k}'])}) beats popularity's {fmt(popularity)}{extra}")
    return result
