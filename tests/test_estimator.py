"""The estimator conventions every model shares (mflib.models.base.EstimatorMixin): parameters, repr, save/load."""
from __future__ import annotations

import inspect

import numpy as np
import pytest
import scipy.sparse as sp

import mflib
from mflib.models import registry
from mflib.models.base import EstimatorMixin

MODELS = {entry.name: entry for entry in registry.MODELS}


def small_fit(name):
    """``(fitted model, predict)``: the model fitted on a tiny problem of its kind, and a function of a model
    that returns what it predicts (scores of user 0, or predicted ratings)."""
    rng = np.random.default_rng(0)
    entry, model_class = MODELS[name], getattr(mflib, name)
    kwargs = {} if name == "Popularity" else {"random_state": 0}
    if "iterations" in inspect.signature(model_class).parameters:
        kwargs["iterations"] = 2
    model = model_class(**kwargs)
    if entry.data == "implicit":
        user_items = sp.csr_matrix((rng.random((12, 9)) < 0.4).astype(np.float32))
        return model.fit(user_items), lambda m: m.score(0)
    if entry.data == "explicit":
        users, items = rng.integers(0, 10, 60), rng.integers(0, 8, 60)
        ratings = rng.integers(1, 6, 60).astype(float)
        model.fit(users, items, ratings, n_users=10, n_items=8)
        return model, lambda m: m.predict(np.arange(10), np.arange(10) % 8)
    X = sp.csr_matrix((rng.random((40, 6)) < 0.5).astype(np.float32))
    return model.fit(X, rng.integers(1, 6, 40).astype(float)), lambda m: m.predict(X)


@pytest.mark.parametrize("name", list(MODELS))
def test_every_model_is_an_estimator_with_its_init_arguments_as_params(name):
    model_class = getattr(mflib, name)
    assert issubclass(model_class, EstimatorMixin)
    model = model_class()
    names = [p for p in inspect.signature(model_class.__init__).parameters if p != "self"]
    assert list(model.get_params()) == names
    assert repr(model).startswith(f"{name}(") and all(f"{p}=" in repr(model) for p in names)
    if names:
        assert model.set_params(**{names[0]: model.get_params()[names[0]]}) is model
    with pytest.raises(ValueError, match="no hyper-parameter 'not_a_param'"):
        model.set_params(not_a_param=1)


@pytest.mark.parametrize("name", list(MODELS))
def test_save_load_roundtrip_without_pickle(name, tmp_path):
    model, predict = small_fit(name)
    path = tmp_path / f"{name}.model"  # any file name: no ".npz" is appended
    model.save(path)
    assert path.exists() and not (tmp_path / f"{name}.model.npz").exists()
    with np.load(path, allow_pickle=False) as archive:  # plain arrays and a JSON header: nothing to unpickle
        assert "header" in archive.files
    loaded = type(model).load(path)
    assert type(loaded) is type(model) and loaded.get_params() == model.get_params()
    np.testing.assert_array_equal(predict(loaded), predict(model))
    for attribute, value in vars(model).items():
        if attribute.endswith("_") and not attribute.startswith("_"):
            assert type(getattr(loaded, attribute)) is type(value), attribute
            np.testing.assert_array_equal(getattr(loaded, attribute), value)


def test_load_refuses_another_model_and_a_foreign_file(tmp_path):
    model, _ = small_fit("BPR")
    model.save(tmp_path / "bpr.npz")
    with pytest.raises(TypeError, match="holds a BPR, not a WARP"):
        mflib.WARP.load(tmp_path / "bpr.npz")
    np.savez(tmp_path / "other.npz", weights=np.ones(3))
    with pytest.raises(ValueError, match="not an mflib model file"):
        mflib.BPR.load(tmp_path / "other.npz")


def test_a_generator_seed_is_saved_as_none_and_unsavable_values_are_refused(tmp_path):
    model = mflib.BPR(iterations=1, random_state=np.random.default_rng(0))
    model.fit(sp.csr_matrix(np.eye(4, dtype=np.float32)))
    model.save(tmp_path / "m.npz")
    assert mflib.BPR.load(tmp_path / "m.npz").random_state is None
    model.notes_ = object()
    with pytest.raises(TypeError, match=r"cannot save BPR.notes_"):
        model.save(tmp_path / "m.npz")
