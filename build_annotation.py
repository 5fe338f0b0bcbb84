"""Build the mini-RAT7M annotation table from annotations/mocap-*.mat, or check a table.

``python build_annotation.py`` as the dataset documentation names it, from a checkout. The command itself is
:mod:`rat7m.cli.build_annotation` (installed: ``rat7m build-annotation`` or ``rat7m-build-annotation``);
``--help`` says everything.
"""

from rat7m.cli.entry import script  # light: Ctrl-C handling is set up before the command's heavy imports

script(__name__, "build-annotation")  # run: the command; imported: the command's module itself
