# %% [markdown]
# # 03 — Bayesian Personalised Ranking (BPR)
#
# ALS (assignment 02) treats implicit feedback as a regression problem: it predicts a 1 for every
# observed cell and a 0, with low confidence, for every other cell. But a recommender is judged on the
# **order** of its list, not on how close its scores are to 0 and 1. BPR (Rendle, Freudenthaler, Gantner
# & Schmidt-Thieme, *UAI* 2009) optimises the order directly: for each user, a film she liked should be
# ranked above a film she did not interact with.
#
# In this notebook you will write, step by step:
#
# 1. the pairwise score $x_{uij}$;
# 2. the BPR-Opt loss;
# 3. its gradient — checked against finite differences;
# 4. the sampler of negative items (never a positive!);
# 5. the SGD step, with correct accumulation of repeated users and items;
# 6. the training loop,
#
# and then look at what the model learned: a learning curve, recommendations, similar films, and a
# comparison with the popularity baseline. Recommending is the same as in assignment 02 (the top $N$ unseen
# items by score): here the provided `LearnedFactors` does it for you.
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
from scipy.special import expit  # expit(x) = 1 / (1 + exp(-x)), the logistic sigmoid, without overflow

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
# ## 1. Data: positives only
#
# As in the previous assignments, a rating of 4 or 5 stars is a **positive**; everything else (a low
# rating, or no rating at all) is unobserved. The course protocol splits the positives 80/20 at random.

# %%
ds = load_movielens(VARIANT)
train, test = implicit_split(ds, random_state=0)
print(f"{ds.n_users} users x {ds.n_items} items; {train.nnz:,} training positives, {test.nnz:,} test positives")
print(f"a user has {np.diff(train.indptr).mean():.0f} training positives on average, out of {ds.n_items} films")

# %% [markdown]
# ## 2. From points to pairs
#
# A factor model scores every (user, item) pair with an inner product; we also give every item a bias
# $b_i$ (how much it is liked by everybody):
#
# $$ x_{ui} = \mathbf p_u \cdot \mathbf q_i + b_i . $$
#
# Write $I_u^+$ for the positives of user $u$. An unobserved item $j \notin I_u^+$ is *either* a film
# $u$ would not like *or* one she never came across: we cannot tell. BPR makes a weaker assumption that
# the data do support: **$u$ prefers each of her positives to each of her non-positives**,
#
# $$ i >_u j \quad \text{for } i \in I_u^+,\ j \notin I_u^+ . $$
#
# The training data are therefore *triples* $(u, i, j)$, and the model only has to get the **difference**
# of two scores right:
#
# $$ x_{uij} = x_{ui} - x_{uj} = \mathbf p_u \cdot (\mathbf q_i - \mathbf q_j) + b_i - b_j . $$
#
# Nothing forces a score towards 0 or 1; only the order matters.
#
# **Exercise 1.** Write `bpr_difference`: one $x_{uij}$ per triple, for arrays of triples
# `users[b], positives[b], negatives[b]`. Vectorise (no Python loop). `item_bias` may be `None`, meaning
# "no bias terms".

# %% [solution] id=bpr_difference
def bpr_difference(user_factors, item_factors, item_bias, users, positives, negatives):
    """x_uij = p_u . (q_i - q_j) + b_i - b_j for every triple b (a 1-D array of len(users))."""
    ### BEGIN SOLUTION
    difference = item_factors[positives] - item_factors[negatives]
    x = np.sum(user_factors[users] * difference, axis=1)
    if item_bias is not None:
        x = x + item_bias[positives] - item_bias[negatives]
    return x
    ### END SOLUTION

# %% [markdown]
# Some small random problems for the checks (used again below). A batch of triples may — and, with
# sampling, will — contain the same user or item several times.

# %% [locked] id=make_problem
def make_problem(seed, n_users=6, n_items=9, k=4, batch=25, bias=True):
    """Random float64 parameters and a batch of triples with repeated users and items."""
    rng = np.random.default_rng(seed)
    params = {"user_factors": rng.normal(0, 1, (n_users, k)), "item_factors": rng.normal(0, 1, (n_items, k))}
    if bias:
        params["item_bias"] = rng.normal(0, 1, n_items)
    users = rng.integers(0, n_users, batch)
    positives = rng.integers(0, n_items, batch)
    negatives = (positives + rng.integers(1, n_items, batch)) % n_items  # never equal to the positive
    return params, users, positives, negatives


