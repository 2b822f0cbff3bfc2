# %% [markdown]
# # 01 — Rating prediction: biased matrix factorisation trained by SGD
#
# In 2006 Netflix offered a million dollars to whoever could predict its users' star ratings 10% better
# than its own system. One of the first big jumps on the leaderboard came from a blog post by Simon Funk
# ("Netflix Update: Try This at Home"): describe every user and every film by a few numbers, learn them
# by **stochastic gradient descent** on the ratings we know, and predict the others. The method is still
# called "SVD" after it, although, as we will see, it is not a singular value decomposition.
#
# In this notebook you will write, step by step:
#
# 1. the prediction $\hat r_{ui} = \mu + b_u + b_i + \mathbf p_u \cdot \mathbf q_i$;
# 2. the error measure, RMSE;
# 3. the regularised loss;
# 4. its gradient — checked against finite differences;
# 5. the SGD step;
# 6. the training loop;
# 7. similar films from the learned factors,
#
# and then compare your model with simpler predictors, watch it overfit without regularisation, and look
# at what it learned.
#
# Cells marked *YOUR CODE HERE* are yours. The cell after each one checks your answer on small examples
# with known results: an error message says what is wrong and how to fix it; a ✓ line (or a printed value
# equal to the one given as correct) means your code passed *these* examples. That is necessary, not
# sufficient: when the notebook is graded, hidden tests also compare your functions with a reference
# implementation on fresh random inputs.

# %%
import autograder

autograder.setup_notebook()  # one BLAS thread, no progress bars, quiet warnings: reproducible runs

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import scipy.sparse as sp

from autograder.checks import (check_factors, check_gradient, check_loss_decreases, check_matches_reference,
                               check_rmse, check_similar_items)
from mflib import retrieval
from mflib.datasets import load_movielens
from mflib.display import plot_learning_curve, similar_items_table
from mflib.evaluation import explicit_split
from mflib.gradcheck import check_gradients

# %% [markdown]
# The data set this notebook loads. Everything below uses it, so `VARIANT = "1m"` runs the same notebook on
# MovieLens 1M (6,040 users, 3,706 films, a million ratings: downloaded once from GroupLens, and training
# takes about ten times longer). The text quotes the figures of 100K; grading always uses `"100k"`.

# %% [locked] id=variant
VARIANT = "100k"

# %% [markdown]
# ## 1. Explicit feedback
#
# MovieLens 100K holds 100,000 ratings from 1 to 5 stars, given by 943 users to 1,682 films. This is
# **explicit** feedback: the user tells us how much she liked a film. Only 6% of the (user, film) pairs
# are rated; the task is to predict the missing ratings. The course protocol for explicit models holds out
# a random 20% of the ratings as the test set.

# %%
ds = load_movielens(VARIANT)
train, test = explicit_split(ds, random_state=0)
train_users, train_items = train["user_idx"].to_numpy(), train["item_idx"].to_numpy()
train_ratings = train["rating"].to_numpy().astype(np.float64)
test_users, test_items = test["user_idx"].to_numpy(), test["item_idx"].to_numpy()
test_ratings = test["rating"].to_numpy().astype(np.float64)
n_users, n_items = ds.n_users, ds.n_items
print(f"MovieLens {VARIANT}: {n_users:,} users x {n_items:,} films; {len(train):,} training ratings, "
      f"{len(test):,} test ratings ({len(ds.ratings) / (n_users * n_items):.1%} of the pairs are rated)")
print(f"mean training rating: {train_ratings.mean():.3f} stars")

# %% [markdown]
# ## 2. From the baseline predictor to latent factors
#
# **The baseline predictor.** Ratings are not just about the match between a person and a film. Some
# users give 4 stars to everything, others rarely more than 3; some films (*Schindler's List*) are rated
# highly by nearly everybody. A first model captures exactly that:
#
# $$ b_{ui} = \mu + b_u + b_i , $$
#
# with $\mu$ the mean of all training ratings, $b_u$ how much user $u$ rates above the mean and $b_i$ how
# much film $i$ is rated above the mean.
#
# **Latent factors.** The interaction between a user and a film — *this* user loves science fiction, *this*
# film is science fiction — is modelled by a vector of $k$ numbers for every user, $\mathbf p_u \in
# \mathbb R^k$, and for every film, $\mathbf q_i \in \mathbb R^k$. Their inner product adds to the baseline:
#
# $$ \hat r_{ui} = \mu + b_u + b_i + \mathbf p_u \cdot \mathbf q_i . $$
#
# Stacked, $P$ (`user_factors`, $n_\text{users} \times k$) and $Q$ (`item_factors`, $n_\text{items}
# \times k$) approximate the rating matrix (minus the biases) by $P Q^\top$, a matrix of rank $k$. Nobody
# tells the model what the $k$ dimensions mean; they are learned from the ratings.
#
# *Why is it not an SVD?* A singular value decomposition factorises a **complete** matrix. Ours is 94%
# empty, and the missing ratings are unknown, not zeros: filling them with 0 would teach the model that
# unseen films are hated. Funk's method fits the observed entries only, and its factors are neither
# orthogonal nor ordered.
#
# A prediction is a rating, so it makes sense to **clip** it to the rating scale $[1, 5]$ when we report
# it: a prediction of 5.6 stars is always worse than 5. Training uses the unclipped $\hat r_{ui}$ (the clipped
# one has no gradient outside the scale).
#
# **Exercise 1.** Write `predict_ratings`: one prediction per pair `(users[j], items[j])`, vectorised (no
# Python loop), clipped to `rating_scale = (low, high)` when it is given (`np.clip`), not clipped when it
# is `None`.

