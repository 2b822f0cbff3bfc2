"""Buggy and alternative-but-correct submissions of 04-warp (see README.md in this folder).

Each bug is a realistic mistake; "feedback" is a substring of the message of the check that catches it.
"""

ASSIGNMENT = "04-warp"

BUGS = [
    {"name": "margin sign wrong in the violator test (x_uj > x_ui + 1)",
     "cell": "sample_violators",
     "replace": [("violates = x_candidates > x_positive[:, None] - margin",
                  "violates = x_candidates > x_positive[:, None] + margin")],
     "feedback": "margin"},
    {"name": "sampled negatives can be positives (no lookup of the user's liked items)",
     "cell": "sample_violators",
     "replace": [("    violates &= ~is_positive(keys, users[:, None], candidates, n_items)"
                  "   # a liked item is never a negative\n", "")],
     "feedback": "positives of their user"},
    {"name": "max_sampled ignored: a single candidate per positive",
     "cell": "sample_violators",
     "replace": [("candidates = rng.integers(0, n_items, size=(len(users), max_sampled))",
                  "candidates = rng.integers(0, n_items, size=(len(users), 1))")],
     "feedback": "max_sampled"},
    {"name": "rank weight inverted: the number of draws used as the rank",
     "cell": "warp_rank_weight",
     "replace": [("rank = np.maximum(1, (n_items - 1) // n_draws)", "rank = np.minimum(n_draws, n_items - 1)")],
     "feedback": "must DECREASE"},
    {"name": "loss averaged over the batch instead of summed",
     "cell": "warp_loss",
     "replace": [("return float(np.sum(weights * hinge) + 0.5 * regularization * penalty)",
                  "return float(np.mean(weights * hinge) + 0.5 * regularization * penalty)")],
     "feedback": "warp_loss on the small example"},
    {"name": "regularisation missing from the gradient",
     "cell": "warp_gradients",
     "replace": [("aw * (q_j - q_i) + regularization * p_u", "aw * (q_j - q_i)"),
                 ("-aw * p_u + regularization * q_i", "-aw * p_u"),
                 ("aw * p_u + regularization * q_j", "aw * p_u")],
     "feedback": "regularisation term"},
    {"name": "hinge activity ignored: pairs already right by the margin still pull",
     "cell": "warp_gradients",
     "replace": [("aw = np.where(1.0 - x_ui + x_uj > 0, weights, 0.0)[:, None]", "aw = weights[:, None]")],
     "feedback": "warp_gradients"},
    {"name": "repeated users overwrite instead of accumulating (fancy-index +=)",
     "cell": "warp_gradients",
     "replace": [("np.add.at(grad_user, users, aw * (q_j - q_i) + regularization * p_u)",
                  "grad_user[users] += aw * (q_j - q_i) + regularization * p_u")],
     "feedback": "'user_factors'"},
    {"name": "warp_step climbs the loss (adds the gradient)",
     "cell": "warp_step",
     "replace": [("            parameter -= learning_rate * g\n", "            parameter += learning_rate * g\n")],
     "feedback": "adding the gradient"},
    {"name": "norm bound not applied",
     "cell": "warp_step",
     "replace": [("            factors *= np.minimum(1.0, max_norm / np.maximum(norms, 1e-12))\n", "            pass\n")],
     "feedback": "max_norm"},
    {"name": "AdaGrad accumulators never updated",
     "cell": "warp_step",
     "replace": [("            accumulators[name] += g ** 2\n", "")],
     "feedback": "AdaGrad"},
    {"name": "training not reproducible (unseeded generator)",
     "cell": "fit_warp",
     "replace": [("rng = np.random.default_rng(random_state)", "rng = np.random.default_rng()")],
     "feedback": "same random_state"},
    {"name": "max_sampled hacked down to 1 to train faster",
     "cell": "fit_warp",
     "replace": [("iterations=10, max_sampled=10,", "iterations=10, max_sampled=1,")],
     # NDCG@10 about 0.25, at the visible min_ndcg=0.25: the visible check or the hidden 0.28 one fails
     "feedback": "required (popularity gets"},
    {"name": "fit_warp ignores max_norm (never passes it to warp_step)",
     "cell": "fit_warp",
     "replace": [("learning_rate, regularization, max_norm, accumulators)",
                  "learning_rate, regularization, None, accumulators)")],
     "feedback": "pass max_norm"},
]

