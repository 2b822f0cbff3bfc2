"""Buggy and alternative-but-correct submissions of 05-fm (see README.md in this folder).

Each bug is a realistic mistake; "feedback" is a substring of the message of the check that catches it.
"old text" occurs verbatim in the named [solution] cell of solutions/05-fm/05-fm.ipynb.
"""

ASSIGNMENT = "05-fm"

BUGS = [
    {"name": "pairwise term missing the 1/2",
     "cell": "fm_pairwise",
     "replace": [("return 0.5 * np.asarray(S * S - squares).sum(axis=1)",
                  "return np.asarray(S * S - squares).sum(axis=1)")],
     "feedback": "the factor 1/2 is missing"},
    {"name": "pairwise term without the squared-term subtraction (self-pairs counted)",
     "cell": "fm_pairwise",
     "replace": [("return 0.5 * np.asarray(S * S - squares).sum(axis=1)",
                  "return 0.5 * np.asarray(S * S).sum(axis=1)")],
     "feedback": "subtract the self-pairs"},
    {"name": "linear term missing from the prediction",
     "cell": "fm_predict",
     "replace": [("return w0 + X @ w + fm_pairwise(V, X)", "return w0 + fm_pairwise(V, X)")],
     "feedback": "linear term"},
    {"name": "regularisation missing from the loss",
     "cell": "fm_loss",
     "replace": [("return float(np.mean(residual ** 2) + penalty)", "return float(np.mean(residual ** 2))")],
     "feedback": "regularization of the factors"},
    {"name": "sum instead of mean of the squared errors",
     "cell": "fm_loss",
     "replace": [("return float(np.mean(residual ** 2) + penalty)", "return float(np.sum(residual ** 2) + penalty)")],
     "feedback": "MEAN squared error"},
    {"name": "gradient of V missing the -v_jf x_j^2 term",
     "cell": "fm_gradients",
     "replace": [(' - (X.power(2).T @ g)[:, None] * V', '')],
     "feedback": "for 'V'"},
    {"name": "regularisation missing from the gradients",
     "cell": "fm_gradients",
     "replace": [('"w": X.T @ g + 2 * reg_w * w,', '"w": X.T @ g,'),
                 (" + 2 * reg_V * V,", ",")],
     "feedback": "check_gradient(fm_gradients)"},
    {"name": "bias (w0) gradient missing",
     "cell": "fm_gradients",
     "replace": [('"w0": np.sum(g),', '"w0": 0.0,')],
     "feedback": "for 'w0'"},
    {"name": "gradient sign flipped (residual taken as y - y_hat)",
     "cell": "fm_gradients",
     "replace": [("g = 2.0 * (fm_predict(w0, w, V, X) - y) / len(y)",
                  "g = 2.0 * (y - fm_predict(w0, w, V, X)) / len(y)")],
     "feedback": "sign"},
    {"name": "Adam without the bias correction",
     "cell": "adam_update",
     "replace": [("m_hat = m / (1 - beta1 ** step)", "m_hat = m"),
                 ("v_hat = v / (1 - beta2 ** step)", "v_hat = v")],
     "feedback": "bias correction"},
    {"name": "learning rate hacked (training diverges)",
     "cell": "train_fm",
     "replace": [("learning_rate=0.02,", "learning_rate=0.5,")],
     "feedback": "RMSE"},
    {"name": "factors initialised at zero (they never move)",
     "cell": "train_fm",
     "replace": [('"V": rng.normal(0.0, init_std, (n_features, factors))',
                  '"V": np.zeros((n_features, factors))')],
     "feedback": "not zeros"},
    {"name": "w0 in the film constants too (counted twice)",
     "cell": "fm_user_item_vectors",
     "replace": [("item_constants = item_features @ w + fm_pairwise(V, item_features)",
                  "item_constants = w0 + item_features @ w + fm_pairwise(V, item_features)")],
     "feedback": "item_matrix @ user_vector differs from fm_predict"},
    {"name": "the pairs inside the user's blocks forgotten",
     "cell": "fm_user_item_vectors",
     "replace": [("user_constant = w0 + user_row @ w + fm_pairwise(V, user_row)",
                  "user_constant = w0 + user_row @ w")],
     "feedback": "item_matrix @ user_vector differs from fm_predict"},
    {"name": "no 1 columns: the two constants multiplied instead of added",
     "cell": "fm_user_item_vectors",
     "replace": [("user_vector = np.concatenate([np.ravel(user_constant), [1.0], np.ravel(user_row @ V)])",
                  "user_vector = np.concatenate([np.ravel(user_constant), np.ravel(user_row @ V)])"),
                 ("item_matrix = np.column_stack([np.ones(item_features.shape[0]), item_constants, item_features @ V])",
                  "item_matrix = np.column_stack([item_constants, item_features @ V])")],
     "feedback": "item_matrix @ user_vector differs from fm_predict"},
    {"name": "the user's scores stuffed into the item matrix (scores right, but not a factorisation)",
     "cell": "fm_user_item_vectors",
     "replace": [("""    user_vector = np.concatenate([np.ravel(user_constant), [1.0], np.ravel(user_row @ V)])""",
                  """    rows = (item_features + sp.csr_matrix(np.ones((item_features.shape[0], 1))) @ user_row).tocsr()
    return np.array([1.0]), fm_predict(w0, w, V, rows)[:, None]""")],
     "feedback": "item_matrix changed with the user"},
    {"name": "fm_predict clips to the rating scale",
     "cell": "fm_predict",
     "replace": [("return w0 + X @ w + fm_pairwise(V, X)", "return np.clip(w0 + X @ w + fm_pairwise(V, X), 1, 5)")],
     "feedback": "fm_predict must not clip"},
    {"name": "fm_pairwise returns a column (n, 1)",
     "cell": "fm_pairwise",
     "replace": [("return 0.5 * np.asarray(S * S - squares).sum(axis=1)",
                  "return 0.5 * np.asarray(S * S - squares).sum(axis=1, keepdims=True)")],
     "feedback": "a column (n, 1)"},
    {"name": "pairwise term missing the 1/2: the follow-on gradient failure names fm_pairwise, not the gradient",
     "cell": "fm_pairwise",
     "replace": [("return 0.5 * np.asarray(S * S - squares).sum(axis=1)",
                  "return np.asarray(S * S - squares).sum(axis=1)")],
     "feedback": "the loss uses a function that is wrong: fm_pairwise"},
    {"name": "adam_update updates the moments in place",
     "cell": "adam_update",
     "replace": [("    m = beta1 * m + (1 - beta1) * grad\n    v = beta2 * v + (1 - beta2) * grad ** 2\n",
                  "    m *= beta1\n    m += (1 - beta1) * grad\n    v *= beta2\n    v += (1 - beta2) * grad ** 2\n")],
     "feedback": "adam_update changed its input m in place"},
    {"name": "train_fm records NaN as the test RMSE when there is no eval_set",
     "cell": "train_fm",
     "replace": [("""        if eval_set is not None:
            X_eval, y_eval = eval_set""", """        if eval_set is None:
            history["test_rmse"].append(float("nan"))
        else:
            X_eval, y_eval = eval_set""")],
     "feedback": "history['test_rmse'] empty"},
]

