# %% [markdown]
# # 02 — Implicit feedback and Alternating Least Squares (ALS)
#
# In assignment 01 every training example was a star rating, and the model predicted ratings. Most real
# data are not ratings but **implicit feedback**: a play, a click, a purchase — or, on MovieLens, "rated
# the film 4 or 5 stars". Implicit data have two awkward properties:
#
# * **no negatives**: a missing cell means "not interested" *or* "never saw it" — we cannot tell;
# * **the missing cells are almost everything**: 943 users × 1,682 films = 1.6 million cells, 3% observed.
#
# Hu, Koren & Volinsky (*ICDM* 2008) proposed to fit **every** cell, observed or not, with a weighted
# least-squares loss, and to minimise it by **alternating least squares**: with the item factors fixed, each
# user's factors have a closed-form solution, and vice versa. Done right, one sweep costs time proportional
# to the number of *observed* cells, not to the 1.6 million.
#
# You will write, step by step:
#
# 1. preference and confidence;
# 2. the loss;
# 3. the exact solve of one side (all users at once, then all items);
# 4. the training loop;
# 5. recommendation (seen items excluded) and similar items,
#
# and then look at what the model learned: a learning curve, conjugate gradient, similar films, and a
# comparison with the popularity baseline.
#
# Cells marked *YOUR CODE HERE* are yours. The cell after each one checks your answer: a ✓ line means your
# answer passed that visible check, an error message says what is wrong. The visible checks catch the common
# mistakes, not all of them: hidden tests, run when the notebook is graded, also compare your functions with
# the reference on fresh random inputs.
#
# The notebook runs on MovieLens 100K; set `VARIANT = "1m"` in the next cell to run it unchanged on the
# 1M variant (slower: 14 times as many cells; the grading thresholds are set for 100K).

# %%
import autograder

autograder.setup_notebook()  # one BLAS thread, no progress bars, quiet warnings: reproducible runs

import matplotlib.pyplot as plt
import numpy as np
import scipy.sparse as sp

from autograder.checks import (check_factors, check_loss_decreases, check_matches_reference, check_ranking,
                               check_recommend, check_similar_items)
from mflib.datasets import load_movielens
from mflib.display import plot_learning_curve, plot_metric_bars, recommendations_table, similar_items_table
from mflib.evaluation import evaluate_ranking, implicit_split
from mflib.models.popularity import Popularity
from mflib.teaching import LearnedFactors

VARIANT = "100k"  # the MovieLens variant for the whole notebook: "100k", or "1m" (runs unchanged, slower)

# %% [markdown]
# ## 1. Data: positives only
#
# A rating of 4 or 5 stars is a **positive** ($r_{ui} = 1$); everything else (a low rating, or no rating)
# is unobserved. The course protocol splits the positives 80/20 at random; we train on `train`, a
# users × items CSR matrix, and test on the held-out positives.

# %%
ds = load_movielens(VARIANT)
train, test = implicit_split(ds, random_state=0)
print(f"{ds.n_users} users x {ds.n_items} items; {train.nnz:,} training positives "
      f"({train.nnz / (ds.n_users * ds.n_items):.1%} of the cells), {test.nnz:,} test positives")

# %% [markdown]
# ## 2. Preference and confidence
#
# Hu, Koren & Volinsky split every cell $r_{ui}$ of the matrix into two quantities:
#
# * the **preference** $p_{ui} \in \{0, 1\}$: did $u$ show interest in $i$?
#   $$ p_{ui} = \begin{cases} 1 & r_{ui} > 0 \\ 0 & r_{ui} = 0 \end{cases} $$
# * the **confidence** $c_{ui} \ge 1$: how sure are we of that preference?
#   $$ c_{ui} = 1 + \alpha\, r_{ui} . $$
#
# A missing cell gets $p_{ui} = 0$ with the lowest confidence, $c_{ui} = 1$: "probably not interested, but
# we don't know much". An observed cell gets $p_{ui} = 1$ with confidence $1 + \alpha r_{ui}$, growing with
# the strength of the signal when $r_{ui}$ counts something (plays, clicks). On our 0/1 data every positive
# has confidence $1 + \alpha$.
#
# (The popular `implicit` library uses $c_{ui} = \alpha\, r_{ui}$ on observed cells instead; on 0/1 data its
# `alpha=2` is our $\alpha = 1$. We follow the paper.)
#
# Only the observed cells need storing: both matrices have the sparsity pattern of $R$, and the missing
# cells' values ($p = 0$, $c = 1$) are implied.
#
# **Exercise 1.** Write `preference` and `confidence`. Both take a scipy CSR matrix `user_items` and return
# a CSR matrix of **the same sparsity pattern** holding $p_{ui}$, respectively $c_{ui}$, on the stored
# (observed) cells. Vectorise: work on the `.data` array.

