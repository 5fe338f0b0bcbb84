"""DANNCE (the method RAT7M was made for): label3d files, a skeleton, ``io.yaml`` and a video tree.

Per recording, ``<recording>/<recording>_dannce.mat`` in Label3D's layout, MATLAB conventions
kept (DANNCE reads them as they are, and its ``prepare_data`` subtracts 1 from ``data_2d`` itself):
``data_2d`` is in MATLAB's 1-based pixels whichever convention the table is stored in.

* ``camnames``: 1x6 cell of camera names;
* ``params``: 6x1 cell of structs ``K`` (3x3, ``[[fx, 0, 0], [s, fy, 0], [cx, cy, 1]]``),
  ``RDistort`` (1x2 or 1x3), ``TDistort`` (1x2), ``r`` (3x3, row-vector convention) and ``t`` (1x3);
* ``labelData``: 6x1 cell of structs ``data_2d`` (n, 2J: ``x1, y1, x2, y2, ...``, pixels),
  ``data_3d`` (n, 3J: ``x1, y1, z1, ...``, mm), ``data_frame`` (n, 1: the camera's video frame,
  cameras are not in lock-step) and ``data_sampleID`` (n, 1: the table row), NaN where missing;
* ``sync``: the same per camera (the only frames the table maps);
* ``com``: struct ``com3d`` (n, 3: mean of the markers present) and ``sampleID``.

``<recording>/videos/CameraN/<start>.mp4`` are links to ``video_sequences/`` chunks, named by
their first frame as DANNCE's chunked-video reader wants, so DANNCE trains from the raw videos
without extraction. ``skeletons/rat7m.mat`` holds ``joint_names`` and 1-based ``joints_idx``;
``io.yaml`` lists every recording as an experiment.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import scipy.io

from rat7m import catalogue, pixels
from rat7m.errors import BadInputError
from rat7m.export.common import Selection, Summary, link

__all__ = ["export"]


def _cell(items: list, shape: tuple[int, int]) -> np.ndarray:
    cell = np.empty(shape, dtype=object)
    for i, item in enumerate(items):
        cell.flat[i] = item
    return cell


def _skeleton() -> dict[str, np.ndarray]:
    return {
        "joint_names": _cell(list(catalogue.JOINT_NAMES), (1, catalogue.N_JOINTS)),
        "joints_idx": np.array(catalogue.BONES, dtype=np.float64) + 1,
    }


def _io_yaml(recordings: list[str], cameras: tuple[str, ...]) -> str:
    lines = [
        "# DANNCE io.yaml written by rat7m-export",
        f"camnames: [{', '.join(cameras)}]",
        "n_channels_out: 20",
        "com_train_dir: ./COM/train_results/",
        "com_predict_dir: ./COM/predict_results/",
        "dannce_train_dir: ./DANNCE/train_results/",
        "dannce_predict_dir: ./DANNCE/predict_results/",
        "exp:",
    ]
    for name in recordings:
        lines += [f"  - label3d_file: ./{name}/{name}_dannce.mat", f"    viddir: ./{name}/videos/"]
    return "\n".join(lines) + "\n"


def _check_chunk(chunk: Path) -> None:
    """Refuse a chunk name that is a link to nothing (or to itself): DANNCE would fail on it much later."""
    if not chunk.is_file():
        kind = "a symbolic link that loops or leads nowhere" if chunk.is_symlink() else "not a regular file"
        raise BadInputError(f"{chunk} is {kind}; remove it or put the chunk there, then rerun")


def export(selection: Selection, out: Path, *, final: Path, root: Path) -> Summary:
    """Write label3d files, video links, the skeleton and ``io.yaml`` into ``out``."""
    summary = Summary("dannce", final)
    columns = selection.columns
    points_3d = np.asarray(columns["3D_keypoints"], dtype=np.float64)
    video_dir = root / catalogue.VIDEO_DIR
    done = []
    for recording in selection.recordings:
        rows = selection.recording_rows(recording)
        if not len(rows):
            continue
        cameras = selection.table.cameras(recording, list(selection.cameras))
        sample_ids = rows.astype(np.float64).reshape(-1, 1)
        data_3d = points_3d[rows].reshape(len(rows), -1)
        params, labels = [], []
        for camera, cam in cameras.items():
            params.append({
                "K": cam.K,  # MATLAB's layout and convention: what Label3D and DANNCE read
                "RDistort": cam.radial.reshape(1, -1),
                "TDistort": cam.tangential.reshape(1, 2),
                "r": cam.R,
                "t": cam.t.reshape(1, 3),
            })
            stored = np.asarray(columns["2D_keypoints"][camera])[rows]
            keypoints = pixels.convert(stored, selection.convention, pixels.MATLAB)  # Label3D's own convention
            frames = np.asarray(columns["frame_idx"][camera])[rows].astype(np.float64).reshape(-1, 1)
            labels.append({"data_2d": keypoints.reshape(len(rows), -1), "data_3d": data_3d, "data_frame": frames,
                           "data_sampleID": sample_ids})  # fmt: skip
            summary.missing_keypoints += int((~np.isfinite(keypoints).all(axis=-1)).sum())
            n_links = 0
            for chunk in sorted(video_dir.glob(f"{recording.name}-camera{catalogue.camera_number(camera)}-*.mp4")):
                parsed = catalogue.parse_video_chunk_name(chunk.name)
                if parsed is not None:
                    _check_chunk(chunk)
                    link(chunk, out / recording.name / "videos" / camera / f"{parsed.start}.mp4", out)
                    n_links += 1
            if not n_links:
                summary.notes.append(f"no video chunks of {recording.name} {camera} under {video_dir}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a sample with every marker lost has a NaN centre
            com3d = np.nanmean(points_3d[rows], axis=1)
        content = {
            "camnames": _cell(list(cameras), (1, len(cameras))),
            "params": _cell(params, (len(cameras), 1)),
            "labelData": _cell(labels, (len(cameras), 1)),
            "sync": _cell(labels, (len(cameras), 1)),
            "com": {"com3d": com3d, "sampleID": sample_ids},
        }
        folder = out / recording.name
        folder.mkdir(parents=True, exist_ok=True)
        scipy.io.savemat(folder / f"{recording.name}_dannce.mat", content, do_compression=True)
        summary.files += 1
        summary.images += len(rows) * len(cameras)
        summary.instances += len(rows)
        done.append(recording.name)
    (out / "skeletons").mkdir()
    scipy.io.savemat(out / "skeletons" / "rat7m.mat", _skeleton())
    (out / "io.yaml").write_text(_io_yaml(done, selection.cameras))
    summary.files += 2
    return summary
