# %% [markdown]
# # 00 — MovieLens, evaluation, and a first recommender
#
# This course builds matrix-factorization recommenders from scratch. Before any model, this notebook
# sets up what every later one relies on:
#
# 1. **the data** — MovieLens, explicit ratings and the implicit feedback we derive from them;
# 2. **the evaluation protocol** — how we split, what we measure, and the popularity baseline every
#    model must beat;
# 3. **a first factor model** — the ALS of the `implicit` library, its API (and a trap in it);
# 4. **similar items and recommendations with titles**;
# 5. **retrieval with faiss** — and why it must use the inner product, not the L2 distance.
#
# Cells marked *YOUR CODE HERE* are yours. The cell after each one checks your answer: a ✓ line means
# it is right; an error message tells you what is wrong. Some checks are hidden and run when the
# notebook is graded.

# %%
import autograder

autograder.setup_notebook()  # one BLAS thread, no progress bars, quiet warnings: reproducible runs

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import scipy.sparse as sp

from mflib.datasets import load_movielens

VARIANT = "100k"  # the MovieLens variant this notebook runs on; "1m" runs it unchanged on MovieLens 1M

# %% [markdown]
# ## 1. MovieLens
#
# GroupLens' MovieLens 100K holds 100,000 ratings (1–5 stars) given by 943 users to 1,682 films in
# 1997–98; MovieLens 1M holds 1,000,209 ratings by 6,040 users of about 3,900 films. `VARIANT` above
# chooses one. `load_movielens` downloads it once, checks its checksum and caches it.
# Every user and item gets a contiguous index (`user_idx`, `item_idx`): the row and the column of
# the user × item matrices below.

# %%
ds = load_movielens(VARIANT)
ds

# %%
ds.ratings.head()

# %%
ds.items.head()

# %% [markdown]
# ### Explicit and implicit feedback
#
# A **rating** is *explicit* feedback: the user tells us how much they liked the film. Most real systems
# only see *implicit* feedback — clicks, plays, purchases: we know what a user interacted with, never
# what they disliked. The classic way to study implicit methods on MovieLens is to keep the ratings
# $r_{ui} \ge 4$ as positives ($x_{ui} = 1$) and forget the rest:
#
# $$ x_{ui} = \begin{cases} 1 & r_{ui} \ge 4 \\ 0 & \text{otherwise (not rated, or rated below 4)} \end{cases} $$
#
# Both live in sparse matrices: only the observed cells are stored.
#
# The first question about such a matrix is its **density**, the share of its cells that are observed:
#
# $$ \text{density} = \frac{\#\text{ratings}}{\#\text{users} \times \#\text{items}} $$
#
# **Exercise.** Write `density`.

# %% [solution] id=density
def density(n_ratings, n_users, n_items):
    """Share of the n_users × n_items matrix that is observed: n_ratings / (n_users · n_items)."""
    ### BEGIN SOLUTION
    return n_ratings / (n_users * n_items)
    ### END SOLUTION

# %% [tests] id=test_density points=1
value = density(len(ds.ratings), ds.n_users, ds.n_items)
ratings_matrix = ds.explicit()
expected = ratings_matrix.nnz / (ratings_matrix.shape[0] * ratings_matrix.shape[1])  # stored / all cells
print(f"density of ML-{VARIANT.upper()}: {value:.2%} (a correct function gives {expected:.2%})")
assert np.isclose(value, expected, rtol=1e-9, atol=0), (
    f"density is {value!r}; {len(ds.ratings):,} ratings in a {ds.n_users:,} × {ds.n_items:,} matrix fill "
    f"{expected:.2%} of it (integer division // gives 0)")
### BEGIN HIDDEN TESTS
from autograder.checks import check_matches_reference

check_matches_reference(
    density, lambda r, u, i: r / (u * i),
    lambda seed: tuple(int(x) for x in np.random.default_rng(seed).integers(1, 5_000, 3)), name="density")
### END HIDDEN TESTS

# %% [markdown]
# Most of the matrix is empty — and MovieLens is a *dense* dataset: every user of ML-100K and ML-1M
# rated at least 20 films. Real catalogues are sparser by orders of magnitude.
#
# ### How are the ratings distributed?

# %%
fig, ax = plt.subplots(figsize=(5, 3))
counts = ds.ratings["rating"].value_counts().sort_index()
ax.bar(counts.index, counts.to_numpy())
ax.set(xlabel="rating (stars)", ylabel="number of ratings", title=f"ML-{VARIANT.upper()} ratings")
plt.show()
print(f"{(ds.ratings['rating'] >= 4).mean():.0%} of the ratings are 4 or 5 stars")

