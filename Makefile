# Two entry points (see README.md):
#   make run   set everything up, then start engine + gateway on a bundled demo track
#   make test  set everything up, then run the whole test suite
# Everything else here is a step of those two.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# libopus0: the Opus encoder opuslib loads. chromium: the real browser of the
# playground tests (driven by playwright's Python package, never downloaded).
RUN_SYSTEM_PACKAGES := libopus0
TEST_SYSTEM_PACKAGES := libopus0 chromium

# Install the Debian packages in $(1) that are missing (root, or sudo when present).
define ensure_debian_packages
missing=""; \
for p in $(1); do \
    dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
done; \
if [ -n "$$missing" ]; then \
    echo "installing Debian packages:$$missing"; \
    if [ "$$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi; \
    $$sudo apt-get update -qq && \
    DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq $$missing >/dev/null; \
fi
endef

.PHONY: run test setup setup-test system-packages-run system-packages-test bench clean

run: setup
	$(BIN)/audiogate run

test: setup-test
	$(BIN)/python -m pytest $(PYTEST_ARGS)

setup: system-packages-run $(STAMP)

setup-test: system-packages-test $(STAMP)

system-packages-run:
	@$(call ensure_debian_packages,$(RUN_SYSTEM_PACKAGES))

system-packages-test:
	@$(call ensure_debian_packages,$(TEST_SYSTEM_PACKAGES))

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

bench: setup
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build *.egg-info