def make_inputs(seed, bias=True, **extra):
    """(user_factors, item_factors, item_bias, users, positives, negatives) of make_problem(seed)."""
    params, users, positives, negatives = make_problem(seed, bias=bias)
    return (params["user_factors"], params["item_factors"], params.get("item_bias"), users, positives, negatives,
            *extra.values())

# %% [tests] id=test_bpr_difference points=1
P = np.array([[1.0, 2.0]])
Q = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
b = np.array([0.5, 0.0, -0.5])
x = bpr_difference(P, Q, b, np.array([0, 0]), np.array([0, 2]), np.array([1, 1]))
print("x_uij =", x, "(correct: [-0.5  0.5])")
check_matches_reference(bpr_difference, lambda *args: np.array([-0.5, 0.5]),
                        lambda seed: (P, Q, b, np.array([0, 0]), np.array([0, 2]), np.array([1, 1])),
                        seeds=(0,), name="bpr_difference on the small example")
### BEGIN HIDDEN TESTS
from mflib.models import bpr as reference

check_matches_reference(bpr_difference, reference.bpr_difference, make_inputs, name="bpr_difference")
check_matches_reference(bpr_difference, reference.bpr_difference, lambda seed: make_inputs(seed, bias=False),
                        name="bpr_difference without biases")
### END HIDDEN TESTS

# %% [markdown]
# ## 3. BPR-Opt: a smooth AUC
#
# **The likelihood.** Model the probability that $u$ prefers $i$ to $j$ with the logistic sigmoid
# $\sigma(x) = 1 / (1 + e^{-x})$:
#
# $$ P(i >_u j \mid \Theta) = \sigma(x_{uij}) . $$
#
# Assuming the triples independent and a Gaussian prior $\Theta \sim \mathcal N(0, \lambda^{-1} I)$ on all
# parameters, the maximum a posteriori estimate maximises
# $\ln P(\Theta \mid >) = \sum_{(u,i,j)} \ln \sigma(x_{uij}) -
# \frac{\lambda}{2}\lVert\Theta\rVert^2 + \text{const}$.
# This is **BPR-Opt**. As a loss to *minimise* over a batch $B$ of triples, with the penalty counted once
# per triple (what SGD does):
#
# $$ L(B) = \sum_{(u,i,j) \in B} \Big[ -\ln \sigma(x_{uij}) +
#    \frac{\lambda}{2}\big(\lVert\mathbf p_u\rVert^2 + \lVert\mathbf q_i\rVert^2 + \lVert\mathbf q_j\rVert^2 +
#    b_i^2 + b_j^2\big) \Big] . $$
#
# **Why it optimises AUC.** The AUC of user $u$ is the fraction of (positive, non-positive) pairs in the
# right order, $\mathrm{AUC}(u) = \frac{1}{|I_u^+|\,|I \setminus I_u^+|} \sum_{i \in I_u^+} \sum_{j \notin I_u^+}
# \mathbb 1[x_{uij} > 0]$. The step function $\mathbb 1[x > 0]$ has no useful gradient;
# $-\ln\sigma(x) = \ln(1 + e^{-x})$ is a smooth, convex upper bound of the error $\mathbb 1[x < 0]$
# (up to a factor $\ln 2$). Minimising BPR-Opt thus maximises a smoothed AUC: every pair counts the same,
# wherever it sits in the list — a point we come back to at the end.
#
# **Numerics.** Never compute `np.log(expit(x))`: for $x = -800$, `expit(x)` is 0 and the log is
# $-\infty$. Use $-\ln\sigma(x) = \ln(1 + e^{-x})$ = `np.logaddexp(0, -x)`, which is exact for all $x$.
#
# **Exercise 2.** Write `bpr_loss`: the **sum** above over the triples of the batch (a Python float).
# With `item_bias=None` there are no bias terms (neither in $x_{uij}$ nor in the penalty).

# %% [solution] id=bpr_loss
def bpr_loss(user_factors, item_factors, item_bias, users, positives, negatives, regularization):
    """sum over triples of -ln sigma(x_uij) + lambda/2 (|p_u|^2 + |q_i|^2 + |q_j|^2 + b_i^2 + b_j^2)."""
    ### BEGIN SOLUTION
    x = bpr_difference(user_factors, item_factors, item_bias, users, positives, negatives)
    data = np.sum(np.logaddexp(0.0, -x))
    penalty = (np.sum(user_factors[users] ** 2) + np.sum(item_factors[positives] ** 2)
               + np.sum(item_factors[negatives] ** 2))
    if item_bias is not None:
        penalty += np.sum(item_bias[positives] ** 2) + np.sum(item_bias[negatives] ** 2)
    return float(data + 0.5 * regularization * penalty)
    ### END SOLUTION