# %% [solution] id=confidence
def preference(user_items):
    """p_ui = 1 on the observed cells of user_items (a CSR matrix); missing cells (p_ui = 0) are not stored."""
    ### BEGIN SOLUTION
    matrix = sp.csr_matrix(user_items, dtype=np.float64, copy=True)
    matrix.data = np.ones_like(matrix.data)
    return matrix
    ### END SOLUTION


def confidence(user_items, alpha):
    """c_ui = 1 + alpha * r_ui on the observed cells; missing cells (c_ui = 1) are not stored."""
    ### BEGIN SOLUTION
    matrix = sp.csr_matrix(user_items, dtype=np.float64, copy=True)
    matrix.data = 1.0 + alpha * matrix.data
    return matrix
    ### END SOLUTION

# %% [locked] id=helpers_matrices
def make_matrix(seed, n_rows=12, n_cols=9, density=0.35, weighted=True):
    """A small random users x items CSR matrix: counts 1..5 (or 1.0), and a first row with no entries."""
    rng = np.random.default_rng(seed)
    dense = (rng.random((n_rows, n_cols)) < density).astype(np.float64)
    if weighted:
        dense *= rng.integers(1, 6, size=dense.shape)
    dense[0] = 0.0
    return sp.csr_matrix(dense)


def as_dense(matrix):
    return matrix.toarray() if sp.issparse(matrix) else np.asarray(matrix)

# %% [tests] id=test_confidence points=1
counts = sp.csr_matrix(np.array([[0.0, 3.0, 1.0], [2.0, 0.0, 0.0]]))
print("preference:\n", as_dense(preference(counts)), "\n(correct: [[0 1 1], [1 0 0]])")
print("confidence, alpha = 2:\n", as_dense(confidence(counts, 2.0)), "\n(correct: [[0 7 3], [5 0 0]]: "
      "the zeros are the missing cells, whose confidence 1 is implied)")
assert sp.issparse(confidence(counts, 2.0)) and confidence(counts, 2.0).nnz == 3, (
    "confidence must return a sparse matrix with the sparsity pattern of user_items (store only observed cells)")
check_matches_reference(lambda m: as_dense(preference(m)), lambda m: np.array([[0, 1, 1], [1, 0, 0]]),
                        lambda seed: (counts,), seeds=(0,), name="preference")
assert not np.allclose(as_dense(confidence(counts, 2.0)), [[0, 6, 2], [4, 0, 0]]), (
    "confidence is alpha * r_ui (implicit's convention); this course uses the paper's c_ui = 1 + alpha * r_ui")
check_matches_reference(lambda m, a: as_dense(confidence(m, a)), lambda m, a: np.array([[0, 7, 3], [5, 0, 0]]),
                        lambda seed: (counts, 2.0), seeds=(0,), name="confidence (c_ui = 1 + alpha * r_ui)")
### BEGIN HIDDEN TESTS
from mflib.models import als as reference

check_matches_reference(lambda m: as_dense(preference(m)), lambda m: as_dense(reference.preference(m)),
                        lambda seed: (make_matrix(seed),), name="preference")
check_matches_reference(lambda m, a: as_dense(confidence(m, a)), lambda m, a: as_dense(reference.confidence(m, a)),
                        lambda seed: (make_matrix(seed), 0.5 + seed), name="confidence")
### END HIDDEN TESTS

# %% [markdown]
# ## 3. The loss
#
# Each user gets a vector $\mathbf x_u \in \mathbb R^k$ (a row of `user_factors`, $X$) and each item a
# vector $\mathbf y_i$ (a row of `item_factors`, $Y$); the model's score is $\mathbf x_u \cdot \mathbf y_i$.
# ALS fits the preferences of **all** cells, weighted by their confidence, with an L2 penalty:
#
# $$ L(X, Y) = \sum_{u}\sum_{i} c_{ui}\,\big(p_{ui} - \mathbf x_u \cdot \mathbf y_i\big)^2
#    + \lambda \Big( \sum_u \lVert \mathbf x_u \rVert^2 + \sum_i \lVert \mathbf y_i \rVert^2 \Big) . $$
#
# The 1.6 million missing cells pull their scores towards 0 with weight 1; the 44,000 positives pull theirs
# towards 1 with weight $1 + \alpha$. There are no sampled negatives: every cell counts.
#
# ML-100K is small enough to compute $L$ with dense $943 \times 1682$ matrices. (On larger data you never
# would. With $s_{ui} = \mathbf x_u \cdot \mathbf y_i$, the sum over all cells of $s_{ui}^2$ is
# $\lVert X Y^\top \rVert_F^2 = \operatorname{sum}\big((X^\top X) \odot (Y^\top Y)\big)$, two $k \times k$
# matrices, and the observed cells only add a correction $c_{ui}(1 - s_{ui})^2 - s_{ui}^2$. Try it if you
# like — the check accepts both.)
#
# **Exercise 2.** Write `als_loss`; return a Python float.

