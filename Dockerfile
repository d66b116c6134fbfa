# Runs the pipeline (default command) or a Prefect worker (`prefect worker start --pool cpu`).
# Installs exactly requirements.lock, the same lock `make setup` uses; on Linux x86-64 the lock's
# `torch==2.13.0` comes from PyPI as the CUDA build, so the image uses a GPU when the host exposes one.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    TOKENIZERS_PARALLELISM=false \
    PREFECT_SERVER_ANALYTICS_ENABLED=false

WORKDIR /app
COPY requirements.lock pyproject.toml README.md ./
RUN python -m pip install -r requirements.lock

COPY mtl_model/ mtl_model/
COPY tasks/ tasks/
COPY flows/ flows/
COPY data/ data/
COPY prefect.yaml ./
RUN python -m pip install --no-deps --no-build-isolation -e . \
    && useradd --create-home --uid 1000 pipeline \
    && chown -R pipeline /app
USER pipeline

CMD ["python", "flows/pipeline.py"]