# %% [tests] id=test_bpr_loss points=2
params, users, positives, negatives = make_problem(0)
zero = {name: np.zeros_like(value) for name, value in params.items()}
value = bpr_loss(zero["user_factors"], zero["item_factors"], zero["item_bias"], users, positives, negatives, 0.1)
print(f"all parameters 0: loss = {value:.6f}; correct: {len(users)} ln 2 = {len(users) * np.log(2):.6f} "
      "(every pair is a coin flip)")
check_matches_reference(bpr_loss, lambda *args: len(users) * np.log(2),
                        lambda seed: (zero["user_factors"], zero["item_factors"], zero["item_bias"], users,
                                      positives, negatives, 0.1), seeds=(0,), name="bpr_loss at zero")
huge = bpr_loss(1e3 * params["user_factors"], params["item_factors"], None, users, positives, negatives, 0.0)
assert np.isfinite(huge), f"bpr_loss is {huge} for large scores: compute -ln sigma(x) as np.logaddexp(0, -x)"
### BEGIN HIDDEN TESTS
from mflib.models import bpr as reference

check_matches_reference(bpr_loss, reference.bpr_loss, lambda seed: make_inputs(seed, lam=0.3), name="bpr_loss")
check_matches_reference(bpr_loss, reference.bpr_loss, lambda seed: make_inputs(seed, bias=False, lam=0.3),
                        name="bpr_loss without biases")
### END HIDDEN TESTS

# %% [markdown]
# ## 4. The gradient
#
# Since $\frac{d}{dx}\big(-\ln\sigma(x)\big) = -\big(1 - \sigma(x)\big) = -\sigma(-x)$, write
# $s_{uij} = \sigma(-x_{uij})$: close to 1 when the pair is in the wrong order, close to 0 when it is
# already right (such a triple hardly moves the parameters). One triple contributes
#
# $$
# \begin{aligned}
# \frac{\partial L}{\partial \mathbf p_u} &= -s_{uij}\,(\mathbf q_i - \mathbf q_j) + \lambda \mathbf p_u, &
# \frac{\partial L}{\partial b_i} &= -s_{uij} + \lambda b_i, \\
# \frac{\partial L}{\partial \mathbf q_i} &= -s_{uij}\,\mathbf p_u + \lambda \mathbf q_i, &
# \frac{\partial L}{\partial b_j} &= +s_{uij} + \lambda b_j, \\
# \frac{\partial L}{\partial \mathbf q_j} &= +s_{uij}\,\mathbf p_u + \lambda \mathbf q_j .
# \end{aligned}
# $$
#
# The gradient of $L(B)$ is the **sum** of these over the batch: a user (or an item) that occurs in
# several triples receives one term per occurrence. Beware of `grad[users] += rows`: with repeated
# indices numpy keeps only *one* of the rows. Use `np.add.at(grad, users, rows)` (unbuffered: every row
# is added), `np.bincount` with `weights=` for 1-D arrays, or a sparse matrix product.
#
# **Exercise 3.** Write `bpr_gradients`. Return a dict with the same keys as the parameters —
# `"user_factors"`, `"item_factors"` and, if `item_bias` is not `None`, `"item_bias"` — each a full-size
# array of its parameter's shape (zero for rows the batch does not touch).

# %% [solution] id=bpr_gradients
def bpr_gradients(user_factors, item_factors, item_bias, users, positives, negatives, regularization):
    """Gradients of bpr_loss w.r.t. every parameter: a dict of full-size arrays."""
    ### BEGIN SOLUTION
    x = bpr_difference(user_factors, item_factors, item_bias, users, positives, negatives)
    s = expit(-x)[:, None]                                  # sigma(-x_uij), one per triple
    p_u, q_i, q_j = user_factors[users], item_factors[positives], item_factors[negatives]
    grad_user = np.zeros_like(user_factors)
    grad_item = np.zeros_like(item_factors)
    np.add.at(grad_user, users, -s * (q_i - q_j) + regularization * p_u)
    np.add.at(grad_item, positives, -s * p_u + regularization * q_i)
    np.add.at(grad_item, negatives, s * p_u + regularization * q_j)
    gradients = {"user_factors": grad_user, "item_factors": grad_item}
    if item_bias is not None:
        grad_bias = np.zeros_like(item_bias)
        np.add.at(grad_bias, positives, -s[:, 0] + regularization * item_bias[positives])
        np.add.at(grad_bias, negatives, s[:, 0] + regularization * item_bias[negatives])
        gradients["item_bias"] = grad_bias
    return gradients
    ### END SOLUTION

