# %% [markdown]
# # 05 — Factorization machines: side features and the cold-start user
#
# Every model so far knew a user only by her ratings. A new visitor who has rated nothing gets nothing
# personal: matrix factorization has no factor vector for her, and the best it can do is the popularity
# list. Yet we often know *something*: a sign-up form asks for an age, a gender, an occupation. And we
# know a lot about the films: their genres, their release year.
#
# A **factorization machine** (Steffen Rendle, *ICDM* 2010) puts all of this in one model. Each rating
# is described by a long, sparse **feature vector** — who rated, what, and everything we know about
# both — and the model learns a weight and a small factor vector for every feature. Two features that
# never met in the training data still get an interaction weight, the inner product of their factors:
# that is what lets a brand-new 25-year-old student get recommendations learned from other people of
# her age and occupation.
#
# In this notebook you will write, step by step:
#
# 1. the pairwise-interaction term, with Rendle's $O(kn)$ rewrite (checked against the naive sum);
# 2. the prediction;
# 3. the regularised loss;
# 4. its gradient — checked against finite differences;
# 5. the Adam update;
# 6. the training loop;
# 7. the FM as an inner product of a user vector and a film vector, which scores every film for a new
#    user at once,
#
# and then compare the model with and without side features and recommend films to people the model
# has never seen.
#
# Cells marked *YOUR CODE HERE* are yours. The cell after each one checks your answer on small examples
# with known results: an error message says what is wrong and how to fix it; a ✓ line (or a printed value
# equal to the one given as correct) means your code passed *these* examples. That is necessary, not
# sufficient: when the notebook is graded, hidden tests also compare your functions with a reference
# implementation on fresh random inputs.

# %%
import autograder

autograder.setup_notebook()  # one BLAS thread, no progress bars, quiet warnings: reproducible runs

import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import scipy.sparse as sp

from autograder.checks import check_gradient, check_loss_decreases, check_matches_reference, check_rmse
from mflib.datasets import load_movielens
from mflib.display import plot_learning_curve
from mflib.evaluation import explicit_split
from mflib.features import build_features, cold_start_rows, item_rows, user_row
from mflib.gradcheck import check_gradients, relative_error

# %% [markdown]
# The data set this notebook loads. Everything below uses it, so `VARIANT = "1m"` runs the same notebook on
# MovieLens 1M (a million ratings, downloaded once from GroupLens; it names its occupations differently,
# see Section 10). The text quotes the figures of 100K; grading always uses `"100k"`.

# %% [locked] id=variant
VARIANT = "100k"

# %% [markdown]
# ## 1. Ratings as feature vectors
#
# We predict star ratings (explicit feedback) with the course protocol: a random 80/20 split of the
# 100,000 ratings of MovieLens 100K. `mflib.features.build_features` turns every rating $(u, i)$ into a
# sparse row $\mathbf x \in \mathbb R^n$ made of **blocks**:
#
# | block | columns | value |
# |---|---|---|
# | user | 943 | one-hot: 1 in the column of user $u$ |
# | item | 1,682 | one-hot: 1 in the column of film $i$ |
# | age | 7 | one-hot of the user's age bucket (<18, 18-24, 25-34, ...) |
# | gender | 2 | one-hot |
# | occupation | 21 | one-hot (student, programmer, retired, ...) |
# | genres | 19 | the film's genres, each $1/(\text{number of its genres})$, so they sum to 1 |
# | year | 8 | one-hot of the release-year bucket |
#
# $n = 2{,}682$ columns, of which about 8 are non-zero in any row. We divide a film's genre flags by
# their number so that every block weighs the same: a film listed under five genres would otherwise
# get five genre terms and ten genre × genre interactions, and its predictions would swing further
# from the mean for no good reason.

# %%
ds = load_movielens(VARIANT)
train, test = explicit_split(ds, random_state=0)
X_train, space = build_features(ds, train)
X_test, _ = build_features(ds, test)
y_train = train["rating"].to_numpy(np.float64)
y_test = test["rating"].to_numpy(np.float64)
print(space)
print(f"X_train: {X_train.shape[0]:,} rows x {X_train.shape[1]:,} features, "
      f"{X_train.nnz / X_train.shape[0]:.1f} non-zeros per row")

# %% [markdown]
# The first training rating, decoded (`space.names` labels every column):

# %%
first = X_train[0]
print(f"rating: {y_train[0]:.0f} stars for {ds.title(train['item_idx'].iloc[0])}")
pd.Series(first.data, index=[space.names[j] for j in first.indices], name="x_j").round(3).to_frame().T

# %% [markdown]
# ## 2. The model
#
# A linear model $w_0 + \sum_j w_j x_j$ on these features would learn how generous each user is, how
# good each film is, how much students like films in general... but never that *this* user likes
# *this* film, or that students like comedies: that needs **interactions**, products $x_j x_l$. Giving
# every pair its own weight $w_{jl}$ is hopeless — 3.6 million weights, most for pairs never observed
# together (a user and a film she has not rated: exactly the pairs we want to predict!).
#
# A factorization machine of order 2 gives every feature $j$ a weight $w_j$ and a **factor vector**
# $\mathbf v_j \in \mathbb R^k$, and uses their inner product as the weight of a pair:
#
# $$ \hat y(\mathbf x) = w_0 + \sum_{j=1}^n w_j x_j + \sum_{j=1}^{n} \sum_{l=j+1}^{n}
#    \langle \mathbf v_j, \mathbf v_l \rangle \, x_j x_l . $$
#
# The parameters are $w_0 \in \mathbb R$, $\mathbf w \in \mathbb R^n$ and $V \in \mathbb R^{n \times k}$
# (row $j$ is $\mathbf v_j$). The factor of the feature "occupation = student" is learned from every
# rating a student gave; its inner product with the factor of "genre = Comedy" — learned from every
# rating of a comedy — scores the pair even if we never saw this student rate this comedy.
#
# **Matrix factorization is a special case.** Keep only the user and item blocks: $\mathbf x$ has two
# ones, $x_u = x_i = 1$, and every other term vanishes:
#
# $$ \hat y = w_0 + w_u + w_i + \langle \mathbf v_u, \mathbf v_i \rangle , $$
#
# the biased MF of assignment 01 with $\mu = w_0$, $b_u = w_u$, $b_i = w_i$, $\mathbf p_u = \mathbf v_u$,
# $\mathbf q_i = \mathbf v_i$. Side features simply add more rows to $V$.
#
# ## 3. The pairwise term in $O(kn)$
#
# The double sum has $n(n-1)/2$ pairs, each an inner product of length $k$: $O(k n^2)$. Rendle's trick
# rewrites it in four steps. (1) The sum over $j < l$ is half of the sum over all ordered pairs
# $j \ne l$, which is the full double sum minus its diagonal $j = l$:
#
# $$ \sum_{j<l} \langle \mathbf v_j, \mathbf v_l \rangle x_j x_l
#    = \frac12 \Big( \sum_{j=1}^n \sum_{l=1}^n \langle \mathbf v_j, \mathbf v_l \rangle x_j x_l
#    - \sum_{j=1}^n \langle \mathbf v_j, \mathbf v_j \rangle x_j^2 \Big) . $$
#
# (2) Write the inner products as sums over the $k$ factors $f$:
#
# $$ = \frac12 \Big( \sum_{f=1}^k \sum_{j} \sum_{l} v_{jf} x_j \, v_{lf} x_l
#    - \sum_{f=1}^k \sum_{j} v_{jf}^2 x_j^2 \Big) . $$
#
# (3) The double sum over $j$ and $l$ of a product of a term in $j$ and a term in $l$ factorises:
# $\sum_j \sum_l a_j a_l = (\sum_j a_j)^2$. (4) Hence
#
# $$ \boxed{ \sum_{j<l} \langle \mathbf v_j, \mathbf v_l \rangle x_j x_l
#    = \frac12 \sum_{f=1}^k \Big[ \Big( \sum_{j=1}^n v_{jf} x_j \Big)^2 - \sum_{j=1}^n v_{jf}^2 x_j^2 \Big] } $$
#
# — $O(kn)$, and only the non-zero $x_j$ count: $O(k \cdot \text{nnz}(\mathbf x))$.
#
# **On a whole batch at once.** Stack the rows of a batch in a sparse matrix $X$ ($m \times n$). Then
# $S = XV$ ($m \times k$) holds $s_{if} = \sum_j v_{jf} x_{ij}$, and $(X \circ X)(V \circ V)$ holds
# $\sum_j v_{jf}^2 x_{ij}^2$ ($\circ$ is the element-wise product). Two sparse-times-dense products:
#
# $$ \text{pairwise}_i = \frac12 \sum_f \big[ S_{if}^2 - \big((X \circ X)(V \circ V)\big)_{if} \big] . $$
#
# **Exercise 1.** Write `fm_pairwise(V, X)`: the pairwise term of every row of the sparse matrix `X`,
# with the boxed formula, vectorised (no Python loop). In scipy, `X @ V` is a sparse × dense product
# (a dense array) and `X.power(2)` squares every stored entry of `X`.

