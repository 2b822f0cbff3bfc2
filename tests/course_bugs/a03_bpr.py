"""Buggy and alternative-but-correct submissions of 03-bpr (see README.md in this folder).

Each bug is a realistic mistake; "feedback" is a substring of the message of the check that catches it.
"""

ASSIGNMENT = "03-bpr"

BUGS = [
    {"name": "sign of the data term flipped in the user gradient",
     "cell": "bpr_gradients",
     "replace": [("np.add.at(grad_user, users, -s * (q_i - q_j) + regularization * p_u)",
                  "np.add.at(grad_user, users, s * (q_i - q_j) + regularization * p_u)")],
     "feedback": "'user_factors'"},
    {"name": "regularisation missing from the gradients",
     "cell": "bpr_gradients",
     "replace": [("-s * (q_i - q_j) + regularization * p_u", "-s * (q_i - q_j)"),
                 ("-s * p_u + regularization * q_i", "-s * p_u"),
                 ("s * p_u + regularization * q_j", "s * p_u")],
     "feedback": "regularization term λ·θ is missing"},
    {"name": "item-bias gradient missing (left at zero)",
     "cell": "bpr_gradients",
     "replace": [("        np.add.at(grad_bias, positives, -s[:, 0] + regularization * item_bias[positives])\n"
                  "        np.add.at(grad_bias, negatives, s[:, 0] + regularization * item_bias[negatives])\n",
                  "")],
     "feedback": "'item_bias'"},
    {"name": "repeated users overwrite instead of accumulating (fancy-index +=)",
     "cell": "bpr_gradients",
     "replace": [("np.add.at(grad_user, users, -s * (q_i - q_j) + regularization * p_u)",
                  "grad_user[users] += -s * (q_i - q_j) + regularization * p_u")],
     "feedback": "'user_factors'"},
    {"name": "negatives may be positives (no rejection step)",
     "cell": "sample_negatives",
     "replace": [("redraw = np.flatnonzero(is_positive(users, negatives))",
                  "redraw = np.zeros(0, dtype=np.int64)")],
     "feedback": "sampled negatives are positives of their user"},
    {"name": "off-by-one: the last item is never drawn as a negative",
     "cell": "sample_negatives",
     "replace": [("negatives = rng.integers(0, n_items, size=len(users))",
                  "negatives = rng.integers(0, n_items - 1, size=len(users))")],
     "feedback": "not uniform"},
    {"name": "loss without the regularisation penalty",
     "cell": "bpr_loss",
     "replace": [("return float(data + 0.5 * regularization * penalty)", "return float(data)")],
     "feedback": "bpr_loss"},
    {"name": "mean instead of sum over the batch",
     "cell": "bpr_loss",
     "replace": [("data = np.sum(np.logaddexp(0.0, -x))", "data = np.mean(np.logaddexp(0.0, -x))")],
     "feedback": "bpr_loss at zero"},
    {"name": "sgd_step climbs the loss (adds the gradient)",
     "cell": "sgd_step",
     "replace": [('user_factors -= learning_rate * gradients["user_factors"]',
                  'user_factors += learning_rate * gradients["user_factors"]'),
                 ('item_factors -= learning_rate * gradients["item_factors"]',
                  'item_factors += learning_rate * gradients["item_factors"]')],
     "feedback": "adding the gradient"},
    {"name": "sgd_step rebinds the parameters instead of updating them in place",
     "cell": "sgd_step",
     "replace": [('user_factors -= learning_rate * gradients["user_factors"]',
                  'user_factors = user_factors - learning_rate * gradients["user_factors"]')],
     "feedback": "in place"},
    {"name": "sgd_step never updates the item biases",
     "cell": "sgd_step",
     "replace": [('    if item_bias is not None:\n        item_bias -= learning_rate * gradients["item_bias"]\n', "")],
     "feedback": "left 'item_bias' unchanged"},
    {"name": "fit_bpr trains in float64 although the exercise says float32",
     "cell": "fit_bpr",
     "replace": [("user_factors = rng.normal(0.0, init_std, (n_users, factors)).astype(np.float32)",
                  "user_factors = rng.normal(0.0, init_std, (n_users, factors))"),
                 ("item_factors = rng.normal(0.0, init_std, (n_items, factors)).astype(np.float32)",
                  "item_factors = rng.normal(0.0, init_std, (n_items, factors))"),
                 ("item_bias = np.zeros(n_items, dtype=np.float32)", "item_bias = np.zeros(n_items)")],
     "feedback": "expected float32"},
    {"name": "loss_history holds the summed loss of each epoch, not the mean per triple",
     "cell": "fit_bpr",
     "replace": [("loss_history.append(total / n_pairs)", "loss_history.append(total)")],
     "feedback": "MEAN loss per triple"},
    {"name": "learning rate hacked to a huge value (training diverges)",
     "cell": "fit_bpr",
     "replace": [("def fit_bpr(user_items, factors=32, learning_rate=0.08,",
                  "def fit_bpr(user_items, factors=32, learning_rate=20.0,")],
     "feedback": "BPR training loss"},
    {"name": "training not seeded by random_state",
     "cell": "fit_bpr",
     "replace": [("rng = np.random.default_rng(random_state)", "rng = np.random.default_rng()")],
     "feedback": "same random_state"},
]

