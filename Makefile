# The two commands a new user needs: `make run` and `make test`.
SHELL := /bin/bash
VENV  ?= .venv
PY    := $(VENV)/bin/python
SERVICES := eval "$$(scripts/ensure-services.sh)"

.PHONY: run test test-future install system schema bench clean

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

## The tests that plan, queue or compare times, again with the wall clock a year ahead
## (libfaketime): no test may depend on today's date. CI runs this after `make test`.
TIME_TESTS := tests/unit tests/integration/test_scheduling.py tests/integration/test_activity_api.py \
	tests/integration/test_ingestion.py tests/integration/test_corpus_pipeline.py \
	tests/integration/test_reply_policy.py tests/integration/test_conversations_api.py \
	tests/integration/test_message_failures.py tests/integration/test_bot_runs.py \
	tests/integration/test_participant.py tests/integration/test_webhook_delivery.py
CLOCK_SHIFT ?= +365d
test-future: install system
	@$(SERVICES) && faketime -f "$(CLOCK_SHIFT)" \
		$(PY) -m pytest $(PYTEST_ARGS) $(TIME_TESTS)

## Regenerate schema.graphql from the code.
schema: install
	$(PY) -m app export-schema --output schema.graphql

clean:
	rm -rf .data .pytest_cache