# %% [solution] id=als_loss
def als_loss(user_factors, item_factors, user_items, regularization, alpha):
    """sum_{u,i} c_ui (p_ui - x_u . y_i)^2 + lambda (|X|^2 + |Y|^2), over ALL cells."""
    ### BEGIN SOLUTION
    C = 1.0 + alpha * user_items.toarray()          # c_ui on every cell (1 where r_ui = 0)
    P = (user_items.toarray() > 0).astype(float)    # p_ui
    S = user_factors @ item_factors.T                # s_ui = x_u . y_i
    penalty = np.sum(user_factors ** 2) + np.sum(item_factors ** 2)
    return float(np.sum(C * (P - S) ** 2) + regularization * penalty)
    ### END SOLUTION

# %% [locked] id=helpers_loss
def make_factors(seed, n_rows=12, n_cols=9, k=4):
    rng = np.random.default_rng(seed + 100)
    return rng.normal(0, 1, (n_rows, k)), rng.normal(0, 1, (n_cols, k))


def diagnose_loss(loss_fn, seed=0, regularization=0.7, alpha=2.0):
    """Compare loss_fn with variants of the loss that have a typical mistake in them."""
    R = make_matrix(seed)
    X, Y = make_factors(seed)
    D = R.toarray()
    S = X @ Y.T
    penalty = regularization * (np.sum(X ** 2) + np.sum(Y ** 2))
    variants = {
        "only the observed cells are counted: the missing cells (p_ui = 0, c_ui = 1) are part of the loss too":
            np.sum(((1 + alpha * D) * (1 - S) ** 2)[D > 0]) + penalty,
        "the penalty lambda (|X|^2 + |Y|^2) is missing": np.sum((1 + alpha * D) * ((D > 0) - S) ** 2),
        "the confidence is alpha * r_ui; use c_ui = 1 + alpha * r_ui":
            np.sum(np.where(D > 0, alpha * D, 1.0) * ((D > 0) - S) ** 2) + penalty,
        "the target is r_ui; it must be the preference p_ui (1 on observed cells)":
            np.sum((1 + alpha * D) * (D - S) ** 2) + penalty,
    }
    value = float(loss_fn(X, Y, R, regularization, alpha))
    for mistake, wrong in variants.items():
        if abs(value - wrong) <= 1e-9 * abs(wrong):
            raise AssertionError(f"als_loss: {mistake}")

# %% [tests] id=test_als_loss points=2
R = make_matrix(0)
X0, Y0 = np.zeros((12, 4)), np.zeros((9, 4))
value = als_loss(X0, Y0, R, 0.7, 2.0)
print(f"all factors 0: loss = {value:.1f}; correct: {np.sum(1 + 2.0 * R.data):.1f} = the sum of the "
      "confidences of the observed cells (every score is 0, every missing cell is right)")
assert abs(value - np.sum(1 + 2.0 * R.data)) < 1e-9 * value, "als_loss at zero factors is wrong"
diagnose_loss(als_loss)
check_matches_reference(als_loss, lambda *args: 2056.6699324160368,
                        lambda seed: (*make_factors(1), make_matrix(1), 0.7, 2.0), seeds=(0,),
                        name="als_loss on a small example")
### BEGIN HIDDEN TESTS
from mflib.models import als as reference

diagnose_loss(als_loss, seed=3, regularization=0.1, alpha=5.0)
check_matches_reference(als_loss, reference.als_loss,
                        lambda seed: (*make_factors(seed), make_matrix(seed), 0.3 * seed, 1.0 + seed), name="als_loss")
### END HIDDEN TESTS

