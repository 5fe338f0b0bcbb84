"""Camera geometry in RAT7M's (MATLAB's) conventions: 3D points in mm to distorted pixels.

MATLAB uses row vectors: ``p_cam = X @ R + t``; normalised ``x, y = p_cam[:2] / p_cam[2]``;
radial ``1 + k1 r^2 + k2 r^4 (+ k3 r^6)`` and tangential ``p1, p2`` exactly as MATLAB and OpenCV;
pixels ``[xd, yd, 1] @ K`` with ``K = [[fx, 0, 0], [s, fy, 0], [cx, cy, 1]]`` (the transpose of
OpenCV's matrix). Cameras are :class:`rat7m.model.Camera` objects or the raw dicts
:func:`rat7m.matfile.load_cameras` returns (either spelling).

OpenCV (and anipose) describe the same camera as ``K_cv = K.T``, ``rvec = Rodrigues(R.T)``,
``tvec = t``, ``dist = [k1, k2, p1, p2, k3]``, except that ``cv2.projectPoints`` ignores the
skew ``K[1, 0]`` (up to 0.65 px off on a real rig), so :func:`to_opencv` refuses a skewed camera
unless told the skew may be ignored. OpenCV's pixels are 0-based (the top-left pixel's centre is
(0, 0)) where MATLAB's are 1-based, so :func:`to_opencv` also moves the principal point by -1, as
MATLAB's ``cameraIntrinsicsToOpenCV`` does, and :func:`from_opencv` moves it back
(:mod:`rat7m.pixels`). :func:`project` itself keeps the camera's own (MATLAB) convention.
"""

from __future__ import annotations

import numpy as np

from rat7m.errors import BadInputError
from rat7m.model import (
    SIZES,
    SPELLINGS,
    Camera,
    CameraLike,
    camera_param,
    mat_spellings,
    spellings_of,
    with_both_spellings,
)

__all__ = ["SPELLINGS", "camera_param", "check_camera", "from_opencv", "mat_spellings", "project", "skew",
           "to_opencv", "with_both_spellings"]  # fmt: skip


#: How far ``R.T @ R`` may be from the identity (float32-stored calibrations are ~1e-7 off).
ROTATION_TOLERANCE = 1e-6
#: Largest translation accepted, in mm (1000 km: a bound on magnitude, far beyond any rig).
MAX_TRANSLATION_MM = 1e9


def check_camera(camera: CameraLike, where: str) -> None:
    """Refuse a camera the model cannot use, in one line naming ``where`` (e.g. recording and camera).

    Checks what projection and triangulation rely on: every parameter present, numeric and finite;
    ``K`` in MATLAB's layout ``[[fx, 0, 0], [s, fy, 0], [cx, cy, 1]]`` with positive focal lengths (so
    invertible); ``R`` a rotation (orthonormal within :data:`ROTATION_TOLERANCE`, determinant +1);
    ``t`` finite and within :data:`MAX_TRANSLATION_MM`.

    Raises:
        BadInputError: naming ``where``, the parameter and what is wrong with it.
    """
    if isinstance(camera, Camera):
        camera = camera.to_dict()
    values = {}
    for key, sizes in SIZES.items():
        try:
            value = np.asarray(camera_param(camera, key))
        except KeyError:
            raise BadInputError(f"{where}: the camera has no {' or '.join(spellings_of(key))}") from None
        if value.dtype.kind not in "fiu" or value.size not in sizes:
            raise BadInputError(f"{where}: {key} must be {' or '.join(map(str, sizes))} numbers, found {value.dtype} "
                                f"of shape {value.shape}")  # fmt: skip
        value = value.astype(np.float64)
        if not np.isfinite(value).all():
            raise BadInputError(f"{where}: {key} has a value that is not finite ({value.ravel().tolist()})")
        values[key] = value
    checked = Camera.from_dict(values)
    K, R = checked.K, checked.R
    fixed = np.array([K[0, 1], K[0, 2], K[1, 2], K[2, 2] - 1.0])
    if not (K[0, 0] > 0 and K[1, 1] > 0) or np.abs(fixed).max() > 1e-9 * max(1.0, np.abs(K).max()):
        msg = (f"{where}: IntrinsicMatrix {K.tolist()} is not an invertible camera matrix "
               "[[fx, 0, 0], [s, fy, 0], [cx, cy, 1]] with fx, fy > 0 (MATLAB's layout)")  # fmt: skip
        raise BadInputError(msg)
    off = np.abs(R.T @ R - np.eye(3)).max()
    if not off <= ROTATION_TOLERANCE or np.linalg.det(R) < 0:
        why = f"R.T @ R is {off:.3g} from the identity" if off > ROTATION_TOLERANCE else "its determinant is -1"
        raise BadInputError(f"{where}: RotationMatrix is not a rotation ({why})")
    t = checked.t
    if np.abs(t).max() > MAX_TRANSLATION_MM:
        raise BadInputError(f"{where}: TranslationVector {t.tolist()} is beyond {MAX_TRANSLATION_MM:g} mm")


