"""Which imports a student may not use: the one matcher shared by the static scan and the kernel guard.

A policy has three lists:

* ``forbid`` -- module prefixes students may not import (``implicit`` forbids ``implicit.als`` too);
* ``allow`` -- exemptions; the longest matching entry of the two lists wins, and a parent package of an
  allowed module stays importable (``mflib.models`` when ``mflib.models.popularity`` is allowed), since
  Python imports the parent first;
* ``lazy`` -- attribute names that import a module on first access (``mflib.ALS`` imports
  ``mflib.models.als``): the name is judged as the module it imports.

Standard library only, and no import at module level beyond ``dataclasses``: the kernel guard
(:mod:`autograder.grading.kernel_guard`) imports this module inside the sandboxed kernel before its
import guard is installed.
"""
from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["ImportPolicy", "longest_match"]


def longest_match(name: str, entries) -> str | None:
    """The longest entry ``e`` of ``entries`` with ``name == e`` or ``name`` starting with ``e + "."``."""
    best = None
    for entry in entries:
        if name == entry or name.startswith(entry + "."):
            if best is None or len(entry) > len(best):
                best = entry
    return best


@dataclass
class ImportPolicy:
    """Forbidden and allowed module prefixes, and the lazy attributes that import modules."""

    forbid: list = field(default_factory=list)
    allow: list = field(default_factory=list)
    lazy: dict = field(default_factory=dict)

    def forbidden(self, name: str) -> bool:
        """Is importing (or, for a lazy attribute, accessing) the dotted ``name`` forbidden?"""
        name = self.lazy.get(name, name)
        forbid = longest_match(name, self.forbid)
        if forbid is None:
            return False
        if any(allowed.startswith(name + ".") for allowed in self.allow):
            return False  # a parent package of an allowed module must be importable
        allow = longest_match(name, self.allow)
        return allow is None or len(allow) < len(forbid)

    def forbidden_names(self, module: str, fromlist=()) -> list[str]:
        """The forbidden names in ``from module import fromlist`` (or ``import module`` if empty);
        ``*`` stands for every lazy attribute of ``module``."""
        hits = [module] if self.forbidden(module) else []
        for item in fromlist or ():
            if item == "*":
                hits += [name for name in self.lazy if name.startswith(module + ".") and self.forbidden(name)]
            elif isinstance(item, str) and self.forbidden(f"{module}.{item}"):
                hits.append(f"{module}.{item}")
        return hits

    def to_dict(self) -> dict:
        """Plain lists/dict, to send to the kernel guard as JSON."""
        return {"forbid": list(self.forbid), "allow": list(self.allow), "lazy": dict(self.lazy)}
