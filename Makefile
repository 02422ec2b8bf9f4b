# The README's two commands: `make run` and `make test`. Both create the virtualenv
# and install what they need; `make test` also provisions PostgreSQL and RabbitMQ.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: run test check lint typecheck lint-openapi pytest bench chaos test-cluster audit clean

$(INSTALLED): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

run: $(INSTALLED)
	$(BIN)/boxoffice serve

test: $(INSTALLED)
	scripts/test-services.sh $(MAKE) --no-print-directory check

check: lint typecheck lint-openapi pytest

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(INSTALLED)
	$(BIN)/mypy

# The OpenAPI document through Redocly's recommended rules and Spectral's spectral:oas
# (npm packages, installed under .tools/); any error or warning fails.
lint-openapi: $(INSTALLED)
	scripts/lint-openapi.sh $(BIN)

# The cluster run beside the rest (scripts/pytest-beside.sh says why that is safe).
pytest: $(INSTALLED)
	scripts/pytest-beside.sh $(BIN)/pytest

# Known vulnerabilities of the installed dependencies (PyPI's advisory data). Fails when
# a dependency cannot be checked, rather than pass on what it did not see.
audit: $(INSTALLED)
	$(BIN)/pip-audit --strict --skip-editable

clean:
	rm -rf $(VENV) var .mypy_cache .pytest_cache .ruff_cache

# Boxoffice beside its baselines, on a PostgreSQL with its durable defaults; load from
# wrk (Debian's package). Results and plots go to benchmarks/results/.
bench: $(INSTALLED)
	command -v wrk >/dev/null || { apt-get update -q >/dev/null && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends wrk >/dev/null; }
	TEST_PG_DURABLE=1 scripts/test-services.sh $(BIN)/python -m benchmarks.run

# Reservations under load while parts are SIGKILLed and the servers restarted, then
# the books. Several seeds on RabbitMQ and on the embedded transport; fails if any
# run does not balance. CHAOS_RESERVATIONS and CHAOS_SEEDS size it.
CHAOS_RESERVATIONS ?= 1600
CHAOS_SEEDS ?= 1 2 3
chaos: $(INSTALLED)
	scripts/test-services.sh sh -c 'for seed in $(CHAOS_SEEDS); do \
	  for transport in amqp filesystem; do \
	    $(BIN)/python -m tests.chaos.run --seed $$seed --transport $$transport \
	      --reservations $(CHAOS_RESERVATIONS) --work var/chaos || exit 1; \
	  done; done'

# The service on seven hosts (network namespaces, as root): the active parts' host cut
# off CLUSTER_CUTS times and a worker host killed, then the books and the take-overs.
CLUSTER_RESERVATIONS ?= 400
CLUSTER_CUTS ?= 5
test-cluster: $(INSTALLED)
	TEST_SERVICES_INSTALL_ONLY=1 scripts/test-services.sh
	$(BIN)/python -m tests.cluster.run --reservations $(CLUSTER_RESERVATIONS) --cuts $(CLUSTER_CUTS)
