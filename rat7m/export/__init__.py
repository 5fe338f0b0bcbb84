"""Export mini-RAT7M tables to the training formats of the field, one module per format.

``coco`` (COCO keypoints + MMPose dataset info), ``dlc`` (DeepLabCut), ``yolo`` (Ultralytics YOLO
pose), ``slp`` (SLEAP, needs sleap-io), ``anipose`` (aniposelib calibration) and ``dannce``
(Label3D files over the raw videos). Each is an :class:`~rat7m.export.registry.ExportFormat` in
:data:`~rat7m.export.registry.REGISTRY` (its options, its optional dependency, whether it needs the
images); shared selection, visibility, boxes and image sizes live in :mod:`rat7m.export.common`; the
command line is :mod:`rat7m.export.cli` (``export.py``, ``rat7m-export``).
"""

from rat7m.export.registry import FORMATS, REGISTRY, ExportFormat, Requirement, get_format

__all__ = ["FORMATS", "REGISTRY", "ExportFormat", "Requirement", "get_format"]
