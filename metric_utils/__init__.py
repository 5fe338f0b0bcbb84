"""The documented paths, kept as shims: ``metric_utils/compute_metrics.py`` and ``metric_utils.metrics``.

Everything lives in the ``rat7m`` package (:mod:`rat7m.metrics`, :mod:`rat7m.predictions`,
:mod:`rat7m.evaluate`).
"""

from rat7m.metrics import MAX_MAGNITUDE, joint_errors, mpjpe, n_mpjpe, pa_mpjpe

__all__ = ["MAX_MAGNITUDE", "joint_errors", "mpjpe", "n_mpjpe", "pa_mpjpe"]
