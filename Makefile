# The two set-up commands of the README: `make demo` (the main job) and `make test` (the suite).
# Both create .venv and install torch first: a plain `pip install torch` would pull a multi-GB CUDA build.
PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

demo: $(VENV)/.installed
	$(BIN)/zotune train --config configs/smollm2-135m/mezo.yaml --overwrite   # replaces the previous demo run

test: $(VENV)/.installed
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs .pytest_cache