# %% [solution] id=fm_pairwise
def fm_pairwise(V, X):
    """0.5 * sum_f [ (sum_j v_jf x_j)^2 - sum_j v_jf^2 x_j^2 ] for every row of X; shape (n_rows,)."""
    ### BEGIN SOLUTION
    S = X @ V                                   # s_if = sum_j v_jf x_ij
    squares = X.power(2) @ (V * V)              # sum_j v_jf^2 x_ij^2
    return 0.5 * np.asarray(S * S - squares).sum(axis=1)
    ### END SOLUTION

# %% [markdown]
# To check it we need the definition itself: the naive double loop below (slow, but obviously right),
# and small random problems whose rows have values other than 1 (like the genre weights).

# %% [locked] id=helpers
def naive_pairwise(V, X):
    """The definition: sum over pairs j < l of <v_j, v_l> x_j x_l, one row at a time. O(k n^2)."""
    dense = X.toarray()
    out = np.zeros(dense.shape[0])
    for i, x in enumerate(dense):
        for j in range(len(x)):
            for l in range(j + 1, len(x)):
                out[i] += (V[j] @ V[l]) * x[j] * x[l]
    return out


def make_problem(seed, n_rows=15, n_features=12, k=4):
    """Random float64 parameters {w0, w, V}, a sparse batch X (non-binary values) and targets y."""
    rng = np.random.default_rng(seed)
    X = sp.random(n_rows, n_features, density=0.35, format="csr", random_state=rng,
                  data_rvs=lambda size: rng.uniform(0.2, 1.5, size))
    X = (X + sp.csr_matrix((np.ones(n_rows), (np.arange(n_rows), rng.integers(0, n_features, n_rows))),
                           shape=X.shape)).tocsr()  # no empty row
    params = {"w0": np.array(rng.normal()), "w": rng.normal(size=n_features),
              "V": rng.normal(0, 0.5, (n_features, k))}
    y = rng.integers(1, 6, n_rows).astype(np.float64)
    return params, X, y


def pairwise_hint(fast, V, X):
    """A guess at what is wrong with a pairwise term that differs from the naive sum."""
    naive = naive_pairwise(V, X)
    full_square = 0.5 * ((X @ V) ** 2).sum(axis=1)
    if relative_error(fast, 2 * naive) < 1e-8:
        return "yours is twice the naive sum: the factor 1/2 is missing"
    if relative_error(fast, full_square) < 1e-8 or relative_error(fast, 2 * full_square) < 1e-8:
        return ("yours equals the full square (sum_j v_jf x_j)^2 only: subtract the self-pairs "
                "sum_j v_jf^2 x_j^2 (the diagonal j = l of the double sum)")
    return "compare your formula with the boxed one, term by term"


def predict_by_definition(w0, w, V, X):
    """w0 + X w + the naive pairwise sum: what fm_predict must return."""
    return w0 + X @ w + naive_pairwise(V, X)


def upstream_problem(what, *functions):
    """None if each of `functions` ("fm_pairwise", "fm_predict") matches its definition on make_problem(0);
    else a sentence saying that `what`, which uses it, cannot be right before it is."""
    p, X, _ = make_problem(0)
    for name in functions:
        if name == "fm_pairwise":
            mine, correct = np.asarray(fm_pairwise(p["V"], X)), naive_pairwise(p["V"], X)
        else:
            mine = np.asarray(fm_predict(p["w0"], p["w"], p["V"], X))
            correct = predict_by_definition(p["w0"], p["w"], p["V"], X)
        if mine.shape != correct.shape:
            problem = f"it returns shape {mine.shape} instead of {correct.shape}"
        elif relative_error(mine, correct) >= 1e-10:
            problem = (pairwise_hint(mine, p["V"], X) if name == "fm_pairwise" else
                       f"it differs from w0 + X @ w + pairwise(V, X) on a small problem (relative error "
                       f"{relative_error(mine, correct):.2g})")
        else:
            continue
        exercise = {"fm_pairwise": 1, "fm_predict": 2}[name]
        return f"{what} uses your {name}, which is wrong ({problem}): fix {name} first (Exercise {exercise})"
    return None

# %% [tests] id=test_fm_pairwise points=2
params, X_small, _ = make_problem(0)
fast = np.asarray(fm_pairwise(params["V"], X_small))
assert fast.shape == (X_small.shape[0],), (
    f"fm_pairwise must return a 1-D array, one number per row of X, shape ({X_small.shape[0]},); got "
    f"{fast.shape}" + (": a column (n, 1) would turn w0 + X @ w + pairwise into an (n, n) matrix — use "
                       "np.asarray(...).sum(axis=1) on a dense array, or .ravel()" if fast.ndim == 2 else ""))
error = relative_error(fast, naive_pairwise(params["V"], X_small))
print(f"relative error fast vs naive (mflib.gradcheck.relative_error): {error:.1e} (correct: < 1e-10, "
      "typically ~1e-16)")
assert error < 1e-10, f"fm_pairwise differs from the naive pairwise sum (relative error {error:.2g}): " + \
    pairwise_hint(fast, params["V"], X_small)
### BEGIN HIDDEN TESTS
from mflib.models import fm as reference

check_matches_reference(fm_pairwise, reference.fm_pairwise,
                        lambda seed: (make_problem(seed)[0]["V"], make_problem(seed)[1]), rtol=1e-9,
                        name="fm_pairwise")