# %% [solution] id=predict_ratings
def predict_ratings(global_mean, user_bias, item_bias, user_factors, item_factors, users, items,
                    rating_scale=None):
    """r_hat_j = mu + b_u + b_i + p_u . q_i for u = users[j], i = items[j]; clipped to rating_scale if given."""
    ### BEGIN SOLUTION
    interaction = np.sum(user_factors[users] * item_factors[items], axis=1)
    prediction = global_mean + user_bias[users] + item_bias[items] + interaction
    if rating_scale is not None:
        prediction = np.clip(prediction, rating_scale[0], rating_scale[1])
    return prediction
    ### END SOLUTION

# %% [markdown]
# Small random problems for the checks (used again below). Users and items repeat within a batch of
# ratings, as they do in real data.

# %% [locked] id=problems
def make_problem(seed, n_users=7, n_items=9, k=4, n_ratings=40):
    """Random float64 parameters (a dict) and a batch of ratings with repeated users and items."""
    rng = np.random.default_rng(seed)
    params = {"user_bias": rng.normal(0, 0.3, n_users), "item_bias": rng.normal(0, 0.3, n_items),
              "user_factors": rng.normal(0, 0.5, (n_users, k)), "item_factors": rng.normal(0, 0.5, (n_items, k))}
    users = rng.integers(0, n_users, n_ratings)
    items = rng.integers(0, n_items, n_ratings)
    ratings = rng.integers(1, 6, n_ratings).astype(np.float64)
    return 3.5, params, users, items, ratings


def make_inputs(seed, with_ratings=True, **extra):
    """(global_mean, user_bias, item_bias, user_factors, item_factors, users, items[, ratings], *extra)."""
    mu, p, users, items, ratings = make_problem(seed)
    inputs = (mu, p["user_bias"], p["item_bias"], p["user_factors"], p["item_factors"], users, items)
    return inputs + ((ratings,) if with_ratings else ()) + tuple(extra.values())

# %% [tests] id=test_predict_ratings points=2
P, Q = np.array([[1.0, 2.0], [0.0, 1.0]]), np.array([[1.0, 0.0], [0.5, 0.5], [2.0, 1.0]])
bu, bi = np.array([0.5, -0.5]), np.array([0.0, 0.25, 1.0])
users, items = np.array([0, 1, 0]), np.array([1, 0, 2])
zero = predict_ratings(3.5, 0 * bu, 0 * bi, 0 * P, 0 * Q, users, items)
assert np.allclose(zero, 3.5), (
    f"with all biases and factors 0 every prediction must be the global mean 3.5, got {zero}: "
    "did you add global_mean?")
r_hat = predict_ratings(3.5, bu, bi, P, Q, users, items)
print("r_hat =", r_hat, "(correct: [5.75 3.   9.  ])")
check_matches_reference(predict_ratings, lambda *args: np.array([5.75, 3.0, 9.0]),
                        lambda seed: (3.5, bu, bi, P, Q, users, items), seeds=(0,), name="predict_ratings")
clipped = predict_ratings(3.5, bu, bi, P, Q, users, items, rating_scale=(1, 5))
print("clipped to (1, 5):", clipped, "(correct: [5. 3. 5.])")
assert np.allclose(clipped, [5.0, 3.0, 5.0]), (
    f"with rating_scale=(1, 5) the predictions must be clipped to [1, 5], got {clipped}: use np.clip")
### BEGIN HIDDEN TESTS
from mflib.models import svd as reference

check_matches_reference(predict_ratings, reference.predict_ratings, lambda seed: make_inputs(seed, False),
                        name="predict_ratings")
check_matches_reference(predict_ratings, reference.predict_ratings,
                        lambda seed: make_inputs(seed, False, rating_scale=(1.0, 5.0)),
                        name="predict_ratings clipped")
### END HIDDEN TESTS

# %% [markdown]
# ## 3. Measuring the error: RMSE
#
# The Netflix Prize, and most of the literature on explicit ratings, measure the **root mean squared
# error** over the $N$ test ratings:
#
# $$ \mathrm{RMSE} = \sqrt{\frac{1}{N} \sum_{(u,i) \in \text{test}} (r_{ui} - \hat r_{ui})^2 } , $$
#
# in stars. Squaring punishes a big miss (predicting 1 star for a 5) much more than several small ones.
#
# **Exercise 2.** Write `rmse`.

# %% [solution] id=rmse
def rmse(y_true, y_pred):
    """sqrt(mean((y_true - y_pred)^2)), a Python float."""
    ### BEGIN SOLUTION
    y_true, y_pred = np.asarray(y_true, dtype=np.float64), np.asarray(y_pred, dtype=np.float64)
    return float(np.sqrt(np.mean((y_true - y_pred) ** 2)))
    ### END SOLUTION

# %% [tests] id=test_rmse points=1
value = rmse(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 5.0]))
print(f"rmse = {value:.6f} (correct: sqrt(4/3) = {np.sqrt(4 / 3):.6f})")
assert abs(value - np.sqrt(4 / 3)) < 1e-9, "RMSE is the square ROOT of the MEAN of the squared errors"
mean_only = rmse(test_ratings, np.full(len(test_ratings), train_ratings.mean()))
print(f"predicting the mean training rating for everybody: test RMSE {mean_only:.4f}")
### BEGIN HIDDEN TESTS
from mflib.metrics import rmse as reference_rmse

