"""Buggy and alternative-but-correct submissions of 07-beyond (see README.md in this folder).

Each bug is a realistic mistake; "feedback" is a substring of the message of the check that catches it.
"""

ASSIGNMENT = "07-beyond"

BUGS = [
    # ---- fold-in -------------------------------------------------------------------------------------
    {"name": "fold-in without the regularization",
     "cell": "fold_in",
     "replace": [("gram = Y.T @ Y + regularization * np.eye(k)  # the same", "gram = Y.T @ Y  # the same")],
     "feedback": "lambda I is missing"},
    {"name": "fold-in from the user's own items only (Y^T Y forgotten)",
     "cell": "fold_in",
     "replace": [("gram = Y.T @ Y + regularization * np.eye(k)  # the same",
                  "gram = regularization * np.eye(k)  # the same")],
     "feedback": "Y^T Y term is missing"},
    {"name": "fold-in with implicit's confidence alpha * r",
     "cell": "fold_in",
     "replace": [("        A = gram + Y_u.T @ (alpha * r_u[:, None] * Y_u)\n        b = Y_u.T @ (1.0 + alpha * r_u)\n",
                  "        A = gram + Y_u.T @ ((alpha * r_u - 1.0)[:, None] * Y_u)\n        b = Y_u.T @ (alpha * r_u)\n")],
     "feedback": "c_ui = 1 + alpha"},
    {"name": "fold-in right-hand side weighted by the ratings instead of the preference",
     "cell": "fold_in",
     "replace": [("b = Y_u.T @ (1.0 + alpha * r_u)", "b = Y_u.T @ ((1.0 + alpha * r_u) * r_u)")],
     "feedback": "preference p_ui is 1"},
    # ---- summed embedding ------------------------------------------------------------------------------
    {"name": "summed embedding weighted by the stored values",
     "cell": "summed_embedding",
     "replace": [("    pattern.data = np.ones_like(pattern.data)  # each film once, whatever its value\n", "")],
     "feedback": "counts once"},
    # ---- explicit ALS ----------------------------------------------------------------------------------
    {"name": "plain lambda instead of lambda * n_u",
     "cell": "solve_biased",
     "replace": [("+ regularization * counts[:, None, None] * np.eye(d)", "+ regularization * np.eye(d)")],
     "feedback": "lambda * n_u"},
    {"name": "targets without the fixed side's bias",
     "cell": "solve_biased",
     "replace": [("targets.data = ratings.data - global_mean - fixed_bias[ratings.indices]",
                  "targets.data = ratings.data - global_mean")],
     "feedback": "subtract the fixed side's bias"},
    {"name": "bias left unpenalised",
     "cell": "solve_biased",
     "replace": [("+ regularization * counts[:, None, None] * np.eye(d)",
                  "+ regularization * counts[:, None, None] * np.diag(np.r_[0.0, np.ones(d - 1)])")],
     "feedback": "bias b_u is penalised too"},
    {"name": "rows without ratings left singular",
     "cell": "solve_biased",
     "replace": [("    A[counts == 0] = np.eye(d)  # no ratings: b = 0, so z = 0\n", "")],
     "feedback": "row without ratings"},
    {"name": "items solved from the previous iteration's users (Jacobi instead of alternating)",
     "cell": "fit_explicit_als",
     "replace": [("        user_bias, user_factors = solve_biased(global_mean, item_bias, item_factors, user_items, "
                  "regularization)\n"
                  "        item_bias, item_factors = solve_biased(global_mean, user_bias, user_factors, item_users, "
                  "regularization)\n",
                  "        new_users = solve_biased(global_mean, item_bias, item_factors, user_items, regularization)\n"
                  "        item_bias, item_factors = solve_biased(global_mean, user_bias, user_factors, item_users, "
                  "regularization)\n"
                  "        user_bias, user_factors = new_users\n")],
     "feedback": "NEW user biases"},
    {"name": "training not seeded by random_state",
     "cell": "fit_explicit_als",
     "replace": [("rng = np.random.default_rng(random_state)", "rng = np.random.default_rng()")],
     "feedback": "same random_state"},
    {"name": "loss history not divided by the number of ratings",
     "cell": "fit_explicit_als",
     "replace": [("loss_history.append(float(np.sum(errors ** 2 + regularization * penalty)) / len(ratings))",
                  "loss_history.append(float(np.sum(errors ** 2 + regularization * penalty)))")],
     "feedback": "divided by the number of ratings"},
    # ---- two-stage retrieval ---------------------------------------------------------------------------
    {"name": "candidate recall divided by the pool size (a precision)",
     "cell": "candidate_recall",
     "replace": [("return float(np.mean(hits[has_test] / n_test[has_test]))",
                  "return float(np.mean(hits[has_test] / candidates.shape[1]))")],
     "feedback": "pool size"},
    {"name": "candidate recall averaged over users without test positives",
     "cell": "candidate_recall",
     "replace": [("return float(np.mean(hits[has_test] / n_test[has_test]))",
                  "return float(np.mean(hits / np.maximum(n_test, 1)))")],
     "feedback": "users without test positives"},
    {"name": "candidate recall counts the padding -1 as the last item",
     "cell": "candidate_recall",
     "replace": [("valid = ids >= 0", "valid = ids >= -1")],
     "feedback": "padding -1"},
    {"name": "rerank returns positions in the pool instead of item ids",
     "cell": "rerank",
     "replace": [("ids = np.where(np.isfinite(top_scores), np.take_along_axis(candidates, order, axis=1), -1)",
                  "ids = np.where(np.isfinite(top_scores), order, -1)")],
     "feedback": "positions in the pool"},
    {"name": "rerank sorts worst first",
     "cell": "rerank",
     "replace": [('order = np.argsort(-scores, axis=1, kind="stable")[:, :N]',
                  'order = np.argsort(scores, axis=1, kind="stable")[:, :N]')],
     "feedback": "best first"},
    {"name": "rerank scores the padding -1 as the last item",
     "cell": "rerank",
     "replace": [("gathered = np.asarray(item_vectors)[np.maximum(candidates, 0)]",
                  "gathered = np.asarray(item_vectors)[candidates]"),
                 ("    scores[candidates < 0] = -np.inf  # padding never wins\n", "")],
     "feedback": "padding -1"},
]