ALTERNATIVES = [
    {"name": "naive O(k nnz^2) pairwise sum: loops over pairs of non-zero positions, vectorised over the batch",
     "cell": "fm_pairwise",
     "replace": [("""    S = X @ V                                   # s_if = sum_j v_jf x_ij
    squares = X.power(2) @ (V * V)              # sum_j v_jf^2 x_ij^2
    return 0.5 * np.asarray(S * S - squares).sum(axis=1)""",
                  """    X = sp.csr_matrix(X)
    n_rows = X.shape[0]
    counts = np.diff(X.indptr)
    width = int(counts.max()) if n_rows else 0
    rows = np.repeat(np.arange(n_rows), counts)
    position = np.arange(X.nnz) - np.repeat(X.indptr[:-1], counts)
    columns = np.zeros((n_rows, width), dtype=np.int64)
    values = np.zeros((n_rows, width))                  # padding has value 0: contributes nothing
    columns[rows, position] = X.indices
    values[rows, position] = X.data
    out = np.zeros(n_rows)
    for a in range(width):                              # every pair of non-zero positions a < b
        for b in range(a + 1, width):
            out += np.sum(V[columns[:, a]] * V[columns[:, b]], axis=1) * values[:, a] * values[:, b]
    return out""")],
     "feedback": None},
    {"name": "uniform initialisation of the factors",
     "cell": "train_fm",
     "replace": [('"V": rng.normal(0.0, init_std, (n_features, factors))',
                  '"V": rng.uniform(-np.sqrt(3) * init_std, np.sqrt(3) * init_std, (n_features, factors))')],
     "feedback": None},
    {"name": "gradient of V with a loop over the k factors",
     "cell": "fm_gradients",
     "replace": [('''    return {
        "w0": np.sum(g),
        "w": X.T @ g + 2 * reg_w * w,
        "V": X.T @ (g[:, None] * S) - (X.power(2).T @ g)[:, None] * V + 2 * reg_V * V,
    }''', '''    grad_V = np.zeros_like(V, dtype=np.float64)
    weight_sq = X.multiply(X).T @ g                    # sum_i g_i x_ij^2
    for f in range(V.shape[1]):
        grad_V[:, f] = X.T @ (g * S[:, f]) - weight_sq * V[:, f]
    grad_V += 2 * reg_V * V
    return {"w0": float(g.sum()), "w": X.T @ g + 2 * reg_w * w, "V": grad_V}''')],
     "feedback": None},
    {"name": "constants of the two vectors from fm_predict on the user row and on the film rows",
     "cell": "fm_user_item_vectors",
     "replace": [("user_constant = w0 + user_row @ w + fm_pairwise(V, user_row)",
                  "user_constant = fm_predict(w0, w, V, user_row)"),
                 ("item_constants = item_features @ w + fm_pairwise(V, item_features)",
                  "item_constants = fm_predict(0.0, w, V, item_features)")],
     "feedback": None},
    {"name": "factor columns first, the constants last",
     "cell": "fm_user_item_vectors",
     "replace": [("user_vector = np.concatenate([np.ravel(user_constant), [1.0], np.ravel(user_row @ V)])",
                  "user_vector = np.concatenate([np.ravel(user_row @ V), np.ravel(user_constant), [1.0]])"),
                 ("item_matrix = np.column_stack([np.ones(item_features.shape[0]), item_constants, item_features @ V])",
                  "item_matrix = np.hstack([item_features @ V, np.ones((item_features.shape[0], 1)), "
                  "item_constants[:, None]])")],
     "feedback": None},
]
