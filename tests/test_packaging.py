"""The project's set-up files agree with each other."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

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
