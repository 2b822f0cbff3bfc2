"""Buggy and alternative submissions for 01-svd-sgd (biased MF by SGD on explicit ratings).

Each bug must lose points in a test cell whose failure message contains ``feedback``; each alternative
is a different correct solution and must keep full marks. "old text" occurs verbatim in the named
[solution] cell of solutions/01-svd-sgd/01-svd-sgd.ipynb.
"""

ASSIGNMENT = "01-svd-sgd"

BUGS = [
    {"name": "global mean missing from the prediction",
     "cell": "predict_ratings",
     "replace": [("prediction = global_mean + user_bias[users]", "prediction = user_bias[users]")],
     "feedback": "global_mean"},
    {"name": "predictions not clipped to the rating scale",
     "cell": "predict_ratings",
     "replace": [("prediction = np.clip(prediction, rating_scale[0], rating_scale[1])", "pass")],
     "feedback": "np.clip"},
    {"name": "penalty counted once per parameter instead of once per rating",
     "cell": "svd_loss",
     "replace": [("penalty = (np.sum(user_bias[users] ** 2) + np.sum(item_bias[items] ** 2)\n"
                  "               + np.sum(user_factors[users] ** 2) + np.sum(item_factors[items] ** 2))",
                  "penalty = (np.sum(user_bias ** 2) + np.sum(item_bias ** 2)\n"
                  "               + np.sum(user_factors ** 2) + np.sum(item_factors ** 2))")],
     "feedback": "once per"},
    {"name": "regularisation missing from the loss",
     "cell": "svd_loss",
     "replace": [("return float(np.sum(errors ** 2) + regularization * penalty)",
                  "return float(np.sum(errors ** 2))")],
     "feedback": "regularization multiplies it"},
    {"name": "gradient sign flipped (error taken as prediction - rating)",
     "cell": "svd_gradients",
     "replace": [("errors = ratings - predict_ratings(", "errors = -ratings + predict_ratings(")],
     "feedback": "sign"},
    {"name": "regularisation missing from the factor gradients",
     "cell": "svd_gradients",
     "replace": [("-2 * errors[:, None] * q_i + 2 * lam * p_u", "-2 * errors[:, None] * q_i"),
                 ("-2 * errors[:, None] * p_u + 2 * lam * q_i", "-2 * errors[:, None] * p_u")],
     "feedback": "penalty terms"},
    {"name": "bias gradients missing (biases never learned)",
     "cell": "svd_gradients",
     "replace": [('"user_bias": scatter_add(users, -2 * errors + 2 * lam * user_bias[users], len(user_bias)),',
                  '"user_bias": np.zeros_like(user_bias),'),
                 ('"item_bias": scatter_add(items, -2 * errors + 2 * lam * item_bias[items], len(item_bias)),',
                  '"item_bias": np.zeros_like(item_bias),')],
     "feedback": "user_bias"},
    {"name": "repeated users/items overwrite instead of accumulating (grad[users] += rows)",
     "cell": "svd_gradients",
     "replace": [("""    return {
        "user_bias": scatter_add(users, -2 * errors + 2 * lam * user_bias[users], len(user_bias)),
        "item_bias": scatter_add(items, -2 * errors + 2 * lam * item_bias[items], len(item_bias)),
        "user_factors": scatter_add(users, -2 * errors[:, None] * q_i + 2 * lam * p_u, len(user_factors)),
        "item_factors": scatter_add(items, -2 * errors[:, None] * p_u + 2 * lam * q_i, len(item_factors)),
    }""", """    grads = {"user_bias": np.zeros_like(user_bias), "item_bias": np.zeros_like(item_bias),
             "user_factors": np.zeros_like(user_factors), "item_factors": np.zeros_like(item_factors)}
    grads["user_bias"][users] += -2 * errors + 2 * lam * user_bias[users]
    grads["item_bias"][items] += -2 * errors + 2 * lam * item_bias[items]
    grads["user_factors"][users] += -2 * errors[:, None] * q_i + 2 * lam * p_u
    grads["item_factors"][items] += -2 * errors[:, None] * p_u + 2 * lam * q_i
    return grads""")],
     "feedback": "svd_gradients"},
    {"name": "sgd_step does not update the arrays in place",
     "cell": "sgd_step",
     "replace": [("user_bias -= learning_rate * grads[\"user_bias\"]",
                  "user_bias = user_bias - learning_rate * grads[\"user_bias\"]"),
                 ("item_bias -= learning_rate * grads[\"item_bias\"]",
                  "item_bias = item_bias - learning_rate * grads[\"item_bias\"]"),
                 ("user_factors -= learning_rate * grads[\"user_factors\"]",
                  "user_factors = user_factors - learning_rate * grads[\"user_factors\"]"),
                 ("item_factors -= learning_rate * grads[\"item_factors\"]",
                  "item_factors = item_factors - learning_rate * grads[\"item_factors\"]")],
     "feedback": "IN PLACE"},
    {"name": "item-bias gradient built with len(user_bias) rows (an index out of range: used to crash the kernel)",
     "cell": "svd_gradients",
     "replace": [('"item_bias": scatter_add(items, -2 * errors + 2 * lam * item_bias[items], len(item_bias)),',
                  '"item_bias": scatter_add(items, -2 * errors + 2 * lam * item_bias[items], len(user_bias)),')],
     "feedback": "is out of range for n_rows=7: n_rows is the number of rows of the gradient"},
    {"name": "sgd_step rebinds user_bias instead of updating it in place (the other three are right)",
     "cell": "sgd_step",
     "replace": [("user_bias -= learning_rate * grads[\"user_bias\"]",
                  "user_bias = user_bias - learning_rate * grads[\"user_bias\"]")],
     "feedback": "update in place: user_bias[...] -= ..., not user_bias = ..."},
    {"name": "learning rate hacked huge (training diverges)",
     "cell": "fit_svd",
     "replace": [("learning_rate=0.01,", "learning_rate=0.5,")],
     "feedback": "learning rate"},
    {"name": "fit_svd records None as the test RMSE when there is no eval_set",
     "cell": "fit_svd",
     "replace": [("""        if eval_set is not None:
            eval_users, eval_items, eval_ratings = eval_set""", """        if eval_set is None:
            history["test_rmse"].append(None)
        else:
            eval_users, eval_items, eval_ratings = eval_set""")],
     "feedback": "without eval_set, history['test_rmse'] must stay empty"},
    {"name": "users and items swapped in the training loop",
     "cell": "fit_svd",
     "replace": [("users[batch], items[batch], ratings[batch]", "items[batch], users[batch], ratings[batch]")],
     "feedback": "swapped"},
    {"name": "factors initialised to zero (they never move: only the biases are learned)",
     "cell": "fit_svd",
     "replace": [("user_factors = rng.normal(0.0, init_std, (n_users, factors))",
                  "user_factors = np.zeros((n_users, factors))"),
                 ("item_factors = rng.normal(0.0, init_std, (n_items, factors))",
                  "item_factors = np.zeros((n_items, factors))")],
     "feedback": "all zeros"},
    {"name": "similar items by raw inner product instead of cosine",
     "cell": "similar_items",
     "replace": [("unit = item_factors / np.maximum(norms, 1e-12)[:, None]", "unit = item_factors")],
     "feedback": "cosine"},
    {"name": "similar items returns the query film itself",
     "cell": "similar_items",
     "replace": [("    cosine[itemid] = -np.inf\n", "")],
     "feedback": "query item itself"},
]