# %% [markdown]
# **Gradient check.** Compare with central differences
# $\frac{L(\theta + \epsilon e_k) - L(\theta - \epsilon e_k)}{2\epsilon}$ coordinate by coordinate, in
# float64. The relative error $\max_k |g_k - \hat g_k| / \max_k (|g_k| + |\hat g_k|)$ of a correct gradient
# is below $10^{-6}$ (usually $10^{-9}$ or less); above $10^{-2}$ the formula is wrong.

# %% [tests] id=test_bpr_gradients points=3
params, users, positives, negatives = make_problem(0)
lam = 0.1


def loss_fn(p):
    return bpr_loss(p["user_factors"], p["item_factors"], p.get("item_bias"), users, positives, negatives, lam)


def grad_fn(p):
    return bpr_gradients(p["user_factors"], p["item_factors"], p.get("item_bias"), users, positives, negatives,
                         lam)


print(check_gradients(loss_fn, grad_fn, params))
check_gradient(loss_fn, grad_fn, lambda seed: make_problem(seed)[0], name="bpr_gradients")
check_gradient(loss_fn, grad_fn, lambda seed: make_problem(seed, bias=False)[0],
               name="bpr_gradients without biases")
### BEGIN HIDDEN TESTS
from mflib.models import bpr as reference

check_matches_reference(bpr_gradients, reference.bpr_gradients, lambda seed: make_inputs(seed, lam=0.3),
                        name="bpr_gradients")
check_matches_reference(bpr_gradients, reference.bpr_gradients,
                        lambda seed: make_inputs(seed, bias=False, lam=0.0), name="bpr_gradients without biases")
### END HIDDEN TESTS

# %% [markdown]
# ## 5. Sampling triples
#
# There are $\sum_u |I_u^+|\,(|I| - |I_u^+|) \approx 70$ million triples in our training set: far too many
# to visit them all in every epoch. Rendle et al.'s **LearnBPR** samples them instead, uniformly and with
# replacement ("bootstrap sampling"): a random training positive $(u, i)$, then a random item $j$ that is
# **not** a positive of $u$. (Walking through the data user by user converges much more slowly: the
# consecutive updates all pull on the same $\mathbf p_u$.)
#
# Drawing $j$ uniformly among all items and keeping it blindly would sometimes pick a positive of $u$ —
# on ML-100K about 3% of the draws, far more for heavy users — and then the model is pushed to rank a
# film the user *liked* below another one. **Rejection sampling** fixes it: redraw the draws that hit a
# positive until none does. Do it for the whole batch at once:
#
# 1. draw a candidate for every user;
# 2. find which (user, candidate) pairs are positives — vectorised: e.g. encode a pair as the integer
#    key `u * n_items + j`; the keys of the positives of a CSR matrix in canonical format (see below) are
#    sorted, so `np.searchsorted` finds a key in $O(\log \text{nnz})$;
# 3. redraw only the rejected ones, and repeat until none is rejected.
#
# **Exercise 4.** Write `sample_negatives(user_items, users, rng)`: one non-positive item per entry of
# `users` (an integer array), with `rng` a `numpy.random.Generator`. Every non-positive item of a user
# must be equally likely. `user_items` is a users × items CSR matrix in **canonical format**
# (`user_items.has_canonical_format` is `True`: the column indices of each row are sorted, and none
# repeats). Every matrix of this course is, and so is every matrix the checks give your function; a CSR
# built by hand from unsorted indices is not, and `user_items.sorted_indices()` makes a sorted copy.

# %% [solution] id=sample_negatives
def sample_negatives(user_items, users, rng):
    """One uniformly random item that is not a positive of users[b], for every b (an int array)."""
    ### BEGIN SOLUTION
    matrix = sp.csr_matrix(user_items)
    if not matrix.has_sorted_indices:
        matrix = matrix.sorted_indices()
    n_users, n_items = matrix.shape
    rows = np.repeat(np.arange(n_users, dtype=np.int64), np.diff(matrix.indptr))
    keys = rows * n_items + matrix.indices                     # sorted: by row, then by column
    users = np.asarray(users, dtype=np.int64)

    def is_positive(u, j):
        query = u * n_items + j
        where = np.minimum(np.searchsorted(keys, query), len(keys) - 1)
        return keys[where] == query

    negatives = rng.integers(0, n_items, size=len(users))
    redraw = np.flatnonzero(is_positive(users, negatives))
    while redraw.size:
        negatives[redraw] = rng.integers(0, n_items, size=redraw.size)
        redraw = redraw[is_positive(users[redraw], negatives[redraw])]
    return negatives
    ### END SOLUTION