check_matches_reference(rmse, reference_rmse,
                        lambda seed: tuple(np.random.default_rng(seed).uniform(1, 5, (2, 50))), name="rmse")
### END HIDDEN TESTS

# %% [markdown]
# A model must beat that number by a clear margin to be worth anything. On this split, well-tuned
# matrix factorisation models reach about 0.90.
#
# ## 4. The loss
#
# We fit the parameters $\Theta = \{b_u, b_i, \mathbf p_u, \mathbf q_i\}$ to the **observed** ratings only,
# by least squares, plus a penalty that keeps them small (more on why in Section 8). Over a set $B$ of
# ratings — the whole training set, or a mini-batch of it:
#
# $$ L(B) = \sum_{(u,i,r) \in B} \Big[ (r - \hat r_{ui})^2
#    + \lambda \big( b_u^2 + b_i^2 + \lVert \mathbf p_u \rVert^2 + \lVert \mathbf q_i \rVert^2 \big) \Big] . $$
#
# Read the penalty carefully: it sits **inside** the sum, so it is counted **once per rating**. A user
# with 300 ratings has her parameters penalised 300 times. This is the form of Funk's SGD (and of the
# Surprise library); it makes the loss of the training set the sum of the losses of its mini-batches.
# The global mean $\mu$ is fixed (the mean training rating), not learned, and not penalised.
#
# **Exercise 3.** Write `svd_loss`: the **sum** above over the ratings of the batch (a Python float),
# with the penalty counted once per rating. Use your `predict_ratings` (unclipped).

# %% [solution] id=svd_loss
def svd_loss(global_mean, user_bias, item_bias, user_factors, item_factors, users, items, ratings,
             regularization):
    """sum_j (r_j - r_hat_j)^2 + lambda (b_u^2 + b_i^2 + |p_u|^2 + |q_i|^2), penalty once per rating j."""
    ### BEGIN SOLUTION
    errors = ratings - predict_ratings(global_mean, user_bias, item_bias, user_factors, item_factors, users, items)
    penalty = (np.sum(user_bias[users] ** 2) + np.sum(item_bias[items] ** 2)
               + np.sum(user_factors[users] ** 2) + np.sum(item_factors[items] ** 2))
    return float(np.sum(errors ** 2) + regularization * penalty)
    ### END SOLUTION

# %% [tests] id=test_svd_loss points=2
# one user rates two films: her penalty counts twice
value = svd_loss(3.0, np.array([1.0]), np.array([0.0, 0.5]), np.array([[1.0, 0.0]]), np.array([[2.0, 0.0], [0.0, 1.0]]),
                 np.array([0, 0]), np.array([0, 1]), np.array([5.0, 4.0]), 0.1)
print(f"loss = {value:.4f} (correct: 1 + 0.25 + 0.1 * (2 * 2 + 0.25 + 4 + 1) = 2.1750)")
no_penalty = svd_loss(3.0, np.array([1.0]), np.array([0.0, 0.5]), np.array([[1.0, 0.0]]),
                      np.array([[2.0, 0.0], [0.0, 1.0]]), np.array([0, 0]), np.array([0, 1]), np.array([5.0, 4.0]), 0.0)
assert abs(no_penalty - 1.25) < 1e-9, (
    f"with regularization=0 the loss is the sum of squared errors, 1.25; got {no_penalty} (sum, not mean; "
    "unclipped predictions)")
assert abs(value - 2.175) < 1e-9, (
    f"loss {value}, expected 2.175: the penalty lambda (b_u^2 + b_i^2 + |p_u|^2 + |q_i|^2) is counted once per "
    "RATING (a user with 2 ratings is penalised twice), and regularization multiplies it")
### BEGIN HIDDEN TESTS
from mflib.models import svd as reference

check_matches_reference(svd_loss, reference.svd_loss, lambda seed: make_inputs(seed, lam=0.3), name="svd_loss")
check_matches_reference(svd_loss, reference.svd_loss, lambda seed: make_inputs(seed, lam=0.0),
                        name="svd_loss without regularization")
### END HIDDEN TESTS

# %% [markdown]
# ## 5. The gradient
#
# Write $e_{ui} = r - \hat r_{ui}$ for the error of one rating. Since $\partial \hat r_{ui} / \partial b_u = 1$
# and $\partial \hat r_{ui} / \partial \mathbf p_u = \mathbf q_i$, one rating contributes
#
# $$
# \begin{aligned}
# \frac{\partial L}{\partial b_u} &= -2 e_{ui} + 2 \lambda b_u, &
# \frac{\partial L}{\partial \mathbf p_u} &= -2 e_{ui}\, \mathbf q_i + 2 \lambda \mathbf p_u, \\
# \frac{\partial L}{\partial b_i} &= -2 e_{ui} + 2 \lambda b_i, &
# \frac{\partial L}{\partial \mathbf q_i} &= -2 e_{ui}\, \mathbf p_u + 2 \lambda \mathbf q_i .
# \end{aligned}
# $$
#
# (Many texts drop the 2s by minimising $\frac12 L$; that only rescales the learning rate.)
#
# The gradient of $L(B)$ is the **sum** of these over the ratings of $B$: a user who appears three times
# in the batch receives three terms. Beware of `grad[users] += rows`: with repeated indices numpy writes
# only **one** of the rows. The helper below adds them all up (`np.add.at(grad, users, rows)` does the
# same, more slowly). Its `n_rows` is the number of rows of the gradient you are building: `len(user_bias)`
# for a user gradient, `len(item_bias)` for an item gradient. It checks its inputs and says what is wrong
# (scipy does not check the indices of a matrix built this way: an index out of range would crash the
# Python kernel instead of raising an error).

