"""Ultralytics ``predict(save_txt=True, save_conf=True)`` label files: a folder of ``<stem>.txt``.

One line per detection: ``cls xc yc w h`` then ``kx ky kconf`` per joint, then the box confidence
(``save_conf``), all normalised to the image size (multiplied back by the size of the table's
image, read from the JPEG headers under the dataset root). Ultralytics names the file after the
image's stem (the YOLO export's unique stem, :func:`rat7m.export.yolo.image_stem`) and a repeated
stem ``<stem>-2.txt``, ``<stem>-3.txt``... An image without a detection has no file: its joints are
missing, which is not an error. A keypoint ``0 0 0`` is missing (the label files' visibility 0).
The box confidence is the ranking score (the mean keypoint confidence without ``save_conf``).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from rat7m import catalogue
from rat7m.errors import BadInputError
from rat7m.toolpreds import common

__all__ = ["FORMAT", "MAX_LABEL_BYTES", "read", "sniff"]

FORMAT = "yolo-txt"
#: Largest label file read (bytes): one line is ~700 bytes, so this is ~1500 detections.
MAX_LABEL_BYTES = 1 << 20
_REPEAT = re.compile(r"(.+)-(\d+)")


def sniff(path: Path, head: bytes) -> bool:
    """A folder holding ``.txt`` files (Ultralytics' ``labels`` folder)."""
    return path.is_dir() and next(path.glob("*.txt"), None) is not None


def read(path: Path, index: common.TableIndex, target: np.ndarray | None = None, *,
         sizes: dict[tuple[str, str], tuple[int, int]] | None = None) -> common.ToolPredictions2D:  # fmt: skip
    """Read every ``.txt`` of the folder ``path``; ``sizes`` maps (recording, camera) to (width, height)."""
    if not path.is_dir():
        raise BadInputError(f"{path} is not a folder; pass Ultralytics' labels folder (runs/pose/predict/labels)")
    if sizes is None:
        raise BadInputError("YOLO label files are normalised: the image sizes are needed (pass --root with the images)")
    J = catalogue.N_JOINTS
    collector = common.Collector2D(index, FORMAT)
    limit = common.MAX_PER_IMAGE * max(index.n * len(index.cameras), 1)
    for n_files, file in enumerate(sorted(path.glob("*.txt")), start=1):
        if n_files > limit:
            raise BadInputError(f"{path} holds more than {limit} label files for {index.n} samples; wrong folder?")
        targets = index.lookup_path(file.stem)
        match = _REPEAT.fullmatch(file.stem)
        if not targets and match:
            targets = index.lookup_path(match.group(1))
        text = common.read_text(file, MAX_LABEL_BYTES)
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            where = f"{file} line {number}"
            values = _numbers(line, where)
            if len(values) not in (5 + 3 * J, 6 + 3 * J):
                raise BadInputError(f"{where} has {len(values)} numbers; expected cls, box, 20 x (x y conf), conf")
            triples = values[5 : 5 + 3 * J].reshape(J, 3)
            common.check_values(triples[:, :2], where, bound=1e3)
            common.check_confidence(triples[:, 2], where)
            score = float(values[-1]) if len(values) == 6 + 3 * J else float(triples[:, 2].mean())
            common.check_confidence(np.array([score]), f"{where} box confidence")
            if not targets or targets == common.OUTSIDE:
                collector.add(targets, triples[:, :2], triples[:, 2], score, repr(file.name))
                continue
            pos, v = targets[0]
            width, height = sizes[(index.recording[pos], index.cameras[v])]
            xy = triples[:, :2] * np.array([width, height], dtype=np.float64)
            missing = (triples == 0).all(axis=1)
            xy[missing] = np.nan
            collector.add(targets, xy, np.where(missing, 0.0, triples[:, 2]), score, repr(file.name))
    return collector.finish(target)


def _numbers(line: str, where: str) -> np.ndarray:
    cells = line.split()
    if len(cells) > 200:
        raise BadInputError(f"{where} has {len(cells)} values; expected at most 66")
    try:
        values = np.array([float(c) for c in cells], dtype=np.float64)
    except ValueError:
        bad = next(c for c in cells if not common.is_float(c))
        raise BadInputError(f"{where}: {bad[:30]!r} is not a number") from None
    common.check_values(values, where, bound=1e6, allow_nan=False)
    return values

