# syntax=docker/dockerfile:1
#
# The Rust dask-scheduler as a drop-in scheduler image for the Dask Kubernetes
# operator, the dask/dask Helm chart and the RAPIDS deployment guides.
#
# Stage 1 builds the release binary (the same `cargo build` as
# scripts/build-image.sh and the test suite).  Stage 2 is BASE_IMAGE with the
# binary installed so that `dask-scheduler` and `dask scheduler` start the Rust
# scheduler; every other command of the base image (`dask-cuda-worker`,
# `dask worker`, `python`, ...) is untouched.
#
# BASE_IMAGE defaults to the RAPIDS image the GPU workers run: the scheduler's
# graph materializer then has the very same Python, dask, distributed and cudf
# as the workers (the RAPIDS guidance for schedulers).  Set it to exactly the
# tag your workers use.  Slim variant for CPU-only clusters:
#
#   docker build --build-arg BASE_IMAGE=ghcr.io/dask/dask:2026.8.0-py3.12 -t dask-scheduler-rs:slim .
#
# (any image with python3 + the workers' dask and distributed works).  The
# builder's glibc must not be newer than the base image's; the final stage
# fails at build time (install-shims.sh runs the binary) if it is.  Override
# RUST_IMAGE for older bases.  Without a container engine, run
# `scripts/build-image.sh --stage DIR` to do the same steps on the host.

ARG BASE_IMAGE=nvcr.io/nvidia/rapidsai/base:26.10-cuda12-py3.12
ARG RUST_IMAGE=rust:1.95-bookworm

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p dask-scheduler
RUN install -D -m 0755 target/release/dask-scheduler /out/opt/dask-scheduler-rs/bin/dask-scheduler \
 && install -D -m 0755 deploy/image/dask-shim /out/opt/dask-scheduler-rs/bin/dask \
 && install -D -m 0755 deploy/image/install-shims.sh /out/opt/dask-scheduler-rs/libexec/install-shims.sh

FROM ${BASE_IMAGE}
ARG BASE_IMAGE
ARG APP_UID=1000
ARG VERSION=0.1.0
ARG SOURCE_URL=""

LABEL org.opencontainers.image.title="dask-scheduler-rs" \
      org.opencontainers.image.description="Rust drop-in Dask scheduler (distributed 2026.8.0 protocol) on the workers' image" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="BSD-3-Clause" \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"

# Some bases (RAPIDS) switch to their own user; installing needs root.
USER root
COPY --from=build /out/ /
ENV PATH=/opt/dask-scheduler-rs/bin:${PATH}
RUN /opt/dask-scheduler-rs/libexec/install-shims.sh /opt/dask-scheduler-rs
# A non-root user: reuse the base's user with this uid, or create one.
RUN if ! getent passwd "${APP_UID}" >/dev/null 2>&1; then \
        if command -v useradd >/dev/null 2>&1; then \
            useradd --uid "${APP_UID}" --gid 0 --create-home --shell /bin/sh dask; \
        elif command -v adduser >/dev/null 2>&1; then \
            adduser -D -u "${APP_UID}" -G root -s /bin/sh dask; \
        fi; \
    fi
USER ${APP_UID}

# 8786: scheduler comm (tcp-comm); 8787: dashboard, /health, /metrics (http-dashboard)
EXPOSE 8786 8787
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python3", "-c", "import os, sys, urllib.request; port = os.environ.get('DASK_DASHBOARD_PORT', '8787'); body = urllib.request.urlopen('http://127.0.0.1:%s/health' % port, timeout=4).read(); sys.exit(0 if body.strip() == b'ok' else 1)"]
CMD ["dask-scheduler", "--host", "0.0.0.0"]
