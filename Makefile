# Quick start: `make test` (sets up .venv and runs the suite), `make demo` (whole pipeline on synthetic data).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test demo lint docs bench clean

REQUIREMENTS := $(wildcard requirements*.txt)

# Every requirements file (runtime, extras, dev), then the toolkit itself, editable, without deps:
# the rat7m-* commands land in .venv/bin and the dependency lists stay plain pip files.
# aniposelib (reads back the anipose export in the tests) goes in without its deps: it asks for the
# desktop opencv-contrib-python, which would overwrite our headless cv2 and needs libGL; numba and
# toml, which it imports, are in requirements-dev.txt.
# uv (from PyPI, into the venv) does the installing: from a warm cache it takes seconds where pip
# takes over a minute (pip asks the index about each of the ~130 packages and resolves them in
# Python, even when every wheel is cached). Where uv cannot be had, pip does the same job.
# uv does not read pip's configuration, so it is handed pip's find-links: the wheels that lie on these
# machines, the CPU build of PyTorch among them (without them uv would take PyPI's CUDA build, several GB).
# From a warm cache the whole install then takes ~8 s (pip putting torch in alone took 22 s).
FIND_LINKS = $(sort $(PIP_FIND_LINKS) $(shell $(PYTHON) -m pip config get global.find-links 2>/dev/null))
$(STAMP): $(REQUIREMENTS) pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	if $(PY) -m pip install --quiet uv; then \
	  $(VENV)/bin/uv pip install --quiet --python $(PY) $(addprefix --find-links ,$(FIND_LINKS)) \
	    $(addprefix -r ,$(REQUIREMENTS)) && \
	  $(VENV)/bin/uv pip install --quiet --python $(PY) --no-deps --no-build-isolation -e . "aniposelib>=0.5"; \
	else \
	  $(PY) -m pip install --quiet --upgrade pip && \
	  $(PY) -m pip install --quiet $(addprefix -r ,$(REQUIREMENTS)) && \
	  $(PY) -m pip install --quiet --no-deps --no-build-isolation -e . && \
	  $(PY) -m pip install --quiet --no-deps "aniposelib>=0.5"; \
	fi
	touch $(STAMP)

# The suite runs on every core (pytest-xdist), one test file per worker at a time, so module fixtures
# (a SLURM cluster, a rendered report) are built once; PYTEST_WORKERS=0 runs it in this process.
# Files go out in collection order, the slowest first (tests/conftest.py: SLOWEST_FIRST), not xdist's
# default order by number of tests, so both workers finish together.
# Bytecode is cached as Python does by default, even where PYTHONDONTWRITEBYTECODE is set (as on our
# machines): uv installs without .pyc files, so otherwise each of the hundreds of processes the suite
# starts compiled matplotlib, SciPy, TensorFlow ... from source again (matplotlib's import: 1.3 s, 0.5 s
# with its bytecode cached).
# The type check (~27 s of one core with no cache, as on a fresh clone) and the documentation build run
# beside the tests, in the idle time of their servers, subprocesses and waits (the suite keeps 2 cores
# ~70% busy); their output follows the tests', any of the three failing fails the target, and Ctrl-C stops
# all three (background jobs of a non-interactive shell ignore SIGINT: the trap sends them SIGTERM).
PYTEST_WORKERS ?= auto
CHECKS := .venv/checks
test: export PYTHONDONTWRITEBYTECODE :=
test: $(STAMP)
	$(VENV)/bin/ruff check .
	mkdir -p $(CHECKS); \
	$(VENV)/bin/mypy >$(CHECKS)/mypy.log 2>&1 & mypy=$$!; \
	$(MKDOCS) >$(CHECKS)/mkdocs.log 2>&1 & docs=$$!; \
	trap 'kill $$mypy $$docs 2>/dev/null' INT TERM; \
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder; status=$$?; \
	wait $$mypy || status=1; cat $(CHECKS)/mypy.log; \
	if wait $$docs; then tail -n 1 $(CHECKS)/mkdocs.log; else status=1; cat $(CHECKS)/mkdocs.log; fi; \
	exit $$status

demo: $(STAMP)
	$(PY) -m rat7m.demo

# Benchmarks print ratios against a baseline run side by side; figures are in docs/benchmarks.md.
# The extraction benchmark generates ~150 MB of 1328x1048 video once (minutes) into BENCH_CACHE.
BENCH_CACHE ?= $(HOME)/.cache/rat7m-bench
bench: $(STAMP)
	$(PY) bench/bench_metrics.py
	$(PY) bench/bench_triangulate.py --robust
	$(PY) bench/bench_oks.py
	$(PY) bench/bench_download.py
	$(PY) bench/bench_extract.py --cache $(BENCH_CACHE)
	$(PY) bench/bench_dataset.py --cache $(BENCH_CACHE)
	$(PY) bench/bench_export.py

# The documentation site (mkdocs.yml, docs/) into site/; --strict turns every warning (a broken link, a
# docstring that does not parse) into a failure, so `make test` fails with it (not with --quiet: it hides the
# warnings, and strict then counts none). NO_MKDOCS_2_WARNING: Material's
# notice about MkDocs 2 says nothing about our pages.
MKDOCS := NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict
docs: $(STAMP)
	$(MKDOCS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) demo_output .pytest_cache .mypy_cache site
