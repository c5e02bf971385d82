# Two commands work on a fresh machine with Python 3.11: `make demo` and `make test`.
# Each creates .venv if missing and installs what it needs.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Static-analysis tools with pins of their own (checkov) live in a separate venv so they
# never constrain the project's dependencies. checkov is pinned: new releases add checks.
TOOLS       := .venv-tools
TOOLS_STAMP := $(TOOLS)/.installed

.PHONY: demo test lint fmt install clean

$(STAMP): pyproject.toml
	@echo "==> installing the platform and its dependencies into $(VENV) (first run: 1-2 minutes)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --progress-bar off -e '.[dev,local]'
	@touch $(STAMP)
	@echo "==> installed"

$(TOOLS_STAMP):
	@echo "==> installing checkov into $(TOOLS) (static checks of the Terraform module)"
	@test -x $(TOOLS)/bin/python || $(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --upgrade pip
	$(TOOLS)/bin/python -m pip install --quiet 'checkov==3.3.30'
	@touch $(TOOLS_STAMP)

install: $(STAMP) $(TOOLS_STAMP)

demo: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/demo.sh

# Tests run in parallel (pytest-xdist): most of their time is spent waiting on local
# servers and subprocesses, so more workers than cores pays off. Work stealing lets idle
# workers take queued tests from a busy one, so the long pole (the demo, started first)
# keeps nothing waiting behind it.
TEST_WORKERS ?= 4

test: $(STAMP) $(TOOLS_STAMP)
	@bash scripts/install-browser.sh
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

fmt: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) $(TOOLS) .pytest_cache .ruff_cache build *.egg-info