# %% [markdown]
# ## 4. One side in closed form
#
# Fix the items' $Y$. The loss becomes a sum of independent problems, one per user, each a **weighted
# ridge regression** of the preferences $p_u$ on the item vectors:
#
# $$ \min_{\mathbf x_u} \sum_i c_{ui}\big(p_{ui} - \mathbf y_i \cdot \mathbf x_u\big)^2 + \lambda \lVert\mathbf x_u\rVert^2 . $$
#
# Setting its gradient $-2\sum_i c_{ui}(p_{ui} - \mathbf y_i\cdot\mathbf x_u)\,\mathbf y_i + 2\lambda\mathbf x_u$
# to zero gives the **normal equations**, with $C_u = \operatorname{diag}(c_{u1}, \dots, c_{un})$:
#
# $$ \big(Y^\top C_u Y + \lambda I\big)\,\mathbf x_u = Y^\top C_u\, p_u . $$
#
# **The $Y^\top Y$ trick.** $Y^\top C_u Y$ sums over *all* 1,682 items, for *every* user:
# $O(n_{\text{items}}\, k^2)$ per user — the cost we wanted to avoid. But $C_u = I + (C_u - I)$, and
# $C_u - I$ is zero on the missing cells, so
#
# $$ A_u = \underbrace{Y^\top Y}_{\text{same for all users}} + \sum_{i \in N(u)} (c_{ui} - 1)\, \mathbf y_i \mathbf y_i^\top
#    + \lambda I, \qquad
#    \mathbf b_u = Y^\top C_u p_u = \sum_{i \in N(u)} c_{ui}\, \mathbf y_i , $$
#
# where $N(u)$ are the items of $u$. $Y^\top Y$ ($k \times k$) is computed **once** per half-step; the rest
# touches only the user's own items. A half-step then costs $O(\text{nnz}\, k^2 + n_{\text{users}}\, k^3)$.
#
# Then the same with $X$ fixed gives the items: the roles swap, and the items × users matrix
# `user_items.T.tocsr()` takes the place of `user_items`.
#
# **Exercise 3.** Write `solve_exact(fixed_factors, user_items, regularization, alpha)`: for **every row**
# $u$ of `user_items` (a users × items CSR matrix when solving users) the $\mathbf x_u$ that solves its
# normal equations, with `fixed_factors` $= Y$ (one row per *column* of `user_items`). Return an array of
# shape `(n_rows, k)`. A loop over the rows with `np.linalg.solve` is fine here (ML-100K is small); the
# vectorised way builds all the $A_u$ at once: $\sum_i w_{ui}\, \mathbf y_i \mathbf y_i^\top$ for every
# row is a sparse matrix $W$ times the items' flattened outer products $\mathbf y_i \mathbf y_i^\top$
# (an $n_{\text{items}} \times k^2$ matrix), and `np.linalg.solve` solves a whole stack of systems at once.

# %% [solution] id=solve_exact
def solve_exact(fixed_factors, user_items, regularization, alpha):
    """x_u = (Y^T Y + Y^T (C_u - I) Y + lambda I)^-1 Y^T C_u p_u for every row u; Y = fixed_factors."""
    ### BEGIN SOLUTION
    Y = fixed_factors
    n_rows, k = user_items.shape[0], Y.shape[1]
    C = confidence(user_items, alpha)
    W = C.copy()
    W.data = W.data - 1.0                                         # c_ui - 1, zero on the missing cells
    outer = (Y[:, :, None] * Y[:, None, :]).reshape(len(Y), k * k)  # row i: y_i y_i^T, flattened
    A = (W @ outer).reshape(n_rows, k, k) + Y.T @ Y + regularization * np.eye(k)
    b = C @ Y                                                     # sum_i c_ui p_ui y_i, with p_ui = 1 there
    return np.linalg.solve(A, b[:, :, None])[:, :, 0]
    ### END SOLUTION

# %% [markdown]
# **How do we know it is right?** At the exact solution the gradient of the loss in $\mathbf x_u$ vanishes:
# $\frac12 \nabla_{\mathbf x_u} L = A_u \mathbf x_u - \mathbf b_u = 0$. The check computes this residual
# with dense matrices; a relative residual below $10^{-8}$ means your solve is exact. If it is not, the
# residual's shape often tells which term is missing.