check_matches_reference(fm_pairwise, reference.fm_pairwise,
                        lambda seed: (make_problem(seed + 10, n_rows=40, n_features=30, k=7)[0]["V"],
                                      make_problem(seed + 10, n_rows=40, n_features=30, k=7)[1]),
                        rtol=1e-9, name="fm_pairwise (larger)")
### END HIDDEN TESTS

# %% [markdown]
# How much faster is it? On our data $n = 2{,}682$: the naive sum visits $n(n-1)/2 \approx 3.6$ million
# pairs per row (most of them zero), the $O(kn)$ formula touches only the ~8 non-zeros. All 80,000
# training rows at once:

# %%
V_demo = np.random.default_rng(0).normal(0, 0.1, (X_train.shape[1], 10))
start = time.perf_counter()
pairwise_all = fm_pairwise(V_demo, X_train)
print(f"O(kn) formula: {X_train.shape[0]:,} rows in {1e3 * (time.perf_counter() - start):.0f} ms; "
      f"the naive loop would take hours ({X_train.shape[1] * (X_train.shape[1] - 1) // 2:,} pairs per row)")

# %% [markdown]
# ## 4. Prediction
#
# **Exercise 2.** Write `fm_predict(w0, w, V, X)`:
# $\hat y(\mathbf x_i) = w_0 + \sum_j w_j x_{ij} + \text{pairwise}_i$ for every row of `X`, using your
# `fm_pairwise`. No clipping here: training needs the raw prediction (we clip to $[1, 5]$ only when we
# report an RMSE).

# %% [solution] id=fm_predict
def fm_predict(w0, w, V, X):
    """w0 + X w + pairwise(V, X): one unclipped prediction per row of X."""
    ### BEGIN SOLUTION
    return w0 + X @ w + fm_pairwise(V, X)
    ### END SOLUTION

# %% [tests] id=test_fm_predict points=1
# MF as a special case: a user one-hot (columns 0-2) and an item one-hot (columns 3-6)
rng = np.random.default_rng(1)
w_mf, V_mf = rng.normal(size=7), rng.normal(size=(7, 2))
users, items = np.array([0, 2, 1, 2]), np.array([3, 3, 6, 5])
X_mf = sp.csr_matrix((np.ones(8), (np.repeat(np.arange(4), 2), np.column_stack([users, items]).ravel())),
                     shape=(4, 7))
mf = 3.5 + w_mf[users] + w_mf[items] + np.sum(V_mf[users] * V_mf[items], axis=1)
fm_values = np.asarray(fm_predict(3.5, w_mf, V_mf, X_mf))
print("FM on (user, item) one-hots:", fm_values.round(4))
print("biased MF w0 + w_u + w_i + <v_u, v_i>:", mf.round(4), "(must be the same)")
assert fm_values.shape == (4,), f"fm_predict must return one prediction per row of X, shape (4,); got {fm_values.shape}"
assert np.allclose(fm_values, mf), upstream_problem("fm_predict", "fm_pairwise") or (
    "with only a user and an item one-hot, the FM must equal biased MF w0 + w_u + w_i + <v_u, v_i>: did you "
    "add w0 and the linear term X @ w?")
low = np.asarray(fm_predict(-10.0, w_mf, V_mf, X_mf))
assert np.allclose(low, mf - 13.5), (
    f"with w0 = -10 the predictions must be {np.round(mf - 13.5, 3)}, got {np.round(low, 3)}: fm_predict must "
    "not clip (training needs the raw prediction; we clip only to report an RMSE)")
### BEGIN HIDDEN TESTS
from mflib.models import fm as reference


def predict_inputs(seed):
    p, X, _ = make_problem(seed)
    return (p["w0"], p["w"], p["V"], X)


check_matches_reference(fm_predict, reference.fm_predict, predict_inputs, rtol=1e-9, name="fm_predict")
### END HIDDEN TESTS

# %% [markdown]
# ## 5. The loss
#
# We minimise the mean squared error over a batch $B$ of ratings, plus an L2 penalty on the weights
# and factors (the Gaussian prior of a Bayesian FM):
#
# $$ L(B) = \frac{1}{|B|} \sum_{i \in B} \big(\hat y(\mathbf x_i) - y_i\big)^2
#    + \sum_{j=1}^n \lambda_{w,j}\, w_j^2 + \sum_{j=1}^n \lambda_{V,j} \lVert \mathbf v_j \rVert^2 . $$
#
# $w_0$ is not penalised. The penalty is on the whole arrays, once per batch (not once per rating as in
# assignment 01). $\lambda_w$ and $\lambda_V$ may be one number, or **one value per feature**: features
# of different blocks deserve different shrinkage (we will give user factors less than film factors,
# and the small demographic blocks more). Write it so that both work: a NumPy scalar or an array of
# length $n$ multiplies `w * w` element-wise, and `reg_V` reshaped to a column, `np.reshape(reg_V, (-1, 1))`
# (or a scalar), multiplies the rows of `V * V`.
#
# **Exercise 3.** Write `fm_loss(w0, w, V, X, y, reg_w, reg_V)`, a Python float, with your `fm_predict`.

# %% [solution] id=fm_loss
def fm_loss(w0, w, V, X, y, reg_w=0.0, reg_V=0.0):
    """mean((y_hat - y)^2) + sum_j reg_w_j w_j^2 + sum_j reg_V_j |v_j|^2 (reg: a scalar or one per feature)."""
    ### BEGIN SOLUTION
    residual = fm_predict(w0, w, V, X) - y
    reg_V = np.asarray(reg_V)
    reg_V = reg_V if reg_V.ndim == 0 else reg_V[:, None]
    penalty = np.sum(reg_w * w * w) + np.sum(reg_V * V * V)
    return float(np.mean(residual ** 2) + penalty)
    ### END SOLUTION

# %% [tests] id=test_fm_loss points=2
# two rows, two features: x_1 = (1, 0), x_2 = (1, 1)
X_two = sp.csr_matrix(np.array([[1.0, 0.0], [1.0, 1.0]]))
w_two, V_two = np.array([0.5, -1.0]), np.array([[1.0, 0.0], [2.0, 1.0]])
# y_hat = (3 + 0.5, 3 + 0.5 - 1 + <v_1, v_2> = 4.5); errors (0.5, -0.5) for y = (3, 5)
no_penalty = fm_loss(3.0, w_two, V_two, X_two, np.array([3.0, 5.0]), 0.0, 0.0)
value = fm_loss(3.0, w_two, V_two, X_two, np.array([3.0, 5.0]), 0.1, np.array([0.01, 0.02]))
print(f"loss without penalty = {no_penalty:.4f} (correct: mean of 0.25 and 0.25 = 0.2500)")
print(f"loss with penalty    = {value:.4f} (correct: 0.25 + 0.1 * 1.25 + 0.01 * 1 + 0.02 * 5 = 0.4850)")
assert abs(no_penalty - 0.25) < 1e-9, upstream_problem("fm_loss", "fm_pairwise", "fm_predict") or (
    f"without penalty the loss is the MEAN squared error over the batch, 0.25; got {no_penalty}")
assert abs(value - 0.485) < 1e-9, (
    f"loss {value}, expected 0.485: add reg_w * sum of w_j^2 and the regularization of the factors, "
    "reg_V[j] * |v_j|^2 summed over the features (reg_V may be one value per feature)")
