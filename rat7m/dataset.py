"""A framework-neutral accessor over the mini-RAT7M table and its extracted frames.

Training code wraps it in one line (neither torch nor tensorflow is a dependency)::

    ds = MiniRat7m("mini_rat7m_train_test_annotation.pkl", root="/data/rat7m", split="train")
    ds = MiniRat7m(split="test", images_root="/scratch/rat7m")  # table in $RAT7M_ROOT, images elsewhere
    loader = torch.utils.data.DataLoader(ds, batch_size=8, shuffle=True)  # any __len__/__getitem__ works
    tf_ds = tf.data.Dataset.from_generator(lambda: iter(ds), output_signature=...)

Pixels: the table's 2D columns are in the table's own convention, which for RAT7M is MATLAB's
(the top-left pixel's centre is (1, 1)), while the images, NumPy, OpenCV and every training
library count from (0, 0). Training code wants ``keypoints_2d_zero_based`` / ``com_2d_zero_based``:
they sit on the images. See :mod:`rat7m.pixels`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rat7m import catalogue, pixels
from rat7m.cli import command, default_root
from rat7m.errors import BadInputError
from rat7m.images import read_image
from rat7m.model import Table
from rat7m.table import load_annotation

__all__ = ["MiniRat7m"]


class MiniRat7m:
    """Samples of a mini-RAT7M table: images of each camera, 2D/3D keypoints and cameras.

    Args:
        table_path: the annotation pickle (official or built by ``build_annotation.py``); loaded safely.
            Default: ``root / mini_rat7m_train_test_annotation.pkl``.
        root: dataset root (default: ``$RAT7M_ROOT`` if set, else the current folder).
        images_root: where the images are: the table's ``image_path`` is relative to it (default: ``root``;
            the ``--images-root`` given to ``extract_frames.py`` for a read-only dataset).
        split: ``"train"``, ``"test"`` or ``"all"``.
        cameras: which cameras to return (default all six).
        load_images: False to skip reading JPEGs (keypoints only, e.g. for 3D lifting models).
    """

    def __init__(
        self,
        table_path: str | os.PathLike | None = None,
        root: str | os.PathLike | None = None,
        split: str = "train",
        cameras: Sequence[str] | None = None,
        load_images: bool = True,
        images_root: str | os.PathLike | None = None,
    ) -> None:
        if split not in (*catalogue.SPLITS, "all"):
            raise BadInputError(f"split must be one of train, test, all; got {split!r}")
        self.root = Path(root) if root is not None else default_root()
        self.images_root = Path(images_root) if images_root is not None else self.root
        if table_path is None:
            table_path = catalogue.mini_annotation_path(self.root)
        #: The table (a :class:`rat7m.model.Table`, which is also the table dict).
        self.annotation = load_annotation(table_path)
        available = tuple(self.annotation.camera_names)
        self.cameras = tuple(cameras) if cameras is not None else available
        unknown = [c for c in self.cameras if c not in available]
        if unknown:
            raise BadInputError(f"{table_path}: no camera {', '.join(unknown)}; the table has {', '.join(available)}")
        self.load_images = load_images
        #: The pixel convention of the table's 2D columns (``"matlab"`` or ``"zero-based"``), detected from the table.
        self.pixel_convention = self.annotation.pixel_convention
        self.indices = self.annotation.split_rows(split)

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Unpickled (a DataLoader worker started by spawn): the table comes back as the plain dict it pickles as."""
        self.__dict__.update(state)
        self.annotation = Table.of(self.annotation)

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for i in range(len(self)):
            yield self[i]

    def __getitem__(self, i: int) -> dict[str, Any]:
        """Sample ``i`` of the split.

        Returns:
            ``{"recording": "s1-d1", "row": table row, "images": {cam: (H, W, 3) uint8 RGB} (if loaded),
            "frame_idx": {cam: int}, "keypoints_2d": {cam: (20, 2)}, "com_2d": {cam: (2,)},
            "keypoints_2d_zero_based": {cam: (20, 2)}, "com_2d_zero_based": {cam: (2,)},
            "pixel_convention": str, "keypoints_3d": (20, 3) mm, "cameras": {cam: camera dict}}``.

            Conventions: ``keypoints_2d`` and ``com_2d`` are the table's values as stored, in
            ``pixel_convention`` (MATLAB's 1-based pixels for RAT7M: the image position is the value
            minus 1); ``keypoints_2d_zero_based`` and ``com_2d_zero_based`` are 0-based image pixels
            (pixel ``image[i, j]`` is at ``x = j, y = i``), what NumPy, OpenCV and training code use.
            ``cameras`` are MATLAB calibrations (dicts, both spellings): :func:`rat7m.geometry.project`
            gives 1-based pixels (``rat7m.model.Camera.from_dict(camera).to_zero_based()`` or
            ``.to_opencv()`` give 0-based ones; ``self.annotation.cameras(recording)`` gives Cameras).
            ``keypoints_3d`` is in mm, NaN where a marker was lost.
        """
        if not -len(self) <= i < len(self):
            raise IndexError(f"sample {i} out of range for {len(self)} samples")
        row = int(self.indices[i])
        table = self.annotation["table"]
        subject, day = int(table["subject_idx"][row]), int(table["day_idx"][row])
        keypoints = {c: table["2D_keypoints"][c][row] for c in self.cameras}
        com = {c: table["2D_com"][c][row] for c in self.cameras}
        convention = self.pixel_convention
        sample: dict[str, Any] = {
            "recording": catalogue.recording_for(subject, day).name,
            "row": row,
            "frame_idx": {c: int(table["frame_idx"][c][row]) for c in self.cameras},
            "keypoints_2d": keypoints,
            "com_2d": com,
            "keypoints_2d_zero_based": {c: pixels.to_zero_based(v, convention) for c, v in keypoints.items()},
            "com_2d_zero_based": {c: pixels.to_zero_based(v, convention) for c, v in com.items()},
            "pixel_convention": convention,
            "keypoints_3d": table["3D_keypoints"][row],
            "cameras": {c: self.annotation.raw_cameras(subject, day)[c] for c in self.cameras},
        }
        if self.load_images:
            sample["images"] = {c: self._read_image(str(table["image_path"][c][row])) for c in self.cameras}
        return sample

    def _read_image(self, relative: str) -> np.ndarray:
        try:
            return read_image(self.images_root / relative)
        except BadInputError as exc:
            fix = f"run {command('extract')} --root {self.root} --images-root {self.images_root}"
            raise BadInputError(f"{exc}; {fix}") from None