# %% [locked] id=helpers_solve
def check_solve(solve_fn, seeds=(0, 1, 2), k=4, regularization=0.7, alpha=2.0):
    """Is solve_fn(Y, R, ...) the minimiser of the loss in X? Diagnose the usual mistakes from the residual."""
    for seed in seeds:
        R = make_matrix(seed)
        _, Y = make_factors(seed, k=k)
        X = np.asarray(solve_fn(Y, R, regularization, alpha), dtype=np.float64)
        assert X.shape == (R.shape[0], k), (
            f"solve_exact returned shape {X.shape}; expected (n_rows, k) = {(R.shape[0], k)}: one row per row "
            "of user_items, with fixed_factors having one row per column")
        D = R.toarray()
        C, P, observed = 1 + alpha * D, (D > 0).astype(float), D > 0
        b = (C * P) @ Y
        residual = (C * (X @ Y.T - P)) @ Y + regularization * X      # = A_u x_u - b_u, row by row
        relative = np.linalg.norm(residual) / np.linalg.norm(b)
        if relative < 1e-8:
            continue
        explanations = {
            "the regularization lambda I is missing from the normal equations": regularization * X,
            "the Y^T Y term is missing: only the observed items enter A_u, but every missing cell counts "
            "(p = 0, c = 1) — add Y^T Y": X @ (Y.T @ Y),
            "A_u sums over the observed items only (c_ui y_i y_i^T): the missing cells need the Y^T Y term":
                ((1 - observed) * (X @ Y.T)) @ Y,
            "the right-hand side uses the ratings r_ui; the preference p_ui is 1 on every observed cell":
                (C * (D - P)) @ Y,
            "the confidence must be c_ui = 1 + alpha * r_ui (c_ui - 1 = alpha * r_ui in A_u)":
                (observed * (X @ Y.T - 1)) @ Y,
        }
        for mistake, predicted in explanations.items():
            if np.linalg.norm(residual - predicted) <= 1e-6 * np.linalg.norm(residual):
                raise AssertionError(f"solve_exact: {mistake}")
        raise AssertionError(f"solve_exact does not solve the normal equations: |A x - b| / |b| = {relative:.2e} "
                             f"(seed {seed}); check A_u = Y^T Y + sum_i (c_ui - 1) y_i y_i^T + lambda I and "
                             "b_u = sum_i c_ui p_ui y_i")
    print(f"✓ solve_exact: |A_u x_u - b_u| / |b_u| = {relative:.1e} (< 1e-8: the exact minimiser) on {len(seeds)} "
          "random problems")

# %% [tests] id=test_solve_exact points=3
check_solve(solve_exact)
R = make_matrix(4)
X, Y = make_factors(4)
before = als_loss(X, Y, R, 0.7, 2.0)
X_new = solve_exact(Y, R, 0.7, 2.0)
after = als_loss(X_new, Y, R, 0.7, 2.0)
print(f"loss {before:.2f} -> {after:.2f} after solving the users (an exact step can only go down)")
Y_new = solve_exact(X_new, R.T.tocsr(), 0.7, 2.0)
print(f"loss {after:.2f} -> {als_loss(X_new, Y_new, R, 0.7, 2.0):.2f} after solving the items")
### BEGIN HIDDEN TESTS
from mflib.models import als as reference

check_solve(solve_exact, seeds=(5, 6), k=6, regularization=0.05, alpha=10.0)
check_matches_reference(solve_exact, reference.solve_exact,
                        lambda seed: (make_factors(seed)[1], make_matrix(seed), 0.2 + seed, 1.0 + seed),
                        name="solve_exact (users)")
check_matches_reference(solve_exact, reference.solve_exact,
                        lambda seed: (make_factors(seed)[0], make_matrix(seed).T.tocsr(), 0.5, 3.0),
                        name="solve_exact (items, on the transposed matrix)")
### END HIDDEN TESTS

# %% [markdown]
# ## 5. Alternating
#
# Neither $X$ nor $Y$ is known, but each half-step above solves its half **exactly**, so alternating them
#
# $$ X \leftarrow \arg\min_X L(X, Y), \qquad Y \leftarrow \arg\min_Y L(X, Y), \qquad \dots $$
#
# can never increase the loss: no learning rate, no divergence. The loss is not convex in $(X, Y)$ jointly,
# so we get a local minimum, which in practice is a good one. Start from small random factors (all zeros
# would make the first user step return zeros: $\mathbf b_u = Y^\top C_u p_u = 0$).
#
# **Exercise 4.** Write the training loop:
#
# * `user_items` is the users × items training matrix; factors drawn from $\mathcal N(0, 0.01^2)$ with
#   `rng = np.random.default_rng(random_state)` — users first, then items;
# * every iteration: the users with the items fixed, then the items with the users fixed (your
#   `solve_exact` both times);
# * after every iteration append `als_loss(...)` to `loss_history`.
#
# Return `(user_factors, item_factors, loss_history)`.

# %% [solution] id=fit_als
def fit_als(user_items, factors=32, regularization=25.0, alpha=2.0, iterations=10, random_state=0):
    """Implicit ALS by exact alternating solves; returns (user_factors, item_factors, loss_history)."""
    ### BEGIN SOLUTION
    rng = np.random.default_rng(random_state)
    n_users, n_items = user_items.shape
    user_factors = rng.normal(0.0, 0.01, (n_users, factors))
    item_factors = rng.normal(0.0, 0.01, (n_items, factors))
    item_users = user_items.T.tocsr()
    loss_history = []
    for _ in range(iterations):
        user_factors = solve_exact(item_factors, user_items, regularization, alpha)
        item_factors = solve_exact(user_factors, item_users, regularization, alpha)
        loss_history.append(als_loss(user_factors, item_factors, user_items, regularization, alpha))
    return user_factors, item_factors, loss_history
    ### END SOLUTION

# %% [markdown]
# Train (a second or two on ML-100K) and look at the loss after every iteration:

# %%
user_factors, item_factors, loss_history = fit_als(train)
plot_learning_curve(loss_history, title=f"ALS on ML-{VARIANT.upper()}", xlabel="iteration",
                    ylabel="weighted squared loss + L2")
plt.show()

# %% [tests] id=test_fit_als points=2
check_factors(LearnedFactors(user_factors, item_factors), ds.n_users, ds.n_items)
check_loss_decreases(loss_history, min_relative_drop=0.05, name="ALS training loss", closed_form=True)
assert np.all(np.diff(loss_history) <= 1e-9 * np.abs(loss_history[:-1])), (
    "the ALS loss went up between two iterations: every exact half-step can only lower it — is each "
    "solve_exact given the factors of the other side from the same iteration?")
### BEGIN HIDDEN TESTS
small = train[:150]
first = fit_als(small, factors=6, iterations=2, random_state=5)
again = fit_als(small, factors=6, iterations=2, random_state=5)
assert first[0].shape == (150, 6) and first[1].shape == (ds.n_items, 6), (
    "fit_als must return user_factors (n_users, factors) and item_factors (n_items, factors): did you "
    "transpose user_items?")
assert len(first[2]) == 2, "fit_als must record one loss per iteration"
assert np.array_equal(first[1], again[1]), (
    "fit_als with the same random_state gave different factors: draw the initial factors from "
    "rng = np.random.default_rng(random_state)")
### END HIDDEN TESTS

# %% [markdown]
# ## 6. Recommending
#
# The top-$N$ list of user $u$ is the $N$ items with the highest score $\mathbf x_u \cdot \mathbf y_i$
# **among the items she has not interacted with yet**: recommending her own positives back is useless
# (and the evaluation counts only test positives, which are never training positives).
#
# **Exercise 5.** Write `recommend`. `seen` is a CSR matrix with **one row per entry of `users`** (e.g.
# `train[users]`); its items must never be returned. Return `(ids, scores)`, two arrays of shape
# `(len(users), N)`, best first. Hint: set the scores of seen items to `-np.inf`; `np.argpartition`
# finds the top $N$ without sorting all the scores. Read its contract closely: `np.argpartition(a, kth)`
# puts the entry of rank `kth` (counting from 0) at position `kth` and the smaller ones before it **in no
# particular order** — the order you may see on your machine is an accident of its implementation.
#
# Recommending works the same for every factor model, so this is the course's only `recommend` exercise:
# assignments 03 and 04 use the provided `LearnedFactors` below, which does exactly this.

# %% [solution] id=recommend
def recommend(user_factors, item_factors, users, seen, N=10):
    """Top-N unseen items of every user in `users` by x_u . y_i: (ids, scores), best first."""
    ### BEGIN SOLUTION
    scores = user_factors[users] @ item_factors.T
    rows, cols = sp.csr_matrix(seen).nonzero()
    scores[rows, cols] = -np.inf
    top = np.argpartition(-scores, N - 1, axis=1)[:, :N]
    top_scores = np.take_along_axis(scores, top, axis=1)
    order = np.argsort(-top_scores, axis=1)
    return np.take_along_axis(top, order, axis=1), np.take_along_axis(top_scores, order, axis=1)
    ### END SOLUTION

# %% [markdown]
# The course's evaluation tools take a *model* with the `recommend` / `similar_items` API of the `implicit`
# library. `mflib.teaching.LearnedFactors` is that model, built from the arrays your `fit_als` returned;
# your `recommend` plugs in (and your `similar_items` after Exercise 6). The ten films it recommends to
# user 0; `hit` marks those among her held-out test positives:

# %%
model = LearnedFactors(user_factors, item_factors, recommend=recommend)
recommendations_table(model, ds, 0, train, test_items=test)

# %% [tests] id=test_recommend points=2
check_recommend(model, train)
# again with the factors in extended precision: numpy then selects with its portable algorithm, whose order
# before kth is arbitrary (on float32/float64 a vectorised one often happens to leave it sorted)
check_recommend(LearnedFactors(user_factors.astype(np.longdouble), item_factors.astype(np.longdouble),
                               recommend=recommend), train)
ranking = check_ranking(model, train, test, min_ndcg=0.28)
### BEGIN HIDDEN TESTS
from mflib.models.base import FactorModel

reference_model = FactorModel()
reference_model.user_factors, reference_model.item_factors = user_factors, item_factors
some_users = np.arange(0, ds.n_users, 7)
check_matches_reference(lambda users: recommend(user_factors, item_factors, users, train[users], N=10),
                        lambda users: reference_model.recommend(users, train[users], N=10),
                        lambda seed: (some_users[seed::3],), rtol=1e-5, name="recommend")