far = fm_loss(-10.0, w_two, V_two, X_two, np.array([3.0, 5.0]), 0.0, 0.0)  # y_hat = (-9.5, -8.5)
assert abs(far - 169.25) < 1e-9, upstream_problem("fm_loss", "fm_pairwise", "fm_predict") or (
    f"with w0 = -10 the loss is mean((-9.5 - 3)^2, (-8.5 - 5)^2) = 169.25; got {far}: use the raw "
    "(unclipped) predictions")
### BEGIN HIDDEN TESTS
from mflib.models import fm as reference


def loss_inputs(seed, per_feature=False):
    p, X, y = make_problem(seed)
    rng = np.random.default_rng(seed + 100)
    n = len(p["w"])
    reg_w, reg_V = (rng.uniform(0, 0.1, n), rng.uniform(0, 0.1, n)) if per_feature else (0.03, 0.05)
    return (p["w0"], p["w"], p["V"], X, y, reg_w, reg_V)


check_matches_reference(fm_loss, reference.fm_loss, loss_inputs, rtol=1e-9, name="fm_loss")
check_matches_reference(fm_loss, reference.fm_loss, lambda seed: loss_inputs(seed, True), rtol=1e-9,
                        name="fm_loss with per-feature regularization")
### END HIDDEN TESTS

# %% [markdown]
# ## 6. The gradient
#
# Write $e_i = \hat y(\mathbf x_i) - y_i$ and $g_i = \frac{2}{|B|} e_i$, the derivative of the mean
# squared error with respect to $\hat y(\mathbf x_i)$. The derivatives of one prediction are
#
# $$ \frac{\partial \hat y}{\partial w_0} = 1, \qquad \frac{\partial \hat y}{\partial w_j} = x_j, \qquad
#    \frac{\partial \hat y}{\partial v_{jf}} = x_j \sum_{l=1}^n v_{lf} x_l \;-\; v_{jf} x_j^2 . $$
#
# The last one comes from the boxed formula: the square $(\sum_l v_{lf} x_l)^2$ has derivative
# $2 x_j \sum_l v_{lf} x_l$, the subtracted $v_{jf}^2 x_j^2$ has derivative $2 v_{jf} x_j^2$, and the
# $\frac12$ cancels the 2s. Note that $\sum_l v_{lf} x_l = s_f$ is the same for every $j$ — computed once
# per row, it makes the gradient $O(kn)$ too.
#
# Summing over the batch with the chain rule, in matrix form ($S = XV$):
#
# $$ \frac{\partial L}{\partial w_0} = \sum_i g_i , \qquad
#    \frac{\partial L}{\partial \mathbf w} = X^\top \mathbf g + 2 \boldsymbol\lambda_w \circ \mathbf w , $$
#
# $$ \frac{\partial L}{\partial V} = X^\top (\mathbf g \circ S) \;-\; \big((X \circ X)^\top \mathbf g\big)
#    \circ V \;+\; 2 \boldsymbol\lambda_V \circ V , $$
#
# where $\mathbf g \circ S$ multiplies row $i$ of $S$ by $g_i$, and $(X \circ X)^\top \mathbf g$ (a
# vector of length $n$) multiplies the rows of $V$. The products with $X^\top$ do the sums over the
# rows of the batch — a feature present in many rows accumulates all their contributions.
#
# **Exercise 4.** Write `fm_gradients(...)`: a dict `{"w0": ..., "w": ..., "V": ...}`, each of its
# parameter's shape (`w0`: a number or 0-d array), vectorised.

# %% [solution] id=fm_gradients
def fm_gradients(w0, w, V, X, y, reg_w=0.0, reg_V=0.0):
    """Gradients of fm_loss: {"w0": (), "w": (n,), "V": (n, k)}."""
    ### BEGIN SOLUTION
    g = 2.0 * (fm_predict(w0, w, V, X) - y) / len(y)   # dL / dy_hat_i
    S = X @ V                                          # s_if = sum_l v_lf x_il
    reg_V = np.asarray(reg_V)
    reg_V = reg_V if reg_V.ndim == 0 else reg_V[:, None]
    return {
        "w0": np.sum(g),
        "w": X.T @ g + 2 * reg_w * w,
        "V": X.T @ (g[:, None] * S) - (X.power(2).T @ g)[:, None] * V + 2 * reg_V * V,
    }
    ### END SOLUTION

# %% [markdown]
# **Gradient check.** We compare your gradient with central differences
# $\frac{L(\theta + \epsilon e_k) - L(\theta - \epsilon e_k)}{2 \epsilon}$, coordinate by coordinate, in
# float64. The relative error $\max_k |g_k - \hat g_k| / \max_k (|g_k| + |\hat g_k|)$ of a correct gradient
# is below $10^{-6}$ (usually around $10^{-10}$); above $10^{-2}$ the formula is wrong (a flipped sign gives
# 1). The table and the line of `check_gradient` report this same relative error. The finite differences
# differentiate *your* `fm_loss`: if `fm_pairwise` is wrong, no gradient can agree with them, and the check
# says so.

# %% [tests] id=test_fm_gradients points=3
params, X_small, y_small = make_problem(0)
reg_w, reg_V = 0.05, np.linspace(0.01, 0.1, X_small.shape[1])


def loss_fn(p):
    return fm_loss(p["w0"], p["w"], p["V"], X_small, y_small, reg_w, reg_V)


def grad_fn(p):
    return fm_gradients(p["w0"], p["w"], p["V"], X_small, y_small, reg_w, reg_V)


print(check_gradients(loss_fn, grad_fn, params))


def pairwise_inputs(seed):
    p, X, _ = make_problem(seed)
    return (p["V"], X)


def predict_inputs(seed):
    p, X, _ = make_problem(seed)
    return (p["w0"], p["w"], p["V"], X)


# fm_loss is built on your fm_predict and fm_pairwise: if one of them is wrong, the check says so
check_gradient(loss_fn, grad_fn, lambda seed: make_problem(seed)[0], name="fm_gradients",
               depends_on={"fm_pairwise": (fm_pairwise, naive_pairwise, pairwise_inputs),
                           "fm_predict": (fm_predict, predict_by_definition, predict_inputs)})
### BEGIN HIDDEN TESTS
from mflib.models import fm as reference


def gradient_inputs(seed, per_feature=False):
    p, X, y = make_problem(seed + 20)
    rng = np.random.default_rng(seed + 200)
    n = len(p["w"])
    reg_w, reg_V = (rng.uniform(0, 0.1, n), rng.uniform(0, 0.1, n)) if per_feature else (0.03, 0.05)
    return (p["w0"], p["w"], p["V"], X, y, reg_w, reg_V)


check_matches_reference(fm_gradients, reference.fm_gradients, gradient_inputs, rtol=1e-8, name="fm_gradients")
check_matches_reference(fm_gradients, reference.fm_gradients, lambda seed: gradient_inputs(seed, True), rtol=1e-8,
                        name="fm_gradients with per-feature regularization")
### END HIDDEN TESTS