# %% [locked] id=check_negatives
def check_negatives(sampler, user_items, n_draws=50_000, seed=0):
    """Sampled negatives must never be positives, and must cover the non-positives uniformly."""
    rng = np.random.default_rng(seed)
    users = rng.integers(0, user_items.shape[0], n_draws)
    negatives = np.asarray(sampler(user_items, users.copy(), rng))
    assert negatives.shape == users.shape, (
        f"sample_negatives returned shape {negatives.shape} for {len(users)} users: one negative per user")
    assert np.issubdtype(negatives.dtype, np.integer), "sample_negatives must return integer item indices"
    assert negatives.min() >= 0 and negatives.max() < user_items.shape[1], "item index out of range"
    hits = int(np.asarray(user_items[users, negatives]).ravel().astype(bool).sum())
    assert hits == 0, (f"{hits} of {n_draws} sampled negatives are positives of their user: reject the draws "
                       "that hit a positive and redraw them (rejection sampling)")
    # uniform: a user with few positives sees each of her non-positives about equally often
    counts = np.diff(sp.csr_matrix(user_items).indptr)
    user = int(np.argmin(np.where(counts > 0, counts, np.inf)))
    allowed = np.setdiff1d(np.arange(user_items.shape[1]), sp.csr_matrix(user_items)[user].indices)
    draws = np.asarray(sampler(user_items, np.full(200 * len(allowed), user), rng))
    frequency = np.bincount(draws, minlength=user_items.shape[1])[allowed] / len(draws)
    spread = float(np.abs(frequency * len(allowed) - 1).max())
    assert spread < 0.5, (f"the negatives of user {user} are not uniform over her non-positives (an item is "
                          f"drawn {spread:.0%} away from the average rate): draw j uniformly at random")
    print(f"✓ sample_negatives: 0 of {n_draws:,} negatives are positives; uniform over the non-positives "
          f"(max deviation {spread:.0%})")

# %% [tests] id=test_sample_negatives points=2
check_negatives(sample_negatives, train)
### BEGIN HIDDEN TESTS
rng_hidden = np.random.default_rng(7)
dense = rng_hidden.random((30, 12)) < 0.85          # most candidates are positives: many redraws
dense[np.arange(30), rng_hidden.integers(0, 12, 30)] = False
check_negatives(sample_negatives, sp.csr_matrix(dense.astype(np.float32)), n_draws=20_000, seed=3)
tiny = sp.csr_matrix((np.ones(4), np.array([3, 0, 2, 1]), np.array([0, 2, 4])), shape=(2, 5)).sorted_indices()
assert tiny.has_canonical_format  # the exercise promises canonical matrices
check_negatives(sample_negatives, tiny, n_draws=5_000, seed=4)
### END HIDDEN TESTS

# %% [markdown]
# ## 6. The SGD step
#
# One step on a batch $B$: $\theta \leftarrow \theta - \eta\, \partial L(B) / \partial\theta$ for every
# parameter, **in place** (the arrays passed in are the model), all gradients taken at the parameters
# *before* the step. A batch of one triple is Rendle's LearnBPR update; larger batches of uniformly drawn
# triples touch hundreds of users and items, so a batch step is close to as many single-triple steps —
# and vectorised.
#
# **Exercise 5.** Write `sgd_step`; it returns the batch loss **before** the step (for the learning curve).

# %% [solution] id=sgd_step
def sgd_step(user_factors, item_factors, item_bias, users, positives, negatives, learning_rate, regularization):
    """theta <- theta - learning_rate * dL(batch)/dtheta, in place; returns the loss before the step."""
    ### BEGIN SOLUTION
    loss = bpr_loss(user_factors, item_factors, item_bias, users, positives, negatives, regularization)
    gradients = bpr_gradients(user_factors, item_factors, item_bias, users, positives, negatives, regularization)
    user_factors -= learning_rate * gradients["user_factors"]
    item_factors -= learning_rate * gradients["item_factors"]
    if item_bias is not None:
        item_bias -= learning_rate * gradients["item_bias"]
    return loss
    ### END SOLUTION

