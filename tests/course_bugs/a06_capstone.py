"""Buggy and alternative submissions for 06-capstone (see README.md)."""

ASSIGNMENT = "06-capstone"

BUGS = [
    {"name": "position-wise comparison (order inside a row matters)",
     "cell": "retrieval_recall",
     "replace": [("found = (approx_ids[:, :, None] == exact_ids[:, None, :]).any(axis=1)",
                  "found = approx_ids == exact_ids")],
     "feedback": "order within a row does not matter"},
    {"name": "recall of the first query only",
     "cell": "retrieval_recall",
     "replace": [("return float(found.sum() / exact_ids.size)", "return float(found[0].mean())")],
     "feedback": "retrieval_recall"},
]

ALTERNATIVES = [
    {"name": "a loop over queries with set intersections",
     "cell": "retrieval_recall",
     "replace": [("    found = (approx_ids[:, :, None] == exact_ids[:, None, :]).any(axis=1)\n"
                  "    return float(found.sum() / exact_ids.size)",
                  "    hits = sum(len(set(a.tolist()) & set(e.tolist())) for a, e in zip(approx_ids, exact_ids))\n"
                  "    return hits / sum(len(e) for e in exact_ids)")],
     "feedback": None},
]
