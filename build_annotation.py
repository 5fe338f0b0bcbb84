"""Build the mini-RAT7M annotation table from annotations/mocap-*.mat, or check a table.

``python build_annotation.py`` as the dataset documentation names it, from a checkout. The command itself is
:mod:`rat7m.cli.build_annotation` (installed: ``rat7m build-annotation`` or ``rat7m-build-annotation``);
``--help`` says everything.
"""

import sys

if __name__ == "__main__":
    from rat7m.cli.entry import run_command  # light: Ctrl-C handling is set up before the heavy imports

    sys.exit(run_command('build-annotation'))
else:  # `import build_annotation`: the command's module itself, so code and tests that use its names keep working
    from rat7m.cli import build_annotation

    sys.modules[__name__] = build_annotation
