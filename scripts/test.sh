#!/usr/bin/env bash
# The whole test suite: formatting, lints, release build, Rust tests, and the
# end-to-end tests (real dask clients and workers against the release binary).
#
# Environment: E2E_TIMEOUT  bound for the pytest run in seconds (default 1500)
#              PYTEST_ARGS  extra pytest arguments, e.g. "-k smoke" or "-x"
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

step() { printf '\n==> %s\n' "$*"; }

step "bootstrap the pinned Python environment (.venv)"
scripts/bootstrap-python.sh

export DASK_SCHEDULER_PYTHON="$ROOT/.venv/bin/python"

step "headless Chromium for the status-page test (Debian's chromium)"
if ! command -v chromium >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1; then
        { DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
          DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; } ||
            echo "test.sh: apt-get install chromium failed" >&2
    fi
    # tests/e2e/test_status_page.py fails (never skips) when chromium is missing
    command -v chromium >/dev/null 2>&1 || echo "test.sh: chromium could not be installed" >&2
fi

step "cargo fmt --all -- --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo build --release"
cargo build --release --workspace

step "cargo test --workspace --release (reuses the release build's dependencies)"
cargo test --workspace --release

step "pytest tests (end-to-end, against target/release/dask-scheduler)"
set +e
# shellcheck disable=SC2086
timeout --kill-after=30 "${E2E_TIMEOUT:-1500}" \
    .venv/bin/python -m pytest tests -q -p no:cacheprovider --durations=10 ${PYTEST_ARGS:-}
rc=$?
set -e
case $rc in
    0) ;;
    5) echo "test.sh: pytest collected no tests: failing" >&2; exit 1 ;;
    124|137) echo "test.sh: the end-to-end tests ran past ${E2E_TIMEOUT:-1500}s" >&2; exit 1 ;;
esac
exit $rc
