# The two Quickstart commands: `make run` (the app on the quickstart profile) and `make test`.
# Both create .venv on first use. torch is installed pinned BEFORE the project, because an
# unpinned torch makes pip pull several GB of CUDA packages; an already importable torch in the
# venv is kept. Override with e.g. `make run TORCH=torch==2.13.0+cu128 PIP_EXTRA=...`.
PYTHON ?= python3
VENV   ?= .venv
TORCH  ?= torch==2.13.0
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.trm-tui-installed
ARGS   ?=

.PHONY: run test lint format bench docs clean-venv

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/trm-tui --profile quickstart $(ARGS)

test: $(STAMP)
	$(VENV)/bin/ruff check trm_core trm_tui tests
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(PY) -m pytest -n 2 --durations=15 -q $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check trm_core trm_tui tests
	$(VENV)/bin/ruff format --check trm_core trm_tui tests

format: $(STAMP)
	$(VENV)/bin/ruff format trm_core trm_tui tests
	$(VENV)/bin/ruff check --fix trm_core trm_tui tests

bench: $(STAMP)
	$(VENV)/bin/trm-tui bench $(ARGS)

# docs/profiles.md from the comments beside the fields of trm_core/profile.py
docs: $(STAMP)
	$(PY) -m trm_core.profile_doc

clean-venv:
	rm -rf $(VENV)
