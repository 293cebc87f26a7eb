#!/bin/sh
# Make `dask-scheduler` and `dask scheduler` start the Rust scheduler in an
# image whose base already has the Python dask/distributed entry points.
#
# Usage: install-shims.sh [PREFIX]        (default PREFIX: /opt/dask-scheduler-rs)
#
# Expects PREFIX/bin/dask-scheduler (the Rust binary) and PREFIX/bin/dask (the
# shim, deploy/image/dask-shim).  Put PREFIX/bin first on PATH as well; this
# script additionally rewires the base image's own entry points, because an
# entry point script (the RAPIDS images' `conda activate base`) can put the
# Python environment's bin directory back in front of PATH:
#
#   DIR/dask-scheduler -> renamed DIR/dask-scheduler.python, replaced by a
#                         symlink to PREFIX/bin/dask-scheduler
#   DIR/dask           -> renamed DIR/dask.python (the shim runs it for every
#                         subcommand but `scheduler`), replaced by a symlink to
#                         PREFIX/bin/dask
#
# for every DIR on PATH (and every DIR in $EXTRA_BIN_DIRS, colon separated).
# Running it twice changes nothing.  It ends by checking the result and
# exits non-zero when `dask-scheduler` / `dask scheduler` would not start the
# Rust binary, or when the Python dask + distributed the graph materializer
# needs cannot be imported.
set -eu

prefix=${1:-/opt/dask-scheduler-rs}
bin=$prefix/bin
rust=$bin/dask-scheduler
shim=$bin/dask

for f in "$rust" "$shim"; do
    if [ ! -x "$f" ]; then
        echo "install-shims: $f is missing or not executable" >&2
        exit 1
    fi
done

real_bin=$(readlink -f "$bin")

rewire() { # DIR NAME TARGET
    rw_path=$1/$2
    rw_target=$3
    [ -e "$rw_path" ] || [ -L "$rw_path" ] || return 0
    if [ "$(readlink -f "$rw_path")" = "$(readlink -f "$rw_target")" ]; then
        return 0 # already ours
    fi
    if [ ! -e "$rw_path.python" ]; then
        mv "$rw_path" "$rw_path.python"
    else
        rm -f "$rw_path"
    fi
    ln -s "$rw_target" "$rw_path"
    echo "install-shims: $rw_path -> $rw_target (original kept as $rw_path.python)"
}

old_ifs=$IFS
IFS=:
for dir in $PATH ${EXTRA_BIN_DIRS-}; do
    [ -n "$dir" ] && [ -d "$dir" ] || continue
    [ "$(readlink -f "$dir")" = "$real_bin" ] && continue
    IFS=$old_ifs
    rewire "$dir" dask-scheduler "$rust"
    rewire "$dir" dask "$shim"
    IFS=:
done
IFS=$old_ifs

# Check: both spellings reach the Rust binary, whatever PATH order wins.
PATH=$bin:$PATH
export PATH
for cmd in "dask-scheduler --version" "dask scheduler --version"; do
    # shellcheck disable=SC2086
    out=$($cmd 2>&1) || { echo "install-shims: '$cmd' failed: $out" >&2; exit 1; }
    case $out in
        *"Rust dask-scheduler"*) echo "install-shims: '$cmd' -> $out" ;;
        *) echo "install-shims: '$cmd' does not start the Rust scheduler: $out" >&2; exit 1 ;;
    esac
done
python=${DASK_SCHEDULER_PYTHON:-python3}
if ! "$python" -c 'import dask, distributed' 2>/dev/null; then
    echo "install-shims: $python cannot import dask and distributed; the graph materializer needs them (same versions as the workers)" >&2
    exit 1
fi