ALTERNATIVES = [
    {"name": "fold-in vectorised over the users (flattened outer products, one batched solve)",
     "cell": "fold_in",
     "replace": [("""    user_items = sp.csr_matrix(user_items)
    X = np.zeros((user_items.shape[0], k))
    for u in range(user_items.shape[0]):
        start, stop = user_items.indptr[u], user_items.indptr[u + 1]
        Y_u = Y[user_items.indices[start:stop]]  # the factors of her items
        r_u = user_items.data[start:stop]
        A = gram + Y_u.T @ (alpha * r_u[:, None] * Y_u)
        b = Y_u.T @ (1.0 + alpha * r_u)
        X[u] = np.linalg.solve(A, b)
    return X
""", """    W = sp.csr_matrix(user_items, dtype=np.float64, copy=True)
    W.data = alpha * W.data                                       # c_ui - 1
    C = W.copy()
    C.data = 1.0 + C.data                                         # c_ui on her items
    outer = (Y[:, :, None] * Y[:, None, :]).reshape(len(Y), k * k)
    A = (W @ outer).reshape(W.shape[0], k, k) + gram
    return np.linalg.solve(A, (C @ Y)[:, :, None])[:, :, 0]
""")],
     "feedback": None},
    {"name": "summed embedding through a 0/1 matrix",
     "cell": "summed_embedding",
     "replace": [("""    pattern = sp.csr_matrix(user_items, dtype=np.float64, copy=True)
    pattern.data = np.ones_like(pattern.data)  # each film once, whatever its value
    return np.asarray(pattern @ np.asarray(item_factors, dtype=np.float64))
""", """    rated = (sp.csr_matrix(user_items) > 0).astype(np.float64)
    return rated @ np.asarray(item_factors, dtype=np.float64)
""")],
     "feedback": None},
    {"name": "solve_biased with a loop over rows and a stacked least-squares problem",
     "cell": "solve_biased",
     "replace": [("""    ratings = sp.csr_matrix(ratings, dtype=np.float64)
    fixed_bias = np.asarray(fixed_bias, dtype=np.float64)
    F = np.hstack([np.ones((len(fixed_bias), 1)), np.asarray(fixed_factors, dtype=np.float64)])  # f_i = (1, q_i)
    n_rows, d = ratings.shape[0], F.shape[1]
    counts = np.diff(ratings.indptr)  # n_u
    pattern = ratings.copy()
    pattern.data = np.ones_like(pattern.data)
    targets = ratings.copy()
    targets.data = ratings.data - global_mean - fixed_bias[ratings.indices]  # t_ui
    outer = (F[:, :, None] * F[:, None, :]).reshape(len(F), d * d)  # row i: f_i f_i^T, flattened
    A = (pattern @ outer).reshape(n_rows, d, d) + regularization * counts[:, None, None] * np.eye(d)
    b = targets @ F
    A[counts == 0] = np.eye(d)  # no ratings: b = 0, so z = 0
    z = np.linalg.solve(A, b[:, :, None])[:, :, 0]
    return z[:, 0], z[:, 1:]
""", """    ratings = sp.csr_matrix(ratings, dtype=np.float64)
    fixed_factors = np.asarray(fixed_factors, dtype=np.float64)
    k = fixed_factors.shape[1]
    bias, factors = np.zeros(ratings.shape[0]), np.zeros((ratings.shape[0], k))
    for u in range(ratings.shape[0]):
        start, stop = ratings.indptr[u], ratings.indptr[u + 1]
        n = stop - start
        if n == 0:
            continue
        cols = ratings.indices[start:stop]
        design = np.vstack([np.column_stack([np.ones(n), fixed_factors[cols]]),
                            np.sqrt(regularization * n) * np.eye(k + 1)])
        target = np.concatenate([ratings.data[start:stop] - global_mean - np.asarray(fixed_bias)[cols],
                                 np.zeros(k + 1)])
        z = np.linalg.lstsq(design, target, rcond=None)[0]
        bias[u], factors[u] = z[0], z[1:]
    return bias, factors
""")],
     "feedback": None},
    {"name": "candidate recall with mflib.metrics.recall_at_k",
     "cell": "candidate_recall",
     "replace": [("""    candidates = np.asarray(candidates)
    test = sp.csr_matrix(test)
    rows = np.repeat(np.arange(len(candidates)), candidates.shape[1])
    ids = candidates.ravel()
    valid = ids >= 0
    in_test = np.asarray(test[rows[valid], ids[valid]]).ravel() > 0
    hits = np.bincount(rows[valid][in_test], minlength=len(candidates))
    n_test = np.diff(test.indptr)
    has_test = n_test > 0
    return float(np.mean(hits[has_test] / n_test[has_test]))
""", """    return metrics.recall_at_k(np.asarray(candidates), test, np.shape(candidates)[1])
""")],
     "feedback": None},
    {"name": "rerank with argpartition and a matmul",
     "cell": "rerank",
     "replace": [("""    candidates = np.asarray(candidates)
    gathered = np.asarray(item_vectors)[np.maximum(candidates, 0)]  # (n_users, P, k)
    scores = np.einsum("uk,upk->up", np.asarray(user_vectors), gathered)
    scores[candidates < 0] = -np.inf  # padding never wins
    order = np.argsort(-scores, axis=1, kind="stable")[:, :N]
    top_scores = np.take_along_axis(scores, order, axis=1)
    ids = np.where(np.isfinite(top_scores), np.take_along_axis(candidates, order, axis=1), -1)
    return ids, top_scores
""", """    candidates = np.asarray(candidates)
    vectors = np.asarray(item_vectors)[np.where(candidates >= 0, candidates, 0)]
    scores = (vectors @ np.asarray(user_vectors)[:, :, None])[:, :, 0]
    scores = np.where(candidates >= 0, scores, -np.inf)
    N = min(N, candidates.shape[1])
    best = np.argpartition(-scores, N - 1, axis=1)[:, :N]
    best_scores = np.take_along_axis(scores, best, axis=1)
    order = np.take_along_axis(best, np.argsort(-best_scores, axis=1, kind="stable"), axis=1)
    top_scores = np.take_along_axis(scores, order, axis=1)
    ids = np.take_along_axis(candidates, order, axis=1)
    return np.where(np.isinf(top_scores), -1, ids), top_scores
""")],
     "feedback": None},
]
