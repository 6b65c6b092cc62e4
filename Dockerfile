# cgan-synth container images: two targets from one file.
#
#   docker build --target trainer -t cgan-synth/trainer:local .   # TensorFlow + tf2onnx, ENTRYPOINT cgan-train
#   docker build --target service -t cgan-synth/service:local .   # onnxruntime only (no TensorFlow), non-root
#
# BASE_IMAGE is any Debian-like image with Python 3.11+ and the venv module: the default python:3.11-slim,
# or a local Debian bookworm image with python3 + python3-venv (scripts/container-smoke.sh builds one with
# debootstrap for machines that cannot reach a registry). Everything is installed into the venv /opt/venv.
#
# Dependencies come from the committed lock (requirements/<target>.txt, exported from uv.lock by
# scripts/lock), installed with --require-hashes: an image built next month holds the same packages, byte
# for byte, as today's. Layer order is cache-friendly: the lock first, then the source, installed with
# --no-deps against the locked build backend. Editing code rebuilds seconds of layers, not TensorFlow. Only classic `docker build` syntax is used (no BuildKit-only RUN --mount), so the
# legacy builder works as well as BuildKit. The legacy builder builds every stage above the target, so the
# small service stages come first and the trainer last.

ARG BASE_IMAGE=python:3.11-slim

# --- base: environment shared by every stage ------------------------------------------------------------
FROM ${BASE_IMAGE} AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:${PATH} \
    MODELS_DIR=/models
# One unprivileged user for both images (uid/gid 10001). /models belongs to it, so a fresh named volume
# mounted there inherits that ownership and the trainer can write into it.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /home/app --create-home --shell /usr/sbin/nologin app \
    && install -d -o app -g app -m 0755 /models

# --- service-build: the service venv (onnxruntime, FastAPI; no TensorFlow) ---------------------------------
FROM base AS service-build
COPY requirements/service.txt /src/requirements/
RUN python3 -m venv /opt/venv \
    && pip install --require-hashes -r /src/requirements/service.txt
COPY pyproject.toml README* /src/
# The contract and the service, not the trainer: the two are siblings over cgan_contract.
COPY cgan_contract /src/cgan_contract
COPY service /src/service
# Neither the build tools nor pip are needed at run time (an image that extends this one installs with
# `python -m ensurepip` or from its own builder), nor the Swagger Editor that swagger-ui-py ships beside the
# three files /docs serves (23 MB): 409 MB -> see BENCHMARKS.md "Image sizes". The image must not contain
# TensorFlow (fail the build if a dependency ever drags it in), the bundled default model (package data,
# service/bundled/) must be installed, so a fresh container serves at once, and the entry point must import.
RUN pip install --no-deps --no-build-isolation /src \
    && python -c "from service.routes.docs import prune_assets; print(prune_assets(), 'bytes of unused docs assets')" \
    && pip uninstall --yes setuptools wheel pip \
    && python -c "import importlib.util as u, sys; sys.exit(u.find_spec('tensorflow') is not None)" \
    && python -c "import sys; from service.config import BUNDLED_DIR as b; sys.exit(not any(b.glob('*/*/model.onnx')))" \
    && cgan-serve --help > /dev/null

# --- service: the HTTP API (and OIP over gRPC), copied venv only, non-root ----------------------------------------------------
FROM base AS service
COPY --from=service-build /opt/venv /opt/venv
USER 10001:10001
WORKDIR /home/app
# 8000: HTTP (--port); 8001: the Open Inference Protocol over gRPC (GRPC_PORT, 0 turns it off)
EXPOSE 8000
EXPOSE 8001
# uvicorn finishes in-flight requests on SIGTERM; give it time (compose: stop_grace_period).
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=2).status != 200)"]
ENTRYPOINT ["cgan-serve"]
CMD ["--host", "0.0.0.0", "--port", "8000"]

# --- trainer: TensorFlow, tf2onnx; trains and exports MODELS_DIR/<name>/<version>/ ------------------------
# Built in place (not copied from a builder): its venv is >1 GB, and a source edit then only re-runs the
# small last layer instead of copying the whole venv again.
FROM base AS trainer
COPY requirements/train.txt /src/requirements/
RUN python3 -m venv /opt/venv \
    && pip install --require-hashes -r /src/requirements/train.txt
COPY pyproject.toml README* /src/
COPY cgan_contract /src/cgan_contract
COPY trainer /src/trainer
RUN pip install --no-deps --no-build-isolation /src \
    && rm -rf /src/build /src/*.egg-info \
    && cgan-train --help > /dev/null
USER 10001:10001
WORKDIR /home/app
ENTRYPOINT ["cgan-train"]
CMD ["--help"]
