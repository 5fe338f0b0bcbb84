"""Score predictions against the mini-RAT7M table: MPJPE, PA-MPJPE, N-MPJPE (and 2D scores).

``python metric_utils/compute_metrics.py --pred_path preds.csv`` as the dataset documentation names it, from a
checkout. The command itself is :mod:`rat7m.cli.metrics` (installed: ``rat7m metrics`` or ``rat7m-metrics``);
``--help`` says everything.
"""

import sys
from pathlib import Path

if __name__ == "__main__" and __package__ in (None, ""):  # run as a file: the checkout's rat7m package first
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rat7m.cli.entry import script  # light: Ctrl-C handling is set up before the heavy imports

script(__name__, "metrics")  # run: the command; imported: the command's module itself