# %% [tests] id=test_sgd_step points=2
for bias in (True, False):
    params, users, positives, negatives = make_problem(1, bias=bias)
    start = {name: value.copy() for name, value in params.items()}
    batch = (users, positives, negatives)
    before = bpr_loss(start["user_factors"], start["item_factors"], start.get("item_bias"), *batch, 0.1)
    g = bpr_gradients(start["user_factors"], start["item_factors"], start.get("item_bias"), *batch, 0.1)
    returned = sgd_step(params["user_factors"], params["item_factors"], params.get("item_bias"), *batch, 0.01, 0.1)
    after = bpr_loss(params["user_factors"], params["item_factors"], params.get("item_bias"), *batch, 0.1)
    if bias:
        print(f"batch loss {before:.4f} -> {after:.4f} after one step; returned {returned:.4f}")
    assert returned is not None and abs(returned - before) < 1e-9 * max(1.0, abs(before)), (
        f"sgd_step returned {returned}, the loss before the step is {before}")
    for name in start:  # the arrays passed in must now hold theta - learning_rate * (your gradient before the step)
        expected, moved = start[name] - 0.01 * g[name], params[name] - start[name]
        if np.allclose(params[name], expected, rtol=1e-10, atol=1e-12):
            continue
        assert np.any(moved != 0), (f"sgd_step left {name!r} unchanged: update the array passed in, in place "
                                    f"({name} -= ...), instead of binding the name to a new array")
        assert not np.allclose(moved, 0.01 * g[name], rtol=1e-10, atol=1e-12), (
            f"{name!r} moved by +learning_rate * gradient: sgd_step is adding the gradient (climbing the loss)")
        raise AssertionError(f"{name!r} after the step is not theta - learning_rate * gradient, with the gradient "
                             "of your bpr_gradients at the parameters BEFORE the step (take every gradient "
                             "before changing any parameter)")
print("✓ sgd_step updates every parameter in place by -learning_rate * bpr_gradients (with and without biases) "
      "and returns the loss before the step")
### BEGIN HIDDEN TESTS
from mflib.models import bpr as reference

check_matches_reference(sgd_step, reference.sgd_step, lambda seed: make_inputs(seed, lr=0.05, lam=0.2),
                        name="sgd_step")
check_matches_reference(sgd_step, reference.sgd_step, lambda seed: make_inputs(seed, bias=False, lr=0.1, lam=0.0),
                        name="sgd_step without biases")
### END HIDDEN TESTS

# %% [markdown]
# ## 7. Training
#
# An epoch draws as many triples as there are training positives, in batches. The positives of a CSR
# matrix are `(row, user_items.indices[k])` for every stored entry `k`, with the row of entry `k` given
# by `np.repeat(np.arange(n_users), np.diff(user_items.indptr))`. Initialise the factors with small
# random numbers (all zeros would leave every gradient zero: $\mathbf p_u = 0$ gives
# $\partial L / \partial \mathbf q = 0$ and vice versa) and the biases with zeros.
#
# **Exercise 6.** Write the training loop:
#
# * factors drawn from $\mathcal N(0, \texttt{init\_std}^2)$ and biases at 0, all **float32** (half the
#   memory traffic of float64, and plenty of precision for SGD);
# * every epoch: `n_pairs` triples, where `n_pairs = user_items.nnz` is the number of training positives
#   (a random training positive each, with replacement), in batches of `batch_size`, a negative for each
#   from your `sample_negatives`, one `sgd_step` per batch;
# * all randomness from `rng = np.random.default_rng(random_state)`, so that a seed gives the same model;
# * `loss_history`: the **mean** loss per triple of every epoch (the sum of the batch losses / `n_pairs`).
#
# Return `(user_factors, item_factors, item_bias, loss_history)`.

# %% [solution] id=fit_bpr
def fit_bpr(user_items, factors=32, learning_rate=0.08, regularization=0.02, iterations=20, batch_size=2000,
            init_std=0.1, random_state=0):
    """BPR by mini-batch SGD; returns (user_factors, item_factors, item_bias, loss_history)."""
    ### BEGIN SOLUTION
    rng = np.random.default_rng(random_state)
    user_items = sp.csr_matrix(user_items)
    n_users, n_items = user_items.shape
    user_factors = rng.normal(0.0, init_std, (n_users, factors)).astype(np.float32)
    item_factors = rng.normal(0.0, init_std, (n_items, factors)).astype(np.float32)
    item_bias = np.zeros(n_items, dtype=np.float32)
    pair_users = np.repeat(np.arange(n_users), np.diff(user_items.indptr))
    pair_items = user_items.indices
    n_pairs = len(pair_users)
    loss_history = []
    for epoch in range(iterations):
        picks = rng.integers(0, n_pairs, size=n_pairs)        # uniform, with replacement
        total = 0.0
        for start in range(0, n_pairs, batch_size):
            batch = picks[start:start + batch_size]
            users, positives = pair_users[batch], pair_items[batch]
            negatives = sample_negatives(user_items, users, rng)
            total += sgd_step(user_factors, item_factors, item_bias, users, positives, negatives,
                              learning_rate, regularization)
        loss_history.append(total / n_pairs)
    return user_factors, item_factors, item_bias, loss_history
    ### END SOLUTION