# %% [locked] id=scatter_add
def scatter_add(index, values, n_rows):
    """out[r] = sum of values[j] over all j with index[j] == r (zero for rows nobody points to).

    values: shape (len(index),) or (len(index), k); returns shape (n_rows,) or (n_rows, k).
    It is one product with the sparse one-hot matrix M (n_rows x len(index)), M[index[j], j] = 1.
    """
    index, values = np.asarray(index), np.asarray(values)
    if index.ndim != 1 or not (np.issubdtype(index.dtype, np.integer) or index.size == 0):
        raise TypeError(f"scatter_add: index must be a 1-D array of integer row numbers (users or items), got "
                        f"shape {index.shape} and dtype {index.dtype}")
    if values.shape[:1] != index.shape:
        raise ValueError(f"scatter_add: {len(index)} indices but values of shape {values.shape}: values needs one "
                         "entry (or one row) per index, in the same order")
    if isinstance(n_rows, bool) or not isinstance(n_rows, (int, np.integer)) or n_rows < 0:
        raise TypeError(f"scatter_add: n_rows must be the number of rows of the gradient (an int, e.g. "
                        f"len(item_bias)), got {n_rows!r}")
    if index.size and index.min() < 0:
        raise IndexError(f"scatter_add: index {index.min()} is negative: indices are row numbers 0 .. n_rows - 1")
    if index.size and index.max() >= n_rows:
        raise IndexError(f"scatter_add: index {index.max()} is out of range for n_rows={n_rows}: n_rows is the "
                         "number of rows of the gradient the index points into. Did you pass len(user_bias) "
                         "for the item gradient (or len(item_bias) for the user gradient)? Items index "
                         "item_bias / item_factors (n_items rows), users index user_bias / user_factors")
    one_hot = sp.csc_matrix((np.ones(len(index)), index, np.arange(len(index) + 1)), shape=(n_rows, len(index)))
    return one_hot @ values


demo = np.zeros(3)
demo[np.array([0, 0, 2])] += np.array([1.0, 1.0, 1.0])
print("grad[index] += ... :", demo, "  scatter_add:", scatter_add(np.array([0, 0, 2]), np.array([1.0, 1.0, 1.0]), 3))

# %% [markdown]
# **Exercise 4.** Write `svd_gradients`. Return a dict with one full-size array per learned parameter —
# keys `"user_bias"`, `"item_bias"`, `"user_factors"`, `"item_factors"`, each of its parameter's shape
# (zero for the rows the batch does not touch).

# %% [solution] id=svd_gradients
def svd_gradients(global_mean, user_bias, item_bias, user_factors, item_factors, users, items, ratings,
                  regularization):
    """Gradients of svd_loss w.r.t. user_bias, item_bias, user_factors, item_factors (full-size arrays)."""
    ### BEGIN SOLUTION
    errors = ratings - predict_ratings(global_mean, user_bias, item_bias, user_factors, item_factors, users, items)
    p_u, q_i = user_factors[users], item_factors[items]
    lam = regularization
    return {
        "user_bias": scatter_add(users, -2 * errors + 2 * lam * user_bias[users], len(user_bias)),
        "item_bias": scatter_add(items, -2 * errors + 2 * lam * item_bias[items], len(item_bias)),
        "user_factors": scatter_add(users, -2 * errors[:, None] * q_i + 2 * lam * p_u, len(user_factors)),
        "item_factors": scatter_add(items, -2 * errors[:, None] * p_u + 2 * lam * q_i, len(item_factors)),
    }
    ### END SOLUTION

# %% [markdown]
# **Gradient check.** Compare with central differences
# $\frac{L(\theta + \epsilon e_k) - L(\theta - \epsilon e_k)}{2\epsilon}$, coordinate by coordinate, in
# float64. The relative error $\max_k |g_k - \hat g_k| / \max_k (|g_k| + |\hat g_k|)$ of a correct gradient
# is below $10^{-6}$ (usually around $10^{-10}$); above $10^{-2}$ the formula is wrong: a flipped sign gives
# exactly 1, a gradient twice too large $1/3$. The table (`mflib.gradcheck.check_gradients`, at the
# parameters of `make_problem(0)`) and the lines of `check_gradient` (three random problems) report this same
# relative error.

# %% [tests] id=test_svd_gradients points=3
mu, params, users, items, ratings = make_problem(0)


def loss_and_gradient(lam):
    """loss_fn(p) and grad_fn(p) of the batch of make_problem(0), for a dict p of parameters."""
    def loss_fn(p):
        return svd_loss(mu, p["user_bias"], p["item_bias"], p["user_factors"], p["item_factors"], users, items,
                        ratings, lam)

    def grad_fn(p):
        return svd_gradients(mu, p["user_bias"], p["item_bias"], p["user_factors"], p["item_factors"], users,
                             items, ratings, lam)
    return loss_fn, grad_fn


print(check_gradients(*loss_and_gradient(0.1), params))
# first the squared errors alone, then with the penalty
check_gradient(*loss_and_gradient(0.0), lambda seed: make_problem(seed)[1], name="svd_gradients, regularization 0")
try:
    check_gradient(*loss_and_gradient(0.1), lambda seed: make_problem(seed)[1],
                   name="svd_gradients, regularization 0.1")
