"""MATLAB parsing: round trip through the real struct layout, and a clear error for each bad file."""

import os
import re
import subprocess
import sys

import numpy as np
import pytest
import scipy.io
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import matlab_utils
from rat7m import catalogue
from rat7m.errors import BadInputError
from rat7m.geometry import camera_param
from rat7m.matfile import CAMERA_FIELDS, MAT_CAMERA_ORDER, load_cameras, load_mocap, load_recording, save_recording
from tests.helpers.hostile_files import element, mat_double, mat_file, mat_struct, matrix, nested_cells
from tests.helpers.shared import REPO, load_with_headroom

FUZZ_EXAMPLES = int(os.environ.get("RAT7M_FUZZ_EXAMPLES", "150"))

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
    # the real files' struct order, not sorted
    assert list(raw["cameras"].dtype.names) == ["Camera1", "Camera2", "Camera4", "Camera5", "Camera3", "Camera6"]
    cam1 = raw["cameras"][0, 0]["Camera1"][0, 0]
    assert list(cam1.dtype.names) == [
        "frame", "IntrinsicMatrix", "rotationMatrix", "translationVector", "TangentialDistortion", "RadialDistortion",
    ]  # fmt: skip

    cameras = matlab_utils.load_cameras(path)
    assert list(cameras) == list(catalogue.CAMERA_NAMES)
    cam = cameras["Camera3"]
    assert set(cam) == {"IntrinsicMatrix", "RotationMatrix", "TranslationVector", "TangentialDistortion",
                        "RadialDistortion", "frame", "rotationMatrix", "translationVector"}  # fmt: skip
    # both spellings are one array: user code after the documentation or after the authors' code agrees
    assert cam["RotationMatrix"] is cam["rotationMatrix"] and cam["TranslationVector"] is cam["translationVector"]
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
        cams[cam] = {field: camera_param(params, field) for field in CAMERA_FIELDS}
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


def test_cameras_are_read_by_name_whatever_the_struct_order(tmp_path):
    """A file written in sorted order and one in the real order (1, 2, 4, 5, 3, 6) read alike."""
    for order in (list(catalogue.CAMERA_NAMES), list(MAT_CAMERA_ORDER), list(reversed(MAT_CAMERA_ORDER))):
        content = good_content()
        content["cameras"] = {cam: content["cameras"][cam] for cam in order}
        content["cameras"]["Camera3"]["cluster"] = np.arange(3.0)  # an unknown field: ignored
        path = tmp_path / f"order-{''.join(c[-1] for c in order)}.mat"
        write_raw(path, **content)
        assert list(scipy.io.loadmat(path)["cameras"].dtype.names) == order
        cameras = load_cameras(path)
        assert list(cameras) == list(catalogue.CAMERA_NAMES)
        for cam in catalogue.CAMERA_NAMES:
            np.testing.assert_array_equal(cameras[cam]["rotationMatrix"], make_cameras()[cam]["RotationMatrix"])
            assert cameras[cam]["frame"].tolist() == make_cameras()[cam]["frame"].tolist()


def test_huge_frame_and_complex_values_are_refused(tmp_path):
    content = good_content()
    content["cameras"]["Camera4"]["frame"][2] = 1e300  # once cast to int64: -9223372036854775808
    write_raw(tmp_path / "far.mat", **content)
    with pytest.raises(BadInputError, match=r"Camera4\.frame must hold whole frame indices from 0 to"):
        load_cameras(tmp_path / "far.mat")

    content = good_content()
    content["cameras"]["Camera2"]["IntrinsicMatrix"] = content["cameras"]["Camera2"]["IntrinsicMatrix"] + 1e-3j
    write_raw(tmp_path / "complex.mat", **content)
    with pytest.raises(BadInputError, match=r"Camera2\.IntrinsicMatrix: holds complex numbers"):
        load_cameras(tmp_path / "complex.mat")


