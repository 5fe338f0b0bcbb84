"""Export mini-RAT7M tables to the training formats of the field, one module per format.

``coco`` (COCO keypoints + MMPose dataset info), ``dlc`` (DeepLabCut), ``yolo`` (Ultralytics YOLO
pose), ``slp`` (SLEAP, needs sleap-io), ``anipose`` (aniposelib calibration) and ``dannce``
(Label3D files over the raw videos). Shared selection, visibility, boxes and image sizes live in
:mod:`rat7m.export.common`; the command line is :mod:`rat7m.export.cli` (``export.py``,
``rat7m-export``).
"""

from typing import Any

from rat7m.errors import BadInputError

#: Every format, in the order ``all`` exports them.
FORMATS = ("coco", "dlc", "yolo", "slp", "anipose", "dannce")


def export(fmt: str, **options: Any) -> Any:
    """Export one format of a table into ``out/<fmt>/``, with keyword arguments (no ``Namespace``).

    ``rat7m.export.export("coco", table="table.pkl", out="exports", root="/data/rat7m", split="train")``;
    the options and what it returns: :func:`rat7m.export.api.export_format`.
    """
    if fmt not in FORMATS:
        raise BadInputError(f"no export format {fmt!r}; the formats are {', '.join(FORMATS)}")
    from rat7m.export.api import export_format

    return export_format(fmt, **options)