ranking = check_ranking(model, train, test, min_ndcg=0.30)
### END HIDDEN TESTS

# %% [markdown]
# ## 7. Similar items
#
# Two films are similar when the same users like them, i.e. when their factor vectors point the same way.
# We use the **cosine similarity** $\cos(\mathbf y_i, \mathbf y_j) = \mathbf y_i \cdot \mathbf y_j /
# (\lVert\mathbf y_i\rVert\,\lVert\mathbf y_j\rVert)$. The raw inner product would favour films with long
# vectors — the popular ones — whatever the query.
#
# **Exercise 6.** Write `similar_items(item_factors, itemid, N=10)`: the `N` items with the highest cosine
# similarity to item `itemid`, **leaving the item itself out**, as `(ids, scores)` (1-D arrays, best first).

# %% [solution] id=similar_items
def similar_items(item_factors, itemid, N=10):
    """The N items most similar to itemid by cosine similarity (itself excluded): (ids, scores)."""
    ### BEGIN SOLUTION
    norms = np.linalg.norm(item_factors, axis=1)
    unit = item_factors / np.maximum(norms, 1e-12)[:, None]
    scores = unit @ unit[itemid]
    scores[itemid] = -np.inf
    top = np.argpartition(-scores, N - 1)[:N]
    top = top[np.argsort(-scores[top])]
    return top, scores[top]
    ### END SOLUTION

# %% [markdown]
# *Star Wars* and *The Godfather*, according to your model (now with your `similar_items` plugged in too):

# %%
model = LearnedFactors(user_factors, item_factors, recommend=recommend, similar_items=similar_items)
similar_items_table(model, ds, "Star Wars")

# %%
similar_items_table(model, ds, "Godfather, The")

# %% [tests] id=test_similar_items points=2
check_similar_items(model, ds, train, min_genre_jaccard=0.30,
                    pairs={"Star Wars": ["Empire Strikes Back", "Return of the Jedi"],
                           "Godfather, The": ["Godfather: Part II"]})
### BEGIN HIDDEN TESTS
from mflib import retrieval


def reference_similar(factors, itemid, N=10):
    ids, scores = retrieval.similar_items(factors, [itemid], N=N)
    return ids[0], scores[0]


check_matches_reference(similar_items, reference_similar,
                        lambda seed: (np.random.default_rng(seed).normal(0, 1, (40, 6)), seed * 7 % 40, 5),
                        rtol=1e-5, name="similar_items")
### END HIDDEN TESTS

# %% [markdown]
# ## 8. Faster: conjugate gradient
#
# The exact solve costs $O(\text{nnz}\,k^2 + n\,k^3)$ per half-step. Takács, Pilászy & Tikk (*RecSys* 2011)
# noticed that we never need the exact $\mathbf x_u$: the previous iteration's $\mathbf x_u$ is already
# close, and a few steps of **conjugate gradient** (CG) on $A_u \mathbf x_u = \mathbf b_u$, started there,
# are enough. CG only needs products $A_u \mathbf v$, which cost $O(|N(u)|\,k + k^2)$ without ever forming
# $A_u$:
#
# $$ A_u \mathbf v = Y^\top Y\, \mathbf v + \sum_{i \in N(u)} (c_{ui} - 1)\,(\mathbf y_i \cdot \mathbf v)\,\mathbf y_i
#    + \lambda \mathbf v . $$
#
# Below, CG for all users at once, vectorised over the observed cells (this is how `implicit` and the
# course's `mflib.ALS` train): starting from the factors your model learned, we perturb them and count
# how many CG steps bring them back to the exact solution of one user half-step.

# %%
def cg_users(item_factors, user_items, start, regularization, alpha, steps):
    """`steps` steps of conjugate gradient on every user's normal equations, from `start`."""
    rows = np.repeat(np.arange(user_items.shape[0]), np.diff(user_items.indptr))
    Y_obs = item_factors[user_items.indices]             # y_i of every observed cell
    weight = alpha * user_items.data                      # c_ui - 1
    gram = item_factors.T @ item_factors + regularization * np.eye(item_factors.shape[1])

    def times_A(V):                                       # A_u v_u for every user at once
        dots = np.einsum("ij,ij->i", V[rows], Y_obs)       # y_i . v_u on the observed cells
        W = sp.csr_matrix((weight * dots, user_items.indices, user_items.indptr), shape=user_items.shape)
        return V @ gram + W @ item_factors

    x = start.copy()
    b = sp.csr_matrix(((1 + weight), user_items.indices, user_items.indptr), shape=user_items.shape) @ item_factors
    r = b - times_A(x)
    p, rs = r.copy(), np.sum(r * r, axis=1)
    for _ in range(steps):
        Ap = times_A(p)
        step = rs / np.maximum(np.sum(p * Ap, axis=1), 1e-300)
        x += step[:, None] * p
        r -= step[:, None] * Ap
        rs_new = np.sum(r * r, axis=1)
        p = r + (rs_new / np.maximum(rs, 1e-300))[:, None] * p
        rs = rs_new
    return x


