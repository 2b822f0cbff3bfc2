"""Data, never code: how the arguments and answers of recorded reference calls are stored and compared.

The grader records what the reference models answer to the hidden tests (:mod:`.record`) and replays it
in the grading kernel (:mod:`.replay`).  Everything crossing that boundary goes through this module:

* :func:`encode` turns a value into a JSON tree whose arrays are kept apart (an :class:`ArrayStore`,
  saved as an ``.npz`` read back with ``allow_pickle=False``): ``None``, bools, numbers, strings,
  tuples, lists, dicts, numpy arrays and scalars, scipy sparse matrices, ``numpy.random.Generator`` /
  ``RandomState`` states, dtypes, and objects of *provided* classes (their ``__dict__``).  Instances
  of reference-model classes are stored as ``{"__refobj__": "module:Class", "state": ...}`` and come
  back as the replay's stand-in class.  Functions, lambdas, generators and anything else raise
  :class:`Unrecordable` -- there is no pickle, so a recording can never carry code.
* :func:`digest` is the same walk hashed: ``sha256`` of the JSON tree with every array replaced by the
  hash of its dtype, shape and bytes and dict items in a canonical order.  Two calls have the same key
  (:func:`call_key`) exactly when the function and every argument are bit-for-bit equal.
* :func:`apply_state` writes a recorded post-call value into an object in place (an argument the
  reference modifies: a parameter array, an accumulator dict, a Generator, a model's ``__dict__``).

Identity: an answer that *is* one of the call's arguments (``fit`` returns ``self``; a function that
returns the array it updated) is stored as ``{"__arg__": name}`` and replayed as that same object.
"""
from __future__ import annotations

import hashlib
import importlib
import json
import math
import types

import numpy as np

__all__ = ["Unrecordable", "ArrayStore", "HashStore", "encode", "decode", "digest", "call_key", "identity_refs",
           "apply_state", "is_reference_path", "REFERENCE_PACKAGES"]


class Unrecordable(Exception):
    """The value cannot be stored as data (a function, a generator, an unknown object ...)."""


def _reference_modules() -> tuple[str, ...]:
    from mflib.models import registry

    return registry.reference_modules()


def is_reference_path(module: str) -> bool:
    """Is ``module`` (a dotted name) reference-solution code?"""
    return any(module == m or module.startswith(m + ".") for m in REFERENCE_PACKAGES)


REFERENCE_PACKAGES: tuple[str, ...] = _reference_modules()


class ArrayStore:
    """Arrays collected while encoding (deduplicated by content); ``arrays`` goes into an ``.npz``."""

    def __init__(self):
        self.arrays: dict[str, np.ndarray] = {}
        self._by_hash: dict[str, str] = {}

    def put(self, a: np.ndarray) -> str:
        """Store a copy of ``a`` (once per content); returns its key in :attr:`arrays`."""
        h = _array_hash(a)
        key = self._by_hash.get(h)
        if key is None:
            key = f"a{len(self.arrays)}"
            self.arrays[key] = np.array(a, copy=True, order="C")
            self._by_hash[h] = key
        return key


class HashStore:
    """Stands in for :class:`ArrayStore` in :func:`digest`: an array becomes the hash of its content."""

    def put(self, a: np.ndarray) -> str:
        """The hash of ``a``'s dtype, shape and bytes."""
        return _array_hash(a)


def _array_hash(a: np.ndarray) -> str:
    a = np.ascontiguousarray(a)
    h = hashlib.sha256(f"{a.dtype.str}|{a.shape}|".encode())
    h.update(a.view(np.uint8).reshape(-1) if a.size else b"")
    return h.hexdigest()


def _path(obj) -> str:
    return f"{obj.__module__}:{obj.__qualname__}"


def _importable(path: str):
    module, _, qualname = path.partition(":")
    obj = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


_MUTABLE = (np.ndarray, list, dict, set, np.random.Generator, np.random.RandomState)


def _is_mutable(obj) -> bool:
    return isinstance(obj, _MUTABLE) or _is_sparse(obj) or (hasattr(obj, "__dict__") and not isinstance(obj, type)
                                                             and not callable(obj))


def _is_sparse(obj) -> bool:
    import scipy.sparse as sp

    return sp.issparse(obj)


