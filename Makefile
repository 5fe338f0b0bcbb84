# Quick start: `make test` (sets up .venv and runs the suite), `make demo` (whole pipeline on synthetic data).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test demo lint bench clean

REQUIREMENTS := $(wildcard requirements*.txt)

# Every requirements file (runtime, extras, dev), then the toolkit itself, editable, without deps:
# the rat7m-* commands land in .venv/bin and the dependency lists stay plain pip files.
# aniposelib (reads back the anipose export in the tests) goes in without its deps: it asks for the
# desktop opencv-contrib-python, which would overwrite our headless cv2 and needs libGL; numba and
# toml, which it imports, are in requirements-dev.txt.
$(STAMP): $(REQUIREMENTS) pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(addprefix -r ,$(REQUIREMENTS))
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	$(PY) -m pip install --quiet --no-deps "aniposelib>=0.5"
	touch $(STAMP)

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest

demo: $(STAMP)
	$(PY) -m rat7m.demo

# Benchmarks print ratios against a baseline run side by side; figures are in README.
# The extraction benchmark generates ~150 MB of 1328x1048 video once (minutes) into BENCH_CACHE.
BENCH_CACHE ?= $(HOME)/.cache/rat7m-bench
bench: $(STAMP)
	$(PY) bench/bench_metrics.py
	$(PY) bench/bench_triangulate.py
	$(PY) bench/bench_download.py
	$(PY) bench/bench_extract.py --cache $(BENCH_CACHE)
	$(PY) bench/bench_dataset.py --cache $(BENCH_CACHE)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) demo_output .pytest_cache