except AssertionError as error:
    raise AssertionError(f"{error}\n-> your gradient is right without regularization and wrong with it: check the "
                         "penalty terms 2 lambda b and 2 lambda p (one per rating, for the biases and the factors)") from None
### BEGIN HIDDEN TESTS
from mflib.models import svd as reference

check_matches_reference(svd_gradients, reference.svd_gradients, lambda seed: make_inputs(seed, lam=0.3),
                        name="svd_gradients")
check_matches_reference(svd_gradients, reference.svd_gradients, lambda seed: make_inputs(seed, lam=0.0),
                        name="svd_gradients without regularization")
### END HIDDEN TESTS

# %% [markdown]
# ## 6. Stochastic gradient descent
#
# Gradient descent moves every parameter a small step against its gradient,
#
# $$ \theta \leftarrow \theta - \eta \, \frac{\partial L(B)}{\partial \theta} , $$
#
# with the learning rate $\eta$. Computing the gradient over all 80,000 ratings before each step is
# wasteful: Funk's **stochastic** gradient descent steps after every single rating, in a random order.
# Python loops over single ratings are slow, so we step on **mini-batches** of ~2,000 ratings, with array
# operations. A batch touches hundreds of different users and films, so one batch step is close to two
# thousand single-rating steps — and reaches the same accuracy.
#
# **Exercise 5.** Write `sgd_step`: one step on a batch, updating the four parameter arrays **in place**
# (they are the model: use `-=`), all gradients taken at the parameters before the step. Return the batch
# loss **before** the step (for the learning curve).

# %% [solution] id=sgd_step
def sgd_step(global_mean, user_bias, item_bias, user_factors, item_factors, users, items, ratings,
             learning_rate, regularization):
    """theta <- theta - learning_rate * dL(batch)/dtheta, in place; returns the batch loss before the step."""
    ### BEGIN SOLUTION
    loss = svd_loss(global_mean, user_bias, item_bias, user_factors, item_factors, users, items, ratings,
                    regularization)
    grads = svd_gradients(global_mean, user_bias, item_bias, user_factors, item_factors, users, items, ratings,
                          regularization)
    user_bias -= learning_rate * grads["user_bias"]
    item_bias -= learning_rate * grads["item_bias"]
    user_factors -= learning_rate * grads["user_factors"]
    item_factors -= learning_rate * grads["item_factors"]
    return loss
    ### END SOLUTION

# %% [tests] id=test_sgd_step points=2
mu, params, users, items, ratings = make_problem(1)
names = ("user_bias", "item_bias", "user_factors", "item_factors")
arrays = tuple(params[name] for name in names)
start = {name: params[name].copy() for name in names}
steps = {name: 0.01 * gradient for name, gradient in
         svd_gradients(mu, *arrays, users, items, ratings, 0.1).items()}  # your gradient, before the step
before = svd_loss(mu, *arrays, users, items, ratings, 0.1)
returned = sgd_step(mu, *arrays, users, items, ratings, 0.01, 0.1)
after = svd_loss(mu, *arrays, users, items, ratings, 0.1)
print(f"batch loss {before:.4f} -> {after:.4f} after one step (it must go down); returned {returned:.4f}")
for name in names:
    assert not np.array_equal(params[name], start[name]), (
        f"sgd_step left {name} unchanged: update in place: {name}[...] -= ..., not {name} = ... (a new "
        f"array bound to the name {name} inside the function is lost when it returns; the caller's array is "
        "the model)")
    assert np.allclose(params[name], start[name] - steps[name]), (
        f"{name} changed, but not by -learning_rate * gradient (with learning_rate=0.01 and your "
        f"svd_gradients at the parameters before the step): take every gradient before updating anything")
assert after < before, "one small step raised the batch loss: subtract the gradient, do not add it"
assert returned is not None and abs(returned - before) < 1e-9 * max(1.0, abs(before)), (
    f"sgd_step returned {returned}, the loss before the step is {before}")
### BEGIN HIDDEN TESTS
from mflib.models import svd as reference

check_matches_reference(sgd_step, reference.sgd_step, lambda seed: make_inputs(seed, lr=0.02, lam=0.2),
                        name="sgd_step")
check_matches_reference(sgd_step, reference.sgd_step, lambda seed: make_inputs(seed, lr=0.05, lam=0.0),
                        name="sgd_step without regularization")
### END HIDDEN TESTS

# %% [markdown]
# ## 7. Training
#
# An **epoch** is one pass over the training ratings: shuffle them (a new random order every epoch), cut
# them into batches of `batch_size`, and take one `sgd_step` per batch. Before the first epoch:
#
# * $\mu$ is the mean training rating;
# * the biases start at 0;
# * the factors start as small random numbers, $\mathcal N(0, \sigma^2)$ with $\sigma$ = `init_std`. Not
#   zeros: with $P = Q = 0$ the factor gradients $-2e\,\mathbf q_i$ and $-2e\,\mathbf p_u$ are 0, and the
#   factors would never move.
#
# **Exercise 6.** Write `fit_svd`. Use only `rng = np.random.default_rng(random_state)` for randomness,
# so that a seed gives the same model. After every epoch, append to `history`:
#
# * `"loss"`: the sum of the batch losses returned by `sgd_step` divided by the number of ratings;
# * `"train_rmse"`: the RMSE of the clipped predictions on the training ratings;
# * `"test_rmse"`: the same on `eval_set = (users, items, ratings)` if it is given; without `eval_set`,
#   `history["test_rmse"]` stays an empty list.
#
# `factors=0` must work too (no interaction term: the baseline predictor).