def identity_refs(arguments: dict) -> dict:
    """``{id(value): name}`` for the mutable values among a call's bound ``arguments`` (``*args`` and
    ``**kwargs`` entries are named ``args[0]``, ``kwargs[key]``)."""
    refs = {}
    for name, value in arguments.items():
        for sub, obj in _named_arguments(name, value):
            if _is_mutable(obj):
                refs.setdefault(id(obj), sub)
    return refs


def _named_arguments(name, value):
    yield name, value
    if isinstance(value, tuple):
        for i, v in enumerate(value):
            yield f"{name}[{i}]", v
    elif isinstance(value, dict) and name.startswith("**"):
        for k, v in value.items():
            yield f"{name}[{k}]", v


def resolve_refs(arguments: dict) -> dict:
    """``{name: value}`` for :func:`decode`'s ``{"__arg__": name}`` (the inverse of :func:`identity_refs`)."""
    return {sub: obj for name, value in arguments.items() for sub, obj in _named_arguments(name, value)}


def encode(obj, store, refs: dict | None = None, canonical: bool = False, _depth: int = 0):
    """``obj`` as a JSON-able tree (see the module docstring); arrays go to ``store``.  ``refs``
    (``{id: name}``) turns the call's own arguments into ``{"__arg__": name}``; ``canonical`` sorts
    dict items (for :func:`digest`)."""
    if _depth > 64:
        raise Unrecordable("nested more than 64 levels deep")
    if refs and id(obj) in refs and _is_mutable(obj):
        return {"__arg__": refs[id(obj)]}
    d = _depth + 1
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, int) and type(obj) is int:
        return obj
    if type(obj) is float:
        return obj if math.isfinite(obj) else {"__float__": repr(obj)}
    if type(obj) is complex:
        return {"__complex__": [encode(obj.real, store), encode(obj.imag, store)]}
    if isinstance(obj, bytes):
        return {"__bytes__": obj.hex()}
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            raise Unrecordable(f"an array of Python objects (dtype {obj.dtype})")
        kind = "matrix" if isinstance(obj, np.matrix) else "ndarray"
        if type(obj) not in (np.ndarray, np.matrix):
            raise Unrecordable(f"an array subclass {type(obj).__name__}")
        return {"__nd__": store.put(np.asarray(obj)), "kind": kind}
    if isinstance(obj, np.generic):
        if obj.dtype.hasobject:
            raise Unrecordable("a numpy object scalar")
        return {"__npscalar__": store.put(np.asarray(obj))}
    if isinstance(obj, tuple) and type(obj) is tuple:
        return {"__tuple__": [encode(v, store, refs, canonical, d) for v in obj]}
    if isinstance(obj, tuple) and hasattr(type(obj), "_fields"):  # a namedtuple
        return {"__namedtuple__": _checked_path(type(obj)), "values": [encode(v, store, refs, canonical, d) for v in obj]}
    if type(obj) is list:
        return {"__list__": [encode(v, store, refs, canonical, d) for v in obj]}
    if type(obj) is dict:
        items = [[encode(k, store, refs, canonical, d), encode(v, store, refs, canonical, d)] for k, v in obj.items()]
        if canonical:
            items.sort(key=lambda kv: json.dumps(kv[0], sort_keys=True))
        return {"__dict__": items}
    if type(obj) in (set, frozenset):
        items = [encode(v, store, refs, canonical, d) for v in obj]
        items.sort(key=lambda v: json.dumps(v, sort_keys=True))
        return {"__set__": items, "frozen": type(obj) is frozenset}
    if isinstance(obj, (range, slice)):
        return {"__" + type(obj).__name__ + "__": [obj.start, obj.stop, obj.step]}
    if isinstance(obj, np.dtype):
        if obj.hasobject or obj.fields:
            raise Unrecordable(f"dtype {obj}")
        return {"__dtype__": obj.str}
    if isinstance(obj, np.random.Generator):
        bg = obj.bit_generator
        return {"__rng__": type(bg).__name__, "state": encode(bg.state, store, None, canonical, d)}
    if isinstance(obj, np.random.RandomState):
        return {"__randomstate__": encode(obj.get_state(), store, None, canonical, d)}
    if _is_sparse(obj):
        return _encode_sparse(obj, store)
    if isinstance(obj, type):
        if is_reference_path(obj.__module__):
            return {"__reftype__": _path(obj)}
        return {"__type__": _checked_path(obj)}
    if isinstance(obj, np.ufunc):
        if getattr(np, obj.__name__, None) is not obj:
            raise Unrecordable(f"the ufunc {obj.__name__}")
        return {"__func__": f"numpy:{obj.__name__}"}
    if isinstance(obj, (types.FunctionType, types.BuiltinFunctionType)):
        if is_reference_path(getattr(obj, "__module__", None) or ""):
            return {"__reffunc__": _path(obj)}
        return {"__func__": _checked_path(obj)}
    cls = type(obj)
    slots = any(vars(k).get("__slots__") for k in cls.__mro__)
    if cls.__module__ in ("builtins", "types") or not hasattr(obj, "__dict__") or slots or callable(obj):
        raise Unrecordable(f"a {cls.__module__}.{cls.__qualname__} object")
    import enum

    if isinstance(obj, enum.Enum):
        return {"__enum__": _checked_path(cls), "name": obj.name}
    state = encode(dict(vars(obj)), store, refs, canonical, d)
    if is_reference_path(cls.__module__):
        return {"__refobj__": _path(cls), "state": state}
    return {"__obj__": _checked_path(cls), "state": state}


