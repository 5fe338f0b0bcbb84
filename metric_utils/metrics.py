"""The documented import path, kept: ``from metric_utils.metrics import mpjpe, pa_mpjpe, n_mpjpe``.

The metrics live in :mod:`rat7m.metrics` (numpy only); this module re-exports them.
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    from rat7m.metrics import MAX_MAGNITUDE, joint_errors, mpjpe, n_mpjpe, pa_mpjpe
except ModuleNotFoundError as exc:  # metric_utils/ itself on the path (``from metrics import mpjpe``) in a checkout
    if exc.name != "rat7m":
        raise
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from rat7m.metrics import MAX_MAGNITUDE, joint_errors, mpjpe, n_mpjpe, pa_mpjpe

__all__ = ["MAX_MAGNITUDE", "joint_errors", "mpjpe", "n_mpjpe", "pa_mpjpe"]