# %% [solution] id=fit_svd
def fit_svd(users, items, ratings, n_users, n_items, factors=50, learning_rate=0.01, regularization=0.1,
            iterations=20, init_std=0.05, batch_size=2048, random_state=0, eval_set=None):
    """Biased MF by mini-batch SGD. Returns (params, history):
    params = {"global_mean", "user_bias", "item_bias", "user_factors", "item_factors"},
    history = {"loss": [...], "train_rmse": [...], "test_rmse": [...]} (one value per epoch)."""
    ### BEGIN SOLUTION
    rng = np.random.default_rng(random_state)
    global_mean = float(np.mean(ratings))
    user_bias, item_bias = np.zeros(n_users), np.zeros(n_items)
    user_factors = rng.normal(0.0, init_std, (n_users, factors))
    item_factors = rng.normal(0.0, init_std, (n_items, factors))
    history = {"loss": [], "train_rmse": [], "test_rmse": []}
    n_ratings = len(ratings)
    for epoch in range(iterations):
        order = rng.permutation(n_ratings)
        total = 0.0
        for start in range(0, n_ratings, batch_size):
            batch = order[start:start + batch_size]
            total += sgd_step(global_mean, user_bias, item_bias, user_factors, item_factors,
                              users[batch], items[batch], ratings[batch], learning_rate, regularization)
        history["loss"].append(total / n_ratings)
        history["train_rmse"].append(rmse(ratings, predict_ratings(
            global_mean, user_bias, item_bias, user_factors, item_factors, users, items, rating_scale=(1, 5))))
        if eval_set is not None:
            eval_users, eval_items, eval_ratings = eval_set
            history["test_rmse"].append(rmse(eval_ratings, predict_ratings(
                global_mean, user_bias, item_bias, user_factors, item_factors, eval_users, eval_items,
                rating_scale=(1, 5))))
    params = {"global_mean": global_mean, "user_bias": user_bias, "item_bias": item_bias,
              "user_factors": user_factors, "item_factors": item_factors}
    return params, history
    ### END SOLUTION

# %% [markdown]
# Train on ML-100K with the default hyper-parameters (a few seconds), and follow the RMSE on the test set
# as training goes:

# %%
params, history = fit_svd(train_users, train_items, train_ratings, n_users, n_items,
                          eval_set=(test_users, test_items, test_ratings))
test_prediction = predict_ratings(params["global_mean"], params["user_bias"], params["item_bias"],
                                  params["user_factors"], params["item_factors"], test_users, test_items,
                                  rating_scale=(1, 5))
print(f"test RMSE after {len(history['loss'])} epochs: {rmse(test_ratings, test_prediction):.4f}")
fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
plot_learning_curve(history["loss"], ax=axes[0], title="Training loss", ylabel="loss per rating")
plot_learning_curve({"train": history["train_rmse"], "test": history["test_rmse"]}, ax=axes[1],
                    title="RMSE (clipped predictions)", ylabel="RMSE")
plt.show()

# %% [locked] id=fit_helpers
class LearnedArrays:
    """The learned arrays as attributes, for the checks (user_factors, item_factors, ...)."""

    def __init__(self, params):
        self.__dict__.update(params)