# %% [markdown]
# People rate what they chose to watch, and they choose what they expect to like: ratings are skewed
# towards 4 stars. That is one reason why "which films did the user rate highly" (implicit positives)
# carries most of the signal.
#
# ### The long tail
#
# Sort the films by their number of ratings:

# %%
ratings_per_item = np.bincount(ds.ratings["item_idx"].to_numpy(), minlength=ds.n_items)
ordered = np.sort(ratings_per_item)[::-1]
share = np.cumsum(ordered) / ordered.sum()
head = int(np.searchsorted(share, 0.5)) + 1

fig, ax = plt.subplots(figsize=(6, 3))
ax.plot(np.arange(1, ds.n_items + 1), ordered)
ax.axvline(head, color="C3", linestyle="--", label=f"{head} films = half of all ratings")
ax.set(xlabel="films, most rated first", ylabel="number of ratings", yscale="log",
       title="Popularity: a long tail")
ax.legend()
plt.show()
print(f"the {head} most rated films ({head / ds.n_items:.0%} of the catalogue) get half of the ratings; "
      f"{(ratings_per_item < 5).sum()} films have fewer than 5")

# %% [markdown]
# A few blockbusters collect most of the interactions. That is why *recommending the most popular
# films to everybody* is a strong baseline — and why beating it is the first test of every model.
#
# ### The implicit matrix
#
# `ds.explicit()` is the users × items CSR matrix of ratings. **Exercise.** Write `to_implicit`, which
# turns it into the matrix of positives: 1.0 where the rating is at least `threshold`, nothing stored
# elsewhere (a CSR matrix stores only its non-zero entries — keep it that way: call
# `eliminate_zeros()` if your construction leaves explicit zeros behind).
#
# *Hint:* a CSR matrix keeps its values in `.data`; `(matrix >= threshold)` on a sparse matrix also works.

# %% [solution] id=implicit_matrix
def to_implicit(ratings, threshold=4.0):
    """users × items CSR of float32 1.0 where ratings[u, i] >= threshold; only those entries are stored."""
    ### BEGIN SOLUTION
    positives = sp.csr_matrix(ratings >= threshold, dtype=np.float32)
    positives.eliminate_zeros()
    return positives
    ### END SOLUTION

# %% [tests] id=test_implicit_matrix points=2
X = to_implicit(ds.explicit())
expected_positives = int((ds.ratings["rating"] >= 4).sum())
print(f"{X.shape[0]} users × {X.shape[1]} items, {X.nnz:,} positives "
      f"(a correct function gives {expected_positives:,})")
assert sp.issparse(X), "to_implicit must return a scipy.sparse matrix (CSR), not a dense array"
assert X.shape == (ds.n_users, ds.n_items), (
    f"the matrix has shape {X.shape}, expected (users, items) = {(ds.n_users, ds.n_items)}: transposed?")
assert X.nnz == expected_positives, (
    f"{X.nnz:,} stored entries, expected {expected_positives:,} (the ratings >= 4, 4 included): "
    "is the comparison >= ? are explicit zeros left in the matrix (eliminate_zeros)?")
assert set(np.unique(X.data)) == {1.0}, f"the stored values must all be 1.0, found {np.unique(X.data)[:5]}"
### BEGIN HIDDEN TESTS
from autograder.checks import check_matches_reference


def _reference_implicit(ratings, threshold=4.0):
    ratings = sp.csr_matrix(ratings)
    return sp.csr_matrix(((ratings >= threshold).astype(np.float32)))


def _random_ratings(seed):
    rng = np.random.default_rng(seed)
    matrix = sp.random(30, 40, density=0.2, random_state=seed, format="csr",
                       data_rvs=lambda n: rng.integers(1, 6, n).astype(np.float32))
    return matrix, float(rng.choice([3.0, 4.0, 5.0]))


check_matches_reference(lambda m, t: to_implicit(m, t).toarray(), lambda m, t: _reference_implicit(m, t).toarray(),
                        _random_ratings, name="to_implicit")
for seed in range(3):
    matrix, threshold = _random_ratings(seed)
    before = matrix.copy()
    mine = to_implicit(matrix, threshold)
    assert (matrix != before).nnz == 0 and matrix.nnz == before.nnz, (
        "to_implicit modified the ratings matrix it was given: build a new matrix (arrays shared with the "
        "input, e.g. its indices/indptr, must be copied before eliminate_zeros)")
    assert sp.issparse(mine) and mine.nnz == _reference_implicit(matrix, threshold).nnz, (
        f"to_implicit(threshold={threshold}) stores {mine.nnz} entries instead of "
        f"{_reference_implicit(matrix, threshold).nnz}: only positives may be stored (eliminate_zeros)")
