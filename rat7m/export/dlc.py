"""DeepLabCut (2.3+): ``labeled-data/<recording>_<camera>/CollectedData_<scorer>.csv`` (+ ``.h5``) and
a ``config.yaml`` fragment.

The CSV is what DLC's labelling GUI writes: three header rows (``scorer``, ``bodyparts``,
``coords``), rows indexed by ``(labeled-data, <folder>, <image>)``, x and y per body part, empty
(NaN) where a marker is not seen. DLC has no visibility flag, so only seen keypoints (``v = 2``:
in front of the camera and inside the image) are written; markers lost, outside the image or
behind the camera are NaN. Coordinates are 0-based image pixels, as DLC's labelling tools write
them (converted from the table's MATLAB convention). Each folder holds links to the images (never copies). The ``.h5``
twin (key ``keypoints``) is written when pandas and PyTables are installed (extra ``export``).

``config.yaml`` lists the body parts, the skeleton and one ``video_sets`` entry per folder (DLC
finds a folder by its video's stem; the videos themselves are RAT7M's chunks, see the README). Its
header says what to merge into a project's own ``config.yaml`` (:data:`MERGE_KEYS`) and what not
(``project_path``: the project's own stays). ``rat7m-export dlc`` exports the train split unless
told otherwise (see :mod:`rat7m.export.cli`).
"""

from __future__ import annotations

import csv
import io
import logging
from pathlib import Path, PurePosixPath

import numpy as np

from rat7m import catalogue, extras
from rat7m.export.common import Selection, Summary, link

__all__ = ["MERGE_KEYS", "SCORER", "export"]

log = logging.getLogger("rat7m.export")

#: DLC's scorer name (the ``CollectedData_<scorer>`` file and the first header row).
SCORER = "rat7m"
#: Keys of the config fragment to merge into a DLC project's ``config.yaml``.
MERGE_KEYS = ("bodyparts", "skeleton", "scorer", "video_sets")


def _csv_text(folder: str, names: list[str], coords: np.ndarray) -> str:
    """DLC's CSV: 3 header rows, 3 index columns, ``coords`` ``(n, 20, 2)`` with NaN as empty cells."""
    out = io.StringIO()
    n_cols = 2 * catalogue.N_JOINTS
    out.write("scorer,,," + ",".join([SCORER] * n_cols) + "\n")
    out.write("bodyparts,,," + ",".join(j for j in catalogue.JOINT_NAMES for _ in "xy") + "\n")
    out.write("coords,,," + ",".join(["x", "y"] * catalogue.N_JOINTS) + "\n")
    rows = csv.writer(out, lineterminator="\n")  # quotes a name holding a comma or quote, as pandas does
    flat = coords.reshape(len(coords), -1).tolist()
    for name, values in zip(names, flat, strict=True):
        rows.writerow(["labeled-data", folder, name, *("" if v != v else repr(v) for v in values)])  # v != v: NaN
    return out.getvalue()


def _write_h5(path: Path, folder: str, names: list[str], coords: np.ndarray) -> bool:
    """The ``.h5`` twin DLC reads first; False when pandas or PyTables (the ``export`` extra) is missing."""
    pd = extras.optional("pandas")
    if pd is None or extras.optional("tables") is None:  # pandas needs PyTables for HDF5
        return False
    columns = pd.MultiIndex.from_product(
        [[SCORER], list(catalogue.JOINT_NAMES), ["x", "y"]], names=["scorer", "bodyparts", "coords"]
    )
    index = pd.MultiIndex.from_tuples([("labeled-data", folder, n) for n in names])
    frame = pd.DataFrame(coords.reshape(len(coords), -1), index=index, columns=columns)
    frame.to_hdf(path, key="keypoints", mode="w")
    return True


def _config_text(final: Path, views: list[tuple[str, int, int]]) -> str:
    """The ``config.yaml`` fragment: task, scorer, video sets, body parts and skeleton."""
    lines = [
        "# DeepLabCut config fragment written by rat7m-export.",
        f"# Merge these keys into your project's config.yaml: {', '.join(MERGE_KEYS)}.",
        "# Do not merge project_path: your project keeps its own (this one is the export folder). The other keys",
        "# are DLC's defaults, for a project made from this folder alone.",
        "Task: rat7m",
        f"scorer: {SCORER}",
        "multianimalproject: false",
        f"project_path: {final.resolve()}",
        "video_sets:",
    ]
    for folder, width, height in views:
        lines += [f"  {final.resolve() / 'videos' / (folder + '.mp4')}:", f"    crop: 0, {width}, 0, {height}"]
    lines.append("bodyparts:")
    lines += [f"- {name}" for name in catalogue.JOINT_NAMES]
    lines.append("skeleton:")
    for a, b in catalogue.BONES:
        lines += [f"- - {catalogue.JOINT_NAMES[a]}", f"  - {catalogue.JOINT_NAMES[b]}"]
    lines += ["numframes2pick: 20", "TrainingFraction:", "- 0.95", "iteration: 0", "default_net_type: resnet_50"]
    return "\n".join(lines) + "\n"


def export(selection: Selection, out: Path, *, final: Path, images_root: Path) -> Summary:
    """Write the labelled-data folders (CSV, ``.h5``, image links) and ``config.yaml`` into ``out``."""
    summary = Summary("dlc", final)
    folders = []
    h5 = True
    for view in selection.views():
        names = [PurePosixPath(p).name for p in view.paths]
        first: dict[str, int] = {}
        for i, name in enumerate(names):
            first.setdefault(name, i)  # a frame two rows share is one labelled image
        keep = sorted(first.values())
        names = [names[i] for i in keep]
        seen = view.visibility[keep] == 2
        coords = np.where(seen[..., None], view.keypoints[keep], np.nan)
        target = out / "labeled-data" / view.folder
        target.mkdir(parents=True)
        (target / f"CollectedData_{SCORER}.csv").write_text(_csv_text(view.folder, names, coords))
        h5 = _write_h5(target / f"CollectedData_{SCORER}.h5", view.folder, names, coords) and h5
        for i, name in zip(keep, names, strict=True):
            link(images_root / view.paths[i], target / name, out)
        folders.append((view.folder, view.width, view.height))
        summary.images += len(names)
        summary.instances += len(names)
        summary.missing_keypoints += int((view.visibility[keep] == 0).sum())
        summary.files += 2 if h5 else 1
    (out / "config.yaml").write_text(_config_text(final, folders))
    summary.files += 1
    if not h5:
        summary.notes.append(f"no .h5 (needs pandas and PyTables: {extras.install_hint('export', 'pandas tables')})")
    return summary