ALTERNATIVES = [
    {"name": "gradients accumulated with np.add.at",
     "cell": "svd_gradients",
     "replace": [("""    return {
        "user_bias": scatter_add(users, -2 * errors + 2 * lam * user_bias[users], len(user_bias)),
        "item_bias": scatter_add(items, -2 * errors + 2 * lam * item_bias[items], len(item_bias)),
        "user_factors": scatter_add(users, -2 * errors[:, None] * q_i + 2 * lam * p_u, len(user_factors)),
        "item_factors": scatter_add(items, -2 * errors[:, None] * p_u + 2 * lam * q_i, len(item_factors)),
    }""", """    grads = {"user_bias": np.zeros_like(user_bias), "item_bias": np.zeros_like(item_bias),
             "user_factors": np.zeros_like(user_factors), "item_factors": np.zeros_like(item_factors)}
    np.add.at(grads["user_bias"], users, -2 * errors + 2 * lam * user_bias[users])
    np.add.at(grads["item_bias"], items, -2 * errors + 2 * lam * item_bias[items])
    np.add.at(grads["user_factors"], users, -2 * errors[:, None] * q_i + 2 * lam * p_u)
    np.add.at(grads["item_factors"], items, -2 * errors[:, None] * p_u + 2 * lam * q_i)
    return grads""")],
     "feedback": None},
    {"name": "gradients with a Python loop over the ratings (slow but correct)",
     "cell": "svd_gradients",
     "replace": [("""    return {
        "user_bias": scatter_add(users, -2 * errors + 2 * lam * user_bias[users], len(user_bias)),
        "item_bias": scatter_add(items, -2 * errors + 2 * lam * item_bias[items], len(item_bias)),
        "user_factors": scatter_add(users, -2 * errors[:, None] * q_i + 2 * lam * p_u, len(user_factors)),
        "item_factors": scatter_add(items, -2 * errors[:, None] * p_u + 2 * lam * q_i, len(item_factors)),
    }""", """    g_bu, g_bi = np.zeros_like(user_bias), np.zeros_like(item_bias)
    g_p, g_q = np.zeros_like(user_factors), np.zeros_like(item_factors)
    for j in range(len(ratings)):
        u, i, e = users[j], items[j], errors[j]
        g_bu[u] += -2 * e + 2 * lam * user_bias[u]
        g_bi[i] += -2 * e + 2 * lam * item_bias[i]
        g_p[u] += -2 * e * item_factors[i] + 2 * lam * user_factors[u]
        g_q[i] += -2 * e * user_factors[u] + 2 * lam * item_factors[i]
    return {"user_bias": g_bu, "item_bias": g_bi, "user_factors": g_p, "item_factors": g_q}""")],
     "feedback": None},
    {"name": "training loop as per-rating SGD (Funk's original loop, no mini-batches)",
     "cell": "fit_svd",
     "replace": [("""        total = 0.0
        for start in range(0, n_ratings, batch_size):
            batch = order[start:start + batch_size]
            total += sgd_step(global_mean, user_bias, item_bias, user_factors, item_factors,
                              users[batch], items[batch], ratings[batch], learning_rate, regularization)
        history["loss"].append(total / n_ratings)""", """        lr, lam = learning_rate, regularization
        for j in order:
            u, i = users[j], items[j]
            p_u, q_i = user_factors[u].copy(), item_factors[i]
            e = ratings[j] - (global_mean + user_bias[u] + item_bias[i] + p_u @ q_i)
            user_bias[u] -= lr * (-2 * e + 2 * lam * user_bias[u])
            item_bias[i] -= lr * (-2 * e + 2 * lam * item_bias[i])
            user_factors[u] -= lr * (-2 * e * q_i + 2 * lam * p_u)
            item_factors[i] -= lr * (-2 * e * p_u + 2 * lam * q_i)
        history["loss"].append(svd_loss(global_mean, user_bias, item_bias, user_factors, item_factors,
                                        users, items, ratings, regularization) / n_ratings)""")],
     "feedback": None},
    {"name": "uniform initialisation (same variance), item factors drawn first",
     "cell": "fit_svd",
     "replace": [("""    user_factors = rng.normal(0.0, init_std, (n_users, factors))
    item_factors = rng.normal(0.0, init_std, (n_items, factors))""",
                  """    half_width = init_std * np.sqrt(3.0)                    # same variance as N(0, init_std^2)
    item_factors = rng.uniform(-half_width, half_width, (n_items, factors))
    user_factors = rng.uniform(-half_width, half_width, (n_users, factors))""")],
     "feedback": None},
    {"name": "einsum for the prediction",
     "cell": "predict_ratings",
     "replace": [("interaction = np.sum(user_factors[users] * item_factors[items], axis=1)",
                  "interaction = np.einsum('ij,ij->i', user_factors[users], item_factors[items])")],
     "feedback": None},
    {"name": "similar items with argpartition and an explicit mask",
     "cell": "similar_items",
     "replace": [("""    cosine[itemid] = -np.inf
    ids = np.argsort(-cosine)[:N]
    return ids, cosine[ids]""", """    candidates = np.flatnonzero(np.arange(len(cosine)) != itemid)
    top = candidates[np.argpartition(-cosine[candidates], N - 1)[:N]]
    ids = top[np.argsort(-cosine[top], kind="stable")]
    return ids, cosine[ids]""")],
     "feedback": None},
]
