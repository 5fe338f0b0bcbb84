"""``python -m rat7m.render``: the render command, :mod:`rat7m.cli.render` (``rat7m render``, ``rat7m-render``)."""

import sys

if __name__ == "__main__":
    from rat7m.cli.entry import run_command  # light: Ctrl-C handling is set up before the heavy imports

    sys.exit(run_command("render", "rat7m-render"))
else:  # `import rat7m.render.__main__` (older code and tests): the command's module itself
    from rat7m.cli import render

    sys.modules[__name__] = render
