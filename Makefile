# The two commands a new user needs: `make run` and `make test`.
SHELL := /bin/bash
VENV  ?= .venv
PY    := $(VENV)/bin/python
SERVICES := eval "$$(scripts/ensure-services.sh)"

.PHONY: run test install system schema bench clean

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@touch $@

install: $(VENV)/.installed

system:
	@scripts/ensure-system.sh

## Start the whole stack in the foreground: migrations, API, worker, inbound SMTP.
run: install system
	@$(SERVICES) && $(PY) -m app run

## Run the whole test suite against real PostgreSQL, Redis, SMTP and Chromium.
test: install system
	@$(SERVICES) && $(PY) -m pytest $(PYTEST_ARGS)

## Regenerate schema.graphql from the code.
schema: install
	$(PY) -m app export-schema --output schema.graphql

clean:
	rm -rf .data .pytest_cache
