"""``python -m rat7m.demo``: the whole toolkit end to end on synthetic data (:mod:`rat7m.demo.pipeline`)."""

import sys

from rat7m.cli import run_main
from rat7m.demo.pipeline import main

if __name__ == "__main__":
    sys.exit(run_main(main))
