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

## The whole test suite (unit tests, model quality on ML-100K, real nbgrader runs, the bug corpus, sandboxed class
## grading), on 2 workers; the tests of one class-grading file stay on one worker (tests/conftest.py).
test: $(STAMP)
	$(PY) -m pytest -n 2 --dist loadgroup --durations=20

## Unit tests only (no nbgrader course runs).
test-fast: $(STAMP)
	$(PY) -m pytest -n 2 --dist loadgroup -m "not course" --ignore=tests/test_grading.py \
		--ignore=tests/test_grading_runtime.py --ignore=tests/test_grading_secrets.py \
		--ignore=tests/test_grading_identity.py --ignore=tests/test_deadlines.py --ignore=tests/test_term.py

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