### END HIDDEN TESTS

# %% [markdown]
# ## 2. The evaluation protocol
#
# How good is a recommender? We hide part of what users liked and ask the model to find it.
# The course uses one protocol everywhere (tests, notebooks, autograder, benchmarks), implemented in
# `mflib.evaluation`:
#
# * **split**: a seeded random 80/20 split of the positive (user, item) pairs →
#   `train` and `test`, both users × items;
# * **recommend**: for every user with at least one test positive, the top $k = 10$ items *excluding
#   the items already in the user's train row* (recommending a film the user has already seen is
#   useless, and it would be trivially "right" on train);
# * **score** each list against the user's test positives $T_u$ and average over users:
#
# $$ \text{precision@}k = \frac{|\text{top}_k \cap T_u|}{k}, \qquad
#    \text{recall@}k = \frac{|\text{top}_k \cap T_u|}{|T_u|}, \qquad
#    \text{NDCG@}k = \frac{\sum_{j=1}^{k} \mathbb{1}[\text{item}_j \in T_u] / \log_2(j + 1)}
#                         {\sum_{j=1}^{\min(k, |T_u|)} 1 / \log_2(j + 1)} $$
#
# NDCG rewards hits near the top of the list more than hits at rank 10.

# %%
from mflib.evaluation import evaluate_ranking, implicit_split

train, test = implicit_split(ds, random_state=0)
print(f"train: {train.nnz:,} positives, test: {test.nnz:,} positives, "
      f"{(np.diff(test.indptr) > 0).sum()} users with a test positive")

# %% [markdown]
# ### The popularity baseline
#
# Score every item by its number of positives in train, $n_i = \sum_u x_{ui}$, and recommend to each
# user the most popular items they have not seen yet.
#
# **Exercise.** Write `recommend_popular(popularity, seen_items, N)`: the indices of the `N` items with
# the highest `popularity` that are not in `seen_items`, most popular first. Then
# `precision_at_k(recommended, relevant, k)` for one user: the share of the first `k` recommended items
# that are in `relevant`.

# %% [solution] id=popularity
def recommend_popular(popularity, seen_items, N=10):
    """Indices of the N most popular items not in seen_items, most popular first."""
    ### BEGIN SOLUTION
    scores = np.asarray(popularity, dtype=np.float64).copy()
    scores[np.asarray(seen_items, dtype=np.int64)] = -np.inf
    return np.argsort(-scores, kind="stable")[:N]
    ### END SOLUTION


def precision_at_k(recommended, relevant, k=10):
    """|first k of recommended ∩ relevant| / k."""
    ### BEGIN SOLUTION
    return len(set(np.asarray(recommended)[:k].tolist()) & set(np.asarray(relevant).tolist())) / k
    ### END SOLUTION

# %% [tests] id=test_popularity points=2
print("recommend_popular([5, 9, 1, 7], seen_items=[1], N=2) ->", recommend_popular([5, 9, 1, 7], [1], N=2),
      "(expected [3 0])")
assert list(recommend_popular(np.array([5.0, 9.0, 1.0, 7.0]), np.array([1]), N=2)) == [3, 0], (
    "recommend_popular must skip the seen items and return the most popular first")
print("precision_at_k([1, 2, 3, 4], relevant=[2, 4, 8], k=4) ->", precision_at_k([1, 2, 3, 4], [2, 4, 8], k=4),
      "(expected 0.5)")
assert precision_at_k([1, 2, 3, 4], [2, 4, 8], k=4) == 0.5, "precision@k divides the hits by k"
assert precision_at_k([1, 2, 3, 4], [3, 4], k=2) == 0.0, "only the first k recommendations count"
### BEGIN HIDDEN TESTS
from autograder.checks import check_matches_reference


def _popular_inputs(seed):
    rng = np.random.default_rng(seed)
    popularity = rng.permutation(50).astype(np.float64)  # distinct: no ties to break
    return popularity, rng.choice(50, size=rng.integers(0, 20), replace=False), int(rng.integers(1, 15))


check_matches_reference(recommend_popular,
                        lambda p, s, n: np.argsort(-np.where(np.isin(np.arange(len(p)), s), -np.inf, p))[:n],
                        _popular_inputs, seeds=range(5), name="recommend_popular")


def _precision_inputs(seed):
    rng = np.random.default_rng(seed)
    return rng.permutation(40)[:15], rng.choice(40, size=rng.integers(1, 12), replace=False), int(rng.integers(1, 15))


