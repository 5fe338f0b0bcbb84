"""MATLAB parsing: round trip through the real struct layout, and a clear error for each bad file."""

import numpy as np
import pytest
import scipy.io

import matlab_utils
from rat7m import catalogue
from rat7m.errors import BadInputError
from rat7m.matfile import CAMERA_FIELDS, load_cameras, load_mocap, load_recording, save_recording

N = 7


def make_cameras(n: int = N) -> dict:
    rng = np.random.default_rng(1)
    cameras = {}
    for i, cam in enumerate(catalogue.CAMERA_NAMES):
        cameras[cam] = {
            "IntrinsicMatrix": np.array([[3000.0 + i, 0, 0], [0.5, 3010.0, 0], [660.0, 520.0, 1]]),
            "RotationMatrix": np.linalg.qr(rng.normal(size=(3, 3)))[0],
            "TranslationVector": rng.normal(size=(1, 3)) * 100,
            "TangentialDistortion": np.array([[1e-3, -2e-3]]),
            "RadialDistortion": np.array([[-0.2, 0.1]]),
            "frame": np.arange(n) + (2 if cam == "Camera3" else 0),
        }
    return cameras


def make_mocap(n: int = N) -> np.ndarray:
    # joint j of sample s sits at (s, j, -j): easy to see when joints get mixed up
    mocap = np.zeros((n, 20, 3))
    mocap[:, :, 0] = np.arange(n)[:, None]
    mocap[:, :, 1] = np.arange(20)[None, :]
    mocap[:, :, 2] = -np.arange(20)[None, :]
    mocap[3, 5] = np.nan
    return mocap


def test_round_trip_maps_markers_by_name(tmp_path):
    path = tmp_path / "mocap-s2-d2.mat"
    order = list(reversed(catalogue.JOINT_NAMES))  # a field order unlike the joint order
    save_recording(path, "Subject2-Day2", make_cameras(), make_mocap(), marker_order=order)

    raw = scipy.io.loadmat(path)
    assert list(raw["mocap"].dtype.names) == order
    cam1 = raw["cameras"][0, 0]["Camera1"][0, 0]
    assert list(cam1.dtype.names) == [
        "frame", "IntrinsicMatrix", "rotationMatrix", "translationVector", "TangentialDistortion", "RadialDistortion",
    ]  # fmt: skip

    cameras = matlab_utils.load_cameras(path)
    assert list(cameras) == list(catalogue.CAMERA_NAMES)
    cam = cameras["Camera3"]
    assert set(cam) == {"IntrinsicMatrix", "RotationMatrix", "TranslationVector", "TangentialDistortion",
                        "RadialDistortion", "frame"}  # fmt: skip
    assert cam["frame"].dtype == np.int64 and cam["frame"].tolist() == list(range(2, 2 + N))
    assert cam["TranslationVector"].shape == (1, 3) and cam["RadialDistortion"].shape == (1, 2)
    np.testing.assert_array_equal(cam["RotationMatrix"], make_cameras()["Camera3"]["RotationMatrix"])

    mocap = matlab_utils.load_mocap(path)
    assert mocap.shape == (N, 20, 3) and mocap.dtype == np.float64
    np.testing.assert_array_equal(mocap, make_mocap())  # NaN in the same place, joints in order

    rec = load_recording(path)
    assert rec.name == "Subject2-Day2" and rec.recording == catalogue.recording_by_name("s2-d2")
    assert rec.n_samples == N


def write_raw(path, **content):
    scipy.io.savemat(path, content, format="5", oned_as="row")


def good_content():
    cams = {}
    for cam, params in make_cameras().items():
        cams[cam] = {field: params[key] for field, key in CAMERA_FIELDS.items()}
        cams[cam]["frame"] = params["frame"].reshape(-1, 1).astype(float)
    mocap = {j: make_mocap()[:, i] for i, j in enumerate(catalogue.JOINT_NAMES)}
    return {"cameras": cams, "mocap": mocap, "name": "Subject1-Day1"}


def test_errors_name_the_file_and_the_problem(tmp_path):
    missing = tmp_path / "mocap-s1-d1.mat"
    with pytest.raises(BadInputError, match="no such file"):
        load_cameras(missing)

    text = tmp_path / "notes.mat"
    text.write_text("these are not the frames you are looking for\n" * 10)
    with pytest.raises(BadInputError, match=r"notes\.mat: is not a readable MATLAB \.mat file"):
        load_mocap(text)

    v73 = tmp_path / "v73.mat"
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
    v73.write_bytes(header.ljust(512, b" ") + b"\x89HDF\r\n\x1a\n" + bytes(64))
    with pytest.raises(BadInputError, match=r"v73\.mat: is a MATLAB v7\.3 \(HDF5\) file"):
        load_recording(v73)

    content = good_content()
    del content["cameras"]
    write_raw(tmp_path / "nocams.mat", **content)
    with pytest.raises(BadInputError, match=r"nocams\.mat: has no 'cameras' variable \(found: mocap, name\)"):
        load_cameras(tmp_path / "nocams.mat")

    content = good_content()
    del content["mocap"]
    write_raw(tmp_path / "nomocap.mat", **content)
    with pytest.raises(BadInputError, match="has no 'mocap' variable"):
        load_mocap(tmp_path / "nomocap.mat")

    content = good_content()
    del content["mocap"]["ShinR"]
    write_raw(tmp_path / "lost.mat", **content)
    with pytest.raises(BadInputError, match=r"lost\.mat: mocap lacks marker\(s\) ShinR"):
        load_mocap(tmp_path / "lost.mat")

    content = good_content()
    content["mocap"]["Tail"] = content["mocap"]["HeadF"]
    write_raw(tmp_path / "tail.mat", **content)
    with pytest.raises(BadInputError, match=r"unknown marker\(s\) Tail"):
        load_mocap(tmp_path / "tail.mat")

    content = good_content()
    content["mocap"]["HipL"] = content["mocap"]["HipL"][:-1]
    write_raw(tmp_path / "ragged.mat", **content)
    with pytest.raises(BadInputError, match=r"different sample counts \(.*HipL: 6"):
        load_mocap(tmp_path / "ragged.mat")

    content = good_content()
    content["cameras"]["Camera5"]["frame"] = content["cameras"]["Camera5"]["frame"][:-2]
    write_raw(tmp_path / "short.mat", **content)
    with pytest.raises(BadInputError, match=r"cameras\.Camera5\.frame has 5 entries but mocap has 7 samples"):
        load_recording(tmp_path / "short.mat")

    content = good_content()
    del content["cameras"]["Camera6"]["rotationMatrix"]
    write_raw(tmp_path / "norot.mat", **content)
    with pytest.raises(BadInputError, match=r"cameras\.Camera6 has no field 'rotationMatrix'"):
        load_cameras(tmp_path / "norot.mat")

    content = good_content()
    content["cameras"]["Camera2"]["IntrinsicMatrix"] = np.eye(2)
    write_raw(tmp_path / "k2.mat", **content)
    with pytest.raises(BadInputError, match=r"Camera2\.IntrinsicMatrix has shape \(2, 2\), expected \(3, 3\)"):
        load_cameras(tmp_path / "k2.mat")
