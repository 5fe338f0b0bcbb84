"""Export the mini-RAT7M table to COCO/MMPose, DeepLabCut, YOLO pose, SLEAP, anipose or DANNCE.

``python export.py`` as the dataset documentation names it, from a checkout. The command itself is
:mod:`rat7m.cli.export` (installed: ``rat7m export`` or ``rat7m-export``); ``--help`` says everything.
"""

from rat7m.cli.entry import script  # light: Ctrl-C handling is set up before the command's heavy imports

script(__name__, "export")  # run: the command; imported: the command's module itself
