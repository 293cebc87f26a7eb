#!/usr/bin/env bash
# Start the Rust Dask scheduler with the pinned Python environment for its
# graph materializer. All arguments go to dask-scheduler, e.g.
#
#   scripts/start-scheduler.sh --host 0.0.0.0
#   scripts/start-scheduler.sh --port 8786 --dashboard-address :8787 --scheduler-file sched.json
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

"$ROOT/scripts/bootstrap-python.sh"
echo "start-scheduler: cargo build --release -p dask-scheduler" >&2
cargo build --release -p dask-scheduler --manifest-path "$ROOT/Cargo.toml" >&2

exec "$ROOT/target/release/dask-scheduler" --python "$ROOT/.venv/bin/python" "$@"