exact_users = solve_exact(item_factors, train, 25.0, 2.0)
start = exact_users + np.random.default_rng(0).normal(0, 0.05, exact_users.shape)
errors = [np.linalg.norm(cg_users(item_factors, train, start, 25.0, 2.0, steps) - exact_users)
          / np.linalg.norm(exact_users) for steps in range(0, 9)]
fig, ax = plt.subplots(figsize=(6, 3))
ax.semilogy(range(0, 9), errors, marker="o")
ax.set(xlabel="CG steps", ylabel="relative error", title=f"CG from a warm start, all {ds.n_users} users at once")
plt.show()
print(f"relative error after 3 steps: {errors[3]:.1e} (start: {errors[0]:.1e})")

# %% [markdown]
# ## 9. Ranking quality against popularity
#
# Recommending the most popular unseen films to everyone is a strong baseline on MovieLens. ALS
# personalises:

# %%
scores = {"popularity": evaluate_ranking(Popularity().fit(train), train, test),
          "your ALS": evaluate_ranking(model, train, test)}
plot_metric_bars(scores, metric=["ndcg@10", "precision@10", "recall@10"], highlight="your ALS",
                 title=f"ML-{VARIANT.upper()}, 80/20 split of the positives")
plt.show()
print({name: round(result["coverage"], 3) for name, result in scores.items()}, "<- share of the catalogue recommended")

# %% [markdown]
# **What does $\alpha$ do?** Retrain with a few values of $\alpha$ (everything else fixed) and compare
# NDCG@10 and the learning curves:

# %%
curves, ndcg = {}, {}
for a in (0.0, 2.0, 20.0):
    U, V, history = fit_als(train, alpha=a, iterations=6)
    curves[f"alpha = {a:g}"] = np.array(history) / history[0]
    ndcg[f"alpha = {a:g}"] = evaluate_ranking(LearnedFactors(U, V, recommend=recommend), train, test)["ndcg@10"]
plot_learning_curve(curves, title="ALS, loss relative to iteration 1", xlabel="iteration")
plt.show()
print({name: round(value, 3) for name, value in ndcg.items()})

# %% [markdown]
# **Question (2 points, graded by hand).**
#
# 1. What does $\alpha$ control, and what happens to the recommendations when $\alpha = 0$ and when $\alpha$
#    is very large? Use the numbers above.
# 2. Why is ALS a natural fit for implicit feedback, compared with the SGD on observed ratings of
#    assignment 01? Think of what the loss sums over and what one ALS half-step costs.
#
# Answer in a few sentences in the next cell.

# %% [manual] id=q_alpha points=2
# ### BEGIN SOLUTION
# 1. $\alpha$ sets how much more an observed cell weighs than a missing one ($1 + \alpha$ against 1). With
#    $\alpha = 0$ all 1.6 million cells weigh the same, the 97% zeros dominate and the factors mostly learn to
#    predict 0: the model is weak (lower NDCG), close to a plain truncated SVD of the 0/1 matrix. A very large
#    $\alpha$ makes the missing cells almost irrelevant: the model fits the positives ever more closely and
#    stops learning that unobserved films are less likely; scores of everything rise towards 1 and the
#    ranking degrades again. The best value balances "positives are reliable" against "absence is weak
#    negative evidence".
# 2. Implicit data have no negatives, so the loss must cover the missing cells too; SGD over all 1.6 million
#    cells (or a sampled subset) would be slow or noisy. ALS handles every cell exactly: with one side fixed
#    each row is a weighted ridge regression with a closed-form solution, and the $Y^\top Y$ trick makes
#    the missing cells cost one $k \times k$ matrix per half-step, so a sweep costs
#    $O(\text{nnz}\,k^2 + n\,k^3)$ instead of $O(n_{\text{users}} n_{\text{items}} k)$. No learning rate,
#    the loss never goes up, and rows are independent (parallel, or CG with warm starts).
# ### END SOLUTION

# %% [markdown]
# ## Going further
#
# * The reference implementation `mflib.ALS` trains with the CG of section 8 (three steps per half-step,
#   warm-started), vectorised over all users with the observed cells laid out in equal-length blocks; with
#   its default hyper-parameters (64 factors, $\lambda = 25$, $\alpha = 2$, 15 iterations) it reaches
#   NDCG@10 ≈ 0.33 on this split, the same as the `implicit` library.
# * Assignment 03 (BPR) drops the regression view entirely and optimises the *order* of items directly.
