"""Export the mini-RAT7M table to COCO/MMPose, DeepLabCut, YOLO pose, SLEAP, anipose or DANNCE.

    python export.py coco --annotation mini_rat7m_train_test_annotation.pkl --root /data/rat7m --out exports
    python export.py all --root /data/rat7m --out exports --split train

See ``python export.py --help`` (rat7m/export/cli.py) for every option and the exit codes.
"""

import sys

if __name__ == "__main__":  # first: a Ctrl-C or SIGTERM during the imports below is one line, exit 130 / 143
    from rat7m import interrupt

    interrupt.at_start()

from rat7m.export.cli import script_main

if __name__ == "__main__":
    sys.exit(script_main())
