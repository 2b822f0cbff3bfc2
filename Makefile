# mf-course: `make demo` sets up and runs the main job; `make test` sets up and runs the tests.
# Both create .venv on first use (Python >= 3.11 as `python3`, or set PYTHON=...).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-dev

.PHONY: demo test test-fast notebooks release bundle bench clean-venv

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	touch $(STAMP)

## The main job: data summary and baselines, then the course released and autograded for pretend students.
demo: $(STAMP)
	$(PY) benchmarks/demo.py
	$(PY) -m autograder demo

## The whole test suite (unit tests, model quality on ML-100K, real nbgrader runs), 2 workers; then the
## sandboxed class-grading tests on their own (they grade with 2 jobs themselves and check that no
## sandbox process is left behind, which another worker's grading run would confuse).
test: $(STAMP)
	$(PY) -m pytest -n 2 --durations=15 --ignore=tests/test_grading.py --ignore=tests/test_grading_runtime.py \
		--ignore=tests/test_grading_secrets.py --ignore=tests/test_grading_identity.py --ignore=tests/test_deadlines.py
	$(PY) -m pytest tests/test_grading.py tests/test_grading_runtime.py tests/test_grading_secrets.py \
		tests/test_grading_identity.py tests/test_deadlines.py --durations=5

## Unit tests only (no nbgrader course runs).
test-fast: $(STAMP)
	$(PY) -m pytest -n 2 -m "not course" --ignore=tests/test_grading.py --ignore=tests/test_grading_runtime.py \
		--ignore=tests/test_grading_secrets.py --ignore=tests/test_grading_identity.py --ignore=tests/test_deadlines.py

## course_src/*.py -> solutions/*.ipynb (executed, with outputs) -> assignments/ (nbgrader release)
notebooks: $(STAMP)
	$(PY) -m autograder.course.notebooks build
	$(PY) -m autograder.course.notebooks release

release: $(STAMP)
	$(PY) -m autograder.course.notebooks release

## What students get: assignments/ + mflib without the reference models (see docs/instructor.md)
bundle: $(STAMP)
	$(PY) -m autograder.course.bundle

## Side-by-side benchmark against implicit / LightFM / Surprise / myFM (installs them first): one run writes
## docs/benchmarks.md and the README's tables. OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE (set on some virtual
## machines) are unset for this command alone: they slow a current numpy.
bench: $(STAMP)
	bash tools/install_bench.sh $(PY)
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=1 $(PY) benchmarks/bench.py --write

clean-venv:
	rm -rf $(VENV)
