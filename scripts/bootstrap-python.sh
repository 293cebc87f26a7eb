#!/usr/bin/env bash
# Create or refresh the pinned Python environment (.venv in the repository root)
# that the scheduler's graph materializer, the end-to-end tests and local
# workers/clients use. Idempotent: does nothing (quickly) when .venv already
# matches python/requirements*.txt.
#
# Environment: PYTHON   interpreter to build the venv from (default: python3.11,
#                       else python3; must be Python 3.11)
#              DASK_VENV where to put the venv (default: <repo>/.venv)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${DASK_VENV:-$ROOT/.venv}"
REQS=("$ROOT/python/requirements.txt" "$ROOT/python/requirements-test.txt")
STAMP="$VENV/.bootstrap-stamp"

say() { echo "bootstrap-python: $*" >&2; }

if [ -n "${PYTHON:-}" ]; then
    PY="$PYTHON"
elif command -v python3.11 >/dev/null 2>&1; then
    PY=python3.11
else
    PY=python3
fi
if ! "$PY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
    say "error: $PY is not Python 3.11 (the pinned packages need 3.11); set PYTHON=..." 
    exit 1
fi
PY_VERSION="$("$PY" -c 'import sys; print(sys.version.split()[0])')"

# The stamp: interpreter version + hash of the requirement files.
WANT="python-$PY_VERSION $(cat "${REQS[@]}" | sha256sum | cut -d' ' -f1)"

if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ]; then
    say "$VENV is up to date ($WANT)"
    exit 0
fi

if [ -x "$VENV/bin/python" ] && \
   [ "$("$VENV/bin/python" -c 'import sys; print(sys.version.split()[0])' 2>/dev/null)" = "$PY_VERSION" ]; then
    say "updating $VENV (requirements changed)"
else
    say "creating $VENV with $PY (Python $PY_VERSION)"
    "$PY" -m venv --clear "$VENV"
fi

rm -f "$STAMP"
say "installing python/requirements-test.txt (pinned dask, distributed, numpy, pandas, pyarrow, pytest, ...)"
"$VENV/bin/python" -m pip install --disable-pip-version-check --no-input --quiet \
    -r "$ROOT/python/requirements-test.txt"
"$VENV/bin/python" -m pip check --disable-pip-version-check >&2
"$VENV/bin/python" - >&2 <<'PY'
import dask, distributed, msgpack, numpy, pandas, pyarrow, pytest
print("bootstrap-python: dask", dask.__version__, "distributed", distributed.__version__,
      "numpy", numpy.__version__, "pandas", pandas.__version__, "pyarrow", pyarrow.__version__)
PY
echo "$WANT" > "$STAMP"
say "done: $VENV"
