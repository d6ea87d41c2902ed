# syntax=docker/dockerfile:1
#
# The whisper-batch GPU worker for AWS Batch (see README "Container image").
#
#   docker build -t whisper-batch .                          # bakes the "base" model
#   docker build --build-arg MODELS="base large-v3" -t whisper-batch .
#   docker run --gpus all -e WHISPER_QUEUE_URL=... -e WHISPER_RESULTS_BUCKET=... whisper-batch
#
# The NVIDIA driver comes from the host (the ECS GPU-optimized AMI); the CUDA runtime libraries come with torch's
# wheels from PyPI. Nothing is downloaded at run time: the weights are baked below, sha256 verified, and
# WHISPER_MODEL_DOWNLOAD=false makes the worker refuse any model that is not already here.

# Exact tag (python 3.11, as pyproject's requires-python); add @sha256:<digest> to pin the bytes as well.
FROM python:3.11.15-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

RUN python -m venv /opt/venv

# torch first, exactly pinned as in pyproject.toml and `make install`: on linux/x86_64 this PyPI release is the
# CUDA build (its nvidia-* runtime wheels come with it). Its own layer, so code changes do not re-download it.
RUN pip install torch==2.13.0

# The package with the pinned dependencies the tests use (PyAV wheels bundle FFmpeg: no apt packages needed).
WORKDIR /src
COPY pyproject.toml README.md ./
COPY worker ./worker
RUN pip install '.[worker,diarize]'

RUN useradd --system --uid 10001 --user-group --create-home --home-dir /home/whisper whisper

# Official checkpoints, downloaded at build time and verified against openai-whisper's published sha256.
# MODELS: space- or comma-separated names (tiny, base, small, medium, large-v3, turbo, *.en variants).
ARG MODELS=base
# Optional: a mirror with the official <sha256>/<name>.pt layout, for build networks without internet access.
ARG WHISPER_MODEL_MIRROR
# Set WHISPER_DEFAULT_MODEL (default: base) in the job definition to one of them.
ENV WHISPER_MODEL_DIR=/opt/whisper-models \
    WHISPER_MODEL_DOWNLOAD=false
RUN whisper-worker models fetch ${MODELS} \
    && whisper-worker models list \
    && mkdir -p /opt/whisper-models/converted /opt/whisper-models/s3 \
    && chown whisper:whisper /opt/whisper-models/converted /opt/whisper-models/s3

# Baked weights stay root-owned and read-only; the worker may only add conversions of bundled or S3 sources.
USER 10001:10001
WORKDIR /home/whisper
ENTRYPOINT ["whisper-worker", "run"]