def _zlib_bomb(path, inflated: int) -> None:
    """A v5 file whose one compressed variable, 'cameras', inflates to ``inflated`` bytes of zeros."""
    import struct
    import zlib

    name = b"cameras\0"
    n = inflated // 8
    body = (struct.pack("<II", 6, 8) + struct.pack("<II", 6, 0)  # array flags: double
            + struct.pack("<II", 5, 8) + struct.pack("<ii", n, 1)  # dims n x 1
            + struct.pack("<II", 1, 7) + name  # name (7 bytes), padded to 8
            + struct.pack("<II", 9, n * 8))  # fmt: skip
    header = struct.pack("<II", 14, len(body) + n * 8)
    pack = zlib.compressobj(1)
    out = [pack.compress(header + body)]
    zeros = bytes(1 << 24)
    for _ in range(n * 8 // len(zeros)):
        out.append(pack.compress(zeros))
    out.append(pack.flush())
    compressed = b"".join(out)
    text = b"MATLAB 5.0 MAT-file, bomb".ljust(116, b" ") + bytes(8) + struct.pack("<H", 0x0100) + b"IM"
    path.write_bytes(text + struct.pack("<II", 15, len(compressed)) + compressed)


def test_zlib_bomb_is_refused_with_bounded_memory(tmp_path):
    """320 MB of zeros in ~0.3 MB of zlib: refused before scipy inflates it (under a memory limit)."""
    path = tmp_path / "mocap-s1-d1.mat"
    _zlib_bomb(path, 320 << 20)
    assert path.stat().st_size < 2 << 20
    # 200 MB more than the process has after its imports: inflating the variable would not fit
    done = load_with_headroom("rat7m.matfile.load_cameras", "BadInputError", path, headroom_mb=200, timeout=120)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "refusing a zlib bomb" in done.stdout and len(done.stdout.splitlines()) == 1
    from rat7m import matfile

    assert matfile.MAX_EXPANSION * path.stat().st_size < 320 << 20 and matfile.MIN_DECOMPRESSED_BOUND < 320 << 20
    with pytest.raises(BadInputError, match=r"expand to more than .* refusing a zlib bomb"):
        matfile.check_variables(path)


# ------------------------------------------------------------------ hostile layouts (MATLAB v5 elements by hand)


MOCAP = mat_struct({"a": mat_double([1.0, 2.0, 3.0])}, name=b"mocap")
HOSTILE_LAYOUTS = {
    # 40 KB that recursed 20000 deep in scipy's reader: the C stack overflowed and the process died (SIGSEGV)
    "cells 20000 deep": (lambda: mat_struct({"Camera1": nested_cells(20000)}, name=b"cameras"),
                         r"cameras\.Camera1 is a cell array"),
    # 285 bytes for which scipy asked for 15.8 GB (46000 x 46000 structs of no fields)
    "a 46000 x 46000 struct": (lambda: mat_struct({}, dims=(46000, 46000), name=b"cameras"),
                               r"cameras is a 46000 x 46000 struct array; RAT7M's are 1 x 1"),
    "structs 4 deep": (lambda: mat_struct({"C": mat_struct({"D": mat_struct({"E": mat_double([1.0])})})},
                                          name=b"cameras"),
                       r"cameras\.C\.D nests structs more than 3 deep"),
    "more elements than bytes": (lambda: mat_struct({"Camera1": matrix(6, (46000, 46000), element(2, b"\0"))},
                                                 name=b"cameras"), r"cameras\.Camera1 declares more elements than its"),
    "a sparse array": (lambda: mat_struct({"Camera1": matrix(5, (2, 2), b"")}, name=b"cameras"),
                       r"cameras\.Camera1 is a sparse array"),
    # each next one found by a review: files that passed the first version of the check and still crashed scipy
    "a flags element of 16 bytes": (lambda: element(14, element(6, bytes(16)) + element(5, bytes(8))),
                                    r"a malformed array header"),
    "600 dimensions": (lambda: matrix(6, (2**31 - 1,) * 600, b"", name=b"cameras"), r"a malformed array header"),
    "a variable of 0 bytes": (lambda: element(14, b""), r"a variable of 0 bytes"),
    "a complex flag with one part": (lambda: mat_struct({"Camera1": element(14, element(6, bytes([6, 8] + [0] * 6))
                                     + element(5, bytes([1, 0, 0, 0, 1, 0, 0, 0])) + element(1, b"")
                                     + element(9, bytes(8)))}, name=b"cameras"), r"malformed data element"),
    "a truncated variable": (lambda: mat_struct({"Camera1": mat_double([1.0])}, name=b"cameras")[:-12],
                             r"ends inside|not a readable MATLAB|malformed"),  # plain: the next variable is its end
}  # fmt: skip


@pytest.mark.parametrize("compressed", [True, False], ids=["compressed", "plain"])
@pytest.mark.parametrize("case", list(HOSTILE_LAYOUTS))
def test_hostile_layouts_are_refused_before_scipy_builds_them(tmp_path, case, compressed):
    """Read in a child under a 1 GB address space: before, the deep cells killed it and the big struct ran it out of
    memory; each is now one line naming the variable and what is not RAT7M's layout."""
    build, message = HOSTILE_LAYOUTS[case]
    path = tmp_path / "mocap-s1-d1.mat"
    mat_file(path, build(), MOCAP, compressed=compressed)
    done = load_with_headroom("rat7m.matfile.load_recording", "BadInputError", path, headroom_mb=1024, timeout=60)
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    assert re.search(message, done.stdout) and done.stdout.startswith(str(path)), done.stdout


def test_the_layout_check_passes_rat7m_layouts_and_only_skips_an_odd_name(tmp_path):
    """Files of RAT7M's layout pass whole, compressed or not, stored as MATLAB stores small numbers; a ``name`` that
    is not (a cell here) is left unread, as are variables scipy never reads, while the file still loads."""
    from rat7m import matfile

    cameras = {c: {f: np.arange(9, dtype=np.uint8).reshape(3, 3) for f in ("a", "b")} for c in ("C1", "C2")}
    cells = np.empty((2, 2), dtype=object)
    cells[...] = [[np.zeros(1), np.ones(2)], [np.ones(3), np.zeros(4)]]
    for compress in (True, False):
        path = tmp_path / f"mocap-s1-d1-{compress}.mat"
        scipy.io.savemat(path, {"cameras": cameras, "mocap": {"m": np.zeros((5, 3))}, "name": "Subject1-Day1",
                                "other": cells}, do_compression=compress)  # fmt: skip
        assert matfile.check_variables(path) == {"cameras", "mocap", "name"}
    path = tmp_path / "mocap-s1-d1.mat"
    save_recording(path, "Subject1-Day1", make_cameras(), make_mocap())
    assert load_recording(path).name == "Subject1-Day1"
    variables = scipy.io.loadmat(path)
    variables["name"] = np.empty((1, 1), dtype=object)
    variables["name"][0, 0] = "Subject1-Day1"
    scipy.io.savemat(path, {k: v for k, v in variables.items() if not k.startswith("__")})
    assert matfile.check_variables(path) == {"cameras", "mocap"}
    recording = load_recording(path)
    assert recording.name == "" and recording.recording == catalogue.recording_for(1, 1)  # from the file name


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), min_size=1, max_size=3),
       compressed=st.booleans())  # fmt: skip
