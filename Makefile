# Two commands for a fresh Debian machine, as root: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench system-deps clean docs

$(VENV)/bin/python:
	bash scripts/ensure-python.sh $(PYTHON) $(VENV)

$(STAMP): pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/fleetwise demo

system-deps:
	bash scripts/install-system-deps.sh

test: system-deps $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q -ra

lint: $(STAMP)
	$(VENV)/bin/ruff check .

bench: system-deps $(STAMP)
	$(PY) bench/agent_overhead.py

docs: $(STAMP)
	$(VENV)/bin/fleetwise docs metrics > docs/metrics.md
	$(VENV)/bin/fleetwise docs config > docs/configuration.md
	$(VENV)/bin/fleetwise docs jobtable > docs/jobtable.md

clean:
	rm -rf $(VENV) .pytest_cache build dist *.egg-info