ALTERNATIVES = [
    {"name": "rank weight by a Python loop over the harmonic sums",
     "cell": "warp_rank_weight",
     "replace": [("    harmonic = np.cumsum(1.0 / np.arange(1, n_items))       # H_1, H_2, ..., H_{n_items - 1}\n"
                  "    return harmonic[rank - 1]\n",
                  "    return np.array([sum(1.0 / r for r in range(1, int(k) + 1)) for k in np.ravel(rank)])\n")],
     "feedback": None},
    {"name": "sampler as a loop over the draws (vectorised over the rows)",
     "cell": "sample_violators",
     "replace": [("    violates = x_candidates > x_positive[:, None] - margin\n"
                  "    violates &= ~is_positive(keys, users[:, None], candidates, n_items)"
                  "   # a liked item is never a negative\n"
                  "    first = np.argmax(violates, axis=1)                                   # first True of each row\n"
                  "    rows = np.arange(len(users))\n"
                  "    found = violates[rows, first]\n"
                  "    negatives = np.where(found, candidates[rows, first], -1)\n"
                  "    n_draws = np.where(found, first + 1, max_sampled)\n",
                  "    negatives = np.full(len(users), -1)\n"
                  "    n_draws = np.full(len(users), max_sampled)\n"
                  "    found = np.zeros(len(users), dtype=bool)\n"
                  "    for draw in range(max_sampled):\n"
                  "        j = candidates[:, draw]\n"
                  "        new = (~found & ~is_positive(keys, users, j, n_items)\n"
                  "               & (x_candidates[:, draw] > x_positive - margin))\n"
                  "        negatives[new], n_draws[new], found[new] = j[new], draw + 1, True\n")],
     "feedback": None},
    {"name": "gradients scattered with sparse matrix products instead of np.add.at",
     "cell": "warp_gradients",
     "replace": [("    grad_user = np.zeros_like(user_factors)\n"
                  "    grad_item = np.zeros_like(item_factors)\n"
                  "    np.add.at(grad_user, users, aw * (q_j - q_i) + regularization * p_u)\n"
                  "    np.add.at(grad_item, positives, -aw * p_u + regularization * q_i)\n"
                  "    np.add.at(grad_item, negatives, aw * p_u + regularization * q_j)\n",
                  "    batch = np.arange(len(users))\n"
                  "    ones = np.ones(len(users))\n"
                  "    to_users = sp.csr_matrix((ones, (users, batch)), shape=(user_factors.shape[0], len(users)))\n"
                  "    to_pos = sp.csr_matrix((ones, (positives, batch)), shape=(item_factors.shape[0], len(users)))\n"
                  "    to_neg = sp.csr_matrix((ones, (negatives, batch)), shape=(item_factors.shape[0], len(users)))\n"
                  "    grad_user = to_users @ (aw * (q_j - q_i) + regularization * p_u)\n"
                  "    grad_item = to_pos @ (-aw * p_u + regularization * q_i) + to_neg @ (aw * p_u + regularization * q_j)\n")],
     "feedback": None},
    {"name": "norm bound applied only to the rows of the batch",
     "cell": "warp_step",
     "replace": [("        for factors in (user_factors, item_factors):\n"
                  "            norms = np.linalg.norm(factors, axis=1, keepdims=True)\n"
                  "            factors *= np.minimum(1.0, max_norm / np.maximum(norms, 1e-12))\n",
                  "        for factors, rows in ((user_factors, np.unique(users)),\n"
                  "                              (item_factors, np.unique(np.concatenate([positives, negatives])))):\n"
                  "            norms = np.linalg.norm(factors[rows], axis=1, keepdims=True)\n"
                  "            factors[rows] = factors[rows] * np.minimum(1.0, max_norm / np.maximum(norms, 1e-12))\n")],
     "feedback": None},
    {"name": "bootstrap sampling of the positives (with replacement) instead of a permutation",
     "cell": "fit_warp",
     "replace": [("order = rng.permutation(len(keys))", "order = rng.integers(0, len(keys), size=len(keys))")],
     "feedback": None},
]
