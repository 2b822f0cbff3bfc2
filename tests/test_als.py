"""Implicit ALS (mflib.models.als): closed form, CG, loss, chunked layout, estimator API, ML-100K quality."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

import mflib
from mflib.models import _als_solvers, als

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from synthetic import naive_als_spsolve, synthetic_implicit  # noqa: E402  (benchmarks/, not the library)


# ---- helpers -------------------------------------------------------------------------------------------
def tiny_matrix(n_users=30, n_items=20, density=0.3, seed=1, weighted=True) -> sp.csr_matrix:
    """A small users x items matrix with a few empty rows and (optionally) counts 1..5 instead of 1.0."""
    rng = np.random.default_rng(seed)
    dense = (rng.random((n_users, n_items)) < density).astype(np.float64)
    if weighted:
        dense *= rng.integers(1, 6, size=dense.shape)
    dense[3] = 0.0  # a user with no items
    dense[:, 5] = 0.0  # an item with no users
    return sp.csr_matrix(dense)


def closed_form(fixed, matrix, regularization, alpha) -> np.ndarray:
    """Per row: solve (Y^T C_u Y + lambda I) x_u = Y^T C_u p_u with dense matrices and np.linalg.solve."""
    dense = matrix.toarray()
    k = fixed.shape[1]
    solution = np.zeros((dense.shape[0], k))
    for row in range(dense.shape[0]):
        confidence = 1.0 + alpha * dense[row]
        preference = (dense[row] > 0).astype(np.float64)
        lhs = fixed.T @ (confidence[:, None] * fixed) + regularization * np.eye(k)
        solution[row] = np.linalg.solve(lhs, fixed.T @ (confidence * preference))
    return solution


def brute_force_loss(users, items, matrix, regularization, alpha) -> float:
    dense = matrix.toarray()
    confidence = 1.0 + alpha * dense
    preference = (dense > 0).astype(np.float64)
    return float(np.sum(confidence * (preference - users @ items.T) ** 2)
                 + regularization * (np.sum(users ** 2) + np.sum(items ** 2)))


@pytest.fixture
def small_chunks(monkeypatch):
    """Force many chunks and buckets split across chunks, to exercise the chunk bookkeeping."""
    monkeypatch.setattr(_als_solvers, "_CHUNK_BYTES", 8 * 4 * 7)  # 7 slots of 8 float32 factors
    monkeypatch.setattr(_als_solvers, "_CHUNK_ROWS", 3)


# ---- data helpers --------------------------------------------------------------------------------------
def test_confidence_and_preference():
    matrix = tiny_matrix()
    conf = als.confidence(matrix, alpha=2.0)
    pref = als.preference(matrix)
    assert conf.dtype == np.float32 and pref.dtype == np.float32
    np.testing.assert_allclose(conf.toarray()[matrix.toarray() > 0], 1 + 2.0 * matrix.data)
    assert np.all(conf.toarray()[matrix.toarray() == 0] == 0)  # missing cells are implicit (c = 1, not stored)
    np.testing.assert_array_equal(pref.toarray(), (matrix.toarray() > 0).astype(np.float32))


def test_negative_entries_are_rejected():
    matrix = tiny_matrix()
    matrix.data[0] = -1.0
    with pytest.raises(ValueError, match="negative"):
        als.ALS(factors=4, iterations=1).fit(matrix)


# ---- loss ----------------------------------------------------------------------------------------------
def test_loss_matches_brute_force():
    rng = np.random.default_rng(0)
    matrix = tiny_matrix()
    users, items = rng.standard_normal((30, 4)), rng.standard_normal((20, 4))
    expected = brute_force_loss(users, items, matrix, 0.7, 3.0)
    assert als.als_loss(users, items, matrix, 0.7, 3.0) == pytest.approx(expected, rel=1e-12)
    scores = als.observed_scores(users, items, matrix)
    assert als.als_loss(users, items, matrix, 0.7, 3.0, scores=scores) == pytest.approx(expected, rel=1e-12)


def test_loss_rejects_transposed_factors():
    matrix = tiny_matrix()
    with pytest.raises(ValueError, match="transposed"):
        als.als_loss(np.ones((20, 4)), np.ones((30, 4)), matrix, 1.0, 1.0)


# ---- exact solver --------------------------------------------------------------------------------------
@pytest.mark.parametrize("weighted", [False, True])
def test_solve_exact_equals_closed_form(weighted):
    rng = np.random.default_rng(0)
    matrix = tiny_matrix(weighted=weighted)
    items = rng.standard_normal((20, 5))
    users = als.solve_exact(items, matrix, 0.5, 2.0)
    assert users.dtype == np.float64
    np.testing.assert_allclose(users, closed_form(items, matrix, 0.5, 2.0), rtol=1e-10, atol=1e-12)
    # the item side: transpose the matrix, fix the users
    items_new = als.solve_exact(users, matrix.T.tocsr(), 0.5, 2.0)
    np.testing.assert_allclose(items_new, closed_form(users, matrix.T.tocsr(), 0.5, 2.0), rtol=1e-10, atol=1e-12)
    assert np.all(users[3] == 0)  # no items: b_u = 0, so x_u = 0


def test_normal_equations_match_dense():
    rng = np.random.default_rng(1)
    matrix = tiny_matrix()
    items = rng.standard_normal((20, 3))
    systems, rhs = als.normal_equations(items, matrix, 0.3, 1.5)
    dense = matrix.toarray()
    for row in (0, 3, 7):
        confidence = 1 + 1.5 * dense[row]
        np.testing.assert_allclose(systems[row], items.T @ (confidence[:, None] * items) + 0.3 * np.eye(3),
                                   rtol=1e-12)
        np.testing.assert_allclose(rhs[row], items.T @ (confidence * (dense[row] > 0)), rtol=1e-12, atol=1e-14)


def test_chunked_layout_gives_the_same_solutions(small_chunks):
    rng = np.random.default_rng(2)
    matrix = tiny_matrix(n_users=40, n_items=25, density=0.35, seed=3)
    items = rng.standard_normal((25, 8))
    current = rng.standard_normal((40, 8))
    plan = als.SolverPlan(matrix, 1.0)
    assert len(plan.chunks(8, 4)) > 5
    covered = np.concatenate([plan.order[lo:hi] for lo, hi, *_ in plan.chunks(8, 8)])
    np.testing.assert_array_equal(np.sort(covered), np.arange(40))
    np.testing.assert_allclose(als.solve_exact(items, matrix, 0.5, 1.0), closed_form(items, matrix, 0.5, 1.0),
                               rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(als.solve_cg(items, matrix, current, 0.5, 1.0, cg_steps=20),
                               closed_form(items, matrix, 0.5, 1.0), rtol=1e-8, atol=1e-10)


def test_plan_must_match_the_matrix():
    matrix = tiny_matrix()
    plan = als.SolverPlan(matrix, 1.0)
    with pytest.raises(ValueError, match="plan"):
        als.solve_exact(np.ones((30, 2)), matrix.T.tocsr(), 1.0, 1.0, plan=plan)
    with pytest.raises(ValueError, match="transpose"):
        als.solve_exact(np.ones((30, 2)), matrix, 1.0, 1.0)  # user factors where item factors belong


# ---- conjugate gradient --------------------------------------------------------------------------------
def test_cg_converges_to_the_exact_solution():
    rng = np.random.default_rng(3)
    matrix = tiny_matrix()
    items = rng.standard_normal((20, 6))
    current = rng.standard_normal((30, 6))
    exact = closed_form(items, matrix, 0.5, 2.0)
    errors = [np.abs(als.solve_cg(items, matrix, current, 0.5, 2.0, cg_steps=steps) - exact).max()
              for steps in (1, 2, 4, 6)]
    assert errors[0] > errors[1] > errors[2]
    assert errors[-1] < 1e-9  # k = 6 steps: CG is exact in exact arithmetic


def test_cg_scores_are_tracked():
    rng = np.random.default_rng(4)
    matrix = tiny_matrix()
    items = rng.standard_normal((20, 4))
    current = rng.standard_normal((30, 4))
    scores = als.observed_scores(current, items, matrix)
    before = scores.copy()
    new = als.solve_cg(items, matrix, current, 0.5, 2.0, cg_steps=2, scores=scores)
    np.testing.assert_allclose(scores, als.observed_scores(new, items, matrix), rtol=1e-10, atol=1e-12)
    # passing the scores changes nothing but the work done
    np.testing.assert_allclose(new, als.solve_cg(items, matrix, current, 0.5, 2.0, cg_steps=2), rtol=1e-12)
    assert not np.allclose(before, scores)


def test_cg_warm_start_at_the_solution_stays():
    rng = np.random.default_rng(5)
    matrix = tiny_matrix()
    items = rng.standard_normal((20, 4))
    exact = closed_form(items, matrix, 0.5, 2.0)
    np.testing.assert_allclose(als.solve_cg(items, matrix, exact, 0.5, 2.0), exact, rtol=1e-8, atol=1e-10)


# ---- the estimator -------------------------------------------------------------------------------------
@pytest.mark.parametrize("solver", ["cg", "cholesky"])
def test_fit_ends_at_the_closed_form_item_step(solver):
    """The last half-step solves the items exactly (CG with cg_steps >= k is exact too)."""
    matrix = tiny_matrix()
    model = als.ALS(factors=4, regularization=0.5, alpha=2.0, iterations=5, random_state=0, solver=solver,
                    cg_steps=8).fit(matrix)
    assert model.user_factors.dtype == np.float32 and model.item_factors.dtype == np.float32
    expected = closed_form(model.user_factors.astype(np.float64), matrix.T.tocsr(), 0.5, 2.0)
    np.testing.assert_allclose(model.item_factors, expected, rtol=1e-3, atol=1e-4)


def test_exact_solver_loss_decreases_monotonically():
    matrix = tiny_matrix(n_users=60, n_items=40, density=0.2)
    model = als.ALS(factors=6, regularization=1.0, alpha=3.0, iterations=12, random_state=0,
                    solver="cholesky").fit(matrix)
    history = np.array(model.loss_history_)
    assert len(history) == 12
    assert np.all(np.diff(history) <= 1e-6 * history[:-1])
    assert history[-1] < 0.9 * history[0]


def test_loss_history_is_the_loss_of_the_fitted_factors():
    matrix = synthetic_implicit(200, 150, 3000, random_state=0)
    for solver in ("cg", "cholesky"):
        model = als.ALS(factors=8, regularization=2.0, iterations=4, random_state=0, solver=solver).fit(matrix)
        assert model.loss_history_[-1] == pytest.approx(
            als.als_loss(model.user_factors, model.item_factors, matrix, 2.0, model.alpha), rel=1e-5)


def test_cg_fit_is_close_to_exact_fit():
    matrix = synthetic_implicit(300, 200, 6000, random_state=1)
    kwargs = dict(factors=8, regularization=2.0, alpha=2.0, iterations=15, random_state=0)
    cg = als.ALS(**kwargs).fit(matrix).loss_history_[-1]
    exact = als.ALS(solver="cholesky", **kwargs).fit(matrix).loss_history_[-1]
    assert cg == pytest.approx(exact, rel=1e-2)


def test_seed_reproducibility():
    matrix = synthetic_implicit(100, 80, 1500, random_state=0)
    first = als.ALS(factors=8, iterations=3, random_state=42).fit(matrix)
    second = als.ALS(factors=8, iterations=3, random_state=42).fit(matrix)
    other = als.ALS(factors=8, iterations=3, random_state=43).fit(matrix)
    np.testing.assert_array_equal(first.user_factors, second.user_factors)
    np.testing.assert_array_equal(first.item_factors, second.item_factors)
    assert first.loss_history_ == second.loss_history_
    assert not np.allclose(first.user_factors, other.user_factors)


@pytest.mark.parametrize("solver", ["cg", "cholesky"])
def test_threads_do_not_change_the_result(solver, monkeypatch):
    monkeypatch.setattr(_als_solvers, "_CHUNK_BYTES", 4 * 8 * 64)  # many chunks, so that both threads get work
    matrix = synthetic_implicit(300, 200, 5000, random_state=4)
    one = als.ALS(factors=8, iterations=3, random_state=0, solver=solver, num_threads=1).fit(matrix)
    two = als.ALS(factors=8, iterations=3, random_state=0, solver=solver, num_threads=2).fit(matrix)
    np.testing.assert_array_equal(one.user_factors, two.user_factors)
    np.testing.assert_array_equal(one.item_factors, two.item_factors)
    assert one.loss_history_ == two.loss_history_


def test_fit_on_the_transposed_matrix_swaps_the_shapes():
    matrix = synthetic_implicit(50, 30, 400, random_state=0)
    model = als.ALS(factors=5, iterations=2, random_state=0).fit(matrix)
    transposed = als.ALS(factors=5, iterations=2, random_state=0).fit(matrix.T.tocsr())
    assert model.user_factors.shape == (50, 5) and model.item_factors.shape == (30, 5)
    assert transposed.user_factors.shape == (30, 5) and transposed.item_factors.shape == (50, 5)


def test_recommend_never_returns_liked_items_and_batch_matches_scalar():
    matrix = synthetic_implicit(80, 60, 1500, random_state=2)
    model = als.ALS(factors=8, regularization=1.0, iterations=5, random_state=0).fit(matrix)
    users = np.arange(80)
    ids, scores = model.recommend(users, matrix[users], N=10)
    assert ids.shape == (80, 10)
    liked = matrix[users].toarray() > 0
    valid = ids >= 0  # -1 pads the lists of users who have seen all but a few items
    assert valid.mean() > 0.9
    assert not liked[np.repeat(users, 10)[valid.ravel()], ids[valid]].any()
    assert np.all(np.diff(scores[valid.all(1)], axis=1) <= 0)
    for user in (0, 17, 79):
        one_ids, one_scores = model.recommend(user, matrix[user], N=10)
        np.testing.assert_array_equal(one_ids, ids[user])
        np.testing.assert_allclose(one_scores, scores[user], rtol=1e-6)
        np.testing.assert_allclose(one_scores, model.user_factors[user] @ model.item_factors[one_ids].T, rtol=1e-5)


def test_similar_items_and_constructor_api():
    matrix = synthetic_implicit(80, 60, 1500, random_state=2)
    model = mflib.ALS(factors=8, iterations=2, random_state=0)
    assert model.get_params() == dict(factors=8, regularization=model.regularization, alpha=model.alpha,
                                      iterations=2, random_state=0, show_progress=False, solver="cg", cg_steps=3,
                                      num_threads=0)
    assert model.fit(matrix) is model
    ids, scores = model.similar_items(4, N=5)
    assert ids.shape == (5,) and 4 not in ids
    with pytest.raises(ValueError, match="solver"):
        als.ALS(solver="lu").fit(matrix)


def test_show_progress_draws_a_bar(capsys):
    matrix = synthetic_implicit(50, 40, 300, random_state=0)
    als.ALS(factors=4, iterations=2, random_state=0, show_progress=True).fit(matrix)
    assert "ALS" in capsys.readouterr().err
    als.ALS(factors=4, iterations=2, random_state=0).fit(matrix)
    assert capsys.readouterr().err == ""


def test_synthetic_implicit():
    matrix = synthetic_implicit(500, 300, 8000, random_state=3)
    assert matrix.shape == (500, 300) and matrix.nnz == 8000
    assert np.all(matrix.data == 1.0)
    again = synthetic_implicit(500, 300, 8000, random_state=3)
    assert (matrix != again).nnz == 0
    popularity = np.sort(np.asarray(matrix.sum(0)).ravel())[::-1]
    assert popularity[0] > 5 * np.median(popularity)  # a long tail


def test_naive_spsolve_baseline_agrees_with_the_exact_solver():
    matrix = tiny_matrix(weighted=False)
    users, items = naive_als_spsolve(matrix, factors=4, regularization=0.5, alpha=2.0, iterations=3,
                                         random_state=0)
    model = als.ALS(factors=4, regularization=0.5, alpha=2.0, iterations=3, random_state=0,
                    solver="cholesky").fit(matrix)
    np.testing.assert_allclose(users, model.user_factors, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(items, model.item_factors, rtol=1e-3, atol=1e-4)


# ---- real data -----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_ml100k_quality_at_default_parameters(ml100k, implicit_split_0):
    from mflib.evaluation import evaluate_ranking, evaluate_similar_items, known_pairs

    train, test = implicit_split_0
    model = mflib.ALS(random_state=0).fit(train)
    assert model.loss_history_[-1] < model.loss_history_[0]
    ranking = evaluate_ranking(model, train, test)
    assert ranking["ndcg@10"] >= 0.30, ranking
    assert evaluate_similar_items(model, ml100k, train) >= 0.30
    pairs = known_pairs(model, ml100k)
    assert all(pairs["Star Wars (1977)"].values()), pairs
    assert all(pairs["Godfather, The (1972)"].values()), pairs
