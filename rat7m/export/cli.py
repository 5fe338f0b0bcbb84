"""The export command moved to :mod:`rat7m.cli.export`; this name stays for code that imports it.

From Python, export with keyword arguments: :func:`rat7m.export.export`.
"""

import sys

from rat7m.cli import export

sys.modules[__name__] = export