# %% [markdown]
# ## 7. The update: Adam
#
# Plain SGD struggles here. The feature "gender = M" appears in 74% of the ratings, a rare film's
# one-hot in a handful: one learning rate cannot suit both — small enough for the frequent features
# (whose batch gradient is large) it barely moves the rare ones. **Adam** (Kingma & Ba, 2015) scales
# the step of every coordinate by a running estimate of the size of its gradient. At step
# $t = 1, 2, \dots$, for every parameter array $\theta$ with gradient $\mathbf g$:
#
# $$ \mathbf m \leftarrow \beta_1 \mathbf m + (1 - \beta_1)\, \mathbf g, \qquad
#    \mathbf v \leftarrow \beta_2 \mathbf v + (1 - \beta_2)\, \mathbf g^2 , $$
#
# $$ \hat{\mathbf m} = \frac{\mathbf m}{1 - \beta_1^t}, \qquad \hat{\mathbf v} = \frac{\mathbf v}{1 - \beta_2^t},
#    \qquad \theta \leftarrow \theta - \eta \, \frac{\hat{\mathbf m}}{\sqrt{\hat{\mathbf v}} + \varepsilon} . $$
#
# $\mathbf m$ and $\mathbf v$ start at 0, so they are biased towards 0 in the first steps; dividing by
# $1 - \beta^t$ corrects that (at $t = 1$: $\hat{\mathbf m} = \mathbf g$, $\hat{\mathbf v} = \mathbf g^2$).
# The step of each coordinate is then about $\eta$, whatever the scale of its gradient.
#
# **Exercise 5.** Write `adam_update`, returning the new `(param, m, v)` — new arrays; do not modify the
# inputs.

# %% [solution] id=adam_update
def adam_update(param, grad, m, v, step, learning_rate, beta1=0.9, beta2=0.999, eps=1e-8):
    """One Adam step (step counts from 1); returns the new (param, m, v)."""
    ### BEGIN SOLUTION
    m = beta1 * m + (1 - beta1) * grad
    v = beta2 * v + (1 - beta2) * grad ** 2
    m_hat = m / (1 - beta1 ** step)
    v_hat = v / (1 - beta2 ** step)
    return param - learning_rate * m_hat / (np.sqrt(v_hat) + eps), m, v
    ### END SOLUTION

# %% [tests] id=test_adam_update points=2
param, grad, m0, v0 = np.array([1.0, 1.0, 1.0]), np.array([0.001, -5.0, 300.0]), np.zeros(3), np.zeros(3)
inputs = {"param": param, "grad": grad, "m": m0, "v": v0}
copies = {name: value.copy() for name, value in inputs.items()}
new_param, new_m, new_v = adam_update(param, grad, m0, v0, step=1, learning_rate=0.1)
print("first step from 1.0 with gradients (0.001, -5, 300):", np.round(new_param, 6),
      "(correct: about [0.9 1.1 0.9]: the same step size whatever the gradient's scale)")
for name, value in inputs.items():
    assert np.array_equal(value, copies[name]), (
        f"adam_update changed its input {name} in place: return new arrays ({name} = ... builds a new one; "
        f"{name} -= ..., {name} *= ... or {name}[...] = ... overwrite the caller's array)")
assert np.allclose(new_m, 0.1 * grad) and np.allclose(new_v, 0.001 * grad ** 2), (
    "m and v are the running means beta1 m + (1 - beta1) grad and beta2 v + (1 - beta2) grad^2")
assert np.allclose(new_param, param - 0.1 * np.sign(grad), atol=1e-5), (
    f"after the first step the parameters should be about {param - 0.1 * np.sign(grad)}, got {new_param}: "
    "did you apply the bias correction m / (1 - beta1^step), v / (1 - beta2^step) and take the square root "
    "of v_hat?")
first_m, first_v = new_m.copy(), new_v.copy()
later = adam_update(param, grad, new_m, new_v, step=2, learning_rate=0.1)[0]
expected_m, expected_v = 0.9 * first_m + 0.1 * grad, 0.999 * first_v + 0.001 * grad ** 2
expected = param - 0.1 * (expected_m / (1 - 0.81)) / (np.sqrt(expected_v / (1 - 0.999 ** 2)) + 1e-8)
assert np.allclose(later, expected), ("the second step is wrong: the bias corrections divide by "
                                      "1 - beta1**step and 1 - beta2**step, with the step number")
### BEGIN HIDDEN TESTS
from mflib.models import fm as reference


def adam_inputs(seed):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(5, 3)), rng.normal(size=(5, 3)), rng.normal(0, 0.1, (5, 3)),
            rng.uniform(0, 0.1, (5, 3)), int(rng.integers(1, 50)), 0.01)


check_matches_reference(adam_update, reference.adam_update, adam_inputs, rtol=1e-9, name="adam_update")
### END HIDDEN TESTS

# %% [markdown]
# ## 8. Training
#
# An epoch shuffles the training rows, cuts them into mini-batches of `batch_size` rows and takes one
# Adam step per batch on each of `w0`, `w`, `V` (each with its own `m` and `v`; `step` counts the batches
# since the start of training). Before the first epoch:
#
# * $w_0$ is the mean training rating, $\mathbf w = 0$;
# * $V \sim \mathcal N(0, \sigma^2)$ with $\sigma$ = `init_std` — not zeros: with $V = 0$ the factor
#   gradient $x_j s_f - v_{jf} x_j^2$ is 0 and the factors would never move.
#
# After every epoch the learning rate is multiplied by `learning_rate_decay` (large steps first, then
# finer ones), and we record in `history`:
#
# * `"loss"`: `fm_loss` on the whole training set;
# * `"test_rmse"`: the RMSE of the predictions **clipped to [1, 5]** on `eval_set = (X, y)` if it is given;
#   without `eval_set`, `history["test_rmse"]` stays an empty list.
#
# **Exercise 6.** Write `train_fm`. Use only `rng = np.random.default_rng(random_state)` for randomness.
# A row slice of a CSR matrix is cheap: shuffle once per epoch with `X[order]`, then take `X_epoch[start:stop]`.

# %% [solution] id=train_fm
def train_fm(X, y, factors=10, learning_rate=0.02, reg_w=1e-5, reg_V=2e-4, iterations=6, batch_size=512,
             learning_rate_decay=0.7, init_std=0.1, random_state=0, eval_set=None):
    """Second-order FM by mini-batch Adam. Returns (params, history): params = {"w0", "w", "V"};
    history = {"loss": [...], "test_rmse": [...]}, one value per epoch ("test_rmse" empty without eval_set)."""
    ### BEGIN SOLUTION
    rng = np.random.default_rng(random_state)
    n_rows, n_features = X.shape
    params = {"w0": np.array(np.mean(y)), "w": np.zeros(n_features),
              "V": rng.normal(0.0, init_std, (n_features, factors))}
    moments = {name: (np.zeros_like(p), np.zeros_like(p)) for name, p in params.items()}
    history = {"loss": [], "test_rmse": []}
    step = 0
    for epoch in range(iterations):
        order = rng.permutation(n_rows)
        X_epoch, y_epoch = X[order], y[order]
        for start in range(0, n_rows, batch_size):
            X_batch, y_batch = X_epoch[start:start + batch_size], y_epoch[start:start + batch_size]
            grads = fm_gradients(params["w0"], params["w"], params["V"], X_batch, y_batch, reg_w, reg_V)
            step += 1
            for name in params:
                m, v = moments[name]
                params[name], m, v = adam_update(params[name], grads[name], m, v, step, learning_rate)
                moments[name] = (m, v)
        learning_rate *= learning_rate_decay
        history["loss"].append(fm_loss(params["w0"], params["w"], params["V"], X, y, reg_w, reg_V))
        if eval_set is not None:
            X_eval, y_eval = eval_set
            prediction = np.clip(fm_predict(params["w0"], params["w"], params["V"], X_eval), 1, 5)
            history["test_rmse"].append(float(np.sqrt(np.mean((prediction - y_eval) ** 2))))
    return params, history
    ### END SOLUTION

