"""Export mini-RAT7M tables to the training formats of the field, one module per format.

``coco`` (COCO keypoints + MMPose dataset info), ``dlc`` (DeepLabCut), ``yolo`` (Ultralytics YOLO
pose), ``slp`` (SLEAP, needs sleap-io), ``anipose`` (aniposelib calibration) and ``dannce``
(Label3D files over the raw videos). Shared selection, visibility, boxes and image sizes live in
:mod:`rat7m.export.common`; the command line is :mod:`rat7m.export.cli` (``export.py``,
``rat7m-export``).
"""

#: Every format, in the order ``all`` exports them.
FORMATS = ("coco", "dlc", "yolo", "slp", "anipose", "dannce")
