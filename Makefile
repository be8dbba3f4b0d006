# Everything a fresh machine needs: `make quickstart` runs the quickstart study, `make test` the test suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export RAY_AUTH_MODE := disabled
export RAY_USAGE_STATS_ENABLED := 0

.PHONY: install system-deps quickstart test test-all lint

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	# timm is a test reference for EvoNorm; --no-deps keeps its torchvision (which breaks beside CPU torch) out.
	$(BIN)/pip install --quiet --no-deps timm==1.0.31
	touch $@

install: $(STAMP)

# Browser and database servers for the dashboard and PostgreSQL tests (apt-get; skipped when present).
system-deps:
	sh scripts/install_system_deps.sh

quickstart: $(STAMP)
	$(BIN)/layerforge launch configs/quickstart.yaml --name quickstart-$$(date +%Y%m%d-%H%M%S)

test: $(STAMP) system-deps
	$(BIN)/pytest -m "not slow" -q

test-all: $(STAMP) system-deps
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
