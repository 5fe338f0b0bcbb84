"""Download RAT7M (videos and motion-capture annotations) from Figshare: resumable and verified.

``python download_all.py`` as the dataset documentation names it, from a checkout. The command itself is
:mod:`rat7m.cli.download` (installed: ``rat7m download`` or ``rat7m-download``); ``--help`` says everything.
"""

from rat7m.cli.entry import script  # light: Ctrl-C handling is set up before the command's heavy imports

script(__name__, "download")  # run: the command; imported: the command's module itself
