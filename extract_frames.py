"""Extract the frames the mini-RAT7M annotation table wants from the RAT7M video chunks, as JPEGs.

``python extract_frames.py`` as the dataset documentation names it, from a checkout. The command itself is
:mod:`rat7m.cli.extract` (installed: ``rat7m extract`` or ``rat7m-extract``); ``--help`` says everything.
"""

import sys

if __name__ == "__main__":
    from rat7m.cli.entry import run_command  # light: Ctrl-C handling is set up before the heavy imports

    sys.exit(run_command('extract'))
else:  # `import extract_frames`: the command's module itself, so code and tests that use its names keep working
    from rat7m.cli import extract

    sys.modules[__name__] = extract
