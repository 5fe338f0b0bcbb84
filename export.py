"""Export the mini-RAT7M table to COCO/MMPose, DeepLabCut, YOLO pose, SLEAP, anipose or DANNCE.

``python export.py`` as the dataset documentation names it, from a checkout. The command itself is
:mod:`rat7m.cli.export` (installed: ``rat7m export`` or ``rat7m-export``); ``--help`` says everything.
"""

import sys

if __name__ == "__main__":
    from rat7m.cli.entry import run_command  # light: Ctrl-C handling is set up before the heavy imports

    sys.exit(run_command('export'))
else:  # `import export`: the command's module itself, so code and tests that use its names keep working
    from rat7m.cli import export

    sys.modules[__name__] = export
