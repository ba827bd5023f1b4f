# Two commands set everything up on a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test test-slow lint format demo paper paper-quick phantom phantom-sheet tiny-pretrained bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -e '.[dev]'
	touch $(STAMP)

# Two workers (pytest-xdist), a module per worker at a time, handed out in the order tests/conftest.py gives
# (longest first; --no-loadscope-reorder keeps xdist from reordering by test count, which put the one-test
# SLURM module last); `make test TEST_WORKERS=0` runs in one process.
TEST_WORKERS ?= 2
XDIST = -n $(TEST_WORKERS) --dist loadfile $(if $(filter 0,$(TEST_WORKERS)),,--no-loadscope-reorder)

test: $(STAMP)
	$(PY) -m pytest -q $(XDIST)

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow $(XDIST)

lint: $(STAMP)
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf runs artifacts/phantom-sheet.png .pytest_cache

DEMO_DATA := data/phantom

$(DEMO_DATA)/phantom-manifest.json: | $(STAMP)
	$(PY) -m cxr_ldm phantom --out $(DEMO_DATA) --studies 600 --size 128 --seed 0

phantom: $(DEMO_DATA)/phantom-manifest.json

phantom-sheet: $(STAMP)
	$(PY) -m cxr_ldm.phantom.contact_sheet --out artifacts/phantom-sheet.png

tiny-pretrained: artifacts/tiny-pretrained/model_index.json

artifacts/tiny-pretrained/model_index.json: | $(STAMP)
	$(PY) -m cxr_ldm.experiments.tiny_pretrained --out artifacts/tiny-pretrained

# The experiments (configs/experiments/): resumable; a rerun computes only what is missing.
# `make demo SEED=1` runs the demo with another seed into runs/demo-seed1.
demo: $(STAMP)
	$(PY) -m cxr_ldm experiment --config configs/experiments/demo.yaml $(if $(SEED),--seeds '[$(SEED)]' --out runs/demo-seed$(SEED))

# The paper's arms run through a launcher profile (configs/clusters/): local.yaml, two units at a time on this
# machine (each unit one thread: the same results as one after another); `CLUSTER=configs/clusters/local-slurm.yaml`
# submits them to SLURM; `CLUSTER=` runs them one after another in this process.
CLUSTER ?= configs/clusters/local.yaml

paper: $(STAMP)
	$(PY) -m cxr_ldm experiment --config configs/experiments/paper.yaml $(if $(CLUSTER),--config $(CLUSTER))

paper-quick: $(STAMP)
	$(PY) -m cxr_ldm experiment --config configs/experiments/paper-quick.yaml $(if $(CLUSTER),--config $(CLUSTER))

bench: $(STAMP)
	$(PY) bench/train_throughput.py --config configs/tiny.yaml --threads 1
