# gateway: the two commands a user needs are `make run` and `make test`.
# Everything goes into a virtualenv in .venv (override with VENV=...).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONFIG ?= conf/gateway.yaml
# Hypothesis profile for the test suite: ci runs many examples, dev a few.
HYPOTHESIS_PROFILE ?= ci
PYTEST_ARGS ?=

.PHONY: run test typecheck install install-test check-config bench clean dropin-cache

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit("gateway needs Python 3.11 or newer, found %s" % sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# A normal editable install: setup.cfg's package_dir makes it put the checkout on sys.path,
# so twistd also finds twisted/plugins/gateway_plugin.py from this tree.
$(VENV)/.installed: $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[uvloop]'
	@touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e '.[uvloop,test]'
	@touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

run: install
	$(BIN)/gateway run -c $(CONFIG)

check-config: install
	$(BIN)/gateway check-config $(CONFIG)

# The type check first (mypy over gateway/, configured in setup.cfg), then the tests.
test: install-test typecheck
	HYPOTHESIS_PROFILE=$(HYPOTHESIS_PROFILE) $(BIN)/python -m pytest $(PYTEST_ARGS)

typecheck: install-test
	$(BIN)/python -m mypy

# Refresh Twisted's plugin cache (twistd does it on first use as well).
dropin-cache: install
	$(BIN)/python -c 'from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))'

# Every side-by-side benchmark suite (bench/README.md; the peers come from bench/setup_peers.sh).
BENCH_OUT ?= bench/results/$(shell date -u +%Y%m%dT%H%M%SZ)
BENCH_REPS ?= 3
bench: install
	bench/run.sh $(BENCH_OUT) $(BENCH_REPS)

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .hypothesis .mypy_cache twisted/plugins/dropin.cache
