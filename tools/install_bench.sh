#!/usr/bin/env bash
# Install the comparison libraries of the benchmark (the `bench` extra plus LightFM) into a virtualenv.
# usage: tools/install_bench.sh [.venv/bin/python]
#
# LightFM 1.17's setup.py sets an attribute on `__builtins__`, which only works when setup.py runs as
# a script: current pip/setuptools exec it through PEP 517 hooks and fail with
# "AttributeError: 'dict' object has no attribute '__LIGHTFM_SETUP__'". So we fetch the sdist from
# PyPI (sha256 checked), run `setup.py bdist_wheel` as a script, and install that wheel.
set -euo pipefail
PY=${1:-.venv/bin/python}
# absolute, because the LightFM build below runs from its unpacked sdist
case "$PY" in */*) PY="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")" ;; esac
"$PY" -c "import lightfm, surprise, myfm" 2>/dev/null && { echo "bench libraries already installed"; exit 0; }
"$PY" -m pip install --quiet --disable-pip-version-check setuptools wheel cython "numpy<3"
"$PY" -m pip install --quiet --disable-pip-version-check --no-build-isolation "scikit-surprise>=1.1.4" "myfm>=0.3.7"
if ! "$PY" -c "import lightfm" 2>/dev/null; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  "$PY" - "$work" <<'PYEOF'
import hashlib, re, sys, tarfile, urllib.request
work = sys.argv[1]
# the package index's simple page lists each file with its sha256 in the link
page = urllib.request.urlopen("https://pypi.org/simple/lightfm/", timeout=60).read().decode()
url, sha256 = re.search(r'href="([^"#]*lightfm-1\.17\.tar\.gz)#sha256=([0-9a-f]{64})"', page).groups()
data = urllib.request.urlopen(url, timeout=120).read()
assert hashlib.sha256(data).hexdigest() == sha256, "lightfm sdist checksum mismatch"
path = f"{work}/lightfm-1.17.tar.gz"
open(path, "wb").write(data)
tarfile.open(path).extractall(work, filter="data")
PYEOF
  (cd "$work"/lightfm-1.17 && "$PY" setup.py -q bdist_wheel -d "$work/dist" >"$work/build.log" 2>&1) || {
    echo "LightFM build failed; its log:" >&2; tail -30 "$work/build.log" >&2; exit 1; }
  "$PY" -m pip install --quiet --disable-pip-version-check "$work"/dist/lightfm-*.whl
fi
"$PY" -c "import lightfm, surprise, myfm; print('bench libraries: lightfm', lightfm.__version__, '| surprise', surprise.__version__, '| myfm', myfm.__version__)"
