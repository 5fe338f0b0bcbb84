"""Score predictions against the mini-RAT7M table: MPJPE, PA-MPJPE, N-MPJPE (and 2D scores).

``python metric_utils/compute_metrics.py --pred_path preds.csv`` as the dataset documentation names it, from a
checkout. The command itself is :mod:`rat7m.cli.metrics` (installed: ``rat7m metrics`` or ``rat7m-metrics``);
``--help`` says everything.
"""

import sys
from pathlib import Path

if __name__ == "__main__":
    if __package__ in (None, ""):  # run as a file: the checkout's rat7m package first on the path
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from rat7m.cli.entry import run_command  # light: Ctrl-C handling is set up before the heavy imports

    sys.exit(run_command("metrics"))
else:  # `from metric_utils import compute_metrics`: the command's module itself, for code and tests using its names
    from rat7m.cli import metrics

    sys.modules[__name__] = metrics
