"""Tables on real ML-100K titles and plots (Agg backend) for the notebooks.

``ml100k`` is the session fixture of conftest.py (the real MovieLens 100K).
"""
import os

os.environ["MPLBACKEND"] = "Agg"  # before matplotlib is imported anywhere in this process

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import scipy.sparse as sp  # noqa: E402

from mflib.display import (plot_learning_curve, plot_metric_bars, recommendations_table, side_by_side,  # noqa: E402
                           similar_items_table, user_history)
from mflib.retrieval import recommend, similar_items  # noqa: E402


class FakeModel:
    """Random factors with the implicit 0.7 API; ``returns_self`` mimics implicit's similar_items."""

    def __init__(self, n_users, n_items, returns_self=False, seed=0):
        rng = np.random.default_rng(seed)
        self.user_factors = rng.standard_normal((n_users, 8)).astype(np.float32)
        self.item_factors = rng.standard_normal((n_items, 8)).astype(np.float32)
        self.returns_self = returns_self
        self.loss_history_ = [5.0, 3.0, 2.5, 2.25]

    def similar_items(self, itemid, N=10):
        ids, scores = similar_items(self.item_factors, [itemid], N=N, include_self=self.returns_self)
        return ids[0], scores[0]

    def recommend(self, userid, user_items, N=10, filter_already_liked_items=True):
        ids, scores = recommend(self.user_factors[[userid]], self.item_factors, user_items, N=N,
                                filter_already_liked_items=filter_already_liked_items)
        return ids[0], scores[0]


@pytest.fixture(scope="module")
def model(ml100k):
    return FakeModel(ml100k.n_users, ml100k.n_items)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


# ---- similar items -----------------------------------------------------------------------------
def test_similar_items_table_resolves_star_wars(ml100k, model):
    table = similar_items_table(model, ml100k, "Star Wars", N=10)
    star_wars = ml100k.find_item("Star Wars")
    assert table.attrs["query"] == "Star Wars (1977)"
    assert len(table) == 10 and list(table.index) == list(range(1, 11))
    assert {"item_idx", "title", "year", "genres", "score"} <= set(table.columns)
    assert star_wars not in table["item_idx"].to_numpy()
    assert table["title"].tolist() == ml100k.title(table["item_idx"].to_numpy())
    assert table["score"].is_monotonic_decreasing
    expected, _ = similar_items(model.item_factors, [star_wars], N=10)
    np.testing.assert_array_equal(table["item_idx"], expected[0])


def test_similar_items_table_drops_the_query_when_a_model_returns_it(ml100k):
    implicit_like = FakeModel(ml100k.n_users, ml100k.n_items, returns_self=True)
    table = similar_items_table(implicit_like, ml100k, 49, N=5)
    assert len(table) == 5 and 49 not in table["item_idx"].to_numpy()


def test_similar_items_table_from_ids_and_scores_by_hand(ml100k):
    # the query (0) and the padding (-1) are dropped; order is kept
    table = similar_items_table((np.array([0, 5, 3, -1]), np.array([1.0, 0.9, 0.5, -np.inf])), ml100k, 0, N=10)
    assert table["item_idx"].tolist() == [5, 3]
    assert table["title"].tolist() == [ml100k.title(5), ml100k.title(3)]
    np.testing.assert_allclose(table["score"], [0.9, 0.5])
    genres = ml100k.items.loc[5, "genres"]
    assert table.loc[1, "genres"] == ", ".join(genres)
    assert table.loc[1, "year"] == ml100k.items.loc[5, "year"]


def test_unknown_title_and_bad_index_raise(ml100k, model):
    with pytest.raises(KeyError, match="no item title"):
        similar_items_table(model, ml100k, "No Such Film Ever Made")
    with pytest.raises(IndexError):
        similar_items_table(model, ml100k, ml100k.n_items)
    with pytest.raises(TypeError, match="similar_items"):
        similar_items_table(object(), ml100k, 0)


# ---- recommendations and history ---------------------------------------------------------------
def test_recommendations_table_filters_train_and_marks_hits(ml100k, model):
    train = ml100k.implicit()
    user = 0
    table = recommendations_table(model, ml100k, user, train, N=8)
    assert len(table) == 8 and "hit" not in table.columns
    assert not np.isin(table["item_idx"], train[user].indices).any()
    assert table["title"].tolist() == ml100k.title(table["item_idx"].to_numpy())
    # a test row holding the 2nd and 4th recommendation plus an item never recommended
    recommended = table["item_idx"].to_numpy()
    other = np.setdiff1d(np.arange(ml100k.n_items), recommended)[0]
    test_cols = [recommended[1], recommended[3], other]
    test = sp.csr_matrix((np.ones(3), ([user] * 3, test_cols)), shape=train.shape)
    with_hits = recommendations_table(model, ml100k, user, train, N=8, test_items=test)
    assert with_hits["hit"].tolist() == [False, True, False, True, False, False, False, False]
    assert with_hits.attrs["hits"] == 2
    # the user's row alone works as well as the full matrix
    row_only = recommendations_table(model, ml100k, user, train[user], N=8, test_items=test[user])
    pd.testing.assert_frame_equal(row_only, with_hits)


