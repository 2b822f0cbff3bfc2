"""The baseline every model must beat: recommend the items with the most training positives."""
from __future__ import annotations

import numpy as np

from .base import FactorModel, check_user_items

__all__ = ["Popularity"]


class Popularity(FactorModel):
    """``score(u, i) = n_i``, the number of users with item ``i`` in train (same for every user).

    Implemented as a factor model with zero-width factors and ``item_bias = n_i``, so ``recommend``
    (with seen-item filtering) is the shared one. ``similar_items`` is meaningless for it.
    """

    def __init__(self):
        pass

    def fit(self, user_items):
        matrix = check_user_items(user_items)
        self.user_factors = np.zeros((matrix.shape[0], 0), dtype=np.float32)
        self.item_factors = np.zeros((matrix.shape[1], 0), dtype=np.float32)
        self.item_bias = np.asarray((matrix > 0).sum(0), dtype=np.float32).ravel()
        self.loss_history_ = []
        return self
