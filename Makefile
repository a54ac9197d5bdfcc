# The two set-up commands of the README, idempotent on a fresh clone of a fresh machine:
#   make quickstart   install the package, then train the main job here (SQLite warehouse)
#   make test         install everything the tests need, start PostgreSQL, run the whole suite
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | cksum | cut -d' ' -f1)
QUICKSTART_CONFIG ?= jobs/configs/fast.yaml
PYTEST_ARGS ?=
# Two workers (this machine's two cores); a test file stays on one worker, so its module fixtures
# (a trained model, a Chromium) are built once. PYTEST_WORKERS=0 runs in one process.
PYTEST_WORKERS ?= 2

.PHONY: quickstart test install install-test tools services lint clean

quickstart: install
	bash scripts/quickstart.sh "$(PY)" "$(QUICKSTART_CONFIG)"

test: install-test tools services
	PATH="$(CURDIR)/.tools/bin:$$PATH" $(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e ".[test,dev]"
	touch $@

install-test: install

tools:
	bash scripts/install_tools.sh

services:
	bash scripts/start_postgres.sh

lint: install
	$(VENV)/bin/ruff check cifar_ops tests bench jobs
	$(VENV)/bin/ruff format --check cifar_ops tests bench jobs
	$(VENV)/bin/mypy cifar_ops

clean:
	rm -rf $(VENV) .tools .cache .artifacts
