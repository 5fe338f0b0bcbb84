"""``python -m rat7m <command>``: the same as the ``rat7m`` console command."""

import sys

if __name__ == "__main__":
    from rat7m.cli.entry import main

    sys.exit(main())
