"""Extract the frames the mini-RAT7M annotation table wants from the RAT7M video chunks, as JPEGs.

``python extract_frames.py`` as the dataset documentation names it, from a checkout. The command itself is
:mod:`rat7m.cli.extract` (installed: ``rat7m extract`` or ``rat7m-extract``); ``--help`` says everything.
"""

from rat7m.cli.entry import script  # light: Ctrl-C handling is set up before the command's heavy imports

script(__name__, "extract")  # run: the command; imported: the command's module itself
