# Every target bootstraps .venv itself, so a fresh clone needs only `make demo` or `make test`.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
EXTRAS := keras,serve,dev,extra-weights
# glibc's malloc returns freed image buffers to the OS and page-faults them back in every batch;
# these tunables keep them (measured: ~40 % of CPU time in training on the 2-core machine).
export GLIBC_TUNABLES := glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=4294967295

.PHONY: install demo test test-fast e2e lint bench browser dist clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# pyproject.toml asks for ranges; constraints.txt pins torch/torchvision to this disk's wheels.
	$(PY) -m pip install -q -c constraints.txt -e '.[$(EXTRAS)]'
	touch $(STAMP)

# Debian's Chromium drives the serve page in the browser test (Playwright's own download is offline here).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium missing: install Debian's chromium to run the browser test"; fi; }

demo: $(STAMP)
	$(VENV)/bin/imgclf demo --out runs/demo

test: $(STAMP) browser
	$(PY) -m pytest -q -ra

# the unit tests not marked slow: one module or rule at a time, in about a minute
test-fast: $(STAMP)
	$(PY) -m pytest -q -ra -m "not slow" tests/unit

e2e: $(STAMP) browser
	$(PY) -m pytest -q -ra tests/e2e

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

bench: $(STAMP)
	$(VENV)/bin/imgclf bench --json runs/bench.json
	$(PY) benchmarks/bench_data.py
	$(PY) benchmarks/bench_train.py

# sdist + wheel in dist/ (tests/e2e/test_wheel.py installs the wheel in a fresh venv and runs it)
dist: $(STAMP)
	rm -rf dist
	$(PY) -m build --no-isolation --outdir dist .

clean:
	rm -rf $(VENV) runs build dist .pytest_cache
