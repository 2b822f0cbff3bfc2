"""Buggy and alternative-but-correct submissions of 02-als (see README.md in this folder).

Each bug is a realistic mistake; "feedback" is a substring of the message of the check that catches it.
"""

ASSIGNMENT = "02-als"

BUGS = [
    {"name": "confidence alpha * r (implicit's convention) instead of 1 + alpha * r",
     "cell": "confidence",
     "replace": [("matrix.data = 1.0 + alpha * matrix.data", "matrix.data = alpha * matrix.data")],
     "feedback": "c_ui = 1 + alpha * r_ui"},
    {"name": "loss over the observed cells only",
     "cell": "als_loss",
     "replace": [("return float(np.sum(C * (P - S) ** 2) + regularization * penalty)",
                  "return float(np.sum((C * (P - S) ** 2)[P > 0]) + regularization * penalty)")],
     "feedback": "only the observed cells are counted"},
    {"name": "loss without the L2 penalty",
     "cell": "als_loss",
     "replace": [("return float(np.sum(C * (P - S) ** 2) + regularization * penalty)",
                  "return float(np.sum(C * (P - S) ** 2))")],
     "feedback": "penalty"},
    {"name": "regularisation missing from the normal equations",
     "cell": "solve_exact",
     "replace": [("A = (W @ outer).reshape(n_rows, k, k) + Y.T @ Y + regularization * np.eye(k)",
                  "A = (W @ outer).reshape(n_rows, k, k) + Y.T @ Y")],
     "feedback": "regularization lambda I is missing"},
    {"name": "Y^T Y term forgotten (only the observed items in A_u)",
     "cell": "solve_exact",
     "replace": [("A = (W @ outer).reshape(n_rows, k, k) + Y.T @ Y + regularization * np.eye(k)",
                  "A = (W @ outer).reshape(n_rows, k, k) + regularization * np.eye(k)")],
     "feedback": "Y^T Y term is missing"},
    {"name": "preference uses the ratings instead of 1",
     "cell": "solve_exact",
     "replace": [("b = C @ Y", "b = C.multiply(user_items) @ Y")],
     "feedback": "preference p_ui is 1"},
    {"name": "fit on the transposed (items x users) matrix",
     "cell": "fit_als",
     "replace": [("    n_users, n_items = user_items.shape\n",
                  "    user_items = user_items.T.tocsr()  # implicit < 0.5 took item_users\n"
                  "    n_users, n_items = user_items.shape\n")],
     "feedback": "transpose"},
    {"name": "training not seeded by random_state",
     "cell": "fit_als",
     "replace": [("rng = np.random.default_rng(random_state)", "rng = np.random.default_rng()")],
     "feedback": "same random_state"},
    {"name": "hyper-parameters hacked: alpha = 0 (all cells weigh the same)",
     "cell": "fit_als",
     "replace": [("def fit_als(user_items, factors=32, regularization=25.0, alpha=2.0,",
                  "def fit_als(user_items, factors=32, regularization=25.0, alpha=0.0,")],
     "feedback": "NDCG@10"},
    {"name": "recommend returns items the user already has",
     "cell": "recommend",
     "replace": [("    scores[rows, cols] = -np.inf\n", "")],
     "feedback": "already"},
    {"name": "recommend takes N items out of the top N + 1 (np.argpartition with kth = N + 1)",
     "cell": "recommend",
     "replace": [("top = np.argpartition(-scores, N - 1, axis=1)[:, :N]",
                  "top = np.argpartition(-scores, N + 1, axis=1)[:, :N]")],
     "feedback": "returned items that are not the 10 highest-scoring unseen items"},
    {"name": "similar_items returns the query item itself",
     "cell": "similar_items",
     "replace": [("    scores[itemid] = -np.inf\n", "")],
     "feedback": "query item itself"},
    {"name": "similar_items by raw inner product instead of cosine",
     "cell": "similar_items",
     "replace": [("unit = item_factors / np.maximum(norms, 1e-12)[:, None]", "unit = item_factors")],
     "feedback": "inner product"},
]

ALTERNATIVES = [
    {"name": "solve_exact with a Python loop over the rows",
     "cell": "solve_exact",
     "replace": [("""    Y = fixed_factors
    n_rows, k = user_items.shape[0], Y.shape[1]
    C = confidence(user_items, alpha)
    W = C.copy()
    W.data = W.data - 1.0                                         # c_ui - 1, zero on the missing cells
    outer = (Y[:, :, None] * Y[:, None, :]).reshape(len(Y), k * k)  # row i: y_i y_i^T, flattened
    A = (W @ outer).reshape(n_rows, k, k) + Y.T @ Y + regularization * np.eye(k)
    b = C @ Y                                                     # sum_i c_ui p_ui y_i, with p_ui = 1 there
    return np.linalg.solve(A, b[:, :, None])[:, :, 0]
""", """    Y = fixed_factors
    k = Y.shape[1]
    gram = Y.T @ Y + regularization * np.eye(k)
    solution = np.zeros((user_items.shape[0], k))
    for u in range(user_items.shape[0]):
        start, stop = user_items.indptr[u], user_items.indptr[u + 1]
        Y_u, r_u = Y[user_items.indices[start:stop]], user_items.data[start:stop]
        A = gram + Y_u.T @ (alpha * r_u[:, None] * Y_u)
        solution[u] = np.linalg.solve(A, Y_u.T @ (1.0 + alpha * r_u))
    return solution
""")],
     "feedback": None},
    {"name": "als_loss without dense matrices (the k x k trick)",
     "cell": "als_loss",
     "replace": [("""    C = 1.0 + alpha * user_items.toarray()          # c_ui on every cell (1 where r_ui = 0)
    P = (user_items.toarray() > 0).astype(float)    # p_ui
    S = user_factors @ item_factors.T                # s_ui = x_u . y_i
    penalty = np.sum(user_factors ** 2) + np.sum(item_factors ** 2)
    return float(np.sum(C * (P - S) ** 2) + regularization * penalty)
""", """    cells = sp.coo_matrix(user_items)
    s = np.sum(user_factors[cells.row] * item_factors[cells.col], axis=1)
    c = 1.0 + alpha * cells.data
    all_cells = np.sum((user_factors.T @ user_factors) * (item_factors.T @ item_factors))
    observed = np.sum(c * (1.0 - s) ** 2 - s ** 2)
    penalty = np.sum(user_factors ** 2) + np.sum(item_factors ** 2)
    return float(all_cells + observed + regularization * penalty)
""")],
     "feedback": None},
    {"name": "similar_items with a full sort and a boolean mask",
     "cell": "similar_items",
     "replace": [("""    scores[itemid] = -np.inf
    top = np.argpartition(-scores, N - 1)[:N]
    top = top[np.argsort(-scores[top])]
    return top, scores[top]
""", """    order = np.argsort(-scores, kind="stable")
    order = order[order != itemid][:N]
    return order, scores[order]
""")],
     "feedback": None},
]