def project(points_3d: np.ndarray, camera: CameraLike) -> np.ndarray:
    """Project 3D points through one camera, lens distortion included (:meth:`rat7m.model.Camera.project`).

    Args:
        points_3d: ``(..., 3)`` positions in mm (world frame); NaN rows give NaN pixels.
        camera: a :class:`rat7m.model.Camera`, or a raw camera dict (``IntrinsicMatrix``,
            ``RotationMatrix``, ``TranslationVector`` under either spelling, ``RadialDistortion``
            (k1, k2[, k3]) and ``TangentialDistortion`` (p1, p2)).

    Returns:
        ``(..., 2)`` float64 pixel coordinates (x right, y down).
    """
    return Camera.of(camera).project(points_3d)


def skew(camera: CameraLike) -> float:
    """The camera's skew ``s = K[1, 0]`` (MATLAB layout), in pixels; 0 for most calibrations."""
    return Camera.of(camera).skew


def to_opencv(
    camera: CameraLike, *, allow_skew: bool = False, zero_based: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The same camera in OpenCV's conventions, for ``cv2.projectPoints`` and friends.

    Args:
        camera: a :class:`rat7m.model.Camera` or a camera dict (see :func:`project`), MATLAB conventions.
        allow_skew: accept a non-zero skew. ``K_cv`` still carries it (``K_cv[0, 1]``), but
            ``cv2.projectPoints`` ignores it, so its pixels will differ from :func:`project`.
        zero_based: give 0-based pixels, as OpenCV and every Python image library number them:
            the principal point minus 1 (MATLAB's ``cameraIntrinsicsToOpenCV``). False keeps
            MATLAB's 1-based pixels (``cv2.projectPoints`` then agrees with :func:`project`).

    Returns:
        ``(K_cv (3, 3), rvec (3, 1), tvec (3, 1), dist (5,))`` float64, with
        ``dist = [k1, k2, p1, p2, k3]`` (k3 = 0 when the camera has two radial coefficients).

    Raises:
        BadInputError: the camera has a non-zero skew and ``allow_skew`` is False.
    """
    return Camera.of(camera).to_opencv(zero_based=zero_based, allow_skew=allow_skew)


def from_opencv(
    K_cv: np.ndarray, rvec: np.ndarray, tvec: np.ndarray, dist: np.ndarray, *, zero_based: bool = True
) -> dict[str, np.ndarray]:
    """A camera dict (MATLAB conventions, both spellings) from OpenCV's ``K``, ``rvec``, ``tvec`` and ``dist``.

    ``dist`` is ``[k1, k2, p1, p2]`` or ``[k1, k2, p1, p2, k3]``; longer (rational, thin-prism)
    models are refused, since the MATLAB model cannot carry them. ``zero_based``: ``K_cv`` gives
    0-based pixels (OpenCV's own calibrations, and :func:`to_opencv`'s default), so the principal
    point moves by +1 into MATLAB's convention; False when ``K_cv`` already gives 1-based pixels.
    (:meth:`rat7m.model.Camera.from_opencv` gives a :class:`~rat7m.model.Camera`.)
    """
    return Camera.from_opencv(K_cv, rvec, tvec, dist, zero_based=zero_based).to_dict()
