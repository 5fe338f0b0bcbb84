"""Read RAT7M ``mocap-s{S}-d{D}.mat`` files: the documented entry points of the dataset's own scripts.

    >>> from matlab_utils import load_cameras, load_mocap
    >>> cameras = load_cameras("annotations/mocap-s1-d1.mat")   # {"Camera1": {...}, ...}
    >>> mocap = load_mocap("annotations/mocap-s1-d1.mat")       # (n_samples, 20, 3) mm

Unlike the original, ``load_mocap`` returns ``(n_samples, 20, 3)`` in the mini-RAT7M joint order
(``rat7m.catalogue.JOINT_NAMES``), mapped by marker name. The implementation is ``rat7m.matfile``.
"""

from rat7m.matfile import MocapRecording, load_cameras, load_mocap, load_recording

__all__ = ["MocapRecording", "load_cameras", "load_mocap", "load_recording"]