def _checked_path(obj) -> str:
    path = _path(obj)
    if "<lambda>" in path or "<locals>" in path:
        raise Unrecordable(f"a function or class defined inside another one ({path})")
    try:
        found = _importable(path)
    except (ImportError, AttributeError):
        raise Unrecordable(f"{path} cannot be imported by name") from None
    if found is not obj:
        raise Unrecordable(f"{path} is not what its name imports")
    return path


def _encode_sparse(obj, store):
    import scipy.sparse as sp

    fmt = obj.format
    kind = "array" if isinstance(obj, getattr(sp, "sparray", ())) else "matrix"
    if fmt in ("csr", "csc", "bsr"):
        parts = {"data": obj.data, "indices": obj.indices, "indptr": obj.indptr}
    else:
        coo = obj.tocoo()
        parts = {"data": coo.data, "row": coo.row, "col": coo.col}
    return {"__sparse__": fmt, "kind": kind, "shape": list(obj.shape),
            "parts": {k: store.put(np.asarray(v)) for k, v in parts.items()}}


def decode(tree, arrays, refs: dict | None = None, classes=None):
    """The value :func:`encode` stored.  ``arrays`` maps array keys to arrays (an ``np.load`` of the
    ``.npz``), ``refs`` resolves ``{"__arg__": name}``, ``classes(path)`` gives the stand-in class of a
    reference class (the replay's)."""
    def dec(t):
        if not isinstance(t, dict):
            return t
        if "__arg__" in t:
            if refs is None or t["__arg__"] not in refs:
                raise Unrecordable(f"the answer refers to argument {t['__arg__']!r}, which this call lacks")
            return refs[t["__arg__"]]
        if "__float__" in t:
            return float(t["__float__"])
        if "__complex__" in t:
            return complex(dec(t["__complex__"][0]), dec(t["__complex__"][1]))
        if "__bytes__" in t:
            return bytes.fromhex(t["__bytes__"])
        if "__nd__" in t:
            a = np.array(arrays[t["__nd__"]], copy=True)
            return np.asmatrix(a) if t.get("kind") == "matrix" else a
        if "__npscalar__" in t:
            return np.asarray(arrays[t["__npscalar__"]])[()]
        if "__tuple__" in t:
            return tuple(dec(v) for v in t["__tuple__"])
        if "__namedtuple__" in t:
            return _importable(t["__namedtuple__"])(*(dec(v) for v in t["values"]))
        if "__list__" in t:
            return [dec(v) for v in t["__list__"]]
        if "__dict__" in t:
            return {_hashable(dec(k)): dec(v) for k, v in t["__dict__"]}
        if "__set__" in t:
            values = (_hashable(dec(v)) for v in t["__set__"])
            return frozenset(values) if t.get("frozen") else set(values)
        if "__range__" in t:
            return range(*t["__range__"])
        if "__slice__" in t:
            return slice(*t["__slice__"])
        if "__dtype__" in t:
            return np.dtype(t["__dtype__"])
        if "__rng__" in t:
            bit_generator = getattr(np.random, t["__rng__"])()
            bit_generator.state = dec(t["state"])
            return np.random.Generator(bit_generator)
        if "__randomstate__" in t:
            rs = np.random.RandomState()
            rs.set_state(dec(t["__randomstate__"]))
            return rs
        if "__sparse__" in t:
            return _decode_sparse(t, arrays)
        if "__type__" in t or "__func__" in t:
            return _importable(t.get("__type__") or t["__func__"])
        if "__enum__" in t:
            return getattr(_importable(t["__enum__"]), t["name"])
        if "__reftype__" in t or "__reffunc__" in t:
            if classes is None:
                raise Unrecordable("a reference class or function outside the replay")
            return classes(t.get("__reftype__") or t["__reffunc__"])
        if "__obj__" in t or "__refobj__" in t:
            if "__obj__" in t:
                cls = _importable(t["__obj__"])
            elif classes is not None:
                cls = classes(t["__refobj__"])
            else:
                raise Unrecordable("a reference-model object outside the replay")
            obj = cls.__new__(cls)
            obj.__dict__.update(dec(t["state"]))
            return obj
        raise Unrecordable(f"unknown recorded value {sorted(t)[:3]}")

    return dec(tree)