# %% [markdown]
# To use the course's evaluation tools we wrap the learned arrays in `mflib.teaching.LearnedFactors`, the
# model object of assignment 02, with the API of the `implicit` library: `recommend` returns the $N$
# items of highest $x_{ui} = \mathbf p_u \cdot \mathbf q_i + b_i$ among those the user has not
# interacted with yet (what you wrote in 02, now with the item bias), and `similar_items` the nearest
# neighbours by **cosine** of the item factors (the biases say how popular a film is, not what it is like,
# so they are left out there).
#
# Now train (a few seconds on ML-100K). At the very start every pair is a coin flip: with factors near 0,
# $x_{uij} \approx 0$ and the loss per triple is $\ln 2 \approx 0.69$. The first point of the curve is
# already lower, because it is the mean over the whole first epoch, during which the model learns.

# %%
user_factors, item_factors, item_bias, loss_history = fit_bpr(train)
model = LearnedFactors(user_factors, item_factors, item_bias)
plot_learning_curve(loss_history, title=f"BPR on ML-{VARIANT.upper()}", ylabel="mean BPR loss per triple")
plt.show()
print(f"mean loss per triple: {loss_history[0]:.3f} in epoch 1, {loss_history[-1]:.3f} in epoch "
      f"{len(loss_history)} (ln 2 = {np.log(2):.3f}: a coin flip)")

# %% [tests] id=test_fit_bpr points=2
check_factors(model, ds.n_users, ds.n_items, dtype=np.float32)
assert item_bias.shape == (ds.n_items,) and item_bias.dtype == np.float32, (
    f"item_bias must be a float32 array of shape ({ds.n_items},); got {item_bias.dtype}, shape {item_bias.shape}")
assert len(loss_history) == 20, f"fit_bpr recorded {len(loss_history)} losses in 20 epochs: one per epoch"
small = train[:200]
first = fit_bpr(small, factors=8, iterations=2, batch_size=500, random_state=5)
again = fit_bpr(small, factors=8, iterations=2, batch_size=500, random_state=5)
assert first[0].shape == (200, 8) and first[1].shape == (ds.n_items, 8) and first[2].shape == (ds.n_items,), (
    "fit_bpr must return user_factors (n_users, factors), item_factors (n_items, factors), item_bias (n_items,)")
assert len(first[3]) == 2, "fit_bpr must record one loss per epoch"
assert np.array_equal(first[1], again[1]), (
    "fit_bpr with the same random_state gave different factors: draw every random number from "
    "rng = np.random.default_rng(random_state)")
print("✓ fit_bpr returns float32 arrays of the right shapes and one loss per epoch, and a seed gives one model")
### BEGIN HIDDEN TESTS
other = fit_bpr(small, factors=8, iterations=2, batch_size=500, random_state=6)
assert not np.array_equal(first[1], other[1]), (
    "fit_bpr gives the same factors for random_state 5 and 6: build rng = np.random.default_rng(random_state)")
assert 0.3 < first[3][0] < np.log(2) + 0.05, (
    f"the first epoch's loss is {first[3][0]:.4g}: loss_history holds the MEAN loss per triple of each epoch "
    "(the sum of the batch losses divided by n_pairs), about ln 2 = 0.69 at the start")
### END HIDDEN TESTS

# %% [tests] id=test_training points=2
check_loss_decreases(loss_history, min_relative_drop=0.3, name="BPR training loss")
ranking = check_ranking(model, train, test, min_ndcg=0.2)
### BEGIN HIDDEN TESTS
ranking = check_ranking(model, train, test, min_ndcg=0.23)
### END HIDDEN TESTS

# %% [markdown]
# The films the model recommends to user 0; `hit` marks those among her held-out test positives:

# %%
recommendations_table(model, ds, 0, train, test_items=test)

