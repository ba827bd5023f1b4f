# Two commands set everything up on a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test test-slow lint format demo phantom phantom-sheet bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -e '.[dev]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf runs artifacts .pytest_cache

DEMO_DATA := data/phantom

$(DEMO_DATA)/phantom-manifest.json: | $(STAMP)
	$(PY) -m cxr_ldm phantom --out $(DEMO_DATA) --studies 600 --size 128 --seed 0

phantom: $(DEMO_DATA)/phantom-manifest.json

phantom-sheet: $(STAMP)
	$(PY) -m cxr_ldm.phantom.contact_sheet --out artifacts/phantom-sheet.png

demo: $(STAMP) phantom
	$(PY) -m cxr_ldm fit --config configs/tiny.yaml --trainer.max_steps 200 --trainer.val_check_interval 50 --ckpt_path last
	$(PY) -m cxr_ldm export --ckpt runs/tiny/checkpoints/last.ckpt --out runs/tiny/pipeline --ema

bench: $(STAMP)
	$(PY) bench/train_speed.py --config configs/tiny.yaml --steps 20 --gradient-checkpointing
