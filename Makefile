# One command each: `make run` (set up, then run the pipeline on the bundled defaults, offline)
# and `make test` (set up, then run the tests). Both create .venv from requirements-dev.lock first: the runtime
# lock (requirements.lock, all the Docker image installs) plus the test and benchmark tools.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 120  # the temporary server starts slowly on a busy 2-core machine

.PHONY: setup run lint test test-fast test-container gpu-bundle gpu-check-smoke lock clean

setup: $(STAMP)

$(STAMP): requirements.lock requirements-dev.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -r requirements-dev.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

run: setup
	$(BIN)/python flows/pipeline.py $(ARGS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: setup
	$(BIN)/python -m pytest -m "not slow and not container" $(PYTEST_ARGS)

# The image built and run for real (podman; docs/CONTAINER.md). .ci/container-setup.sh installs podman and builds
# the cached CPU base once; tests/test_container.py builds the image on it and runs the pipeline inside.
test-container: setup
	container_env=$$(bash .ci/container-setup.sh) && eval "$$container_env" && $(BIN)/python -m pytest -m container $(PYTEST_ARGS)

# The GPU check (docs/GPU.md): fill gpu_bundle/ (what the bare GPU machine lacks, ≤ 60 MiB), then prove the check
# runs on that bundle alone, on the CPU. On the GPU machine: `python3 -m benchmarks.gpu_check --bundle gpu_bundle`.
gpu-bundle: setup
	$(BIN)/python -m benchmarks.gpu_bundle $(ARGS)

gpu-check-smoke: gpu-bundle
	$(BIN)/python -m benchmarks.gpu_check --bundle gpu_bundle --out runs/gpu_check_smoke --device cpu --smoke

# Both locks from pyproject's ranges, in a fresh venv (never .venv): requirements.lock is what runs (dependencies and
# the dask and hf extras: the image installs it), requirements-dev.lock adds the test and bench extras on top with
# every runtime pin held. LOCK_PIP_ARGS passes pip options, e.g. "-c old.lock" to keep versions where they were.
LOCK_VENV := build/lock-venv
FREEZE = $(LOCK_VENV)/bin/python -m pip freeze --all --exclude-editable | grep -v '^pip==' | sed 's/^torch==\(.*\)+cpu$$/torch==\1/'
lock:
	rm -rf $(LOCK_VENV)
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install --quiet --upgrade "pip>=24"
	$(LOCK_VENV)/bin/python -m pip install --quiet $(LOCK_PIP_ARGS) "torch==2.13.0" -e ".[dask,hf]"
	$(FREEZE) > build/runtime.freeze
	$(LOCK_VENV)/bin/python -m pip install --quiet $(LOCK_PIP_ARGS) -c build/runtime.freeze -e ".[test,bench]"
	$(FREEZE) > build/all.freeze
	{ sed -n '/^#/p' requirements.lock; cat build/runtime.freeze; } > requirements.lock.new
	{ sed -n '/^#/p' requirements-dev.lock 2>/dev/null; echo "-r requirements.lock"; \
	  grep -vxF -f build/runtime.freeze build/all.freeze; } > requirements-dev.lock.new
	mv requirements.lock.new requirements.lock
	mv requirements-dev.lock.new requirements-dev.lock
	rm -rf $(LOCK_VENV)

clean:
	rm -rf $(VENV) runs .pytest_cache
