# %% [markdown]
# # 04 — WARP: Weighted Approximate-Rank Pairwise loss
#
# BPR (assignment 03) learns to put each liked film above each film the user did not interact with. It
# weighs all those pairs alike: it optimises a smoothed **AUC**, in which moving a liked film from rank 900
# to rank 800 counts as much as moving it from rank 11 to rank 10. But a user sees ten films, and we grade
# with **NDCG@10** and **precision@10**: only the top of the list matters.
#
# WARP (Weston, Bengio & Usunier, *IJCAI* 2011; the default loss of the LightFM library) changes two things:
#
# * it only learns from **violating** pairs — negatives that score higher than the positive, or nearly —
#   found by sampling negatives *until one violates*;
# * it weighs each update by a function of the positive's **rank**, estimated from how many draws it took
#   to find a violator.
#
# In this notebook you will write, step by step:
#
# 1. the rank weight $L(\text{rank})$;
# 2. the sampler of violating negatives (never a positive!);
# 3. the WARP loss of a batch;
# 4. its gradient — checked against finite differences;
# 5. the update: AdaGrad, plus Weston et al.'s norm bound;
# 6. the training loop,
#
# and then look at what the model learned: a learning curve, recommendations, similar films, and a
# comparison with the popularity baseline and with a WARP that cannot search for violators. Recommending is
# the same as in assignment 02 (the top $N$ unseen items by score): the provided `LearnedFactors` does it.
#
# Cells marked *YOUR CODE HERE* are yours. The cell after each one checks your answer: a ✓ line means your
# answer passed that visible check, an error message says what is wrong. The visible checks catch the
# common mistakes, not all of them: hidden tests, run when the notebook is graded, also compare your
# functions with the reference on fresh random inputs.
#
# The notebook runs on MovieLens 100K; set `VARIANT = "1m"` in the next cell to run it unchanged on the
# 1M variant (slower: about 10 times as many positives; the grading thresholds are set for 100K).

# %%
import autograder

autograder.setup_notebook()  # one BLAS thread, no progress bars, quiet warnings: reproducible runs

import matplotlib.pyplot as plt
import numpy as np
import scipy.sparse as sp

from autograder.checks import (check_factors, check_gradient, check_loss_decreases, check_matches_reference,
                               check_ranking, check_similar_items)
from mflib.datasets import load_movielens
from mflib.display import plot_learning_curve, plot_metric_bars, recommendations_table, similar_items_table
from mflib.evaluation import evaluate_ranking, implicit_split
from mflib.gradcheck import check_gradients
from mflib.models.popularity import Popularity
from mflib.teaching import LearnedFactors

VARIANT = "100k"  # the MovieLens variant for the whole notebook: "100k", or "1m" (runs unchanged, slower)

# %% [markdown]
# ## 1. Data
#
# As before, a rating of 4 or 5 stars is a **positive**; the course protocol splits the positives 80/20
# at random.

# %%
ds = load_movielens(VARIANT)
train, test = implicit_split(ds, random_state=0)
print(f"{ds.n_users} users x {ds.n_items} items; {train.nnz:,} training positives, {test.nnz:,} test positives")

# %% [markdown]
# ## 2. The rank of a positive, and what a mistake at the top costs
#
# The model is the same as in BPR, an inner product plus an item bias:
#
# $$ x_{ui} = \mathbf p_u \cdot \mathbf q_i + b_i . $$
#
# For a positive $(u, i)$, call a non-positive item $j$ a **violator** when it scores above
# $x_{ui} - 1$, i.e. when it beats the positive or comes within the **margin** of 1:
#
# $$ j \text{ violates } (u, i) \iff x_{uj} > x_{ui} - 1 . $$
#
# The **rank** of the positive is the number of violators: rank 0 means the positive sits above every
# non-positive by a margin, rank 30 that 30 films crowd it — and with rank $\geq 10$ it is probably not on
# the user's first screen. WARP minimises, over the training positives,
#
# $$ \sum_{(u,i)} L\big(\text{rank}(u, i)\big)\ \cdot\ \underset{j \text{ violating}}{\text{mean}}
#    \ \big|1 - x_{ui} + x_{uj}\big|_+ , \qquad
#    L(r) = \sum_{k=1}^{r} \frac{1}{k} = 1 + \frac12 + \dots + \frac1r . $$
#
# $|z|_+ = \max(0, z)$ is the **hinge**. $L$ (the harmonic number, $\approx \ln r + 0.58$) grows fast for
# small ranks and slowly for large ones: pushing a positive from rank 10 to rank 1 removes
# $L(10) - L(1) = 1.9$ from the loss, from rank 1000 to rank 991 only $0.009$. Compare with the AUC, which
# is linear in the rank: there both moves are worth the same. The weights $\alpha_k = 1/k$ in $L$ are what
# put precision at the top first (Usunier, Buffoni & Gallinari 2009); $\alpha_k = 1$ would give back the
# AUC.
#
# ## 3. Estimating the rank by sampling
#
# Counting violators means scoring all 1,682 films for every positive: too slow. WARP estimates the rank
# instead. Draw random items one at a time until one violates. If $r$ of the $n - 1$ other items violate,
# each draw finds one with probability $p = r / (n-1)$, so the number of draws $N$ until the first
# violator is geometric with mean $1/p = (n-1)/r$. Hence the estimate
#
# $$ \widehat{\text{rank}} = \max\!\Big(1, \Big\lfloor \frac{n - 1}{N} \Big\rfloor\Big) . $$
#
# A violator on the first draw: the positive is probably deep in the list (big weight). Ten draws needed:
# it is near the top (small weight). No violator in `max_sampled` draws: the positive is well placed — skip
# it, no update at all. The estimate is noisy, but $L$ grows like a logarithm, which damps the noise:

