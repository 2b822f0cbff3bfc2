"""The ranking checks fail closed: check_recommend, check_similar_items (and its _neighbours), check_ranking.

A sub-test that cannot run fails the check with a message saying what could not be checked and why; it
never passes untested. Small synthetic problems, except where titles and genres are needed (ML-100K).
"""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from autograder.checks import CheckFailure, _neighbours, check_ranking, check_recommend, check_similar_items
from mflib.teaching import LearnedFactors


def failure(fn, *args, **kwargs) -> str:
    with pytest.raises(AssertionError) as info:
        fn(*args, **kwargs)
    return str(info.value)


def problem(seed=0, n_users=60, n_items=40, k=5):
    rng = np.random.default_rng(seed)
    seen = sp.random(n_users, n_items, density=0.2, random_state=seed, format="csr")
    seen.data[:] = 1.0
    return rng.normal(size=(n_users, k)), rng.normal(size=(n_items, k)), seen


def top_n(user_factors, item_factors, users, seen, N=10, kth=None):
    """The course's recommend (02 Exercise 5); ``kth`` other than N - 1 is the off-by-two bug."""
    scores = user_factors[users] @ item_factors.T
    rows, cols = sp.csr_matrix(seen).nonzero()
    scores[rows, cols] = -np.inf
    top = np.argpartition(-scores, N - 1 if kth is None else kth, axis=1)[:, :N]
    top_scores = np.take_along_axis(scores, top, axis=1)
    order = np.argsort(-top_scores, axis=1)
    return np.take_along_axis(top, order, axis=1), np.take_along_axis(top_scores, order, axis=1)


def off_by_two(user_factors, item_factors, users, seen, N=10):
    """N items out of the top N + 1: ``np.argpartition(-scores, N + 1)[:, :N]``."""
    return top_n(user_factors, item_factors, users, seen, N, kth=N + 1)


class Scored:
    """A factor model whose recommend can be broken in one way at a time."""

    def __init__(self, user_factors, item_factors, item_bias=None, *, shift_scores=False,
                 filter_batches=True):
        self.user_factors, self.item_factors, self.item_bias = user_factors, item_factors, item_bias
        self._bias = 0 if item_bias is None else item_bias  # what recommend ranks by
        self.shift_scores, self.filter_batches = shift_scores, filter_batches

    def recommend(self, userid, user_items, N=10, filter_already_liked_items=True):
        users = np.atleast_1d(np.asarray(userid))
        seen = sp.csr_matrix(user_items)
        if np.ndim(userid) and not self.filter_batches:
            seen = sp.csr_matrix(seen.shape)
        scores = self.user_factors[users] @ self.item_factors.T + self._bias
        scores[seen.nonzero()] = -np.inf
        ids = np.argsort(-scores, axis=1)[:, :N]
        returned = np.take_along_axis(scores, ids, axis=1)
        if self.shift_scores:  # e.g. the bias added twice: same order, other scores
            returned = returned + 1.0
        return (ids[0], returned[0]) if np.ndim(userid) == 0 else (ids, returned)


# ---------------------------------------------------------------------------------------------
# check_recommend
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.longdouble])
def test_correct_recommend_passes(dtype, capsys):
    user_factors, item_factors, seen = problem()
    check_recommend(LearnedFactors(user_factors.astype(dtype), item_factors.astype(dtype), recommend=top_n), seen)
    check_recommend(LearnedFactors(user_factors, item_factors, np.linspace(-1, 1, 40)), seen)  # mflib.retrieval
    assert "the 10 highest-scoring unseen items, best first, for each of 60 users" in capsys.readouterr().out


def test_argpartition_off_by_two_loses_in_extended_precision():
    """numpy has no SIMD selection for long double: its portable introselect leaves the entries before kth
    in no particular order, as documented, so N of the top N + 1 is not the top N."""
    user_factors, item_factors, seen = problem()
    model = LearnedFactors(user_factors.astype(np.longdouble), item_factors.astype(np.longdouble),
                           recommend=off_by_two)
    message = failure(check_recommend, model, seen)
    assert "returned items that are not the 10 highest-scoring unseen items" in message
    assert "your list is 10 items out of the top 11" in message and "kth = N - 1" in message


def test_a_list_from_the_tail_gets_the_generic_hint():
    user_factors, item_factors, seen = problem()

    def tail(user_factors, item_factors, users, seen, N=10):
        ids, scores = top_n(user_factors, item_factors, users, seen, N=2 * N)
        return ids[:, N:], scores[:, N:]

    message = failure(check_recommend, LearnedFactors(user_factors, item_factors, recommend=tail), seen)
    assert "not the 10 highest-scoring unseen items" in message and "set the scores of the items" in message


def test_model_without_factors_fails_instead_of_skipping_the_top_n_test():
    _, _, seen = problem()

    class NoFactors:
        def recommend(self, userid, user_items, N=10, filter_already_liked_items=True):
            raise AssertionError("never called")

    message = failure(check_recommend, NoFactors(), seen)
    assert "no user_factors" in message and "needs the factors to verify the top 10" in message


def test_scores_that_are_not_the_models_scores_fail():
    user_factors, item_factors, seen = problem()
    bias = np.linspace(-2, 2, item_factors.shape[0])
    check_recommend(Scored(user_factors, item_factors, bias), seen)
    message = failure(check_recommend, Scored(user_factors, item_factors, bias, shift_scores=True), seen)
    assert "returned scores that are not the model's scores p_u · q_i + b_i" in message