def _hashable(k):
    return tuple(k) if isinstance(k, list) else k


def _decode_sparse(t, arrays):
    import scipy.sparse as sp

    fmt, shape = t["__sparse__"], tuple(t["shape"])
    parts = {k: np.array(arrays[v], copy=True) for k, v in t["parts"].items()}
    array_api = t.get("kind") == "array" and hasattr(sp, "csr_array")
    if fmt in ("csr", "csc", "bsr"):
        cls = getattr(sp, f"{fmt}_{'array' if array_api else 'matrix'}")
        return cls((parts["data"], parts["indices"], parts["indptr"]), shape=shape)
    coo_cls = sp.coo_array if array_api else sp.coo_matrix
    return coo_cls((parts["data"], (parts["row"], parts["col"])), shape=shape).asformat(fmt)


def digest(obj) -> str:
    """sha256 of ``obj``'s content (:func:`encode` with arrays hashed, dicts in canonical order)."""
    tree = encode(obj, HashStore(), None, canonical=True)
    return hashlib.sha256(json.dumps(tree, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def call_key(function: str, arguments: dict, digests: dict | None = None) -> str:
    """The key of one call: ``function`` (``"module:qualname"``) and its bound ``arguments``
    (``inspect.BoundArguments.arguments``, defaults not applied); ``digests`` = their :func:`digest`
    if already known."""
    body = digests if digests is not None else {name: digest(value) for name, value in arguments.items()}
    return hashlib.sha256(json.dumps([function, body], sort_keys=True).encode()).hexdigest()


def apply_state(target, value) -> None:
    """Make ``target`` equal to ``value`` in place (an argument the reference call modified)."""
    import scipy.sparse as sp

    if isinstance(target, np.ndarray):
        value = np.asarray(value)
        if target.shape != value.shape:
            raise Unrecordable(f"cannot replay the in-place update of an array of shape {target.shape} "
                               f"with one of shape {value.shape}")
        target[...] = value
    elif isinstance(target, np.random.Generator):
        target.bit_generator.state = value.bit_generator.state
    elif isinstance(target, np.random.RandomState):
        target.set_state(value.get_state())
    elif type(target) is dict:
        for k in [k for k in target if k not in value]:
            del target[k]
        for k, v in value.items():
            if k in target and _can_update_in_place(target[k], v):
                apply_state(target[k], v)
            else:
                target[k] = v
    elif type(target) is list:
        if len(target) == len(value):
            for i, v in enumerate(value):
                if _can_update_in_place(target[i], v):
                    apply_state(target[i], v)
                else:
                    target[i] = v
        else:
            target[:] = value
    elif type(target) is tuple:
        for t, v in zip(target, value):
            if _can_update_in_place(t, v):
                apply_state(t, v)
    elif type(target) is set:
        target.clear()
        target.update(value)
    elif sp.issparse(target) or hasattr(target, "__dict__"):
        state = dict(vars(value))
        for k in [k for k in vars(target) if k not in state]:
            delattr(target, k)
        for k, v in state.items():
            current = vars(target).get(k)
            if current is not None and _can_update_in_place(current, v) and not sp.issparse(target):
                apply_state(current, v)
            else:
                target.__dict__[k] = v
    else:
        raise Unrecordable(f"cannot replay an in-place change of a {type(target).__name__}")


def _can_update_in_place(current, new) -> bool:
    if isinstance(current, np.ndarray):
        return isinstance(new, np.ndarray) and current.shape == np.shape(new) and current.dtype == new.dtype
    if isinstance(current, (np.random.Generator, np.random.RandomState)):
        return type(current) is type(new)
    if type(current) in (dict, list, set):
        return type(current) is type(new)
    return False
