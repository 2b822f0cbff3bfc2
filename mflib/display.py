"""Tables and plots for the notebooks: similar items, recommendations, a user's history, learning curves.

Every table is a pandas DataFrame indexed by ``rank`` (1 = best) with the item's ``item_idx``, ``title``,
``year`` and ``genres`` (joined into one string), so a notebook cell can just end with it::

    from mflib.display import similar_items_table, side_by_side, plot_learning_curve
    similar_items_table(model, ds, "Star Wars")               # title -> dataset.find_item
    side_by_side({"ALS": als, "BPR": bpr}, ds, "Godfather")   # one column of titles per model
    plot_learning_curve({"ALS": als, "BPR": bpr})             # models with .loss_history_, or lists

Models are duck-typed: anything with implicit 0.7's ``similar_items(itemid, N)`` /
``recommend(userid, user_items_row, N=N, filter_already_liked_items=True)`` returning ``(ids, scores)``
works -- the mflib models, implicit's models, :class:`mflib.retrieval.FaissIndex`. Some of them return the
query item as its own nearest neighbour (implicit does); the tables always leave it out.

The plotting functions draw on ``ax`` (a new figure when None) and return the Axes; they never call
``plt.show()``, so they work with any backend, including Agg in tests and the autograder.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .datasets import Dataset

__all__ = ["similar_items_table", "recommendations_table", "user_history", "side_by_side",
           "plot_learning_curve", "plot_metric_bars"]


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------
def _resolve_item(dataset: Dataset, item) -> int:
    """An item index, or a title (part of one) resolved with :meth:`Dataset.find_item`."""
    if isinstance(item, str):
        return dataset.find_item(item)
    index = int(item)
    if not 0 <= index < dataset.n_items:
        raise IndexError(f"item index {index} is outside 0..{dataset.n_items - 1}")
    return index


def _user_row(matrix, user_idx: int, name: str) -> sp.csr_matrix:
    """Row ``user_idx`` of a users x items matrix, or the matrix itself if it is already one row."""
    if not sp.issparse(matrix):
        raise TypeError(f"{name} must be a scipy.sparse users x items matrix, got {type(matrix).__name__}")
    matrix = sp.csr_matrix(matrix)
    return matrix if matrix.shape[0] == 1 else matrix[int(user_idx)]


def _item_frame(dataset: Dataset, ids: np.ndarray, **columns) -> pd.DataFrame:
    """``rank, item_idx, title, year, genres`` for ``ids`` plus extra ``columns``, indexed by rank."""
    ids = np.asarray(ids, dtype=np.int64)
    items = dataset.items.iloc[ids]
    frame = pd.DataFrame({
        "item_idx": ids,
        "title": items["title"].to_numpy(),
        "year": items["year"].array,
        "genres": [", ".join(genres) for genres in items["genres"]],
        **{name: np.asarray(values) for name, values in columns.items()},
    }, index=pd.RangeIndex(1, len(ids) + 1, name="rank"))
    return frame


def _similar_to(source, query: int, N: int) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``N`` neighbours of ``query`` from a model (asked for ``N + 1``) or an ``(ids, scores)``
    pair, with the query and the ``-1`` padding removed, best first."""
    if isinstance(source, tuple) and len(source) == 2:
        ids, scores = source
    elif hasattr(source, "similar_items"):
        ids, scores = source.similar_items(query, N=N + 1)
    else:
        raise TypeError("expected a fitted model with .similar_items(itemid, N) or an (ids, scores) tuple, "
                        f"got {type(source).__name__}")
    ids = np.asarray(ids, dtype=np.int64).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if ids.shape != scores.shape:
        raise ValueError(f"ids {ids.shape} and scores {scores.shape} differ in length")
    keep = (ids != query) & (ids >= 0)
    return ids[keep][:N], scores[keep][:N]


# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------
def similar_items_table(source, dataset: Dataset, item, N: int = 10) -> pd.DataFrame:
    """The ``N`` items most similar to ``item`` (an index or a title), with titles and scores.

    ``source`` is a fitted model with ``similar_items`` or an ``(ids, scores)`` pair already computed for
    ``item``. The query item never appears; its title is in ``table.attrs["query"]``.
    """
    query = _resolve_item(dataset, item)
    ids, scores = _similar_to(source, query, N)
    table = _item_frame(dataset, ids, score=scores)
    table.attrs["query"] = dataset.title(query)
    table.columns.name = f"similar to {dataset.title(query)}"
    return table


def recommendations_table(model, dataset: Dataset, user_idx: int, user_items, N: int = 10,
                          test_items=None) -> pd.DataFrame:
    """``model``'s top-``N`` for ``user_idx`` with titles; items in ``user_items`` are filtered out.

    ``user_items`` is the training matrix (users x items) or the user's row of it. With ``test_items``
    (same forms) a boolean ``hit`` column marks the recommendations found in the user's test items, and
    ``table.attrs["hits"]`` counts them.
    """
    row = _user_row(user_items, user_idx, "user_items")
    ids, scores = model.recommend(int(user_idx), row, N=N, filter_already_liked_items=True)
    ids = np.asarray(ids, dtype=np.int64).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    valid = ids >= 0
    ids, scores = ids[valid], scores[valid]
    columns = {"score": scores}
    if test_items is not None:
        columns["hit"] = np.isin(ids, _user_row(test_items, user_idx, "test_items").indices)
    table = _item_frame(dataset, ids, **columns)
    table.columns.name = f"recommended for user {int(user_idx)}"
    if test_items is not None:
        table.attrs["hits"] = int(columns["hit"].sum())
    return table


def user_history(dataset: Dataset, user_idx: int, n: int = 10) -> pd.DataFrame:
    """The user's ``n`` highest-rated items (ties: most recent first) with titles and ratings."""
    ratings = dataset.ratings
    mine = ratings[ratings["user_idx"].to_numpy() == int(user_idx)]
    mine = mine.sort_values(["rating", "timestamp"], ascending=[False, False], kind="stable").head(n)
    table = _item_frame(dataset, mine["item_idx"].to_numpy(), rating=mine["rating"].to_numpy())
    table.columns.name = f"user {int(user_idx)}: {int((ratings['user_idx'] == int(user_idx)).sum())} ratings"
    return table


def side_by_side(models: Mapping[str, object], dataset: Dataset, item, N: int = 10,
                 with_scores: bool = False) -> pd.DataFrame:
    """Similar items to ``item`` under several models: one column of titles per model, rows = rank.

    ``models`` maps a name to a fitted model or an ``(ids, scores)`` pair. Shorter lists are padded
    with empty strings. ``with_scores`` adds a ``"<name> score"`` column after each model's titles.
    """
    query = _resolve_item(dataset, item)
    columns = {}
    for name, source in models.items():  # one entry per model, a handful at most
        ids, scores = _similar_to(source, query, N)
        titles = np.full(N, "", dtype=object)
        titles[:len(ids)] = dataset.title(ids) if len(ids) else []
        columns[name] = titles
        if with_scores:
            padded = np.full(N, np.nan)
            padded[:len(scores)] = scores
            columns[f"{name} score"] = padded
    table = pd.DataFrame(columns, index=pd.RangeIndex(1, N + 1, name="rank"))
    table.columns.name = f"similar to {dataset.title(query)}"
    table.attrs["query"] = dataset.title(query)
    return table


# --------------------------------------------------------------------------------------------
# Plots
# --------------------------------------------------------------------------------------------
def _new_axes(ax, figsize):
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=figsize)[1]


def _history_values(history) -> np.ndarray:
    """A loss history as floats: a sequence, or an object with ``loss_history_`` (a fitted model)."""
    values = getattr(history, "loss_history_", history)
    return np.asarray(values, dtype=np.float64).ravel()


