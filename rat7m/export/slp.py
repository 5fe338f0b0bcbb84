"""SLEAP: one ``rat7m.slp`` written with sleap-io (extra ``sleap``: ``pip install sleap-io``).

It holds the skeleton (the 20 joints, the 21 bones, the left/right pairs as symmetries), one video
per (recording, camera) as an image sequence (the table's images, referenced by absolute path,
never copied), one labelled instance per image, and one recording session per recording with the
camera group (OpenCV conventions from :func:`rat7m.geometry.to_opencv`; a skew is carried in
``matrix[0][1]``) and, per timestep, a frame group whose instance group holds the six views and
the 3D points. Image ``i`` of every camera's sequence is the recording's ``i``-th chosen row, so
one frame index names one timestep across cameras. Like DLC, SLEAP has no "outside the image"
flag: only seen keypoints (``v = 2``) are visible points; the others are NaN. Points and cameras
are in sleap-io's 0-based pixels (the top-left pixel's centre is (0, 0)): keypoints converted from
the table's MATLAB convention, principal points moved by -1 by :func:`rat7m.geometry.to_opencv`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rat7m import catalogue, geometry
from rat7m.export.common import Selection, Summary

__all__ = ["export", "skeleton"]


def skeleton():  # -> sio.Skeleton
    """The RAT7M skeleton as a sleap-io ``Skeleton``."""
    import sleap_io as sio

    names = catalogue.JOINT_NAMES
    return sio.Skeleton(
        nodes=list(names),
        edges=[(names[a], names[b]) for a, b in catalogue.BONES],
        symmetries=[(names[a], names[b]) for a, b in catalogue.LEFT_RIGHT_PAIRS],
        name="rat7m",
    )


def export(selection: Selection, out: Path, *, final: Path, images_root: Path) -> Summary:
    """Write ``rat7m.slp`` into ``out``."""
    import sleap_io as sio

    summary = Summary("slp", final)
    skel = skeleton()
    points_3d = np.asarray(selection.columns["3D_keypoints"], dtype=np.float64)
    frames, videos, sessions = [], [], []
    views_by_recording: dict[str, list] = {}
    for view in selection.views():
        views_by_recording.setdefault(view.recording.name, []).append(view)
    for recording in selection.recordings:
        views = views_by_recording.get(recording.name, [])
        if not views:
            continue
        group = sio.CameraGroup(cameras=[])
        session = sio.RecordingSession(camera_group=group, metadata={"recording": recording.name})
        per_camera = []
        for view in views:
            K, rvec, tvec, dist = geometry.to_opencv(view.camera_params, allow_skew=True)
            camera = sio.Camera(matrix=K, dist=dist, size=(view.width, view.height), rvec=rvec.reshape(3),
                                tvec=tvec.reshape(3), name=view.camera)  # fmt: skip
            group.cameras.append(camera)
            video = sio.Video.from_filename([str((images_root / p).resolve()) for p in view.paths])
            session.add_video(video, camera)
            videos.append(video)
            seen = (view.visibility == 2)[..., None]
            points = np.where(seen, view.keypoints, np.nan)
            labelled = []
            for i in range(len(view.rows)):
                instance = sio.Instance.from_numpy(points[i], skeleton=skel)
                frame = sio.LabeledFrame(video=video, frame_idx=i, instances=[instance])
                frames.append(frame)
                labelled.append((frame, instance))
            per_camera.append((camera, labelled))
            summary.images += len(view.rows)
            summary.instances += len(view.rows)
            summary.missing_keypoints += int((view.visibility == 0).sum())
        rows = views[0].rows
        for i in range(len(rows)):
            instance_group = sio.InstanceGroup(
                instance_by_camera={camera: labelled[i][1] for camera, labelled in per_camera},
                instance_3d=sio.Instance3D(points=points_3d[rows[i]], skeleton=skel),
                metadata={"sample": int(rows[i])},
            )
            session.frame_groups[i] = sio.FrameGroup(
                frame_idx=i, instance_groups=[instance_group],
                labeled_frame_by_camera={camera: labelled[i][0] for camera, labelled in per_camera},
            )  # fmt: skip
        sessions.append(session)
    labels = sio.Labels(labeled_frames=frames, videos=videos, skeletons=[skel], sessions=sessions)
    sio.save_slp(labels, str(out / "rat7m.slp"), verbose=False)
    summary.files += 1
    return summary
