# Two commands on a fresh machine: `make demo` and `make test`.
# torch is pinned to 2.13.0: on this machine pip takes the local CPU wheel for it;
# any other spec makes pip download a multi-GB CUDA build.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH := torch==2.13.0
STAMP := $(VENV)/.medgap-installed

.PHONY: setup browser demo test test-all bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml medgap/data/install.py
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e '.[test,bench]'
	$(BIN)/python -m medgap.data.install
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/medgap demo --out demo-output --overwrite

# The report test opens report.html in headless Chromium (Debian's package).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's chromium for the report test"; \
	    (apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1 || \
	     (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1)) \
	    || echo "could not install chromium: the browser test will be skipped"; \
	  else echo "chromium not found and not root: install it to run the browser test"; fi; }

test: $(STAMP) browser
	$(BIN)/python -m pytest -q

test-all: $(STAMP) browser
	$(BIN)/python -m pytest -q -m "slow or not slow"

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) demo-output .pytest_cache
