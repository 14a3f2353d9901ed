# DealerPulse developer commands. Everything runs from a virtualenv that the
# targets create on first use (.venv), so a fresh clone needs only Python >= 3.11.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The optional loadtest extra (locust); `make lint` installs it too, as it checks bench/.
LOADTEST_STAMP := $(VENV)/.installed-loadtest

.PHONY: help venv run test lint proto bench clean browser-deps bench-deps loadtest

help:
	@echo "make run    - set up and run collector + one local agent on SQLite"
	@echo "make test   - set up and run the test suite"
	@echo "make browser-deps - install Chromium + chromedriver for the browser tests (apt)"
	@echo "make lint   - ruff and mypy"
	@echo "make proto  - regenerate the protobuf/gRPC stubs"
	@echo "make bench  - run the benchmarks (not tests); results in bench/results/"
	@echo "make bench-deps - install InfluxDB 1.x and collectd for the peer benchmarks (apt)"
	@echo "make loadtest - locust load test of the HTTP API at a rising rate (~3 min)"

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/dealerpulse up

test: $(STAMP) browser-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The dashboard's browser tests drive the Debian packages chromium and
# chromium-driver. Installed with apt-get when missing (as root, or with sudo
# when it needs no password); never fails: without them the browser tests
# skip with the reason, except under CI=true, where they fail.
BROWSER_PKGS := chromium chromium-driver
APT_INSTALL  := DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends

browser-deps:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then exit 0; fi; \
	if ! command -v apt-get >/dev/null 2>&1; then \
	  echo "browser-deps: no apt-get; install Chromium and chromedriver yourself" \
	       "(browser tests will be skipped)"; exit 0; fi; \
	if [ "$$(id -u)" -eq 0 ]; then SUDO=""; \
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; \
	else echo "browser-deps: need root or password-less sudo to install $(BROWSER_PKGS)" \
	          "(browser tests will be skipped)"; exit 0; fi; \
	echo "browser-deps: installing $(BROWSER_PKGS) with apt-get"; \
	$$SUDO env $(APT_INSTALL) $(BROWSER_PKGS) \
	  || { $$SUDO apt-get update -q && $$SUDO env $(APT_INSTALL) $(BROWSER_PKGS); } \
	  || echo "browser-deps: could not install $(BROWSER_PKGS) (browser tests will be skipped)"

lint: $(LOADTEST_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

proto: $(STAMP)
	$(BIN)/python protos/generate.py

bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

# Locust load test of the HTTP API (bench/loadtest.py); LOADTEST_ARGS passes options,
# e.g. LOADTEST_ARGS="--steps 6 --limited-s 0". locust comes from the `loadtest`
# extra, installed into the venv on first use (not part of `make test`).
$(LOADTEST_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,loadtest]'
	@touch $(LOADTEST_STAMP)

loadtest: $(LOADTEST_STAMP)
	$(BIN)/python -m bench.loadtest $(LOADTEST_ARGS)

# The peer benchmarks (python -m bench --only influx / collectd) compare with
# Debian's influxdb and collectd; they never install anything themselves. Not
# part of `make test`. Their system services are not started (the benchmarks
# run private instances with temp configs).
BENCH_PKGS := influxdb collectd

bench-deps:
	@if [ -x /usr/bin/influxd ] && [ -x /usr/sbin/collectd ]; then exit 0; fi; \
	if [ "$$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $(BENCH_PKGS) \
	  || { $$SUDO apt-get update -q \
	       && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
	            $(BENCH_PKGS); }

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