def test_fuzzed_mat_bytes_load_or_are_one_clear_error(tmp_path_factory, edits, compressed):
    """Bytes of a small RAT7M file changed anywhere (headers, tags, zlib stream, numbers): it loads, or it is one
    BadInputError naming the file; no other exception, and no crash (this runs in the test's process)."""
    folder = tmp_path_factory.mktemp("mat")
    good = folder / "good.mat"
    save_recording(good, "Subject1-Day1", make_cameras(4), make_mocap(4))
    if compressed:  # save_recording writes plain variables, as MATLAB's -v6; -v7 compresses each
        variables = {k: v for k, v in scipy.io.loadmat(good).items() if not k.startswith("__")}
        scipy.io.savemat(good, variables, do_compression=True)
    data = bytearray(good.read_bytes())
    for where, byte in edits:
        data[128 + int(where * (len(data) - 128))] = byte
    path = folder / "mocap-s1-d1.mat"
    path.write_bytes(bytes(data))
    try:
        load_recording(path)
    except BadInputError as exc:
        assert str(exc).startswith(str(path)), exc


def test_the_bytes_checked_are_the_bytes_parsed(tmp_path):
    """The file is read once: replaced on disk right after its check (here by the deep cells that crash scipy), the
    load still parses what was checked. Before, scipy opened the path again (a review's fuzz hit this: SIGSEGV)."""
    good, bad = tmp_path / "mocap-s1-d1.mat", tmp_path / "deep.mat"
    save_recording(good, "Subject1-Day1", make_cameras(), make_mocap())
    mat_file(bad, HOSTILE_LAYOUTS["cells 20000 deep"][0](), MOCAP)
    done = subprocess.run([sys.executable, "-c", f"""
import shutil
from rat7m import matfile
checked = matfile.check_variables
def check_then_swap(path, *args, **kwargs):
    readable = checked(path, *args, **kwargs)
    shutil.copyfile({str(bad)!r}, path)
    return readable
matfile.check_variables = check_then_swap
print(matfile.load_recording({str(good)!r}).n_samples)
"""], capture_output=True, text=True, timeout=60, cwd=REPO)  # fmt: skip
    assert done.returncode == 0 and done.stdout.strip() == str(N), (done.returncode, done.stderr[-1500:])
