"""Download RAT7M (videos and motion-capture annotations) from Figshare: resumable and verified.

``python download_all.py`` as the dataset documentation names it, from a checkout. The command itself is
:mod:`rat7m.cli.download` (installed: ``rat7m download`` or ``rat7m-download``); ``--help`` says everything.
"""

import sys

if __name__ == "__main__":
    from rat7m.cli.entry import run_command  # light: Ctrl-C handling is set up before the heavy imports

    sys.exit(run_command('download'))
else:  # `import download_all`: the command's module itself, so code and tests that use its names keep working
    from rat7m.cli import download

    sys.modules[__name__] = download