ALTERNATIVES = [
    {"name": "gradients scattered with sparse matrix products instead of np.add.at",
     "cell": "bpr_gradients",
     "replace": [("""    grad_user = np.zeros_like(user_factors)
    grad_item = np.zeros_like(item_factors)
    np.add.at(grad_user, users, -s * (q_i - q_j) + regularization * p_u)
    np.add.at(grad_item, positives, -s * p_u + regularization * q_i)
    np.add.at(grad_item, negatives, s * p_u + regularization * q_j)
""", """    n_users, n_items, batch = len(user_factors), len(item_factors), len(users)
    columns = np.arange(batch)
    to_users = sp.csr_matrix((np.ones(batch), (users, columns)), shape=(n_users, batch))
    to_pos = sp.csr_matrix((np.ones(batch), (positives, columns)), shape=(n_items, batch))
    to_neg = sp.csr_matrix((np.ones(batch), (negatives, columns)), shape=(n_items, batch))
    grad_user = to_users @ (-s * (q_i - q_j) + regularization * p_u)
    grad_item = to_pos @ (-s * p_u + regularization * q_i) + to_neg @ (s * p_u + regularization * q_j)
""")],
     "feedback": None},
    {"name": "x_uij with einsum instead of a product and a sum",
     "cell": "bpr_difference",
     "replace": [("x = np.sum(user_factors[users] * difference, axis=1)",
                  "x = np.einsum('bk,bk->b', user_factors[users], difference)")],
     "feedback": None},
    {"name": "membership lookup through the sparse matrix itself, one loop per redraw round",
     "cell": "sample_negatives",
     "replace": [("""    def is_positive(u, j):
        query = u * n_items + j
        where = np.minimum(np.searchsorted(keys, query), len(keys) - 1)
        return keys[where] == query
""", """    def is_positive(u, j):
        return np.asarray(matrix[u, j]).ravel() != 0
""")],
     "feedback": None},
    {"name": "sampler that follows the hint: searchsorted on the keys of the CSR as given (not re-sorted)",
     "cell": "sample_negatives",
     "replace": [("    matrix = sp.csr_matrix(user_items)\n    if not matrix.has_sorted_indices:\n"
                  "        matrix = matrix.sorted_indices()\n", "    matrix = sp.csr_matrix(user_items)\n")],
     "feedback": None},
    {"name": "each epoch visits every positive once (a permutation) instead of bootstrap sampling",
     "cell": "fit_bpr",
     "replace": [("picks = rng.integers(0, n_pairs, size=n_pairs)", "picks = rng.permutation(n_pairs)")],
     "feedback": None},
]