def test_unscorable_factors_fail_with_the_reason():
    user_factors, item_factors, seen = problem()
    model = Scored(user_factors, item_factors)
    model.item_bias = np.zeros(item_factors.shape[0] + 1)  # recommend ignores it; the check cannot
    message = failure(check_recommend, model, seen)
    assert "cannot check that recommend returns the highest-scoring items" in message
    assert "item_bias (41,)" in message and "ValueError" in message


def test_seen_items_in_a_batch_row_fail():
    user_factors, item_factors, seen = problem()
    message = failure(check_recommend, Scored(user_factors, item_factors, filter_batches=False), seen)
    assert "holds items the user already rated" in message


# ---------------------------------------------------------------------------------------------
# _neighbours and check_similar_items
# ---------------------------------------------------------------------------------------------
class OneIdAtATime(LearnedFactors):
    """similar_items written for one id: an array raises ``error``."""

    error = TypeError

    def similar_items(self, itemid, N=10):
        if np.ndim(itemid):
            raise self.error("only one id at a time")
        return super().similar_items(itemid, N=N)


def test_neighbours_retries_one_id_at_a_time_only_after_a_scalar_code_error():
    _, item_factors, _ = problem()
    items = np.arange(0, 40, 3)
    expected = LearnedFactors(np.ones((1, 5)), item_factors).similar_items(items, N=4)[0]
    assert np.array_equal(_neighbours(OneIdAtATime(np.ones((1, 5)), item_factors), items, 4, 40), expected)

    class KeyErrorOnArrays(OneIdAtATime):
        error = KeyError

    message = failure(_neighbours, KeyErrorOnArrays(np.ones((1, 5)), item_factors), items, 4, 40)
    assert "similar_items raised KeyError" in message


def test_neighbours_fails_when_the_id_by_id_calls_fail_too():
    _, item_factors, _ = problem()

    class Broken(LearnedFactors):
        def similar_items(self, itemid, N=10):
            raise ValueError("broken")

    with pytest.raises(CheckFailure, match="similar_items raised ValueError: broken"):
        _neighbours(Broken(np.ones((1, 5)), item_factors), np.arange(5), 4, 40)


def test_neighbours_rejects_the_query_among_its_neighbours():
    _, item_factors, _ = problem()

    class WithSelf(LearnedFactors):
        def similar_items(self, itemid, N=10):
            ids, scores = super().similar_items(itemid, N=N)
            ids = np.array(ids)
            ids[..., 0] = itemid
            return ids, scores

    message = failure(_neighbours, WithSelf(np.ones((1, 5)), item_factors), np.arange(5), 4, 40)
    assert "returned the query item itself" in message


@pytest.fixture(scope="module")
def fitted(ml100k, implicit_split_0):
    from mflib import ALS

    train, _ = implicit_split_0
    als = ALS(random_state=0).fit(train)
    return LearnedFactors(als.user_factors, als.item_factors)


@pytest.mark.slow
def test_similar_items_pairs_by_parts_of_titles(ml100k, implicit_split_0, fitted, capsys):
    train, _ = implicit_split_0
    pairs = {"Star Wars": ["Empire Strikes Back", "Return of the Jedi"], "Godfather, The": ["Godfather: Part II"]}
    check_similar_items(fitted, ml100k, train, pairs=pairs)
    assert "3/3 known pairs found" in capsys.readouterr().out
    query = ml100k.find_item("Star Wars")
    unit = fitted.item_factors / np.maximum(np.linalg.norm(fitted.item_factors, axis=1, keepdims=True), 1e-12)
    farthest = ml100k.title(int(np.argmin(unit @ unit[query])))
    message = failure(check_similar_items, fitted, ml100k, train, pairs={"Star Wars": [farthest]})
    assert f"'{farthest}' is not among the 10 items most similar to 'Star Wars (1977)'" in message


@pytest.mark.slow
def test_similar_items_for_one_id_at_a_time_is_checked_id_by_id(ml100k, implicit_split_0, fitted, capsys):
    train, _ = implicit_split_0
    check_similar_items(OneIdAtATime(fitted.user_factors, fitted.item_factors), ml100k, train)
    assert "genre Jaccard@10" in capsys.readouterr().out


def test_similar_items_with_item_factors_of_the_wrong_shape_fails(ml100k, implicit_split_0):
    train, _ = implicit_split_0
    model = LearnedFactors(np.ones((943, 4)), np.ones((1681, 4)))
    assert "cosine similarities cannot be checked" in failure(check_similar_items, model, ml100k, train)


# ---------------------------------------------------------------------------------------------
# check_ranking
# ---------------------------------------------------------------------------------------------
def test_ranking_reports_what_recommend_raised():
    user_factors, item_factors, train = problem()
    _, _, test = problem(seed=1)

    class Raises(LearnedFactors):
        def recommend(self, userid, user_items=None, N=10, filter_already_liked_items=True):
            raise RuntimeError("boom")

    message = failure(check_ranking, Raises(user_factors, item_factors), train, test)
    assert "check_ranking: evaluating the model's recommend raised RuntimeError: boom" in message

    class Unfiltered(LearnedFactors):
        def recommend(self, userid, user_items=None, N=10, filter_already_liked_items=True):
            return super().recommend(userid, user_items, N=N, filter_already_liked_items=False)

    message = failure(check_ranking, Unfiltered(user_factors, item_factors), train, test)
    assert "already have in train" in message and "filter user_items" in message
