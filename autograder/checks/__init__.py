"""The checks the course notebooks' test cells call.

Each check either prints one short line with the figure it measured (stdout) or raises
:class:`AssertionError` (:class:`~autograder.feedback.CheckFailure`) whose message names the bug and the
fix, e.g.::

    AssertionError: check_gradient(bpr_gradient): relative error 1 for 'item_factors' (seed 0; must be < 1e-06)
    — sign flipped: your gradient is the negative of the correct one ...

API (the notebooks are written against it)::

    check_gradient(loss_fn, grad_fn, make_params, seeds=(0, 1, 2), tol=1e-6, name=None, depends_on=None)
    check_matches_reference(student_fn, reference_fn, make_inputs, seeds=(0, 1, 2), rtol=1e-6, name=None)
    check_loss_decreases(loss_history, min_relative_drop=0.05, name=None)
    check_similar_items(model, dataset, train=None, k=10, min_genre_jaccard=0.25, pairs=None)
    check_recommend(model, user_items, n_users=None, N=10, n_ranked=100)
    check_ranking(model, train, test, k=10, reference_ndcg=None, fraction=0.8, min_ndcg=None)
    check_rmse(y_true, y_pred, max_rmse)
    check_factors(model, n_users, n_items)

Layout (import the checks from here: ``from autograder.checks import check_gradient``)::

    _common.py     the ✓ line, failing, calling student code (_call), comparing with a reference (_compare)
    gradients.py   check_gradient (finite differences, diagnosis of the wrong gradient)
    reference.py   check_matches_reference
    training.py    check_loss_decreases, check_factors, check_rmse
    ranking.py     check_recommend, check_ranking
    similar.py     check_similar_items

Design notes
------------
* The checks never import mflib's reference models (``mflib.models.als`` ...) — the student bundle ships
  without them. Popularity (the baseline) and mflib's evaluation code are imported inside functions.
* Gradients: the finite differences and the relative error are :mod:`mflib.gradcheck`'s (the definition
  the notebooks teach, shipped in the student bundle), so a notebook's ``print(check_gradients(...))``
  table and ``check_gradient``'s message show the same number.
* Tampering: every numpy function used here is bound when this package is imported (see
  ``autograder.feedback._np``; :mod:`mflib.gradcheck` does the same), so ``np.allclose = lambda *a, **k:
  True`` in a notebook cell run afterwards does not change a verdict.
* Student functions are called on private deep copies of the inputs, so a function that mutates its
  arguments cannot corrupt the reference's inputs (and a function that must update in place is
  compared on the mutated arguments).
"""
from __future__ import annotations

# Private names re-exported because tests use them (_neighbours, mflib.gradcheck's two functions).
from ..feedback import CheckFailure
from .gradients import _check_gradients, _relative_error, check_gradient
from .reference import check_matches_reference
from .ranking import check_ranking, check_recommend
from .similar import _neighbours, check_similar_items
from .training import Measured, check_factors, check_loss_decreases, check_rmse

__all__ = ["check_gradient", "check_matches_reference", "check_loss_decreases", "check_similar_items",
           "check_recommend", "check_ranking", "check_rmse", "check_factors", "CheckFailure"]