# %%
rng = np.random.default_rng(0)
n = ds.n_items
fig, ax = plt.subplots(figsize=(6, 3.5))
for true_rank in [3, 30, 300]:
    draws = rng.geometric(true_rank / (n - 1), size=20_000)
    estimate = np.maximum(1, (n - 1) // draws)
    ax.hist(np.log10(estimate), bins=40, alpha=0.6, label=f"true rank {true_rank}")
ax.set(xlabel="log10(estimated rank)", ylabel="count", title="Rank estimates from one geometric draw")
ax.legend()
plt.show()

# %% [markdown]
# **Exercise 1.** Write `warp_rank_weight`: for an array of draw counts `n_draws` ($N \ge 1$, the draw at
# which the violator was found) and the number of items $n$, return $L(\widehat{\text{rank}})$ as a float
# array. Vectorise: precompute the harmonic numbers $H_1, \dots, H_{n-1}$ with `np.cumsum` and index them.

# %% [solution] id=warp_rank_weight
def warp_rank_weight(n_draws, n_items):
    """L(rank) = 1 + 1/2 + ... + 1/rank with rank = max(1, (n_items - 1) // n_draws), element-wise."""
    ### BEGIN SOLUTION
    n_draws = np.asarray(n_draws)
    rank = np.maximum(1, (n_items - 1) // n_draws)          # the estimated rank, at least 1
    harmonic = np.cumsum(1.0 / np.arange(1, n_items))       # H_1, H_2, ..., H_{n_items - 1}
    return harmonic[rank - 1]
    ### END SOLUTION

# %% [tests] id=test_warp_rank_weight points=2
weights = warp_rank_weight(np.array([1, 2, 3, 10, 25]), 11)
print("L(rank) =", np.round(weights, 4), "(correct: [2.929  2.2833 1.8333 1.  1.])")
assert np.all(np.diff(weights) <= 0) and weights[0] > weights[-1], (
    "L(rank) must DECREASE with the number of draws: a violator found on the first draw means many violators "
    "(a large rank, a big weight); rank = max(1, (n_items - 1) // n_draws)")
expected = np.array([7381 / 2520, 137 / 60, 11 / 6, 1.0, 1.0])
check_matches_reference(warp_rank_weight, lambda *args: expected,
                        lambda seed: (np.array([1, 2, 3, 10, 25]), 11), seeds=(0,),
                        name="warp_rank_weight with 11 items")
### BEGIN HIDDEN TESTS
from mflib.models import warp as reference

check_matches_reference(warp_rank_weight, reference.warp_rank_weight,
                        lambda seed: (np.random.default_rng(seed).integers(1, 30, 50), 1682), name="warp_rank_weight")
check_matches_reference(warp_rank_weight, reference.warp_rank_weight,
                        lambda seed: (np.arange(1, 40), 7 + seed), name="warp_rank_weight on tiny catalogues")
### END HIDDEN TESTS

# %% [markdown]
# With `max_sampled = 10`, what range of weights can WARP produce on this catalogue?

# %%
draws = np.arange(1, 11)
print(dict(zip(draws.tolist(), np.round(warp_rank_weight(draws, ds.n_items), 2).tolist())))

# %% [markdown]
# ## 4. Sampling violators
#
# A few helpers are given. `positive_keys` encodes every training positive $(u, i)$ as the single integer
# $u \cdot n + i$, sorted; `is_positive` then tests many pairs at once by binary search
# (`np.searchsorted`); `warp_scores` computes $x_{ui}$ for arrays of pairs.

# %% [locked] id=given_helpers
def positive_keys(user_items):
    """Sorted int64 keys u * n_items + i of the positives (stored entries) of a users x items matrix."""
    user_items = sp.csr_matrix(user_items)
    user_items.sum_duplicates()
    rows = np.repeat(np.arange(user_items.shape[0], dtype=np.int64), np.diff(user_items.indptr))
    return rows * user_items.shape[1] + user_items.indices


def is_positive(keys, users, items, n_items):
    """Boolean array: is (users[...], items[...]) a positive? users and items broadcast together."""
    query = np.asarray(users, dtype=np.int64) * n_items + np.asarray(items, dtype=np.int64)
    position = np.minimum(np.searchsorted(keys, query), len(keys) - 1)
    return keys[position] == query


def warp_scores(user_factors, item_factors, item_bias, users, items):
    """x_ui = p_u . q_i + b_i for each pair (users[b], items[b]); no b_i when item_bias is None."""
    x = np.sum(user_factors[users] * item_factors[items], axis=1)
    return x if item_bias is None else x + item_bias[items]


def make_sampling_problem(seed, n_users=6, n_items=12, k=3, batch=16):
    """(user_factors, item_factors, item_bias, users, positives, keys): a small random problem."""
    rng = np.random.default_rng(seed)
    liked = rng.random((n_users, n_items)) < 0.3
    liked[np.arange(n_users), rng.integers(0, n_items, n_users)] = True   # everybody has a positive
    keys = positive_keys(sp.csr_matrix(liked.astype(float)))
    pick = rng.integers(0, len(keys), batch)
    users, positives = keys[pick] // n_items, keys[pick] % n_items
    return (rng.normal(0, 0.8, (n_users, k)), rng.normal(0, 0.8, (n_items, k)), rng.normal(0, 0.5, n_items),
            users, positives, keys)

# %% [markdown]
# We sample a whole batch of positives at once. Instead of a `while` loop per positive, draw a
# `(batch, max_sampled)` matrix of candidates in one call, score them all, and mark the violators in a
# boolean matrix: the first violator of each row is its first `True` — `np.argmax` on a boolean row returns
# the position of the first `True` (and 0 when there is none, so check that it is really `True`).
#
# A candidate that the user **liked** is not a negative: it must never be returned, even if it scores
# high (it usually does!). It still counts as a draw.
#
# **Exercise 2.** Write `sample_violators`. Draw the candidates with exactly
# `candidates = rng.integers(0, n_items, size=(len(users), max_sampled))` (one call, so that your draws
# match the reference), where `n_items = item_factors.shape[0]`. Return three arrays of length
# `len(users)`:
#
# * `negatives[b]`: the first candidate of row $b$ that is not a positive of `users[b]` and violates the
#   margin, $x_{uj} > x_{ui} - $ `margin`; $-1$ when the row has none;
# * `n_draws[b]`: its position among the draws, counting from 1 (`max_sampled` when there is none);
# * `found[b]`: `True` when row $b$ has a violator.
#
# Hint: `np.einsum("bk,bsk->bs", A, B)` computes the `max_sampled` inner products of each row at once.

# %% [solution] id=sample_violators
def sample_violators(user_factors, item_factors, item_bias, users, positives, keys, max_sampled, rng, margin=1.0):
    """For each positive (users[b], positives[b]): the first of max_sampled random items that is not a
    positive of the user and scores above x_ui - margin. Returns (negatives, n_draws, found)."""
    ### BEGIN SOLUTION
    n_items = item_factors.shape[0]
    candidates = rng.integers(0, n_items, size=(len(users), max_sampled))
    x_positive = warp_scores(user_factors, item_factors, item_bias, users, positives)
    x_candidates = np.einsum("bk,bsk->bs", user_factors[users], item_factors[candidates])
    if item_bias is not None:
        x_candidates = x_candidates + item_bias[candidates]
    violates = x_candidates > x_positive[:, None] - margin
    violates &= ~is_positive(keys, users[:, None], candidates, n_items)   # a liked item is never a negative
    first = np.argmax(violates, axis=1)                                   # first True of each row
    rows = np.arange(len(users))
    found = violates[rows, first]
    negatives = np.where(found, candidates[rows, first], -1)
    n_draws = np.where(found, first + 1, max_sampled)
    return negatives, n_draws, found
    ### END SOLUTION

# %% [tests] id=test_sample_violators points=3
P, Q, b, users, positives, keys = make_sampling_problem(0)
negatives, n_draws, found = (np.asarray(a) for a in sample_violators(P, Q, b, users, positives, keys, 5,
                                                                     np.random.default_rng(0)))
print("negatives:", negatives, "\ncorrect:  ", np.array([10, -1, 7, 8, 0, 10, 1, 0, 0, 6, -1, 4, -1, 1, -1, 0]))
print("n_draws:  ", n_draws, "\ncorrect:  ", np.array([1, 5, 1, 1, 4, 1, 3, 2, 2, 2, 5, 2, 5, 1, 5, 2]))
assert negatives.shape == n_draws.shape == found.shape == (len(users),), (
    "sample_violators must return three arrays of length len(users): (negatives, n_draws, found)")
liked = is_positive(keys, users[found], negatives[found], Q.shape[0])
assert not liked.any(), (f"{liked.sum()} sampled negatives are positives of their user: drop the candidates "
                         "for which is_positive(...) is True")
x_ui = warp_scores(P, Q, b, users[found], positives[found])
x_uj = warp_scores(P, Q, b, users[found], negatives[found])
assert np.all(x_uj > x_ui - 1), ("a returned negative does not violate the margin: a violator j needs "
                                 "x_uj > x_ui - margin (check the sign of the margin)")
candidates = np.random.default_rng(0).integers(0, Q.shape[0], size=(len(users), 5))
assert np.all(candidates[found, n_draws[found] - 1] == negatives[found]), (
    "the returned negative is not the candidate at position n_draws (counting from 1) of the matrix "
    "rng.integers(0, n_items, size=(len(users), max_sampled)): draw all max_sampled candidates of every row in "
    "that one call")
expected_found = np.array([True, False, True, True, True, True, True, True, True, True, False, True, False,
                           True, False, True])
assert not np.any(expected_found & ~found), ("you found no violator for some rows that have one: is the "
                                             "margin condition x_uj > x_ui - margin right?")
assert not np.any(~expected_found & found), "you found violators in rows that have none (margin condition?)"
assert np.all(n_draws[~found] == 5) and np.all(negatives[~found] == -1), (
    "rows without a violator must have negatives = -1 and n_draws = max_sampled")
assert np.array_equal(negatives, [10, -1, 7, 8, 0, 10, 1, 0, 0, 6, -1, 4, -1, 1, -1, 0]), (
    "some rows return a violator, but not the FIRST one among the candidates (in the order drawn)")
print("✓ sample_violators returns the first violator of every row, never a positive")
### BEGIN HIDDEN TESTS
from mflib.models import warp as reference


def seeded(sampler):
    """The sampler with a fresh Generator built from an integer seed (Generators cannot be compared)."""
    def run(user_factors, item_factors, item_bias, users, positives, keys, max_sampled, seed, margin):
        return sampler(user_factors, item_factors, item_bias, users, positives, keys, max_sampled,
                       np.random.default_rng(seed), margin)
    return run


def sampler_inputs(seed, bias=True, margin=1.0, max_sampled=6):
    P, Q, b, users, positives, keys = make_sampling_problem(seed + 1)
    return (P, Q, b if bias else None, users, positives, keys, max_sampled, seed, margin)


check_matches_reference(seeded(sample_violators), seeded(reference.sample_violators), sampler_inputs,
                        name="sample_violators")
check_matches_reference(seeded(sample_violators), seeded(reference.sample_violators),
                        lambda seed: sampler_inputs(seed + 5, bias=False, margin=0.5, max_sampled=4),
                        name="sample_violators without biases, margin 0.5")
### END HIDDEN TESTS

# %% [markdown]
# ## 5. The loss of a batch
#
# Sampling gives triples $(u, i, j)$ — a positive and its violator — each with a weight
# $w = L(\widehat{\text{rank}})$ that we now hold fixed. The loss of a batch $B$ of triples is the weighted
# hinge plus an (optional) L2 penalty counted once per triple, as in BPR:
#
# $$ \mathcal L(B) = \sum_{(u,i,j) \in B} \Big[ w_{uij}\, \big|1 - x_{ui} + x_{uj}\big|_+
#    + \frac{\lambda}{2}\big(\lVert\mathbf p_u\rVert^2 + \lVert\mathbf q_i\rVert^2 + \lVert\mathbf q_j\rVert^2
#    + b_i^2 + b_j^2\big) \Big] . $$
#
# Unlike $-\ln\sigma$ in BPR, the hinge is exactly zero once the positive wins by the margin: such a pair
# stops pulling on the parameters.
#
# **Exercise 3.** Write `warp_loss`: the **sum** above (a Python float). With `item_bias=None` there are
# no bias terms (neither in the scores nor in the penalty).

# %% [solution] id=warp_loss
def warp_loss(user_factors, item_factors, item_bias, users, positives, negatives, weights, regularization):
    """sum over triples of w |1 - x_ui + x_uj|_+ + lambda/2 (|p_u|^2 + |q_i|^2 + |q_j|^2 + b_i^2 + b_j^2)."""
    ### BEGIN SOLUTION
    x_ui = warp_scores(user_factors, item_factors, item_bias, users, positives)
    x_uj = warp_scores(user_factors, item_factors, item_bias, users, negatives)
    hinge = np.maximum(0.0, 1.0 - x_ui + x_uj)
    penalty = (np.sum(user_factors[users] ** 2) + np.sum(item_factors[positives] ** 2)
               + np.sum(item_factors[negatives] ** 2))
    if item_bias is not None:
        penalty += np.sum(item_bias[positives] ** 2) + np.sum(item_bias[negatives] ** 2)
    return float(np.sum(weights * hinge) + 0.5 * regularization * penalty)
    ### END SOLUTION

# %% [markdown]
# Small random problems for the next checks (used again below). A batch may — and, with sampling, will —
# contain the same user or item several times.

# %% [locked] id=given_problems
def make_problem(seed, n_users=5, n_items=8, k=3, batch=30, bias=True, max_norm=None):
    """float64 parameters, a batch of triples with repeated users/items, and their weights."""
    rng = np.random.default_rng(seed)
    params = {"user_factors": rng.normal(0, 1, (n_users, k)), "item_factors": rng.normal(0, 1, (n_items, k))}
    if max_norm is not None:   # start inside the ball ||v|| <= max_norm
        for name in params:
            norms = np.linalg.norm(params[name], axis=1, keepdims=True)
            params[name] *= np.minimum(1.0, 0.9 * max_norm / norms)
    if bias:
        params["item_bias"] = rng.normal(0, 1, n_items)
    users = rng.integers(0, n_users, batch)
    positives = rng.integers(0, n_items, batch)
    negatives = (positives + rng.integers(1, n_items, batch)) % n_items   # never the positive itself
    weights = 1.0 + 7.0 * rng.random(batch)
    return params, users, positives, negatives, weights


def make_inputs(seed, bias=True, max_norm=None, **extra):
    """The positional arguments (user_factors, item_factors, item_bias, users, positives, negatives, weights,
    *extra) of make_problem(seed)."""
    params, users, positives, negatives, weights = make_problem(seed, bias=bias, max_norm=max_norm)
    return (params["user_factors"], params["item_factors"], params.get("item_bias"), users, positives, negatives,
            weights, *extra.values())

# %% [tests] id=test_warp_loss points=2
P = np.array([[1.0, 0.0]])
Q = np.array([[0.5, 0.0], [0.2, 0.0], [-3.0, 0.0]])
b = np.array([0.0, 0.1, 0.0])
# x_u0 = 0.5, x_u1 = 0.3, x_u2 = -3. Triples (u, i, j): (0, 0, 1) has hinge 1 - 0.5 + 0.3 = 0.8;
# (0, 0, 2) has hinge max(0, 1 - 0.5 - 3) = 0; (0, 1, 2) has max(0, 1 - 0.3 - 3) = 0
small_example = (P, Q, b, np.array([0, 0, 0]), np.array([0, 0, 1]), np.array([1, 2, 2]), np.array([2.0, 5.0, 3.0]))
value = warp_loss(*small_example, 0.0)
print(f"loss = {value:.6f} (correct: 2 x 0.8 + 5 x 0 + 3 x 0 = 1.6)")
check_matches_reference(warp_loss, lambda *args: 1.6, lambda seed: (*small_example, 0.0), seeds=(0,),
                        name="warp_loss on the small example")
value = warp_loss(*small_example, 1.0)
print(f"with lambda = 1: loss = {value:.6f} (correct: 1.6 + 1/2 x 21.6 = 12.4; the penalty counts p_0 three times)")
check_matches_reference(warp_loss, lambda *args: 12.4, lambda seed: (*small_example, 1.0), seeds=(0,),
                        name="warp_loss with the penalty (lambda = 1)")
### BEGIN HIDDEN TESTS
from mflib.models import warp as reference

check_matches_reference(warp_loss, reference.warp_loss, lambda seed: make_inputs(seed, lam=0.3), name="warp_loss")
check_matches_reference(warp_loss, reference.warp_loss, lambda seed: make_inputs(seed, bias=False, lam=0.3),
                        name="warp_loss without biases")
### END HIDDEN TESTS

# %% [markdown]
# ## 6. The gradient
#
# Let $a_{uij} = 1$ when the hinge is active ($1 - x_{ui} + x_{uj} > 0$) and $0$ otherwise. Since the
# weight $w$ is held fixed, one triple contributes
#
# $$
# \begin{aligned}
# \frac{\partial \mathcal L}{\partial \mathbf p_u} &= a\,w\,(\mathbf q_j - \mathbf q_i) + \lambda \mathbf p_u, &
# \frac{\partial \mathcal L}{\partial b_i} &= -a\,w + \lambda b_i, \\
# \frac{\partial \mathcal L}{\partial \mathbf q_i} &= -a\,w\,\mathbf p_u + \lambda \mathbf q_i, &
# \frac{\partial \mathcal L}{\partial b_j} &= +a\,w + \lambda b_j, \\
# \frac{\partial \mathcal L}{\partial \mathbf q_j} &= +a\,w\,\mathbf p_u + \lambda \mathbf q_j .
# \end{aligned}
# $$
#
# Compare with BPR: the smooth factor $\sigma(-x_{uij})$ became $a\,w$ — zero for pairs that are right by
# the margin, and *larger* for positives that are far from the top. As in BPR, the gradient of
# $\mathcal L(B)$ is the **sum** over the batch: a user or item that occurs in several triples receives one
# term per occurrence (`np.add.at`, `np.bincount` or a sparse product; never `grad[users] += rows`).
# (The hinge has a kink at $1 - x_{ui} + x_{uj} = 0$; on random inputs we are never exactly on it.)
#
# **Exercise 4.** Write `warp_gradients`: a dict with the keys `"user_factors"`, `"item_factors"` and, if
# `item_bias` is not `None`, `"item_bias"`, each a full-size array of its parameter's shape.

# %% [solution] id=warp_gradients
def warp_gradients(user_factors, item_factors, item_bias, users, positives, negatives, weights, regularization):
    """Gradients of warp_loss w.r.t. every parameter: a dict of full-size arrays."""
    ### BEGIN SOLUTION
    x_ui = warp_scores(user_factors, item_factors, item_bias, users, positives)
    x_uj = warp_scores(user_factors, item_factors, item_bias, users, negatives)
    aw = np.where(1.0 - x_ui + x_uj > 0, weights, 0.0)[:, None]   # a * w: zero where the hinge is flat
    p_u, q_i, q_j = user_factors[users], item_factors[positives], item_factors[negatives]
    grad_user = np.zeros_like(user_factors)
    grad_item = np.zeros_like(item_factors)
    np.add.at(grad_user, users, aw * (q_j - q_i) + regularization * p_u)
    np.add.at(grad_item, positives, -aw * p_u + regularization * q_i)
    np.add.at(grad_item, negatives, aw * p_u + regularization * q_j)
    gradients = {"user_factors": grad_user, "item_factors": grad_item}
    if item_bias is not None:
        grad_bias = np.zeros_like(item_bias)
        np.add.at(grad_bias, positives, -aw[:, 0] + regularization * item_bias[positives])
        np.add.at(grad_bias, negatives, aw[:, 0] + regularization * item_bias[negatives])
        gradients["item_bias"] = grad_bias
    return gradients
    ### END SOLUTION

# %% [markdown]
# **Gradient check.** Central differences in float64, coordinate by coordinate; a correct gradient gives a
# relative error below $10^{-6}$ (usually $10^{-9}$ or less), a wrong one above $10^{-2}$.

# %% [tests] id=test_warp_gradients points=3
params, users, positives, negatives, weights = make_problem(0)


def loss_and_gradient(lam):
    """loss_fn(params) and grad_fn(params) on the triples of make_problem(0), with penalty lam."""
    def loss_fn(p):
        return warp_loss(p["user_factors"], p["item_factors"], p.get("item_bias"), users, positives, negatives,
                         weights, lam)

    def grad_fn(p):
        return warp_gradients(p["user_factors"], p["item_factors"], p.get("item_bias"), users, positives,
                              negatives, weights, lam)
    return loss_fn, grad_fn


print(check_gradients(*loss_and_gradient(0.1), params))
check_gradient(*loss_and_gradient(0.0), lambda seed: make_problem(seed)[0], name="warp_gradients (lambda = 0)")
check_gradient(*loss_and_gradient(0.1), lambda seed: make_problem(seed)[0],
               name="warp_gradients with the regularisation term (lambda = 0.1)")
check_gradient(*loss_and_gradient(0.1), lambda seed: make_problem(seed, bias=False)[0],
               name="warp_gradients without biases")
### BEGIN HIDDEN TESTS
from mflib.models import warp as reference

check_matches_reference(warp_gradients, reference.warp_gradients, lambda seed: make_inputs(seed, lam=0.3),
                        name="warp_gradients")
check_matches_reference(warp_gradients, reference.warp_gradients,
                        lambda seed: make_inputs(seed, bias=False, lam=0.0), name="warp_gradients without biases")
### END HIDDEN TESTS

# %% [markdown]
# ## 7. The update: AdaGrad and a norm bound
#
# **AdaGrad.** We update a whole batch at once, so a popular film collects dozens of terms in one step and
# an obscure one a single term. A fixed learning rate that suits the first is far too small for the
# second. AdaGrad (Duchi, Hazan & Singer 2011; LightFM's default) gives every coordinate its own step size,
# shrinking with the squared gradients it has received so far:
#
# $$ G \leftarrow G + g^2, \qquad \theta \leftarrow \theta - \eta\, \frac{g}{\sqrt{G} + \varepsilon}
#    \qquad (\text{element-wise; } G \text{ starts at } 0,\ \varepsilon = 10^{-8}) . $$
#
# The first step of every coordinate is then $\eta\, g / (|g| + \varepsilon)$, about $\eta$ in size whatever
# the scale of its gradient; later steps shrink as $G$ grows, fastest for a coordinate that keeps receiving
# large gradients (a popular film). $\varepsilon$ only keeps $0/0$ out for a coordinate whose gradient has
# always been 0 (it does not move). The reference `mflib.WARP` (and `mflib.BPR`) use the same convention.
#
# **The norm bound.** Weston et al. regularise WARP by bounding the length of every factor vector,
# $\lVert\mathbf p_u\rVert \le C$ and $\lVert\mathbf q_i\rVert \le C$, instead of (or besides) an L2
# penalty: after each step, a row longer than $C$ is scaled back onto the sphere,
# $\mathbf v \leftarrow \mathbf v \cdot C / \lVert\mathbf v\rVert$. Without it the model "wins" the hinge by
# inflating its vectors, and on MovieLens over-fits within a few epochs.
#
# **Exercise 5.** Write `warp_step`, which updates the arrays **in place** and returns the batch loss
# *before* the step:
#
# * gradients from `warp_gradients` (all taken before anything moves);
# * `accumulators=None`: plain gradient descent, $\theta \leftarrow \theta - \eta\, g$; otherwise
#   `accumulators` is a dict with one array $G$ per parameter (same keys as the gradients): update it in
#   place, then take the AdaGrad step;
# * if `max_norm` is not `None`, rescale every row of `user_factors` and `item_factors` that is longer than
#   `max_norm` (not the biases).

# %% [solution] id=warp_step
def warp_step(user_factors, item_factors, item_bias, users, positives, negatives, weights, learning_rate,
              regularization, max_norm=None, accumulators=None):
    """One step on the batch of triples, in place; returns warp_loss before the step."""
    ### BEGIN SOLUTION
    loss = warp_loss(user_factors, item_factors, item_bias, users, positives, negatives, weights, regularization)
    gradients = warp_gradients(user_factors, item_factors, item_bias, users, positives, negatives, weights,
                               regularization)
    parameters = {"user_factors": user_factors, "item_factors": item_factors}
    if item_bias is not None:
        parameters["item_bias"] = item_bias
    for name, parameter in parameters.items():
        g = gradients[name]
        if accumulators is None:
            parameter -= learning_rate * g
        else:
            accumulators[name] += g ** 2
            parameter -= learning_rate * g / (np.sqrt(accumulators[name]) + 1e-8)
    if max_norm is not None:
        for factors in (user_factors, item_factors):
            norms = np.linalg.norm(factors, axis=1, keepdims=True)
            factors *= np.minimum(1.0, max_norm / np.maximum(norms, 1e-12))
    return loss
    ### END SOLUTION

# %% [tests] id=test_warp_step points=2
params, users, positives, negatives, weights = make_problem(1, max_norm=1.5)
args = (users, positives, negatives, weights)
start = {name: value.copy() for name, value in params.items()}
g = warp_gradients(start["user_factors"], start["item_factors"], start["item_bias"], *args, 0.1)
before = warp_loss(params["user_factors"], params["item_factors"], params["item_bias"], *args, 0.1)
returned = warp_step(params["user_factors"], params["item_factors"], params["item_bias"], *args, 0.01, 0.1)
after = warp_loss(params["user_factors"], params["item_factors"], params["item_bias"], *args, 0.1)
print(f"batch loss {before:.4f} -> {after:.4f} after one small step (it must go down); returned {returned:.4f}")
assert returned is not None and abs(returned - before) < 1e-9 * max(1.0, abs(before)), (
    f"warp_step returned {returned}, the loss before the step is {before}")
assert after < before, ("one small step did not lower the batch loss: are you adding the gradient instead of "
                        "subtracting it, or not updating the arrays in place?")
for name in start:  # without accumulators and max_norm: theta - learning_rate * (your gradient before the step)
    assert np.allclose(params[name], start[name] - 0.01 * g[name], rtol=1e-10, atol=1e-12), (
        f"{name!r} after a plain step (accumulators=None, max_norm=None) is not theta - learning_rate * "
        "gradient, with your warp_gradients at the parameters BEFORE the step: update every array in place")
warp_step(params["user_factors"], params["item_factors"], params["item_bias"], *args, 10.0, 0.0, 1.5)
longest = max(np.linalg.norm(params["user_factors"], axis=1).max(),
              np.linalg.norm(params["item_factors"], axis=1).max())
print(f"after a huge step with max_norm=1.5 the longest factor vector has norm {longest:.4f} (must be <= 1.5)")
assert longest <= 1.5 + 1e-9, "max_norm: rows longer than max_norm must be scaled back to norm max_norm"
params, users, positives, negatives, weights = make_problem(2)
start = {name: value.copy() for name, value in params.items()}
accumulators = {name: np.zeros_like(value) for name, value in params.items()}  # AdaGrad's G starts at 0
g = warp_gradients(params["user_factors"], params["item_factors"], params["item_bias"], users, positives, negatives,
                   weights, 0.0)
warp_step(params["user_factors"], params["item_factors"], params["item_bias"], users, positives, negatives, weights,
          0.1, 0.0, None, accumulators)
assert all(np.allclose(accumulators[name], g[name] ** 2) for name in params), (
    "AdaGrad: the accumulators must become G + g^2 (updated in place, one array per parameter)")
for name in params:  # the first AdaGrad step from G = 0: theta - learning_rate * g / (sqrt(g^2) + eps)
    assert np.allclose(params[name], start[name] - 0.1 * g[name] / (np.abs(g[name]) + 1e-8), rtol=1e-6, atol=1e-9), (
        f"AdaGrad: {name!r} after one step from G = 0 is not theta - learning_rate * g / (sqrt(G) + 1e-8), with G "
        "updated (G + g^2) before the step")
print("✓ warp_step: plain step theta - learning_rate * g in place, returns the loss before it, max_norm bound, "
      "AdaGrad accumulators G + g^2 and step g / (sqrt(G) + eps)")
### BEGIN HIDDEN TESTS
from mflib.models import warp as reference


def adagrad_inputs(seed, bias=True):
    args = make_inputs(seed, bias=bias, max_norm=1.2, lr=0.2, lam=0.05, max_norm_=1.2)
    names = ["user_factors", "item_factors"] + (["item_bias"] if bias else [])
    rng = np.random.default_rng(seed + 10)
    accumulators = {name: 1.0 + rng.random(np.shape(value)) for name, value in zip(names, args[:3])}
    return (*args, accumulators)


check_matches_reference(warp_step, reference.warp_step, lambda seed: make_inputs(seed, lr=0.05, lam=0.2),
                        name="warp_step (gradient descent)")
check_matches_reference(warp_step, reference.warp_step,
                        lambda seed: make_inputs(seed, max_norm=1.0, lr=0.5, lam=0.0, max_norm_=1.0),
                        name="warp_step with max_norm")
check_matches_reference(warp_step, reference.warp_step, adagrad_inputs, name="warp_step with AdaGrad")
check_matches_reference(warp_step, reference.warp_step, lambda seed: adagrad_inputs(seed, bias=False),
                        name="warp_step with AdaGrad, without biases")
### END HIDDEN TESTS

# %% [markdown]
# ## 8. Training
#
# An epoch visits every training positive once, in a random order, in batches: sample a violator for each
# positive of the batch, weight the rows that found one by $L(\widehat{\text{rank}})$, and take one step on
# those triples. The positives of the training matrix are its `positive_keys`: user `key // n_items`, item
# `key % n_items`. Initialise the factors with small random numbers, and the biases and the AdaGrad
# accumulators with zeros.
#
# **Exercise 6.** Write the training loop. Use only `rng = np.random.default_rng(random_state)` for
# randomness, so that a seed gives the same model. Record, for every epoch, the sum of the batch losses
# divided by the number of training positives (a positive without a violator contributes 0).

# %% [solution] id=fit_warp
def fit_warp(user_items, factors=32, learning_rate=0.1, regularization=0.0, iterations=10, max_sampled=10,
             max_norm=1.5, batch_size=1000, init_std=0.01, random_state=0):
    """WARP by mini-batch AdaGrad; returns (user_factors, item_factors, item_bias, loss_history)."""
    ### BEGIN SOLUTION
    rng = np.random.default_rng(random_state)
    n_users, n_items = user_items.shape
    user_factors = rng.normal(0.0, init_std, (n_users, factors))
    item_factors = rng.normal(0.0, init_std, (n_items, factors))
    item_bias = np.zeros(n_items)
    accumulators = {"user_factors": np.zeros_like(user_factors), "item_factors": np.zeros_like(item_factors),
                    "item_bias": np.zeros_like(item_bias)}
    keys = positive_keys(user_items)
    pair_users, pair_items = keys // n_items, keys % n_items
    loss_history = []
    for epoch in range(iterations):
        order = rng.permutation(len(keys))
        total = 0.0
        for start in range(0, len(order), batch_size):
            batch = order[start:start + batch_size]
            users, positives = pair_users[batch], pair_items[batch]
            negatives, n_draws, found = sample_violators(user_factors, item_factors, item_bias, users, positives,
                                                         keys, max_sampled, rng)
            weights = warp_rank_weight(n_draws[found], n_items)
            total += warp_step(user_factors, item_factors, item_bias, users[found], positives[found],
                               negatives[found], weights, learning_rate, regularization, max_norm, accumulators)
        loss_history.append(total / len(keys))
    return user_factors, item_factors, item_bias, loss_history
    ### END SOLUTION

# %% [markdown]
# To use the course's evaluation tools we wrap the learned arrays in `mflib.teaching.LearnedFactors`, the
# model object of assignments 02 and 03, with the API of the `implicit` library: `recommend` returns the
# $N$ items of highest $x_{ui}$ among those the user has not interacted with yet, `similar_items` the
# nearest neighbours by **cosine** of the item factors (biases left out).
#
# Now train (a few seconds on ML-100K). At the very start nearly every positive finds a violator on the first
# draw: weight $L(n - 1)$, about 8 on ML-100K, times a hinge of about 1. The first point of the curve is
# already lower, because it is the mean over the whole first epoch, during which the positives start to
# climb above their violators.

# %%
user_factors, item_factors, item_bias, loss_history = fit_warp(train)
model = LearnedFactors(user_factors, item_factors, item_bias)
plot_learning_curve(loss_history, title=f"WARP on ML-{VARIANT.upper()}", ylabel="weighted hinge loss per positive")
plt.show()
print(f"weighted hinge loss per positive: {loss_history[0]:.2f} in epoch 1, {loss_history[-1]:.2f} in epoch "
      f"{len(loss_history)} (at the start: L(n - 1) = {np.sum(1.0 / np.arange(1, ds.n_items)):.2f} times a hinge of 1)")

# %% [tests] id=test_fit_warp points=2
check_factors(model, ds.n_users, ds.n_items)
assert item_bias.shape == (ds.n_items,), f"item_bias must have shape ({ds.n_items},), got {item_bias.shape}"
assert len(loss_history) == 10, f"fit_warp recorded {len(loss_history)} losses in 10 epochs: one per epoch"
small = train[:150]
first = fit_warp(small, factors=6, iterations=2, batch_size=300, random_state=5)
again = fit_warp(small, factors=6, iterations=2, batch_size=300, random_state=5)
assert first[0].shape == (150, 6) and first[1].shape == (ds.n_items, 6) and first[2].shape == (ds.n_items,), (
    "fit_warp must return user_factors (n_users, factors), item_factors (n_items, factors), item_bias (n_items,)")
assert len(first[3]) == 2, "fit_warp must record one loss per epoch"
assert np.array_equal(first[1], again[1]), (
    "fit_warp with the same random_state gave different factors: draw every random number from "
    "rng = np.random.default_rng(random_state)")
print("✓ fit_warp returns arrays of the right shapes and one loss per epoch, and a seed gives one model")
### BEGIN HIDDEN TESTS
other = fit_warp(small, factors=6, iterations=2, batch_size=300, random_state=6)
assert not np.array_equal(first[1], other[1]), (
    "fit_warp gives the same factors for random_state 5 and 6: build rng = np.random.default_rng(random_state)")
longest = max(np.linalg.norm(user_factors, axis=1).max(), np.linalg.norm(item_factors, axis=1).max())
assert longest <= 1.5 + 1e-5, (f"a factor vector of norm {longest:.3f} after fit_warp(train) with max_norm=1.5: "
                               "pass max_norm to warp_step")
### END HIDDEN TESTS

# %% [tests] id=test_training points=2
check_loss_decreases(loss_history, min_relative_drop=0.3, name="WARP training loss")
ranking = check_ranking(model, train, test, min_ndcg=0.25)
### BEGIN HIDDEN TESTS
ranking = check_ranking(model, train, test, min_ndcg=0.28)
### END HIDDEN TESTS

# %% [markdown]
# The films the model recommends to user 0; `hit` marks those among her held-out test positives:

# %%
recommendations_table(model, ds, 0, train, test_items=test)

# %% [markdown]
# ## 9. What did the model learn?
#
# **Similar films** (cosine of the item factors). WARP never saw a title or a genre:

# %%
similar_items_table(model, ds, "Star Wars")

# %%
similar_items_table(model, ds, "Godfather, The")

# %% [tests] id=test_similar_items points=1
check_similar_items(model, ds, train, min_genre_jaccard=0.25,
                    pairs={"Star Wars": ["Empire Strikes Back", "Return of the Jedi"]})

# %% [markdown]
# **Does the search for violators matter?** With `max_sampled=1` WARP cannot search: it takes one uniform
# random negative per positive and updates only if that one happens to violate — a hinge-loss cousin of
# BPR's uniform sampling, with a constant weight $L(n - 1)$. Same model, same budget of epochs:

# %%
uniform = LearnedFactors(*fit_warp(train, max_sampled=1)[:3])
scores = {"popularity": evaluate_ranking(Popularity().fit(train), train, test),
          "WARP, max_sampled=1": evaluate_ranking(uniform, train, test),
          "your WARP (max_sampled=10)": evaluate_ranking(model, train, test)}
plot_metric_bars(scores, metric=["ndcg@10", "precision@10", "recall@10"], highlight="your WARP (max_sampled=10)",
                 title=f"ML-{VARIANT.upper()}, 80/20 split of the positives")
plt.show()

# %% [markdown]
# **Question (2 points, graded by hand).**
#
# 1. The table after Exercise 1 shows that with `max_sampled=10` the rank weight only ranges from about
#    5.7 to 8.0 on ML-100K. Why so narrow? Which ranks can WARP tell apart with 10 draws, and what would
#    change with `max_sampled=100`?
# 2. The bars above show that searching for violators (`max_sampled=10`) beats one uniform negative per
#    positive at the top of the list. Explain why, in terms of which negatives each sampler shows to the
#    model late in training — and why this is also the reason WARP beats BPR's uniform sampling on
#    precision@10. What does the search cost, and how does that cost evolve during training?
#
# Answer in a few sentences in the next cell.

# %% [manual] id=q_warp points=2
# ### BEGIN SOLUTION
# 1. With at most 10 draws, $N \in \{1, \dots, 10\}$ and the estimated rank is $\lfloor 1681 / N \rfloor
#    \in \{1681, 840, \dots, 168\}$: every positive with fewer than ~168 violators looks alike (usually it
#    finds no violator at all and is skipped), so the weights span only $L(168) = 5.7$ to $L(1681) = 8.0$.
#    The resolution is $(n-1)/\text{max\_sampled}$: with 100 draws ranks down to ~17 can be told apart and
#    the weights span $L(16) = 3.4$ to 8, so the weighting matters more (at the price of more draws).
# 2. Late in training a uniform random film is almost always far below the user's positives: its hinge is
#    zero and the update is wasted (BPR's $\sigma(-x_{uij}) \approx 0$ is the same problem). Searching
#    until a violator appears finds the few films that still crowd the positive — exactly the ones that
#    would push it off the first screen — so every update is informative and aimed at the top of the
#    list, which is what precision@10 and NDCG@10 measure. BPR spends most of its updates on pairs that
#    are already right. The cost: up to `max_sampled` scores per positive instead of one; it *grows* as
#    the model improves, because violators become rare and more positives use all their draws without
#    finding one (those are skipped, so the number of updates falls while the scoring work rises).
# ### END SOLUTION

# %% [markdown]
# ## Going further
#
# * The reference implementation `mflib.WARP` does the same on float32 arrays, with a faster scatter of
#   the gradients (one sorted sparse product instead of `np.add.at`), looks up only the candidates that
#   violate, and projects only the rows a step changed. With its defaults (64 factors, 30 epochs) it
#   reaches NDCG@10 ≈ 0.32 on this protocol, averaged over three splits (LightFM's WARP after a grid
#   search: 0.30–0.31; popularity: 0.15); its fit time is in the README's benchmark table (`make bench`).
# * Weston et al. also describe **k-order** WARP (optimise precision at $k$ rather than at 1) and LightFM
#   adds **WARP-kOS**; both change which positive of a user is updated.