# %% [markdown]
# **Per-block regularisation.** `space.groups` gives the block of every column; we turn a penalty per
# block into a penalty per feature (values tuned on validation folds carved from the training ratings):

# %%
block_reg = {"user": 1e-4, "item": 2.5e-4, "age": 1e-3, "gender": 1e-3, "occupation": 1e-3, "genres": 1e-3,
             "year": 1e-3}
reg_V_blocks = np.array([block_reg[block.name] for block in space.blocks])[space.groups]
print({block.name: block_reg[block.name] for block in space.blocks})

start = time.perf_counter()
params, history = train_fm(X_train, y_train, reg_V=reg_V_blocks, eval_set=(X_test, y_test))
fit_time = time.perf_counter() - start
test_prediction = np.clip(fm_predict(params["w0"], params["w"], params["V"], X_test), 1, 5)
print(f"trained in {fit_time:.1f} s; test RMSE {np.sqrt(np.mean((test_prediction - y_test) ** 2)):.4f}")
fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
plot_learning_curve(history["loss"], ax=axes[0], title="Training loss (MSE + penalty)")
plot_learning_curve(history["test_rmse"], ax=axes[1], title="Test RMSE (clipped predictions)", ylabel="RMSE")
plt.show()

# %% [locked] id=train_helpers
def tiny_problem(seed=3, n_users=30, n_items=20, n_ratings=600):
    """Ratings of a planted biased-MF model as (user, item) one-hot rows."""
    rng = np.random.default_rng(seed)
    users, items = rng.integers(0, n_users, n_ratings), rng.integers(0, n_items, n_ratings)
    P, Q = rng.normal(0, 0.7, (n_users, 2)), rng.normal(0, 0.7, (n_items, 2))
    y = np.clip(3.5 + np.sum(P[users] * Q[items], axis=1) + rng.normal(0, 0.1, n_ratings), 1, 5)
    X = sp.csr_matrix((np.ones(2 * n_ratings), (np.repeat(np.arange(n_ratings), 2),
                                                np.column_stack([users, n_users + items]).ravel())),
                      shape=(n_ratings, n_users + n_items))
    return X, y

# %% [tests] id=test_train_fm points=3
assert set(params) >= {"w0", "w", "V"} and np.shape(params["V"]) == (X_train.shape[1], 10), (
    "train_fm must return params = {'w0', 'w', 'V'} with V of shape (n_features, factors)")
assert np.std(params["V"]) > 1e-3, (
    "the factors V are (almost) all zero: initialise them at random, V ~ N(0, init_std^2), not zeros "
    "(with V = 0 their gradient is 0 and they never move)")
check_loss_decreases(history["loss"], min_relative_drop=0.05, name="training loss")
assert len(history["test_rmse"]) == len(history["loss"]) == 6, "record one loss and one test RMSE per epoch"
X_tiny, y_tiny = tiny_problem()
plain_params, plain_history = train_fm(X_tiny, y_tiny, factors=3, iterations=2, batch_size=64)
assert len(plain_history["loss"]) == 2 and list(plain_history["test_rmse"]) == [], (
    f"without eval_set: one loss per epoch and history['test_rmse'] empty; got {len(plain_history['loss'])} "
    f"losses and test_rmse = {plain_history['test_rmse']}")
test_rmse = check_rmse(y_test, test_prediction, max_rmse=0.92)
### BEGIN HIDDEN TESTS
first_params, first_history = train_fm(X_tiny, y_tiny, factors=3, iterations=4, batch_size=32, random_state=5)
again_params, again_history = train_fm(X_tiny, y_tiny, factors=3, iterations=4, batch_size=32, random_state=5)
assert np.array_equal(first_params["V"], again_params["V"]), (
    "train_fm with the same random_state gave different factors: draw every random number from "
    "rng = np.random.default_rng(random_state)")
assert abs(float(first_params["w0"]) - y_tiny.mean()) < 0.5, "w0 must start at the mean rating (and stay near it)"
check_loss_decreases(first_history["loss"], min_relative_drop=0.3, name="training loss on a planted model")
test_rmse = check_rmse(y_test, test_prediction, max_rmse=0.91)
### END HIDDEN TESTS

# %% [markdown]
# ## 9. What do the side features buy?
#
# Train the same model on the user and item blocks only — that is biased matrix factorization — and
# compare with the mean rating and with the full model:

# %%
X_train_mf, space_mf = build_features(ds, train, fields=("user", "item"))
X_test_mf, _ = build_features(ds, test, fields=("user", "item"))
reg_V_mf = np.array([block_reg[block.name] for block in space_mf.blocks])[space_mf.groups]
params_mf, history_mf = train_fm(X_train_mf, y_train, reg_V=reg_V_mf, eval_set=(X_test_mf, y_test))


def rmse(prediction):
    return float(np.sqrt(np.mean((np.clip(prediction, 1, 5) - y_test) ** 2)))


pd.Series({
    "mean training rating": rmse(np.full(len(y_test), y_train.mean())),
    "FM, user + item only (= biased MF)": rmse(fm_predict(params_mf["w0"], params_mf["w"], params_mf["V"], X_test_mf)),
    "FM, with side features": rmse(test_prediction),
}, name="test RMSE").round(4).to_frame()

# %% [markdown]
# On ML-100K the side features lower the RMSE by about 0.01 on this split (compare the last two rows) —
# a gain comparable to years of Netflix-Prize tuning. README's benchmark table (`make bench`, three splits)
# puts `mflib.FactorizationMachine` beside Surprise's SVD and the Bayesian FM of `myFM`, which averages the
# predictions of many posterior samples (MCMC) instead of training one set of parameters, and gains about
# another 0.01.
#
# Which side features matter? The learned linear weights of the small blocks tell how each value moves
# a rating, all else equal:

# %%
side = [block for block in space.blocks if block.name in ("age", "gender", "occupation", "year")]
weights = pd.Series(params["w"][np.concatenate([np.arange(b.start, b.stop) for b in side])],
                    index=[name for b in side for name in space.names[b.start:b.stop]])
fig, ax = plt.subplots(figsize=(10, 3))
weights.plot.bar(ax=ax, title="Linear weights w_j of the side features (stars)")
ax.grid(True, alpha=0.3)
plt.show()

# %% [markdown]
# ## 10. The cold-start user
#
# A new visitor signs up: 25 years old, male, student. He has rated nothing, so he has **no user
# one-hot**: his feature row for film $i$ pairs his demographic features with the film's features,
#
# $$ \mathbf x = (\underbrace{0, \dots, 0}_{\text{user}}, \underbrace{\text{film } i}_{\text{item}},
#    \text{age}, \text{gender}, \text{occupation}, \text{genres of } i, \text{year of } i) , $$
#
# and the model scores every film through the factors that other 25-34-year-olds, other men and other
# students trained. `mflib.features` builds these rows: `user_row(space, age, gender, occupation)` is
# his $1 \times n$ row (user-side blocks only), `item_rows(space, ds)` the item-side blocks of every film,
# and `cold_start_rows` their sum, one row per film. Your `fm_predict` scores them:

# %%
# the occupation labels of the data set (ML-1M names its occupations differently from ML-100K)
OCCUPATION = ({"student": "college/grad student", "retired": "retired", "healthcare": "doctor/health care"}
              if VARIANT == "1m" else {"student": "student", "retired": "retired", "healthcare": "healthcare"})
films = item_rows(space, ds)                                      # (films x n): item-side blocks only
new_user = user_row(space, 25, "M", OCCUPATION["student"])        # (1 x n): user-side blocks only
X_new = cold_start_rows(space, ds, 25, "M", OCCUPATION["student"])  # row i = films[i] + new_user
scores_by_rows = fm_predict(params["w0"], params["w"], params["V"], X_new)
print(f"{X_new.shape[0]:,} rows of {X_new.shape[1]:,} features, {X_new.nnz / X_new.shape[0]:.1f} non-zeros each; "
      f"his highest-scored film: {ds.title(int(np.argmax(scores_by_rows)))} ({np.max(scores_by_rows):.2f} stars)")
pd.Series(new_user.data, index=[space.names[j] for j in new_user.indices], name="x_j").to_frame().T

# %% [markdown]
# **The FM as an inner product.** Every new user costs a new matrix of rows and a new `fm_predict` over
# all of them, although most of that work does not depend on the user at all. For 1,682 films that is a
# millisecond; for millions of items, or to take a user's best items from an approximate nearest-neighbour
# index instead of scoring them all, we need the score in another form. Write the row as
# $\mathbf x = \mathbf u + \mathbf z_i$: $\mathbf u$ holds the user-side blocks (the same for every film),
# $\mathbf z_i$ the item-side blocks of film $i$ (the same for every user). They **never share a column**.
# With $\mathbf s(\mathbf x) = \mathbf x V$ (the vector $s_f = \sum_j v_{jf} x_j$ of Section 3), every
# term of $\hat y$ splits:
#
# * the linear term: $\mathbf w \cdot \mathbf x = \mathbf w \cdot \mathbf u + \mathbf w \cdot \mathbf z_i$;
# * the sums are linear, $\mathbf s(\mathbf u + \mathbf z_i) = \mathbf s(\mathbf u) + \mathbf s(\mathbf z_i)$,
#   and so is the subtracted $\sum_j v_{jf}^2 x_j^2$ (no column is in both), so the boxed formula gives
#
# $$ \text{pairwise}(\mathbf u + \mathbf z_i) = \text{pairwise}(\mathbf u) + \text{pairwise}(\mathbf z_i)
#    + \langle \mathbf s(\mathbf u), \mathbf s(\mathbf z_i) \rangle : $$
#
# the pairs inside the user's blocks, the pairs inside the film's blocks, and every user-film pair
# $\langle \mathbf v_j, \mathbf v_l \rangle u_j z_l$ summed into one inner product. Collecting the terms,
#
# $$ \hat y(\mathbf u + \mathbf z_i) = \underbrace{\big(w_0 + \mathbf w \cdot \mathbf u + \text{pairwise}(\mathbf u)\big)}_{c_u}
#    + \underbrace{\big(\mathbf w \cdot \mathbf z_i + \text{pairwise}(\mathbf z_i)\big)}_{c_i}
#    + \langle \mathbf s(\mathbf u), \mathbf s(\mathbf z_i) \rangle
#    = \mathbf a_u \cdot \mathbf b_i , $$
#
# $$ \mathbf a_u = \big(c_u,\ 1,\ \mathbf s(\mathbf u)\big) \in \mathbb R^{k+2}, \qquad
#    \mathbf b_i = \big(1,\ c_i,\ \mathbf s(\mathbf z_i)\big) \in \mathbb R^{k+2} . $$
#
# The film vectors $\mathbf b_i$ are computed once, for every user; a new user costs one vector
# $\mathbf a_u$ and one matrix-vector product $B \mathbf a_u$ for all films. And since a score is now an
# inner product, a maximum-inner-product index over the rows of $B$ (faiss, as in 00 and 06) can find a
# user's best films without scoring them all: a factorization machine, side features included, serves like
# matrix factorization.
#
# **Exercise 7.** Write `fm_user_item_vectors(w0, w, V, user_row, item_features)`: from the $1 \times n$
# sparse row `user_row` (the user-side blocks $\mathbf u$) and the (films × $n$) sparse `item_features`
# (row $i$ is $\mathbf z_i$), return `(user_vector, item_matrix)`: $\mathbf a_u$ of shape `(k + 2,)` and
# $B$ of shape `(films, k + 2)`, such that `item_matrix @ user_vector` equals `fm_predict` on the rows
# $\mathbf u + \mathbf z_i$. Use your `fm_pairwise` for the two pairwise parts; no Python loop over films.
# `user_vector` may not depend on the films, nor `item_matrix` on the user.

# %% [solution] id=fm_user_item_vectors
def fm_user_item_vectors(w0, w, V, user_row, item_features):
    """(a_u, B) with B @ a_u = fm_predict(w0, w, V, item_features + user_row), row by row:
    a_u = (w0 + w.u + pairwise(u), 1, u V) and B[i] = (1, w.z_i + pairwise(z_i), z_i V)."""
    ### BEGIN SOLUTION
    user_row, item_features = sp.csr_matrix(user_row), sp.csr_matrix(item_features)
    user_constant = w0 + user_row @ w + fm_pairwise(V, user_row)               # c_u, shape (1,)
    user_vector = np.concatenate([np.ravel(user_constant), [1.0], np.ravel(user_row @ V)])
    item_constants = item_features @ w + fm_pairwise(V, item_features)         # c_i, shape (films,)
    item_matrix = np.column_stack([np.ones(item_features.shape[0]), item_constants, item_features @ V])
    return user_vector, item_matrix
    ### END SOLUTION

# %% [tests] id=test_fm_user_item_vectors points=2
trained = (params["w0"], params["w"], params["V"])
user_vector, item_matrix = fm_user_item_vectors(*trained, new_user, films)
user_vector, item_matrix = np.asarray(user_vector), np.asarray(item_matrix)
assert user_vector.ndim == 1 and item_matrix.shape == (films.shape[0], len(user_vector)), (
    f"expected user_vector of shape (k + 2,) and item_matrix of shape (films, k + 2) = ({films.shape[0]}, "
    f"{len(user_vector)}); got {user_vector.shape} and {item_matrix.shape}")
# the definition of Exercise 2 on the rows user_row + item_features (your fm_pairwise, checked above)
expected = params["w0"] + X_new @ params["w"] + np.asarray(fm_pairwise(params["V"], X_new))
error = relative_error(item_matrix @ user_vector, expected)
print(f"item_matrix @ user_vector vs w0 + X w + pairwise on the cold-start rows: relative error {error:.1e} "
      "(correct: < 1e-9)")
assert error < 1e-9, upstream_problem("fm_user_item_vectors", "fm_pairwise") or (
    f"item_matrix @ user_vector differs from fm_predict on the rows user_row + item_features (relative error "
    f"{error:.2g}): c_u = w0 + w.u + pairwise(u) pairs with the 1 of every film vector, c_i = w.z_i + "
    "pairwise(z_i) with the 1 of the user vector, and s(u) = u V with s(z_i) = z_i V")