check_matches_reference(precision_at_k, lambda r, t, k: len(set(r[:k].tolist()) & set(t.tolist())) / k,
                        _precision_inputs, seeds=range(5), name="precision_at_k")
### END HIDDEN TESTS

# %% [markdown]
# Now the popularity baseline on the whole test set (a plain loop over users here, for clarity;
# `mflib.evaluation` does the same with one vectorised computation):

# %%
item_popularity = np.asarray(train.sum(axis=0)).ravel()
test_users = np.flatnonzero(np.diff(test.indptr) > 0)
popular_precision = np.mean([
    precision_at_k(recommend_popular(item_popularity, train[u].indices, N=10), test[u].indices, k=10)
    for u in test_users])
print(f"popularity baseline: precision@10 = {popular_precision:.4f}")

# %% [tests] id=test_popularity_precision points=1
from mflib.evaluation import evaluate_ranking as _evaluate
from mflib.models.popularity import Popularity

_expected = _evaluate(Popularity().fit(train), train, test)["precision@10"]
print(f"your popularity precision@10 {popular_precision:.4f}; mflib.evaluation gives {_expected:.4f}")
assert abs(popular_precision - _expected) < 0.005, (
    f"popularity precision@10 is {popular_precision:.4f}, mflib.evaluation gets {_expected:.4f}: "
    "are the user's train items filtered out? is precision divided by k?")

# %% [markdown]
# Precision@10 is the share of the baseline's recommendations that the user rated 4+ in the hidden
# test set. Here are the baseline's full metrics, computed by the course's evaluation function — the
# numbers every later model is compared with:

# %%
from mflib.models.popularity import Popularity

popularity_model = Popularity().fit(train)
leaderboard = {"popularity": evaluate_ranking(popularity_model, train, test)}
pd.DataFrame(leaderboard).T.round(4)

# %% [markdown]
# ## 3. A first factor model: implicit's ALS
#
# Matrix factorization gives every user a vector $p_u \in \mathbb{R}^k$ and every item a vector
# $q_i \in \mathbb{R}^k$ and scores a pair by their inner product,
#
# $$ \hat{x}_{ui} = p_u \cdot q_i . $$
#
# Alternating least squares (notebook 02) fits them to implicit data. The
# [`implicit`](https://github.com/benfred/implicit) library has a fast implementation; we use it here
# as a baseline and will write our own later.
#
# **The trap.** Since implicit 0.5, `fit` takes the **users × items** matrix. Older tutorials (and many
# blog posts) pass the transpose, `items × users`, as the old API wanted. Nothing crashes: the model
# silently learns *item* vectors in `user_factors`, and every recommendation is garbage. Always check
# the shapes after fitting:

# %%
from implicit.als import AlternatingLeastSquares

als = AlternatingLeastSquares(factors=32, regularization=1.0, iterations=15, random_state=0)
als.fit(train, show_progress=False)  # users × items
print("user_factors", als.user_factors.shape, " item_factors", als.item_factors.shape)

# %%
from autograder.checks import check_factors

old_style = AlternatingLeastSquares(factors=32, iterations=2, random_state=0)
old_style.fit(train.T.tocsr(), show_progress=False)  # the old, transposed convention: WRONG today
try:
    check_factors(old_style, n_users=ds.n_users, n_items=ds.n_items)
except AssertionError as error:
    print("check_factors says:", error)
check_factors(als, n_users=ds.n_users, n_items=ds.n_items)

# %% [markdown]
# The correctly fitted model against the baseline:

# %%
leaderboard["implicit ALS"] = evaluate_ranking(als, train, test)
pd.DataFrame(leaderboard).T.round(4)

# %% [markdown]
# ## 4. What did it learn? Similar items and recommendations, with titles
#
# Two films are similar when their item vectors point the same way: **cosine similarity**
# $\cos(q_i, q_j) = q_i \cdot q_j / (\lVert q_i \rVert \lVert q_j \rVert)$. Nobody told the model
# anything about genres or sequels — it only saw who liked what.

# %%
from mflib.display import recommendations_table, similar_items_table, user_history
from mflib.retrieval import similar_items

star_wars = ds.find_item("Star Wars")
ids, scores = similar_items(als.item_factors, star_wars, N=10)  # cosine, query left out
similar_items_table((ids[0], scores[0]), ds, star_wars)

# %% [markdown]
# The sequels come first: the model found them from who-liked-what alone. Further down, obscure
# films may appear (on ML-100K, *Dunston Checks In*). A film that only three people liked gets a
# vector estimated from three data points — mostly noise — and noise can point anywhere, including
# right next to a popular film. A common remedy is to only consider neighbours with enough support, here at least 20
# positives in train:

# %%
unit = als.item_factors / np.linalg.norm(als.item_factors, axis=1, keepdims=True)


def neighbours(title, N=10, min_positives=0):
    query = ds.find_item(title)
    cosine = unit @ unit[query]
    cosine[item_popularity < min_positives] = -np.inf
    cosine[query] = -np.inf
    return ds.title(np.argsort(-cosine)[:N])


pd.DataFrame({"Star Wars: >= 20 positives": neighbours("Star Wars", min_positives=20),
              "Fargo: all items": neighbours("Fargo"),
              "Fargo: >= 20 positives": neighbours("Fargo", min_positives=20),
              "Sound of Music: >= 20 positives": neighbours("Sound of Music", min_positives=20)},
             index=pd.RangeIndex(1, 11, name="rank"))

# %% [markdown]
# And one user's recommendations next to what they rated highly. `hit` marks the recommendations that
# are among the user's hidden test positives.

# %%
user = 42
user_history(ds, user, n=8)

# %%
recommendations_table(als, ds, user, train, N=10, test_items=test)

# %% [markdown]
# ## 5. Retrieval with faiss: inner product, not L2
#
# Recommending means finding the items with the largest $p_u \cdot q_i$ — a *maximum inner product
# search*. With a few thousand items we can score them all; with millions we use an index such as
# [faiss](https://github.com/facebookresearch/faiss). Nearest-neighbour indexes are often built with
# the L2 distance, and
#
# $$ \lVert p_u - q_i \rVert^2 = \lVert p_u \rVert^2 - 2\, p_u \cdot q_i + \lVert q_i \rVert^2 . $$
#
# $\lVert p_u \rVert^2$ is the same for every item, but $\lVert q_i \rVert^2$ is not: the L2 index
# *penalises items with long vectors*. A two-item example:

# %%
import faiss

user_vector = np.array([[1.0, 0.0]], dtype=np.float32)
item_vectors = np.array([[1.0, 0.0],    # item a: short vector, same direction
                         [3.0, 0.5]],   # item b: long vector: the model's score is 3 times higher
                        dtype=np.float32)
print("scores p·q:", (user_vector @ item_vectors.T).ravel())
for name, index in [("inner product", faiss.IndexFlatIP(2)), ("L2", faiss.IndexFlatL2(2))]:
    index.add(item_vectors)
    _, found = index.search(user_vector, 2)
    print(f"{name:>13} index ranks: {['a', 'b'][found[0, 0]]} first")

# %% [markdown]
# In a trained model, long item vectors belong to the films many people like. How much of the model's
# true top 10 does each kind of index return, over all users?

# %%
from mflib.retrieval import FaissIndex, compare_l2_and_inner_product, topk_inner_product

recall = compare_l2_and_inner_product(als.user_factors, als.item_factors, k=10)
exact_ids, _ = topk_inner_product(als.user_factors, als.item_factors, 10)
l2_ids, _ = FaissIndex(als.item_factors, metric="l2").search(als.user_factors, 10)
norms = np.linalg.norm(als.item_factors, axis=1)
print(f"share of the exact top-10 found: inner-product index {recall['ip']:.0%}, L2 index {recall['l2']:.0%}")
print(f"mean number of train positives of the items returned: exact {item_popularity[exact_ids].mean():.0f}, "
      f"L2 {item_popularity[l2_ids].mean():.0f}")
print(f"correlation of an item's vector norm with its popularity: "
      f"{np.corrcoef(norms, item_popularity)[0, 1]:.2f}")

# %% [markdown]
# The L2 index returns a different, less popular set of films than the model's own top 10: the
# model's scores say one thing and the index another. Use an inner-product index (`IndexFlatIP`, or
# HNSW with `METRIC_INNER_PRODUCT`) for recommendation; for similar items, normalise the vectors
# first (on unit vectors, cosine, inner product and L2 give the same order). Notebook 06 compares the
# exact search with an approximate HNSW index.

# %% [manual] id=q_l2 points=2
# **Question.** In two or three sentences: why does an L2 index over the raw user and item factors
# return different items than the model's top scores, and which items does it favour? Name one
# transformation of the item vectors (or of the problem) that makes an L2 or cosine index valid for
# recommendation.
#
# YOUR ANSWER HERE

# %% [markdown]
# ## What's next
#
# * **01** — explicit ratings: biased matrix factorization trained with SGD (Funk SVD);
# * **02** — implicit feedback: alternating least squares, written by you;
# * **03** and **04** — learning to rank: BPR and WARP;
# * **05** — factorization machines and cold start;
# * **06** — the capstone: every model on the same split.
