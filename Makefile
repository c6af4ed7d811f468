# Two commands: `make run` (serve the seeded cities with GraphiQL) and `make test` (the whole suite).
# Both do all set-up on a fresh clone: virtualenv, install, embedded PostgreSQL, migrations, cities.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# `make test` runs two workers, each with its own database on one server (tests/conftest.py): about 2.5
# minutes here, against 8-9 in one process. `make test PYTEST_ARGS="-k rls -x"` runs those in one process.
PYTEST_ARGS ?= -n 2

.PHONY: run test install schema clean-data help

help:
	@echo "make run     serve GraphiQL on http://127.0.0.1:8000/graphql (CARBON_HOST / CARBON_PORT override)"
	@echo "make test    run the whole suite against real PostgreSQL (embedded unless CARBON_DATABASE_URL is set)"
	@echo "make schema  regenerate schema.graphql from the code"
	@echo "make bench-ingest  ingestion throughput vs raw asyncpg (prints b/a, target >= 0.5)"
	@echo "make bench-redeem  redemptions vs raw asyncpg ledger transactions, 1-32 clients (prints b/a peak vs peak, target >= 0.5)"
	@echo "make bench-notify  what the live-update NOTIFY triggers cost writes, triggers off vs on"
	@echo "make bench-dashboard  crossCityDashboard at 20M behaviour records (seeds once, prints p50/p95, target p95 < 100 ms;"
	@echo "                      BENCH_ARGS=\"--records 1000000\" for a smaller run, \"--reseed\" to seed again)"

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is required (found " + sys.version.split()[0] + "); set PYTHON=/path/to/python3.11")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/carbon-inclusive serve

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

schema: install
	$(BIN)/carbon-inclusive export-schema --output schema.graphql

clean-data:
	rm -rf .data

.PHONY: bench-ingest
bench-ingest: install
	$(BIN)/python bench/ingest.py

.PHONY: bench-redeem
bench-redeem: install
	$(BIN)/python bench/redeem.py

.PHONY: bench-dashboard
bench-dashboard: install
	$(BIN)/python bench/dashboard.py $(BENCH_ARGS)

.PHONY: fuzz
fuzz: install  ## property-based fuzz of the whole schema, long form (FUZZ_EXAMPLES per role and kind)
	CARBON_FUZZ_EXAMPLES=$(or $(FUZZ_EXAMPLES),400) $(BIN)/python -m pytest tests/test_fuzz.py -q

.PHONY: bench-notify
bench-notify: install  ## what the live-update NOTIFY triggers cost writes (ADR 0012)
	$(BIN)/python bench/notify.py
