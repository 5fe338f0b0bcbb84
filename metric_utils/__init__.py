"""RAT7M evaluation: per-sample pose metrics (``metrics``) and the ``compute_metrics`` script."""

from metric_utils.metrics import MAX_MAGNITUDE, joint_errors, mpjpe, n_mpjpe, pa_mpjpe

__all__ = ["MAX_MAGNITUDE", "joint_errors", "mpjpe", "n_mpjpe", "pa_mpjpe"]