def plot_learning_curve(history, ax=None, title: str = "Training loss", ylabel: str = "loss",
                        xlabel: str = "epoch", logy: bool = False):
    """One line per history, epochs numbered from 1; returns the Axes.

    ``history`` is one history (a sequence of floats or a fitted model with ``loss_history_``) or a dict
    name -> history (several models, or e.g. ``{"train": ..., "validation": ...}``; a legend is drawn).
    """
    ax = _new_axes(ax, (6, 4))
    named = isinstance(history, Mapping)
    histories = history if named else {None: history}
    for name, values in histories.items():
        values = _history_values(values)
        ax.plot(np.arange(1, len(values) + 1), values, marker="o" if len(values) <= 30 else None,
                markersize=3, label=name)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    if logy:
        ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    if named:
        ax.legend()
    return ax


def _leaderboard_frame(scores) -> pd.DataFrame:
    """Rows = models, columns = metrics, from a DataFrame, a Series / dict name -> value, or a dict
    name -> {metric: value} (what :func:`mflib.evaluation.evaluate_ranking` returns per model)."""
    if isinstance(scores, pd.DataFrame):
        return scores.astype(float)
    if isinstance(scores, pd.Series):
        return scores.astype(float).to_frame(scores.name or "score")
    if isinstance(scores, Mapping):
        if all(isinstance(v, Mapping) for v in scores.values()):
            return pd.DataFrame.from_dict(scores, orient="index").astype(float)
        return pd.Series(scores, dtype=float).to_frame("score")
    raise TypeError(f"expected a DataFrame, a Series or a dict of scores, got {type(scores).__name__}")


def plot_metric_bars(scores, metric: str | Sequence[str] | None = None, ax=None, title: str | None = None,
                     highlight: str | Sequence[str] | None = None, lower_is_better: bool = False,
                     sort: bool = True, fmt: str = "{:.3f}"):
    """Horizontal bars for a leaderboard, best model on top; returns the Axes.

    ``scores``: DataFrame (rows = models, columns = metrics), Series or dict name -> value, or dict
    name -> {metric: value}. ``metric`` picks one column or a list of them (default: all; several give
    grouped bars). ``highlight`` names model(s) drawn in a contrasting colour (e.g. the student's).
    ``sort`` orders by the first metric, best on top (``lower_is_better`` for RMSE and the like).
    """
    frame = _leaderboard_frame(scores)
    if metric is not None:
        frame = frame[[metric] if isinstance(metric, str) else list(metric)]
    if sort:
        frame = frame.sort_values(frame.columns[0], ascending=lower_is_better, kind="stable")
    highlighted = {highlight} if isinstance(highlight, str) else set(highlight or ())
    n_metrics = len(frame.columns)
    ax = _new_axes(ax, (6, 1.2 + 0.4 * len(frame) * n_metrics))

    height = 0.8 / n_metrics
    positions = np.arange(len(frame))
    is_highlighted = np.array([name in highlighted for name in frame.index])
    for m, column in enumerate(frame.columns):
        values = frame[column].to_numpy()
        if n_metrics == 1:  # one metric: the highlighted model gets its own colour
            colour = np.where(is_highlighted, "C3", "C0").tolist()
        else:  # several: colours tell the metrics apart, the highlighted model gets a black edge
            colour = f"C{m}"
        bars = ax.barh(positions - 0.4 + height * (m + 0.5), values, height=height, color=colour,
                       edgecolor=np.where(is_highlighted, "black", "none").tolist(), label=str(column))
        ax.bar_label(bars, labels=[fmt.format(v) for v in values], padding=2, fontsize=8)
    ax.set_yticks(positions, [str(name) for name in frame.index])
    for label, bold in zip(ax.get_yticklabels(), is_highlighted):
        label.set_fontweight("bold" if bold else "normal")
    ax.invert_yaxis()  # first row (the best after sorting) on top
    ax.margins(x=0.15)
    ax.set_title(title if title is not None else ", ".join(map(str, frame.columns)))
    if n_metrics > 1:
        ax.legend(loc="lower right")
    else:
        ax.set_xlabel(str(frame.columns[0]))
    return ax
