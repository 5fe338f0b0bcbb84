"""Export mini-RAT7M tables to the training formats of the field, one module per format.

``coco`` (COCO keypoints + MMPose dataset info), ``dlc`` (DeepLabCut), ``yolo`` (Ultralytics YOLO
pose), ``slp`` (SLEAP, needs sleap-io), ``anipose`` (aniposelib calibration) and ``dannce``
(Label3D files over the raw videos). Each is an :class:`~rat7m.export.registry.ExportFormat` in
:data:`~rat7m.export.registry.REGISTRY` (its options, its optional dependency, whether it needs the
images); shared selection, visibility, boxes and image sizes live in :mod:`rat7m.export.common`; the
command line is :mod:`rat7m.export.cli` (``export.py``, ``rat7m-export``).
"""

from typing import Any

from rat7m.errors import BadInputError
from rat7m.export.registry import FORMATS, REGISTRY, ExportFormat, Requirement, get_format

__all__ = ["FORMATS", "REGISTRY", "ExportFormat", "Requirement", "export", "get_format"]

def export(fmt: str, **options: Any) -> Any:
    """Export one format of a table into ``out/<fmt>/``, with keyword arguments (no ``Namespace``).

    ``rat7m.export.export("coco", table="table.pkl", out="exports", root="/data/rat7m", split="train")``;
    the options and what it returns: :func:`rat7m.export.api.export_format`.
    """
    if fmt not in FORMATS:
        raise BadInputError(f"no export format {fmt!r}; the formats are {', '.join(FORMATS)}")
    from rat7m.export.api import export_format

    return export_format(fmt, **options)