other_vector, other_matrix = fm_user_item_vectors(*trained, user_row(space, 60, "F", OCCUPATION["retired"]), films)
assert np.allclose(np.asarray(other_matrix), item_matrix), (
    "item_matrix changed with the user: it must be the same for everybody (computed once for all users); "
    "everything about the user goes into user_vector")
few_vector, few_matrix = fm_user_item_vectors(*trained, new_user, films[:100])
assert np.allclose(np.asarray(few_vector), user_vector) and np.allclose(np.asarray(few_matrix), item_matrix[:100]), (
    "with the first 100 films only, user_vector must not change and item_matrix must be the first 100 rows: "
    "user_vector depends on the user only, row i of item_matrix on film i only")
print(f"✓ one ({len(user_vector)},) vector per user, one ({item_matrix.shape[0]}, {item_matrix.shape[1]}) "
      "matrix for all users")
### BEGIN HIDDEN TESTS
from mflib.features import user_rows
from mflib.models import fm as reference


def vector_inputs(seed):
    """Random parameters on the real feature space; a new user or an existing one (with her one-hot)."""
    rng = np.random.default_rng(seed)
    n, k = space.n_features, int(rng.integers(2, 6))
    films_subset = item_rows(space, ds, rng.choice(ds.n_items, 40, replace=False))
    person = ds.users.iloc[int(rng.integers(len(ds.users)))]
    user = user_rows(space, person["age"], person["gender"], person["occupation"],
                     user=None if seed % 2 else person.name)
    return (float(rng.normal()), rng.normal(0, 0.5, n), rng.normal(0, 0.3, (n, k)), user, films_subset)


def scores_by_vectors(w0, w, V, user, films_subset):
    a, B = fm_user_item_vectors(w0, w, V, user, films_subset)
    return np.asarray(B) @ np.asarray(a)


def scores_by_rows_reference(w0, w, V, user, films_subset):
    ones = sp.csr_matrix(np.ones((films_subset.shape[0], 1)))
    return reference.fm_predict(w0, w, V, (films_subset + ones @ sp.csr_matrix(user)).tocsr().astype(np.float64))


check_matches_reference(scores_by_vectors, scores_by_rows_reference, vector_inputs, seeds=(0, 1, 2, 3),
                        rtol=1e-6, name="item_matrix @ user_vector")
for seed in (4, 5):
    w0_h, w_h, V_h, user_h, films_h = vector_inputs(seed)
    a_h, B_h = (np.asarray(x) for x in fm_user_item_vectors(w0_h, w_h, V_h, user_h, films_h))
    a_other, B_other = (np.asarray(x) for x in fm_user_item_vectors(w0_h, w_h, V_h, vector_inputs(seed + 2)[3],
                                                                     films_h))
    assert np.allclose(B_h, B_other), "item_matrix depends on the user: it must be the same for every user"
    a_part, B_part = (np.asarray(x) for x in fm_user_item_vectors(w0_h, w_h, V_h, user_h, films_h[5:9]))
    assert np.allclose(a_part, a_h) and np.allclose(B_part, B_h[5:9]), (
        "user_vector must not depend on the films, and row i of item_matrix only on film i")
### END HIDDEN TESTS

# %% [markdown]
# Now rank every film for three people the model has never seen. Their lists come from one matrix, built
# once, times one small vector each:

# %%
people = {"25, M, student": (25, "M", OCCUPATION["student"]), "60, F, retired": (60, "F", OCCUPATION["retired"]),
          "35, F, healthcare": (35, "F", OCCUPATION["healthcare"])}
n_ratings = np.bincount(train["item_idx"], minlength=ds.n_items)
_, item_matrix = fm_user_item_vectors(params["w0"], params["w"], params["V"], new_user, films)  # once for all
tables, top_ids = {}, {}
for label, who in people.items():
    # only the user vector is needed: one film is enough to call the function
    user_vector, _ = fm_user_item_vectors(params["w0"], params["w"], params["V"], user_row(space, *who), films[:1])
    scores = item_matrix @ user_vector
    top_ids[label] = np.argsort(-scores)[:10]
    tables[label] = [f"{ds.title(i)} ({scores[i]:.2f})" for i in top_ids[label]]
pd.DataFrame(tables, index=pd.RangeIndex(1, 11, name="rank"))

# %%
shared = set(top_ids["25, M, student"]) & set(top_ids["60, F, retired"])
print(f"films shared by the student's and the retiree's top-10: {len(shared)}")
print("median number of training ratings of the recommended films:",
      {label: int(np.median(n_ratings[ids])) for label, ids in top_ids.items()})

# %% [markdown]
# The lists share the universally loved films (the item weights $w_i$ are the same for everybody) but
# differ where the demographic factors meet the film factors. Some films with a handful of
# enthusiastic ratings sneak in: ranking by *predicted rating* rewards them.
#
# **Question (3 points, graded by hand).**
#
# 1. Why can the factorization machine score films for a user it has never seen, while the matrix
#    factorization of assignment 01 cannot? Point to the terms of $\hat y(\mathbf x)$ that are non-zero
#    for the cold-start rows, and say where their parameters were learned.
# 2. How personal are these recommendations? Two new users with the same age bucket, gender and
#    occupation get identical lists: what should the system do once the new user has rated a few films,
#    and how would that appear in the feature vector?
#
# Answer in the next cell.

# %% [manual] id=q_cold_start points=3
# ### BEGIN SOLUTION
# 1. In MF a prediction is $\mu + b_u + b_i + \mathbf p_u \cdot \mathbf q_i$: a new user has no $b_u$ and
#    no $\mathbf p_u$ (they are learned only from her own ratings), so all MF can do is rank by
#    $\mu + b_i$ — popularity — or retrain. In the FM, the cold-start row has no user one-hot, but its
#    age, gender and occupation features are non-zero. The non-zero terms are $w_0$; the linear weights
#    of the film, its genres and year **and** of the demographic features; and the pairwise terms
#    $\langle \mathbf v_{\text{age}}, \mathbf v_i \rangle$, $\langle \mathbf v_{\text{occupation}},
#    \mathbf v_{\text{genre}} \rangle$, ... between demographic and item features (plus pairs within each
#    side, constant per user or per film). Every one of these parameters was learned from the ratings of
#    *other* users sharing the feature: $\mathbf v_{\text{student}}$ from all ratings by students. The
#    factorisation shares statistical strength across all ratings that contain a feature, so pairs never
#    observed together still get an interaction weight.
# 2. Not very: the list is personal only at the level of the demographic group (all 25-34 male students
#    get the same ranking), and much of it is driven by the films' own weights. Once the user rates a few
#    films, we should use them: either give her a user one-hot and refit/fold her in (update only her
#    $w_u$, $\mathbf v_u$ with the other parameters fixed — a tiny least-squares problem), or add an
#    "implicit feedback" block to $\mathbf x$ — the set of films she has rated, normalised to sum to 1 —
#    whose factors are shared by all users (as in SVD++), so that her rows change immediately without
#    any new parameter. Her demographic features stay in the vector and matter less as her own
#    evidence grows.
# ### END SOLUTION