# %% [markdown]
# ## 8. What did the model learn?
#
# **Similar films.** BPR never saw a genre or a title, only who liked what — yet films liked by the same
# people end up with similar factors. (After 20 epochs of plain SGD the *Star Wars* sequels are not always
# both among the ten nearest films — look for them below; the reference `mflib.BPR`, trained longer with
# AdaGrad, finds both.) The check below measures how often neighbours share a genre: the mean Jaccard
# overlap of genre sets, which it compares with what random vectors give.

# %%
similar_items_table(model, ds, "Star Wars")

# %%
similar_items_table(model, ds, "Toy Story")

# %% [tests] id=test_similar_items points=1
check_similar_items(model, ds, train, min_genre_jaccard=0.22, pairs={})

# %% [markdown]
# **Ranking quality against popularity.** Recommending the most popular unseen films to everyone is a
# strong baseline on MovieLens. BPR personalises:

# %%
scores = {"popularity": evaluate_ranking(Popularity().fit(train), train, test),
          "your BPR": evaluate_ranking(model, train, test)}
plot_metric_bars(scores, metric=["ndcg@10", "precision@10", "recall@10"], highlight="your BPR",
                 title=f"ML-{VARIANT.upper()}, 80/20 split of the positives")
plt.show()
coverage = {name: round(result["coverage"], 3) for name, result in scores.items()}
print("share of the catalogue recommended to someone:", coverage)

# %% [markdown]
# **Where does the gradient go?** Draw fresh triples and look at $s_{uij} = \sigma(-x_{uij})$, the factor
# that scales every update:

# %%
rng = np.random.default_rng(1)
picks = rng.integers(0, train.nnz, 20_000)
sample_users = np.repeat(np.arange(ds.n_users), np.diff(train.indptr))[picks]
sample_positives = train.indices[picks]
sampled_negatives = sample_negatives(train, sample_users, rng)
x = bpr_difference(user_factors, item_factors, item_bias, sample_users, sample_positives, sampled_negatives)
s = expit(-x)
fig, ax = plt.subplots(figsize=(6, 3))
ax.hist(s, bins=50)
ax.set(xlabel=r"$s_{uij} = \sigma(-x_{uij})$", ylabel="triples", title="Gradient scale of random triples")
plt.show()
print(f"{np.mean(s < 0.05):.0%} of uniformly sampled triples have s < 0.05: they barely move the model")

# %% [markdown]
# **Question (2 points, graded by hand).** The histogram shows that, after training, a large share of the
# uniformly sampled triples (the printed figure) are already in the right order by a wide margin, so their
# updates are close to zero.
#
# 1. Explain why this happens with *uniform* negative sampling on a catalogue with a long tail of
#    unpopular films, and what it means for the cost of training as the model improves.
# 2. BPR-Opt weighs every (positive, negative) pair equally (it is a smoothed AUC), while we evaluate
#    with NDCG@10, which only looks at the top of the list. Give one way to change the **sampler** so that
#    training focuses on the pairs that matter for the top of the list, and one risk of doing so.
#
# Answer in a few sentences in the next cell.

# %% [manual] id=q_sampling points=2
# ### BEGIN SOLUTION
# 1. A random film is most likely an obscure one that the user's factors already score far below her
#    positives: $x_{uij} \gg 0$ gives $s_{uij} \approx 0$ and a step of almost nothing. As training
#    progresses, a growing share of the sampled triples carries no information: each epoch costs the same
#    but teaches less, and many more epochs are needed to fix the few pairs that are still mis-ordered.
# 2. Oversample informative negatives: popularity-proportional negatives (popular unseen films are the
#    likely competitors at the top of the list), or adaptive "hard" negatives — draw several candidates
#    and keep the highest-scored one, or WARP's "sample until a negative violates the margin" with an
#    update weighted by the estimated rank of the positive. Risks: false negatives (a high-scored unseen
#    film may be one the user would like, and pushing it down hurts), a biased gradient (popularity
#    sampling penalises popular films more than BPR-Opt does), and a higher cost per update.
# ### END SOLUTION

# %% [markdown]
# ## Going further
#
# * The reference implementation `mflib.BPR` samples and steps the same way but on float32 arrays, with a
#   faster scatter (one sparse matrix product instead of `np.add.at`), an $O(1)$ membership lookup for the
#   rejection step and AdaGrad step sizes; with its default hyper-parameters it reaches NDCG@10 ≈ 0.30 on
#   this split (popularity: 0.15).
# * Assignment 04 (WARP) replaces the uniform sampler with the rank-aware one of the question above.