def tiny_problem(seed=3):
    """400 random ratings of 20 items by 30 users (more users than items)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 30, 400), rng.integers(0, 20, 400), rng.integers(1, 6, 400).astype(np.float64)


def tiny_fit(seed=3, **kwargs):
    """fit_svd on tiny_problem(seed)."""
    users, items, ratings = tiny_problem(seed)
    try:
        return fit_svd(users, items, ratings, 30, 20, **kwargs)
    except (IndexError, ValueError) as error:
        raise AssertionError(
            f"fit_svd crashed on a problem with 30 users and 20 items ({type(error).__name__}: {error}): are users "
            "and items swapped somewhere, or a gradient built with the other parameter's number of rows? "
            "user_bias / user_factors have n_users rows and are indexed by users; item_bias / item_factors "
            "have n_items rows and are indexed by items") from None

# %% [tests] id=test_fit_svd points=3
small_params, small_history = tiny_fit(factors=4, iterations=3)
check_factors(LearnedArrays(small_params), 30, 20)
again_params, again_history = tiny_fit(factors=4, iterations=3)
assert np.array_equal(small_params["item_factors"], again_params["item_factors"]), (
    "fit_svd with the same random_state gave different factors: draw every random number from "
    "rng = np.random.default_rng(random_state)")
assert len(small_history["loss"]) == 3 and len(small_history["train_rmse"]) == 3, (
    "history must hold one value per epoch: 3 epochs, 3 losses and 3 training RMSEs")
assert list(small_history["test_rmse"]) == [], (
    f"without eval_set, history['test_rmse'] must stay empty; got {small_history['test_rmse']}")
baseline_params, baseline_history = tiny_fit(factors=0, iterations=2)
assert np.shape(baseline_params["user_factors"]) == (30, 0), (
    "factors=0 must work and give user_factors of shape (n_users, 0): the baseline predictor")
print("✓ fit_svd on a tiny problem: reproducible, one history value per epoch, factors=0 works")
check_loss_decreases(history["loss"], min_relative_drop=0.1, name="training loss")
final_test_rmse = check_rmse(test_ratings, test_prediction, max_rmse=0.93)
### BEGIN HIDDEN TESTS
assert abs(small_params["global_mean"] - tiny_problem()[2].mean()) < 1e-9, (
    "global_mean must be the mean training rating")
assert np.all(np.isfinite(baseline_params["item_bias"])) and np.any(baseline_params["item_bias"] != 0), (
    "factors=0: the biases must still be learned")
eval_users, eval_items, eval_ratings = tiny_problem(4)
_, eval_history = tiny_fit(factors=4, iterations=3, eval_set=(eval_users, eval_items, eval_ratings))
assert len(eval_history["test_rmse"]) == 3, "with eval_set, history['test_rmse'] holds one RMSE per epoch"
final_test_rmse = check_rmse(test_ratings, test_prediction, max_rmse=0.925)
### END HIDDEN TESTS

# %% [markdown]
# **How good is it?** Compare with the two simpler predictors: the global mean alone, and the baseline
# predictor $\mu + b_u + b_i$ — which is your `fit_svd` with `factors=0`.

# %%
bias_params, bias_history = fit_svd(train_users, train_items, train_ratings, n_users, n_items, factors=0,
                                    iterations=10)
bias_prediction = predict_ratings(bias_params["global_mean"], bias_params["user_bias"], bias_params["item_bias"],
                                  bias_params["user_factors"], bias_params["item_factors"], test_users,
                                  test_items, rating_scale=(1, 5))
comparison = pd.Series({
    "global mean": rmse(test_ratings, np.full(len(test_ratings), train_ratings.mean())),
    "baseline predictor mu + b_u + b_i": rmse(test_ratings, bias_prediction),
    f"your SVD ({params['user_factors'].shape[1]} factors)": rmse(test_ratings, test_prediction),
}, name="test RMSE").round(4)
comparison.to_frame()

# %% [markdown]
# The biases alone remove most of the error the global mean makes; the factors then capture what is
# personal in a rating. Longer training with more factors and a smaller step does a little better: see
# *Going further* for `mflib.SVD` and the Surprise library on the same protocol.
#
# ## 8. Overfitting and regularisation
#
# Our model has $(n_\text{users} + n_\text{items})(k + 1)$ parameters: on ML-100K with $k = 50$,
# $(943 + 1682) \cdot 51 \approx 134{,}000$ for 80,000 training ratings. Without the penalty nothing stops
# it from memorising the training ratings. Train the same model with $\lambda = 0$ and compare:

# %%
n_parameters = sum(np.size(params[name]) for name in ("user_bias", "item_bias", "user_factors", "item_factors"))
print(f"{n_parameters:,} parameters for {len(train_ratings):,} training ratings")
free_params, free_history = fit_svd(train_users, train_items, train_ratings, n_users, n_items,
                                    regularization=0.0, iterations=14,
                                    eval_set=(test_users, test_items, test_ratings))
fig, ax = plt.subplots(figsize=(6.5, 4))
for name, run, style in (("lambda = 0.1", history, "-"), ("lambda = 0", free_history, "--")):
    ax.plot(np.arange(1, len(run["train_rmse"]) + 1), run["train_rmse"], style, color="C0", label=f"train, {name}")
    ax.plot(np.arange(1, len(run["test_rmse"]) + 1), run["test_rmse"], style, color="C3", label=f"test, {name}")
ax.set(xlabel="epoch", ylabel="RMSE", title="Train and test RMSE with and without regularisation")
ax.grid(True, alpha=0.3)
ax.legend()
plt.show()

# %% [markdown]
# The penalty also acts on the biases. Here are the films with the largest learned bias $b_i$ (with
# $\lambda = 0.1$), with their number of training ratings:

# %%
ratings_per_item = np.bincount(train_items, minlength=n_items)
top = np.argsort(-params["item_bias"])[:10]
pd.DataFrame({"title": ds.title(top), "training ratings": ratings_per_item[top],
              "b_i": params["item_bias"][top].round(2)}, index=pd.RangeIndex(1, 11, name="rank"))

# %% [markdown]
# **Question (3 points, graded by hand).**
#
# 1. Describe the train and test curves without regularisation ($\lambda = 0$) and explain them. If you
#    could not use a penalty, what could you do instead — and which data would you use to decide?
# 2. Several films in the table above have fewer than 10 ratings. Consider the bias of one film $i$
#    alone (every other parameter fixed), with $n_i$ training ratings whose residuals are
#    $e_j = r_j - \mu - b_{u_j}$. Show that our loss (penalty counted once per rating) is minimised by
#    $b_i = \frac{1}{1 + \lambda} \cdot \frac{1}{n_i}\sum_j e_j$, while a penalty counted once per
#    parameter, $\sum_j (e_j - b_i)^2 + \lambda b_i^2$, gives $b_i = \frac{\sum_j e_j}{n_i + \lambda}$.
#    Which of the two shrinks rarely-rated films more, and why would that matter when we recommend the
#    films with the highest predicted rating?
#
# Answer in the next cell.

# %% [manual] id=q_regularization points=3
# ### BEGIN SOLUTION
# 1. Without the penalty, the training RMSE keeps falling (below 0.45 after 14 epochs) while the test
#    RMSE reaches its minimum after about six epochs (~0.92) and then climbs past 1.0: the model has enough
#    parameters to memorise the training ratings, noise included, and the large factors it learns for
#    users and films with few ratings generalise badly (overfitting). With $\lambda = 0.1$ the gap opens
#    much more slowly and the test RMSE keeps improving. Without a penalty we could stop early: hold out a
#    **validation** set from the training ratings, follow its RMSE and keep the epoch where it is lowest
#    (and/or use fewer factors). Never choose with the test set, or its RMSE is no longer an honest estimate.
# 2. Setting the derivative of $\sum_j [(e_j - b_i)^2 + \lambda b_i^2]$ to zero: $-2\sum_j (e_j - b_i) +
#    2 n_i \lambda b_i = 0$, so $b_i (n_i + n_i\lambda) = \sum_j e_j$ and $b_i = \bar e / (1 + \lambda)$.
#    With the penalty once: $-2\sum_j (e_j - b_i) + 2\lambda b_i = 0$ gives $b_i = \sum_j e_j / (n_i + \lambda)$.
#    The per-rating penalty shrinks every film by the same factor $1/(1+\lambda)$, whatever $n_i$: a film
#    with a single 5-star rating keeps almost all of its (noisy) bias. The per-parameter penalty acts like
#    $\lambda$ extra ratings at the mean: it barely changes a film with 300 ratings and pulls a film with 1
#    or 2 ratings strongly towards 0 — a damped mean. That matters for recommending: ranking by
#    $\hat r_{ui}$ otherwise puts obscure films with one or two enthusiastic ratings at the top of
#    everybody's list, where the estimate is least reliable. (In our SGD, few epochs also limit how far a
#    rarely-seen bias moves: early stopping shrinks them a little.)
# ### END SOLUTION

# %% [markdown]
# ## 9. What did the model learn? Similar films
#
# Films that the same people rate above (or below) their baseline end up with similar factor vectors. The
# natural similarity is the **cosine** of the item factors,
#
# $$ \mathrm{sim}(i, j) = \frac{\mathbf q_i \cdot \mathbf q_j}{\lVert \mathbf q_i \rVert \, \lVert \mathbf q_j \rVert} , $$
#
# not the raw inner product, which favours films with long vectors.
#
# **Exercise 7.** Write `similar_items(item_factors, itemid, N)`: the `N` films with the highest cosine
# similarity to film `itemid`, **leaving `itemid` itself out**, as `(ids, scores)`, best first.

# %% [solution] id=similar_items
def similar_items(item_factors, itemid, N=10):
    """(ids, cosine scores) of the N films most similar to itemid (itself excluded), best first."""
    ### BEGIN SOLUTION
    norms = np.linalg.norm(item_factors, axis=1)
    unit = item_factors / np.maximum(norms, 1e-12)[:, None]
    cosine = unit @ unit[itemid]
    cosine[itemid] = -np.inf
    ids = np.argsort(-cosine)[:N]
    return ids, cosine[ids]
    ### END SOLUTION

# %% [locked] id=svd_model
class SVDModel:
    """Your learned arrays with the similar_items API used by mflib.display and autograder.checks."""

    def __init__(self, params):
        self.item_factors = params["item_factors"]

    def similar_items(self, itemid, N=10):
        if np.ndim(itemid) == 0:
            return similar_items(self.item_factors, int(itemid), N=N)
        results = [similar_items(self.item_factors, int(i), N=N) for i in np.ravel(itemid)]
        return np.array([r[0] for r in results]), np.array([r[1] for r in results])


model = SVDModel(params)

# %%
similar_items_table(model, ds, "Star Wars")  # the most-rated title containing "Star Wars"

# %%
similar_items_table(model, ds, "Godfather")

# %% [tests] id=test_similar_items points=2
sequels = {ds.title(ds.find_item("Star Wars")): [ds.title(ds.find_item(title)) for title in
                                                 ("Empire Strikes Back", "Return of the Jedi")]}
check_similar_items(model, ds, ds.to_csr(train, 1.0), min_genre_jaccard=0.2, pairs=sequels)
### BEGIN HIDDEN TESTS
check_matches_reference(similar_items, lambda f, i, N: tuple(a[0] for a in retrieval.similar_items(f, [i], N=N)),
                        lambda seed: (np.random.default_rng(seed).normal(size=(40, 5)), seed + 3, 7),
                        name="similar_items")
### END HIDDEN TESTS

# %% [markdown]
# Be honest about what you see. The sequels are there, and many neighbours make sense, but the lists are
# noisier than those of the implicit-feedback models of the next assignments: the factors of an explicit
# model describe how a film's ratings **deviate from its bias**, learned from 80,000 ratings, not which
# films are watched by the same people; a film with few ratings gets a vector that is mostly its random
# initialisation shrunk by the penalty (ML-100K's untitled film "unknown", 9 ratings, may well show up
# next to *Star Wars*). The mean genre overlap of the neighbours (printed by the check) is well above
# random, but lower than what the implicit models will reach.
#
# ## Going further
#
# * The reference `mflib.SVD` implements the same model on float32 arrays, updating only the rows a batch
#   touches; with its defaults (100 factors, $\eta = 0.005$, $\lambda = 0.1$, 50 epochs) it reaches a test
#   RMSE of 0.907 averaged over three splits. Surprise's `SVD` (per-rating SGD, minimising $\frac12 L$, so
#   its `lr_all` is our $2\eta$) reaches 0.936 with its defaults and the same 0.908 with the equivalent
#   hyper-parameters: mini-batches cost nothing in accuracy.
# * Koren's **SVD++** adds the *implicit* information of which films a user rated, whatever the rating.
# * Assignment 02 leaves the ratings behind: implicit feedback, a whole matrix of zeros to explain, and a
#   solver (alternating least squares) that needs no learning rate.
