"""Second-order factorization machine (Rendle 2010) for explicit ratings, trained by row-sparse mini-batch Adam.

The model
---------
Every rating is described by a sparse feature vector ``x`` (n features: user one-hot, item one-hot,
demographics, genres, ...; see :mod:`mflib.features`). A factorization machine predicts::

    y_hat(x) = w0 + sum_j w_j x_j + sum_{j < l} <v_j, v_l> x_j x_l

``w0`` is the global bias, ``w`` (n,) the linear weights and ``V`` (n x k) one k-dimensional factor
vector ``v_j`` per feature: the weight of the pair ``(j, l)`` is not a free parameter but the inner
product ``<v_j, v_l>``, so pairs never seen together in training still get a weight.
With only a user and an item one-hot, ``x_u = x_i = 1``, this *is* biased matrix factorization:
``w0 + w_u + w_i + <v_u, v_i>``.

The O(kn) pairwise term
-----------------------
The double sum costs O(k n^2). Rendle's rewrite (a sum over all pairs is half of the full square minus
the diagonal)::

    sum_{j<l} <v_j, v_l> x_j x_l = 1/2 sum_f [ (sum_j v_jf x_j)^2 - sum_j v_jf^2 x_j^2 ]

costs O(k n), O(k nnz(x)) for sparse x. On a CSR batch ``X`` (rows = examples) it is two sparse
products: ``1/2 * ((X @ V)**2 - (X∘X) @ (V∘V)).sum(axis=1)``; see :func:`fm_pairwise`.

The loss (mean squared error plus an L2 penalty on the whole parameter arrays)
------------------------------------------------------------------------------
On a batch B of examples (the whole training set, or one mini-batch)::

    L(B) = 1/|B| sum_{i in B} (y_hat(x_i) - y_i)^2 + sum_j lambda_w,j w_j^2 + sum_j lambda_V,j ||v_j||^2

``w0`` is not penalised. ``lambda_w`` and ``lambda_V`` are scalars or one value per feature (per-block
regularisation: a feature's block decides its lambda). The penalty is the Gaussian prior of MAP
estimation (the one Bayesian FM puts on the same parameters); the mean keeps one learning rate good for
any batch size. :func:`fm_loss` and :func:`fm_gradients` are this loss and its gradient, as the course
notebook 05 derives them.

The gradients (of L exactly as written)
---------------------------------------
With the residual ``e_i = y_hat(x_i) - y_i`` and ``g_i = 2 e_i / |B|`` (the derivative of the mean
squared error w.r.t. ``y_hat(x_i)``), since::

    d y_hat / d w0   = 1
    d y_hat / d w_j  = x_j
    d y_hat / d v_jf = x_j sum_l v_lf x_l - v_jf x_j^2

(the second term removes the self-pair ``l = j`` that the full square counted), the gradients are::

    dL/dw0 = sum_i g_i
    dL/dw  = X^T g + 2 lambda_w * w
    dL/dV  = X^T (g * (X V)) - ((X∘X)^T g) * V + 2 lambda_V * V

with every sum over examples done by a sparse product with ``X^T`` (no Python loop over rows): the
contributions of a feature that occurs in several rows of the batch accumulate exactly.

Training: row-sparse (lazy) Adam
--------------------------------
:meth:`FactorizationMachine.fit` cuts the shuffled training rows into mini-batches of ``batch_size`` rows
and, for each, computes the rows of the gradient above that belong to the features the batch *touches*
(appear in one of its rows), and updates only those rows of ``w`` and ``V`` (:mod:`mflib.models._fm_train`):
a step costs O(nnz(batch) x k), not O(n_features x k), which is what lets the model train on tens of
millions of ratings and hundreds of thousands of users. The update is lazy Adam (Kingma & Ba 2015, as
``torch.optim.SparseAdam``; the formula is in :mod:`mflib.models._optim`): the touched rows take an Adam
step with the global step count; the other rows, and their Adam moments, do not move. Consequently the L2
term acts on the touched rows only, once per step that touches them (the usual convention for sparse
regularisation): a rarely seen feature is shrunk less often than a frequent one. Adam's per-coordinate step
size copes with features as rare as one user and as frequent as "gender=M", which defeats a single SGD
learning rate. The learning rate is multiplied by ``learning_rate_decay`` after each epoch; optional early
stopping on a validation fold carved from the training rows.

:func:`adam_update` (dense Adam on a whole array, what the notebook's students write) is re-exported here
from :mod:`mflib.models._optim`.

Usage::

    from mflib.features import build_features, cold_start_rows
    X_train, space = build_features(ds, train_df)
    fm = FactorizationMachine(random_state=0).fit(X_train, train_df["rating"], feature_space=space)
    fm.predict(build_features(ds, test_df)[0])        # clipped to (1, 5)
    scores = fm.predict(cold_start_rows(space, ds, age=25, gender="M", occupation="student"))
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..features import FIELDS
from ._fm_train import RowSparseTrainer
from ._optim import adam_update
from .base import EstimatorMixin, progress

__all__ = ["FactorizationMachine", "fm_pairwise", "fm_predict", "fm_loss", "fm_gradients",
           "fm_loss_and_gradients", "adam_update", "DEFAULT_BLOCK_REGULARIZATION"]

#: lambda_V per feature block (see :mod:`mflib.features`), tuned with the other defaults on validation folds
#: carved from the ML-100K training splits (``benchmarks/fm_validation.py``). User factors want less
#: shrinkage than item factors; the small demographic / genre / year blocks, whose few factor rows are
#: shared by thousands of ratings (and touched by every mini-batch), take much more.
DEFAULT_BLOCK_REGULARIZATION = {"user": 1e-4, "item": 3.75e-4, "age": 1e-2, "gender": 1e-2,
                                "occupation": 1e-2, "genres": 1e-2, "year": 1e-2}


# ---- the model as pure functions of (parameters, batch) -------------------------------------------
def _csr(X) -> sp.csr_matrix:
    if not sp.issparse(X):
        raise TypeError(f"X must be a scipy.sparse matrix (n_examples x n_features), got {type(X).__name__}; "
                        "build it with mflib.features.build_features")
    return X.tocsr() if X.format != "csr" else X


def _per_feature(regularization, V):
    """A scalar penalty, or one value per feature (column of X) as a column vector for ``V``."""
    regularization = np.asarray(regularization, dtype=V.dtype)
    return regularization if regularization.ndim == 0 else regularization[:, None]


def fm_pairwise(V, X) -> np.ndarray:
    """The pairwise term of every row of ``X``, by the O(kn) formula.

    ``sum_{j<l} <v_j, v_l> x_j x_l = 1/2 sum_f [ (sum_j v_jf x_j)^2 - sum_j v_jf^2 x_j^2 ]``,
    i.e. ``0.5 * ((X @ V)**2 - (X∘X) @ (V∘V)).sum(1)``. ``V`` is (n_features, k), ``X`` sparse
    (n_examples, n_features); returns (n_examples,).
    """
    X = _csr(X)
    XV = X @ V                                   # (sum_j v_jf x_j) for every row and f
    X2V2 = X.power(2) @ (V * V)                   # sum_j v_jf^2 x_j^2
    return 0.5 * np.asarray(XV * XV - X2V2).sum(axis=1)


def fm_predict(w0, w, V, X) -> np.ndarray:
    """``y_hat(x) = w0 + sum_j w_j x_j + sum_{j<l} <v_j, v_l> x_j x_l`` for every row of ``X`` (unclipped)."""
    X = _csr(X)
    return w0 + X @ w + fm_pairwise(V, X)


def fm_loss(w0, w, V, X, y, reg_w=0.0, reg_V=0.0) -> float:
    """``1/|B| sum_i (y_hat(x_i) - y_i)^2 + sum_j reg_w_j w_j^2 + sum_j reg_V_j ||v_j||^2``.

    ``reg_w`` / ``reg_V``: a scalar or one value per feature. ``w0`` is not penalised.
    """
    residual = fm_predict(w0, w, V, X) - np.asarray(y, dtype=np.float64)
    penalty = np.sum(np.asarray(reg_w) * w * w) + np.sum(_per_feature(reg_V, V) * V * V)
    return float(np.mean(residual ** 2) + penalty)


def fm_loss_and_gradients(w0, w, V, X, y, reg_w=0.0, reg_V=0.0) -> tuple[float, dict[str, np.ndarray]]:
    """:func:`fm_loss` and :func:`fm_gradients` from one forward pass (what :meth:`FactorizationMachine.fit`
    calls on every mini-batch)."""
    X = _csr(X)
    y = np.asarray(y, dtype=V.dtype)
    X2 = X.power(2)                             # x_j^2, element-wise
    XV = X @ V                                   # s_f = sum_l v_lf x_l, per row
    pairwise = 0.5 * np.asarray(XV * XV - X2 @ (V * V)).sum(axis=1)
    residual = w0 + X @ w + pairwise - y         # e_i = y_hat(x_i) - y_i
    g = (2.0 / len(y)) * residual                # dL/dy_hat_i
    reg_w = np.asarray(reg_w, dtype=V.dtype)
    reg_V = _per_feature(reg_V, V)
    loss = float(np.mean(residual ** 2) + np.sum(reg_w * w * w) + np.sum(reg_V * V * V))
    gradients = {
        "w0": np.asarray(g.sum(), dtype=V.dtype),                     # sum_i g_i * 1
        "w": X.T @ g + 2 * reg_w * w,                                  # sum_i g_i x_ij + 2 lambda w_j
        # sum_i g_i (x_ij s_if - v_jf x_ij^2) + 2 lambda v_jf
        "V": X.T @ (g[:, None] * XV) - (X2.T @ g)[:, None] * V + 2 * reg_V * V,
    }
    return loss, gradients


def fm_gradients(w0, w, V, X, y, reg_w=0.0, reg_V=0.0) -> dict[str, np.ndarray]:
    """The gradient of :func:`fm_loss`: ``{"w0": (), "w": (n,), "V": (n, k)}``.

    With ``g_i = 2 (y_hat(x_i) - y_i) / |B|`` and ``d y_hat / d v_jf = x_j sum_l v_lf x_l - v_jf x_j^2``::

        dL/dw0 = sum_i g_i
        dL/dw  = X^T g + 2 reg_w * w
        dL/dV  = X^T (g * (X V)) - ((X∘X)^T g) * V + 2 reg_V * V
    """
    return fm_loss_and_gradients(w0, w, V, X, y, reg_w, reg_V)[1]


# ---- the estimator ------------------------------------------------------------------------------------
class FactorizationMachine(EstimatorMixin):
    """Second-order factorization machine for ratings: ``y_hat(x) = w0 + w.x + sum_{j<l} <v_j, v_l> x_j x_l``.

    Parameters
    ----------
    factors : int
        ``k``, the length of each feature's factor vector ``v_j``.
    learning_rate : float
        Adam's step size at the first epoch (``optimizer="sgd"``: the plain SGD step).
    regularization : float
        ``lambda_V`` for the factors of features whose block has no entry in ``block_regularization``
        (all features when ``fit`` gets no ``feature_space``).
    linear_regularization : float
        ``lambda_w`` for the linear weights ``w`` (``w0`` is not penalised).
    block_regularization : dict or None
        ``lambda_V`` per feature block name, used when ``fit`` receives ``feature_space``. None means
        :data:`DEFAULT_BLOCK_REGULARIZATION` (tuned on ML-100K); ``{}`` uses ``regularization`` everywhere.
    iterations : int
        Epochs (passes over the shuffled training rows).
    batch_size : int
        Rows per step. A step costs O(batch_size x nnz per row x k); larger batches mean fewer, cheaper
        updates per rating (a feature that occurs several times in a batch is updated once), useful on
        tens of millions of ratings.
    learning_rate_decay : float
        The learning rate is multiplied by this after every epoch (1.0: constant).
    optimizer : "adam" or "sgd"
        Lazy (row-sparse) Adam, or plain SGD on the same rows (module docstring).
    init_std : float
        ``V`` starts as ``N(0, init_std^2)``; ``w = 0``; ``w0`` = the mean training target.
    rating_scale : (float, float) or None
        ``predict`` clips to this range (None: no clipping).
    early_stopping : bool
        Hold out ``validation_fraction`` of the training rows, record the validation RMSE per epoch in
        ``validation_history_``, stop after ``n_iter_no_change`` epochs without improvement and keep
        the best epoch's parameters.
    validation_fraction, n_iter_no_change : see ``early_stopping``.
    random_state : int, numpy Generator or None
        Seeds the initialisation, the shuffles and the validation fold.
    num_threads : int
        Threads for the forward blocks and the updates of one step, plus one that prepares the next batch
        (0: all cores). The fitted model is the same for any value (:mod:`mflib.models._fm_train`).
    show_progress : bool
        A tqdm bar over epochs.

    Attributes (after ``fit``)
    --------------------------
    global_bias : float
        ``w0`` (also ``w0_``).
    weights : float32 array (n_features,)
        The linear weights ``w`` (also ``w_``).
    feature_factors : float32 array (n_features, k)
        ``V``, one factor row per feature (also ``V_``). Named so because ``factors`` is the
        hyper-parameter ``k``, as in the other mflib models.
    loss_history_ : list of float
        Per epoch: the mean squared error of the epoch's mini-batches (each measured before its step) plus
        the L2 penalty of the whole parameter arrays at the end of the epoch, i.e. :func:`fm_loss` with the
        data term averaged along the epoch.
    validation_history_ : list of float
        Validation RMSE per epoch (only with ``early_stopping``).
    best_iteration_ : int
        Epochs kept (the best epoch with early stopping, else ``iterations``).
    regularization_w_, regularization_V_ : float32 arrays (n_features,)
        The per-feature penalties actually used.
    n_features_in_ : int

    Quality and speed: ``python -m benchmarks.bench`` measures the ML-100K test RMSE (seeds 0, 1, 2, all
    side features); ``python -m benchmarks.seed_scale`` the epoch time on ml-latest-sized data.
    """

    _fitted_attributes = ("global_bias", "weights", "feature_factors")

    def __init__(self, factors: int = 10, learning_rate: float = 0.08, regularization: float = 2e-4,
                 linear_regularization: float = 1e-4, block_regularization: dict | None = None,
                 iterations: int = 20, batch_size: int = 4096, learning_rate_decay: float = 0.85,
                 optimizer: str = "adam", init_std: float = 0.1,
                 rating_scale: tuple[float, float] | None = (1.0, 5.0), early_stopping: bool = False,
                 validation_fraction: float = 0.1, n_iter_no_change: int = 3, random_state=None,
                 num_threads: int = 1, show_progress: bool = False):
        self.factors = factors
        self.learning_rate = learning_rate
        self.regularization = regularization
        self.linear_regularization = linear_regularization
        self.block_regularization = block_regularization
        self.iterations = iterations
        self.batch_size = batch_size
        self.learning_rate_decay = learning_rate_decay
        self.optimizer = optimizer
        self.init_std = init_std
        self.rating_scale = rating_scale
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.random_state = random_state
        self.num_threads = num_threads
        self.show_progress = show_progress

    global_bias: float | None = None
    weights: np.ndarray | None = None
    feature_factors: np.ndarray | None = None

    # the formula's names
    @property
    def w0_(self):
        return self.global_bias

    @property
    def w_(self):
        return self.weights

    @property
    def V_(self):
        return self.feature_factors

    # ---- training ------------------------------------------------------------------------------------
    def _penalties(self, n_features: int, feature_space) -> tuple[np.ndarray, np.ndarray]:
        reg_w = np.full(n_features, self.linear_regularization, dtype=np.float32)
        reg_V = np.full(n_features, self.regularization, dtype=np.float32)
        if feature_space is not None:
            if feature_space.n_features != n_features:
                raise ValueError(f"feature_space describes {feature_space.n_features} features but X has "
                                 f"{n_features} columns: pass the space build_features returned with X")
            blocks = (DEFAULT_BLOCK_REGULARIZATION if self.block_regularization is None
                      else self.block_regularization)
            unknown = set(blocks) - set(FIELDS)
            if unknown:
                raise ValueError(f"block_regularization names unknown block(s) {sorted(unknown)}; "
                                 f"blocks are {list(FIELDS)}")
            for block in feature_space.blocks:
                if block.name in blocks:
                    reg_V[block.slice()] = blocks[block.name]
        return reg_w, reg_V

    def _check_fit_inputs(self, X, y) -> tuple[sp.csr_matrix, np.ndarray]:
        X = _csr(X).astype(np.float32, copy=False)
        y = np.asarray(y, dtype=np.float32).ravel()
        if X.shape[0] != len(y):
            raise ValueError(f"X has {X.shape[0]} rows but y has {len(y)} targets")
        if len(y) == 0:
            raise ValueError("no examples to fit")
        if not (np.all(np.isfinite(y)) and np.all(np.isfinite(X.data))):
            raise ValueError("X or y contains NaN or infinite values")
        if self.factors < 1 or self.batch_size < 1 or self.iterations < 0:
            raise ValueError("factors and batch_size must be >= 1, iterations >= 0")
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")
        return X, y

    def fit(self, X, y, feature_space=None) -> "FactorizationMachine":
        """Learn ``w0, w, V`` from feature rows ``X`` (sparse, n_examples x n_features) and targets ``y``.

        ``feature_space`` (from :func:`mflib.features.build_features`) enables the per-block
        regularisation of ``block_regularization``. Returns ``self``.
        """
        X, y = self._check_fit_inputs(X, y)
        rng = np.random.default_rng(self.random_state)
        n_features = X.shape[1]
        reg_w, reg_V = self._penalties(n_features, feature_space)

        validation = None
        if self.early_stopping:
            if not 0 < self.validation_fraction < 1:
                raise ValueError("validation_fraction must lie in (0, 1)")
            order = rng.permutation(len(y))
            n_val = max(1, int(round(self.validation_fraction * len(y))))
            validation = (X[order[:n_val]], y[order[:n_val]])
            X, y = X[order[n_val:]], y[order[n_val:]]

        V = rng.standard_normal((n_features, self.factors), dtype=np.float32)
        V *= np.float32(self.init_std)
        batch_size = min(self.batch_size, len(y))
        trainer = RowSparseTrainer(y.mean(), np.zeros(n_features, dtype=np.float32), V, reg_w, reg_V,
                                   self.optimizer, max_batch_rows=batch_size,
                                   max_batch_nnz=batch_size * int(np.diff(X.indptr).max()),
                                   num_threads=self.num_threads)
        self.loss_history_, self.validation_history_ = [], []
        self.regularization_w_, self.regularization_V_ = reg_w, reg_V
        self.n_features_in_ = n_features
        best = (np.inf, None, 0)
        learning_rate, stale = float(self.learning_rate), 0
        try:
            for epoch in progress(range(self.iterations), self.show_progress, desc="FM", unit="epoch"):
                squared_error = 0.0
                for batch in trainer.batches(X, y, rng.permutation(len(y)), batch_size):
                    squared_error += trainer.step(batch, learning_rate)
                penalty = float(reg_w @ np.square(trainer.w)) + float(reg_V @ np.einsum("ij,ij->i", V, V))
                epoch_loss = squared_error / len(y) + penalty
                if not np.isfinite(epoch_loss):
                    raise FloatingPointError(f"FM training diverged at epoch {epoch + 1} (loss {epoch_loss}); "
                                             "lower learning_rate")
                self.loss_history_.append(epoch_loss)
                learning_rate *= self.learning_rate_decay
                if validation is not None:
                    prediction = self._clip(fm_predict(trainer.w0, trainer.w, V, validation[0]))
                    rmse = float(np.sqrt(np.mean((prediction - validation[1]) ** 2)))
                    self.validation_history_.append(rmse)
                    if rmse < best[0]:
                        best, stale = (rmse, (trainer.w0.copy(), trainer.w.copy(), V.copy()), epoch + 1), 0
                    else:
                        stale += 1
                        if stale >= self.n_iter_no_change:
                            break
        finally:
            trainer.close()
        w0, w = trainer.w0, trainer.w
        if validation is not None and best[2] > 0:
            (w0, w, V), self.best_iteration_ = best[1], best[2]
        else:
            self.best_iteration_ = len(self.loss_history_)
        self.global_bias = float(w0)
        self.weights = w
        self.feature_factors = V
        return self

    # ---- prediction ----------------------------------------------------------------------------------
    def _clip(self, prediction):
        if self.rating_scale is None:
            return prediction
        return np.clip(prediction, self.rating_scale[0], self.rating_scale[1])

    def predict(self, X) -> np.ndarray:
        """``y_hat(x)`` for every row of sparse ``X``, clipped to ``rating_scale`` (float32 array)."""
        if self.feature_factors is None:
            raise RuntimeError("FactorizationMachine is not fitted yet: call fit(X, y) first")
        X = _csr(X)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features but the model was fitted on {self.n_features_in_}: "
                             "build test rows with the same fields (mflib.features.build_features)")
        X = X.astype(np.float32, copy=False)
        prediction = fm_predict(np.float32(self.global_bias), self.weights, self.feature_factors, X)
        return self._clip(prediction).astype(np.float32)
