"""``check_similar_items``: a model's item neighbours are well formed, ranked by cosine similarity,
include the famous pairs (Star Wars → The Empire Strikes Back, ...) and share genres.
"""
from __future__ import annotations

from ..feedback import CheckFailure, _np, as_float_array, fmt
from ._common import _call, _fail, _ok
from .ranking import _validate_list

__all__ = ["check_similar_items"]

def _neighbours(model, items, k: int, n_items: int):
    """``(len(items), k)`` neighbour ids, each row checked like a single list (k distinct valid ids, best
    first, the query left out): one call with the array of ids (implicit 0.7), or, for a
    ``similar_items`` that takes one id at a time, one call per id.

    An array call that raises ``TypeError``/``ValueError``/``IndexError`` (what code written for one id
    does with an array) or returns something else than ``(len(items), k)`` ids is retried id by id; any
    other error, and any error of the id-by-id calls, fails the check with its message.
    """
    batch = _np.asarray(items, dtype=_np.int64)
    try:
        result = _call(model.similar_items, "similar_items", batch, N=k)
    except CheckFailure as failure:
        if not isinstance(failure.__cause__, (TypeError, ValueError, IndexError)):
            raise
        result = None  # written for one id at a time: asked id by id below
    if not (isinstance(result, (tuple, list)) and len(result) == 2
            and _np.shape(result[0]) == (len(batch), k) and _np.shape(result[1]) == (len(batch), k)):
        result = None
    rows = []
    for row, item in enumerate(batch):
        if result is None:
            one = _call(model.similar_items, "similar_items", int(item), N=k)
            if not isinstance(one, (tuple, list)) or len(one) != 2:
                _fail(f"similar_items must return a tuple (ids, scores), got {type(one).__name__}")
            ids, scores = one
        else:
            ids, scores = result[0][row], result[1][row]
        ids, _ = _validate_list(ids, scores, n_items, k, f"similar_items({int(item)})")
        if bool(_np.any(ids == item)):
            _fail(f"similar_items({int(item)}) returned the query item itself: leave it out")
        rows.append(ids)
    return _np.stack(rows)


def _titles(dataset, ids) -> str:
    return "; ".join(f"{rank}. {dataset.title(int(i))}" for rank, i in enumerate(ids, 1))


def check_similar_items(model, dataset, train=None, k: int = 10, min_genre_jaccard: float = 0.25,
                        pairs=None, *, check_cosine: bool = True):
    """``model.similar_items(itemid, N=k)`` returns sensible neighbours.

    * well-formed output (k distinct valid ids, scores best first, the query itself left out);
    * with ``check_cosine`` and a model exposing ``item_factors``: the neighbours are the items of
      highest *cosine* similarity (the raw inner product is a classic bug);
    * famous pairs (``mflib.evaluation.KNOWN_PAIRS`` unless ``pairs`` is given, ``{}`` to skip): Star
      Wars → The Empire Strikes Back / Return of the Jedi, The Godfather → Part II. Titles are found with
      ``dataset.find_item`` (exact title, else the most-rated title containing it), so parts of titles
      such as ``{"Star Wars": ["Empire Strikes Back"]}`` work on every MovieLens variant;
    * mean genre Jaccard@k over items with ≥ 50 train positives ≥ ``min_genre_jaccard``.
    """
    __tracebackhide__ = True
    from mflib import metrics
    from mflib.evaluation import KNOWN_PAIRS, frequent_items

    n_items = dataset.n_items
    pairs = KNOWN_PAIRS if pairs is None else pairs
    if train is None:
        train = dataset.implicit()
    item_factors = getattr(model, "item_factors", None) if check_cosine else None
    if item_factors is not None:
        vectors = as_float_array(item_factors)
        if vectors.ndim != 2 or vectors.shape[0] != n_items:
            _fail(f"check_similar_items: item_factors has shape {vectors.shape}; expected (n_items, factors) "
                  f"with n_items = {n_items}, so the cosine similarities cannot be checked")
        norms = _np.sqrt(_np.sum(vectors * vectors, axis=1))
        unit = vectors / _np.maximum(norms, 1e-12)[:, None]
    # 1. shape of the output, on the pairs' queries (or the most popular item)
    queries = [dataset.find_item(query) for query in pairs] or [int(frequent_items(train)[0])]
    neighbours = {}
    for query in queries:
        result = _call(model.similar_items, "similar_items", query, N=k)
        if not isinstance(result, (tuple, list)) or len(result) != 2:
            _fail(f"similar_items must return a tuple (ids, scores), got {type(result).__name__}")
        what = f"similar_items({query}) ('{dataset.title(query)}')"
        ids, scores = _validate_list(result[0], result[1], n_items, k, what)
        if query in set(int(i) for i in ids):
            _fail(f"{what} returned the query item itself: leave it out (its cosine with itself is 1, it "
                  "is not a recommendation)")
        neighbours[query] = ids
        # 2. cosine, not the raw inner product
        if item_factors is not None:
            cosine = unit @ unit[query]
            cosine[query] = -_np.inf
            kth = float(_np.sort(cosine)[-k])
            if float(_np.min(cosine[ids])) < kth - 1e-4:
                dots = vectors @ vectors[query]
                dots[query] = -_np.inf
                by_dot = set(int(i) for i in _np.argsort(-dots)[:k])
                if len(by_dot & set(int(i) for i in ids)) >= 0.7 * k:
                    _fail(f"{what} ranks by the raw inner product q_i · q_j; use cosine similarity "
                          "(divide item_factors by their norms first): with raw inner products, items "
                          "with long vectors (popular ones) are everybody's neighbours")
                best = int(_np.argmax(_np.where(_np.isin(_np.arange(n_items), ids), -_np.inf, cosine)))
                _fail(f"{what} does not return the items with the highest cosine similarity of "
                      f"item_factors: '{dataset.title(best)}' (cosine {fmt(cosine[best])}) is missing")
    # 3. famous pairs
    for query_title, expected in pairs.items():
        query = dataset.find_item(query_title)
        found = set(int(i) for i in neighbours[query])
        missing = [dataset.title(dataset.find_item(title)) for title in expected
                   if dataset.find_item(title) not in found]
        if missing:
            _fail(f"'{missing[0]}' is not among the {k} items most similar to '{dataset.title(query)}'. "
                  f"Your top {k}: {_titles(dataset, neighbours[query])}")
    # 4. genre overlap over frequent items (what mflib.evaluation.evaluate_similar_items measures)
    items = frequent_items(train)
    genres = dataset.genre_matrix()
    jaccard = metrics.genre_jaccard(_neighbours(model, items, k, n_items), genres, items)
    random = metrics.random_genre_jaccard(genres, items, k)
    if not jaccard >= min_genre_jaccard:
        _fail(f"similar items share few genres: mean genre Jaccard@{k} = {fmt(jaccard)} over {len(items)} "
              f"frequent items (random vectors give {fmt(random)}; at least {fmt(min_genre_jaccard)} "
              "expected): the item factors have not learned much — train longer or check the updates")
    n_pairs = sum(len(v) for v in pairs.values())
    found = f"; {n_pairs}/{n_pairs} known pairs found" if n_pairs else ""
    _ok(f"similar items: genre Jaccard@{k} = {fmt(jaccard)} (random {fmt(random)}, needed "
        f"{fmt(min_genre_jaccard)}){found}")
