# Two entry points (see README.md):
#   make run   install what running needs, then start engine + gateway on a bundled demo track
#   make test  install that and the test tools, run ruff and mypy --strict, then the whole
#              test suite
# Everything else here is a step of those two (make check: the static checks alone).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# What is installed in $(VENV): the project with its run-time dependencies, then
# (make test) its test extras too. Each stamp is redone when the pins change.
RUN_STAMP := $(VENV)/.installed-run
TEST_STAMP := $(VENV)/.installed-test
# Our packages, all under ruff and mypy --strict.
PACKAGES := protocol applog lifecycle audio_engine gateway bot playground_ws audiogate loadtest
# libopus0: the Opus encoder opuslib loads. chromium: the real browser of the
# playground tests (driven by playwright's Python package, never downloaded).
# nodejs: the JavaScript Lavalink client of tests/js runs on it (npm comes with it).
# prometheus: its promtool checks the rules in deploy/prometheus/ in the tests.
# Debian ships promtool in no smaller package than the server's: about 95 MB, and
# 220 MB more of JavaScript libraries its web interface depends on (moment-timezone
# alone is 214 MB); installed without its recommendations (the node exporter and
# its collectors, 35 packages). Where systemd runs, the package enables and starts a
# prometheus.service (on :9090); the tests use promtool alone.
RUN_SYSTEM_PACKAGES := libopus0
TEST_SYSTEM_PACKAGES := libopus0 chromium nodejs
TEST_SYSTEM_PACKAGES_NO_RECOMMENDS := prometheus

# Install the Debian packages in $(1) that are missing (root, or sudo when present),
# with the extra apt-get options $(2).
define ensure_debian_packages
missing=""; \
for p in $(1); do \
    dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
done; \
if [ -n "$$missing" ]; then \
    echo "installing Debian packages:$$missing"; \
    if [ "$$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi; \
    $$sudo apt-get update -qq && \
    DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq $(2) $$missing >/dev/null; \
fi
endef

.PHONY: run test check setup setup-test system-packages-run system-packages-test bench clean

run: setup
	$(BIN)/audiogate run

# Static checks before the tests: ruff on every package, the tests and the benchmarks;
# mypy --strict on every package (the list is [tool.mypy] in pyproject.toml).
# The tests whose judges time the audio as it is delivered (gaps between pages, packet
# rates, underruns, live changes heard in time: marked `realtime`) run first, one at a
# time, so that no other test's engines and browsers compete with theirs; the rest then
# run in three pytest-xdist workers, one file each at a time (its module fixtures start
# their engines once): those tests mostly wait on real time (the phase used 45 % of the
# 2 cores with two workers: 8:07, three: 6:03). (Everything in two workers beside a CPU
# hog failed 4 isolation tests in one run of two; the realtime tests alone in two
# workers, beside other work, failed 4.)
# Tests marked `slow` (full-size leak and eviction runs) run only when asked:
# PYTEST_ARGS="-m slow". PYTEST_ARGS="..." runs just that, in one process.
test: setup-test
	$(BIN)/python -m ruff check $(PACKAGES) tests bench
	$(BIN)/python -m mypy
ifdef PYTEST_ARGS
	$(BIN)/python -m pytest $(PYTEST_ARGS)
else
	$(BIN)/python -m pytest -m "realtime and not slow"
	$(BIN)/python -m pytest -n 3 --dist loadfile -m "not realtime and not slow"
endif

setup: system-packages-run $(RUN_STAMP)

setup-test: system-packages-test $(TEST_STAMP)

system-packages-run:
	@$(call ensure_debian_packages,$(RUN_SYSTEM_PACKAGES))

system-packages-test:
	@$(call ensure_debian_packages,$(TEST_SYSTEM_PACKAGES))
	@$(call ensure_debian_packages,$(TEST_SYSTEM_PACKAGES_NO_RECOMMENDS),--no-install-recommends)

# The project and what it needs to run: no test tools.
$(RUN_STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e .
	touch $@

# The test extras on top (pytest, hypothesis, playwright, schemathesis, ruff, mypy...),
# and the JavaScript Lavalink client a test drives on Node.js (18 or newer, on PATH):
# tests/js/, pinned by its package-lock.json.
$(TEST_STAMP): $(RUN_STAMP) tests/js/package-lock.json
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	@command -v npm >/dev/null || { echo "error: the tests need Node.js 18+ and npm on PATH"; exit 1; }
	npm ci --prefix tests/js --no-audit --no-fund --silent
	touch $@

bench: setup
	$(BIN)/python bench/run_all.py

# The static checks alone.
check: setup-test
	$(BIN)/python -m ruff check $(PACKAGES) tests bench
	$(BIN)/python -m mypy

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .mypy_cache .ruff_cache build *.egg-info
