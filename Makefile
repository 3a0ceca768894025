# The two commands of the README: `make run` and `make test`. Everything else is for developers.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test lint bench bench-search clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/fhir-server serve --host 127.0.0.1 --port 8080

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup

lint: $(STAMP)
	$(BIN)/ruff check fhir_server tests bench tools
	$(BIN)/mypy fhir_server
	$(BIN)/lint-imports

bench: $(STAMP)
	$(BIN)/python -m bench.rest

bench-search: $(STAMP)
	$(BIN)/python -m bench.search

clean:
	rm -rf $(VENV) var
