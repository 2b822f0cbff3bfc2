"""The project's set-up files agree with each other."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~ \[]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_lists_the_pyproject_dependencies():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_name(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]}
    environment = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = {_name(d) for d in environment["dependencies"] if isinstance(d, str)} - {"python", "pip"}
    assert wanted == conda, (f"only in pyproject.toml: {sorted(wanted - conda)}; "
                             f"only in environment.yml: {sorted(conda - wanted)}")
    versions_py = {_name(r): r.replace(" ", "") for r in project["dependencies"]}
    versions_yml = {_name(d): d.replace(" ", "") for d in environment["dependencies"] if isinstance(d, str)}
    for name, spec in versions_py.items():
        assert versions_yml[name] == spec, f"{name}: pyproject says {spec}, environment.yml {versions_yml[name]}"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme and "make demo" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_movielens_files_are_never_tracked():
    ignore = (ROOT / ".gitignore").read_text().splitlines()
    assert "data/*" in ignore and "!data/README.md" in ignore


# ---- mflib's layout: the model registry, lazy attributes, module sizes, benchmarks outside the library --------
def test_every_module_of_mflib_models_is_in_the_registry():
    from mflib.models import registry

    listed = set(registry.reference_modules()) | set(registry.provided_modules())
    on_disk = {"mflib.models" if p.stem == "__init__" else f"mflib.models.{p.stem}"
               for p in (ROOT / "mflib" / "models").glob("*.py")}
    assert on_disk - listed == set(), "add these modules to mflib/models/registry.py (reference or provided)"
    assert not set(registry.reference_modules()) & set(registry.provided_modules())
    for path in registry.reference_source_paths():
        assert (ROOT / path).is_file(), path
    assert "mflib/models/bpr.py" in registry.reference_source_paths()
    assert "mflib/models/popularity.py" not in registry.reference_source_paths()  # a baseline, not a solution
    assert registry.is_reference_module("mflib.models._sampling")
    assert not registry.is_reference_module("mflib.models.base")
    assert registry.lazy_attributes()["mflib.ALS"] == "mflib.models.als"


def test_lazy_attributes_are_the_registry_classes():
    import importlib

    import mflib
    from mflib.models import registry

    for entry in registry.MODELS:
        model_class = getattr(mflib, entry.name)
        assert model_class is getattr(importlib.import_module(entry.module), entry.name)
        assert entry.name in mflib.__all__ and entry.name in dir(mflib)
    assert not hasattr(mflib, "NotAModel")


_BUNDLE = """
import importlib.abc, runpy, sys
BLOCKED = set(runpy.run_path("mflib/models/registry.py")["reference_modules"]())  # read before mflib loads
class Missing(importlib.abc.MetaPathFinder):  # what the student bundle looks like: no reference modules
    def find_spec(self, name, path, target=None):
        if name in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Missing())
import mflib
assert not hasattr(mflib, "BPR") and getattr(mflib, "BPR", None) is None and not hasattr(mflib, "ALS")
assert mflib.__all__ == ["load_movielens", "ReferenceModelUnavailable", "ReferenceModelAttributeError",
                         "ReferenceModelImportError", "Popularity"], mflib.__all__
try:
    from mflib import BPR
except ImportError as error:
    assert isinstance(error, mflib.ReferenceModelUnavailable), type(error)
    print("FROM:", error)
try:
    mflib.BPR
except AttributeError as error:
    assert isinstance(error, mflib.ReferenceModelUnavailable), type(error)
    print("ATTR:", error)
from mflib import *  # noqa: F403  only the installed names
print("POPULARITY:", Popularity.__name__)  # noqa: F405
"""


def _run(code: str):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_a_missing_reference_model_is_a_clear_missing_attribute():
    result = _run(_BUNDLE)
    assert result.returncode == 0, result.stderr
    for line in ("FROM:", "ATTR:"):
        message = next(out for out in result.stdout.splitlines() if out.startswith(line))
        assert "mflib.BPR is a reference solution" in message and "student bundle" in message, message
    assert "POPULARITY: Popularity" in result.stdout


def test_a_missing_dependency_is_not_disguised_as_a_missing_model():
    blocked = 'set(runpy.run_path("mflib/models/registry.py")["reference_modules"]())'
    code = _BUNDLE.split("import mflib\n")[0].replace(blocked, '{"scipy.special"}')
    assert '{"scipy.special"}' in code
    result = _run(code + "import mflib\nmflib.BPR\n")
    assert result.returncode != 0 and "No module named 'scipy.special'" in result.stderr, result.stderr
    assert "reference solution" not in result.stderr


def test_mflib_modules_are_small_and_benchmarks_live_outside_the_library():
    sizes = {str(p.relative_to(ROOT)): len(p.read_text().splitlines()) for p in (ROOT / "mflib").rglob("*.py")}
    assert {path: n for path, n in sizes.items() if n > 500} == {}
    for moved in ("mflib/bench.py", "mflib/demo.py"):
        assert not (ROOT / moved).exists()
    from mflib.models import als

    assert not hasattr(als, "synthetic_implicit") and not hasattr(als, "naive_als_spsolve")
    makefile = (ROOT / "Makefile").read_text()
    assert "benchmarks/bench.py" in makefile and "benchmarks/demo.py" in makefile


@pytest.mark.parametrize("script", ["bench.py", "demo.py"])
def test_benchmark_scripts_start_from_the_repository_root(script):
    import subprocess
    import sys

    result = subprocess.run([sys.executable, f"benchmarks/{script}", "--help"], capture_output=True, text=True,
                            cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "usage" in result.stdout