def test_user_history_lists_top_rated_items(ml100k):
    history = user_history(ml100k, 0, n=10)
    ratings = ml100k.ratings[ml100k.ratings["user_idx"] == 0]
    assert len(history) == 10
    assert history["rating"].is_monotonic_decreasing
    assert history["rating"].iloc[0] == ratings["rating"].max()
    rated = dict(zip(ratings["item_idx"], ratings["rating"]))
    assert all(rated[i] == r for i, r in zip(history["item_idx"], history["rating"]))
    assert history["title"].tolist() == ml100k.title(history["item_idx"].to_numpy())


# ---- several models ----------------------------------------------------------------------------
def test_side_by_side_has_one_column_per_model(ml100k, model):
    other = FakeModel(ml100k.n_users, ml100k.n_items, returns_self=True, seed=1)
    short = (np.array([7, 8]), np.array([0.5, 0.4]))  # only two neighbours
    table = side_by_side({"A": model, "B": other, "C": short}, ml100k, "Star Wars", N=6)
    assert list(table.columns) == ["A", "B", "C"] and len(table) == 6
    assert table.attrs["query"] == "Star Wars (1977)"
    assert "Star Wars (1977)" not in table.to_numpy().ravel()
    assert table["A"].tolist() == similar_items_table(model, ml100k, "Star Wars", N=6)["title"].tolist()
    assert table["C"].tolist() == [ml100k.title(7), ml100k.title(8), "", "", "", ""]
    with_scores = side_by_side({"A": model}, ml100k, "Star Wars", N=6, with_scores=True)
    assert list(with_scores.columns) == ["A", "A score"]


# ---- plots -------------------------------------------------------------------------------------
def test_learning_curve_single_history():
    ax = plot_learning_curve([4.0, 2.0, 1.0], title="ALS", ylabel="objective")
    assert isinstance(ax, matplotlib.axes.Axes) and len(ax.lines) == 1
    np.testing.assert_array_equal(ax.lines[0].get_xdata(), [1, 2, 3])
    np.testing.assert_array_equal(ax.lines[0].get_ydata(), [4.0, 2.0, 1.0])
    assert ax.get_title() == "ALS" and ax.get_ylabel() == "objective" and ax.get_legend() is None


def test_learning_curve_several_histories_on_a_given_axes(model):
    _, ax = plt.subplots()
    returned = plot_learning_curve({"fake": model, "list": [3, 2], "array": np.ones(40)}, ax=ax, logy=True)
    assert returned is ax and len(ax.lines) == 3
    assert [text.get_text() for text in ax.get_legend().get_texts()] == ["fake", "list", "array"]
    np.testing.assert_array_equal(ax.lines[0].get_ydata(), model.loss_history_)
    assert ax.get_yscale() == "log"


def test_metric_bars_one_metric_best_on_top():
    ax = plot_metric_bars({"popularity": 0.10, "ALS": 0.30, "BPR": 0.25}, title="precision@10", highlight="BPR")
    assert isinstance(ax, matplotlib.axes.Axes) and len(ax.patches) == 3
    labels = [label.get_text() for label in ax.get_yticklabels()]
    assert labels == ["ALS", "BPR", "popularity"]
    top_to_bottom = sorted(ax.patches, key=lambda bar: bar.get_y())  # the y axis is inverted
    assert [bar.get_width() for bar in top_to_bottom] == [0.30, 0.25, 0.10]
    assert ax.get_title() == "precision@10"


def test_metric_bars_grouped_and_lower_is_better():
    leaderboard = {"ALS": {"precision": 0.3, "ndcg": 0.35}, "popularity": {"precision": 0.1, "ndcg": 0.12}}
    ax = plot_metric_bars(leaderboard)
    assert len(ax.patches) == 4 and len(ax.get_legend().get_texts()) == 2
    rmse = pd.DataFrame({"rmse": [0.95, 0.91, 1.02]}, index=["SVD", "FM", "mean"])
    ax = plot_metric_bars(rmse, metric="rmse", lower_is_better=True)
    assert [label.get_text() for label in ax.get_yticklabels()] == ["FM", "SVD", "mean"]
    with pytest.raises(TypeError):
        plot_metric_bars([0.1, 0.2])
