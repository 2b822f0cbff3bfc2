"""Buggy and alternative submissions for 00-intro (see README.md)."""

ASSIGNMENT = "00-intro"

BUGS = [
    {"name": "integer division in density",
     "cell": "density",
     "replace": [("return n_ratings / (n_users * n_items)", "return n_ratings // (n_users * n_items)")],
     "feedback": "integer division"},
    {"name": "rating 4 not counted as positive (> instead of >=)",
     "cell": "implicit_matrix",
     "replace": [("ratings >= threshold", "ratings > threshold")],
     "feedback": "4 included"},
    {"name": "implicit matrix keeps the ratings instead of 1.0",
     "cell": "implicit_matrix",
     "replace": [("sp.csr_matrix(ratings >= threshold, dtype=np.float32)",
                  "sp.csr_matrix(sp.csr_matrix(ratings).multiply(ratings >= threshold), dtype=np.float32)")],
     "feedback": "must all be 1.0"},
    {"name": "threshold hard-coded to 4 (passes the visible test only)",
     "cell": "implicit_matrix",
     "replace": [("ratings >= threshold", "ratings >= 4")],
     "feedback": "to_implicit (inputs of seed"},
    {"name": "popular items the user has seen are not filtered",
     "cell": "popularity",
     "replace": [("    scores[np.asarray(seen_items, dtype=np.int64)] = -np.inf\n", "")],
     "feedback": "skip the seen items"},
    {"name": "least popular first (ascending sort)",
     "cell": "popularity",
     "replace": [('return np.argsort(-scores, kind="stable")[:N]', "return np.argsort(scores)[:N]")],
     "feedback": "most popular first"},
    {"name": "precision divided by the number of relevant items (that is recall)",
     "cell": "popularity",
     "replace": [(") / k", ") / len(np.asarray(relevant))")],
     "feedback": "divides the hits by k"},
    {"name": "precision counts the whole list, not the first k",
     "cell": "popularity",
     "replace": [("np.asarray(recommended)[:k]", "np.asarray(recommended)")],
     "feedback": "only the first k"},
]

ALTERNATIVES = [
    {"name": "density with float conversions",
     "cell": "density",
     "replace": [("return n_ratings / (n_users * n_items)",
                  "return float(n_ratings) / float(n_users) / float(n_items)")],
     "feedback": None},
    {"name": "implicit matrix built from COO triplets",
     "cell": "implicit_matrix",
     "replace": [("    positives = sp.csr_matrix(ratings >= threshold, dtype=np.float32)\n"
                  "    positives.eliminate_zeros()\n"
                  "    return positives",
                  "    triplets = sp.coo_matrix(ratings)\n"
                  "    keep = triplets.data >= threshold\n"
                  "    ones = np.ones(int(keep.sum()), dtype=np.float32)\n"
                  "    return sp.csr_matrix((ones, (triplets.row[keep], triplets.col[keep])), shape=triplets.shape)")],
     "feedback": None},
    {"name": "popular items with a Python loop; precision with np.isin",
     "cell": "popularity",
     "replace": [("    scores = np.asarray(popularity, dtype=np.float64).copy()\n"
                  "    scores[np.asarray(seen_items, dtype=np.int64)] = -np.inf\n"
                  '    return np.argsort(-scores, kind="stable")[:N]',
                  "    seen = set(np.asarray(seen_items).tolist())\n"
                  "    ranked = np.argsort(-np.asarray(popularity), kind='stable')\n"
                  "    return np.array([i for i in ranked if i not in seen][:N])"),
                 ("return len(set(np.asarray(recommended)[:k].tolist()) & set(np.asarray(relevant).tolist())) / k",
                  "return np.isin(np.asarray(recommended)[:k], relevant).sum() / k")],
     "feedback": None},
    {"name": "descending order by reversing an ascending argsort (ties broken the other way)",
     "cell": "popularity",
     "replace": [('return np.argsort(-scores, kind="stable")[:N]', "return np.argsort(scores)[::-1][:N]")],
     "feedback": None},
]
