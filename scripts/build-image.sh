#!/usr/bin/env bash
# The Dockerfile's build steps as a script, for machines without a container
# engine (and to check them): build the release binary with the same cargo
# command as the Dockerfile's build stage, lay out the image's
# /opt/dask-scheduler-rs exactly as the Dockerfile does, and check that the
# staged `dask-scheduler` and `dask scheduler` start the Rust scheduler.
# With --docker TAG (and a reachable container engine) it builds the image too.
#
# Usage: scripts/build-image.sh [--stage DIR] [--no-cargo] [--docker TAG]
#                               [--base-image IMAGE]
#   --stage DIR        where to lay out the image files (default: target/image-root)
#   --no-cargo         reuse target/release/dask-scheduler instead of building it
#   --docker TAG       also run `docker build` (fails if no engine is reachable)
#   --base-image IMAGE BASE_IMAGE for --docker (default: the Dockerfile's)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

stage="$ROOT/target/image-root"
cargo=1
tag=""
base_image=""
while [ $# -gt 0 ]; do
    case "$1" in
        --stage) stage="$2"; shift 2 ;;
        --no-cargo) cargo=0; shift ;;
        --docker) tag="$2"; shift 2 ;;
        --base-image) base_image="$2"; shift 2 ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) echo "build-image.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

if [ "$cargo" = 1 ]; then
    # Keep identical to the Dockerfile's build stage (tests/deploy checks it).
    cargo build --release --locked -p dask-scheduler
fi
if [ ! -x target/release/dask-scheduler ]; then
    echo "build-image.sh: target/release/dask-scheduler is missing (drop --no-cargo)" >&2
    exit 1
fi

# The Dockerfile's `install -D` lines, rooted at $stage instead of /out.
out="$stage"
rm -rf "$out/opt/dask-scheduler-rs"
install -D -m 0755 target/release/dask-scheduler "$out/opt/dask-scheduler-rs/bin/dask-scheduler"
install -D -m 0755 deploy/image/dask-shim "$out/opt/dask-scheduler-rs/bin/dask"
install -D -m 0755 deploy/image/install-shims.sh "$out/opt/dask-scheduler-rs/libexec/install-shims.sh"

bin="$out/opt/dask-scheduler-rs/bin"
for cmd in "$bin/dask-scheduler --version" "$bin/dask scheduler --version"; do
    # shellcheck disable=SC2086
    v=$($cmd)
    case "$v" in
        *"Rust dask-scheduler"*) echo "build-image.sh: $cmd -> $v" ;;
        *) echo "build-image.sh: $cmd does not start the Rust scheduler: $v" >&2; exit 1 ;;
    esac
done
echo "build-image.sh: staged the image files under $out/opt/dask-scheduler-rs"

if [ -n "$tag" ]; then
    if ! docker info >/dev/null 2>&1; then
        echo "build-image.sh: no reachable container engine; run on a machine with one:" >&2
        echo "  docker build ${base_image:+--build-arg BASE_IMAGE=$base_image }-t $tag ." >&2
        exit 1
    fi
    docker build ${base_image:+--build-arg "BASE_IMAGE=$base_image"} -t "$tag" .
fi
