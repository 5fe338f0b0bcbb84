"""The mini-RAT7M table: built from real .mat files, saved, loaded, validated and checked."""

import pickle
import subprocess
import sys
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

import build_annotation
from rat7m import catalogue
from rat7m.cli import run_main
from rat7m.dataset import MiniRat7m
from rat7m.errors import BadInputError
from rat7m.geometry import project
from rat7m.matfile import load_recording
from rat7m.table import load_annotation, save_annotation, validate_annotation
from rat7m.table_build import build_table, parse_split
from rat7m.table_check import check_frames_in_video, check_table
from tests.helpers.plausible_rig import write_recordings

REPO = Path(__file__).resolve().parents[2]
SIZES = {"s1-d1": 120, "s2-d2": 90, "s5-d1": 75}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """A dataset root with three mocap files written in the real .mat layout."""
    root = tmp_path_factory.mktemp("rat7m")
    write_recordings(root, SIZES)
    return root


@pytest.fixture(scope="module")
def mats(root):
    return {name: root / catalogue.ANNOTATION_DIR / f"mocap-{name}.mat" for name in SIZES}


@pytest.fixture(scope="module")
def table(mats):
    return build_table(list(mats.values()))


def test_schema_and_dtypes(table):
    assert set(table) == {"cameras", "camera_names", "table"}
    assert table["camera_names"].dtype.kind == "U" and table["camera_names"].tolist() == list(catalogue.CAMERA_NAMES)
    columns = table["table"]
    assert set(columns) == {"subject_idx", "day_idx", "train_test", "frame_idx", "image_path", "2D_keypoints",
                            "2D_com", "3D_keypoints"}  # fmt: skip
    n = sum(SIZES.values())
    for key, dtype, shape in [("subject_idx", np.int64, (n,)), ("day_idx", np.int64, (n,)),
                              ("3D_keypoints", np.float64, (n, 20, 3))]:  # fmt: skip
        assert columns[key].dtype == dtype and columns[key].shape == shape, key
    assert columns["train_test"].dtype.kind == "U" and columns["train_test"].shape == (n,)
    for key, dtype, tail in [("frame_idx", np.int64, ()), ("image_path", np.str_, ()),
                             ("2D_keypoints", np.float64, (20, 2)), ("2D_com", np.float64, (2,))]:  # fmt: skip
        assert list(columns[key]) == list(catalogue.CAMERA_NAMES), key
        for cam, values in columns[key].items():
            assert values.dtype.type is np.dtype(dtype).type and values.shape == (n, *tail), (key, cam)
    assert {s: sorted(d) for s, d in table["cameras"].items()} == {1: [1], 2: [2], 5: [1]}
    camera = table["cameras"][2][2]["Camera5"]
    assert set(camera) == {"IntrinsicMatrix", "rotationMatrix", "translationVector", "TangentialDistortion",
                           "RadialDistortion", "RotationMatrix", "TranslationVector"}  # fmt: skip
    assert camera["RotationMatrix"] is camera["rotationMatrix"]  # one array, two names
    assert all(v.dtype == np.float64 for v in camera.values())


def test_rows_come_from_the_mocap_files(table, mats):
    columns = table["table"]
    rec = load_recording(mats["s2-d2"])
    rows = np.flatnonzero((columns["subject_idx"] == 2) & (columns["day_idx"] == 2))
    np.testing.assert_array_equal(rows, np.arange(SIZES["s1-d1"], SIZES["s1-d1"] + SIZES["s2-d2"]))
    np.testing.assert_array_equal(columns["3D_keypoints"][rows], rec.mocap)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN sample: nanmean warns, gives NaN
        centre = np.nanmean(rec.mocap, axis=1)
    for cam in catalogue.CAMERA_NAMES:
        np.testing.assert_array_equal(columns["frame_idx"][cam][rows], rec.cameras[cam]["frame"])
        np.testing.assert_array_equal(columns["2D_keypoints"][cam][rows], project(rec.mocap, rec.cameras[cam]))
        np.testing.assert_allclose(columns["2D_com"][cam][rows], project(centre, rec.cameras[cam]), atol=1e-9)
        expected = [catalogue.image_path(rec.recording, cam, f) for f in rec.cameras[cam]["frame"]]
        assert columns["image_path"][cam][rows].tolist() == expected
    assert expected[7] == f"images_unpacked/s2-d2/camera6/frame_{rec.cameras['Camera6']['frame'][7]:06d}.jpg"
    lost = np.isnan(rec.mocap).any(axis=-1)
    assert lost.any() and np.isnan(columns["2D_keypoints"]["Camera1"][rows][lost]).all()
    assert np.isnan(columns["2D_com"]["Camera1"][rows][3]).all()  # sample 3 lost every marker
    assert np.isfinite(columns["2D_com"]["Camera1"][rows][np.arange(len(rows)) != 3]).all()


@pytest.mark.parametrize(("stride", "complete_only"), [(1, True), (7, False), (4, True)])
def test_selection_follows_stride_and_complete_only(mats, stride, complete_only):
    table = build_table(list(mats.values()), stride=stride, complete_only=complete_only)
    columns = table["table"]
    for name, path in mats.items():
        rec = load_recording(path)
        wanted = [i for i in range(rec.n_samples) if i % stride == 0]
        if complete_only:
            wanted = [i for i in wanted if np.isfinite(rec.mocap[i]).all()]
        mine = (columns["subject_idx"] == rec.recording.subject) & (columns["day_idx"] == rec.recording.day)
        assert mine.sum() == len(wanted) > 0, name
        np.testing.assert_array_equal(columns["3D_keypoints"][mine], rec.mocap[wanted])
        np.testing.assert_array_equal(columns["frame_idx"]["Camera2"][mine], rec.cameras["Camera2"]["frame"][wanted])
    if complete_only:
        assert np.isfinite(columns["3D_keypoints"]).all()
    again = build_table(list(mats.values()), stride=stride, complete_only=complete_only)
    np.testing.assert_array_equal(again["table"]["2D_keypoints"]["Camera6"], columns["2D_keypoints"]["Camera6"])


def test_split_official_and_overridden(mats, table):
    split = dict(zip(table["table"]["subject_idx"].tolist(), table["table"]["train_test"].tolist(), strict=True))
    assert split == {1: "train", 2: "train", 5: "test"}
    custom = build_table([mats["s1-d1"], mats["s5-d1"]], split=parse_split("s1-d1=test, s5-d1=train"))
    subject = custom["table"]["subject_idx"]
    assert set(custom["table"]["train_test"][subject == 1]) == {"test"}
    assert set(custom["table"]["train_test"][subject == 5]) == {"train"}
    assert parse_split("official") == {r.name: r.split for r in catalogue.RECORDINGS}
    for bad in ("s1-d1", "s1-d1=val", "s9-d9=test"):
        with pytest.raises(BadInputError, match="--split"):
            parse_split(bad)


def test_builder_refuses_bad_input(mats, tmp_path):
    with pytest.raises(BadInputError, match="s1-d1 is given twice"):
        build_table([mats["s1-d1"], mats["s1-d1"]])
    with pytest.raises(BadInputError, match="stride must be a positive integer"):
        build_table([mats["s1-d1"]], stride=0)
    with pytest.raises(BadInputError, match="no such file"):
        build_table([tmp_path / "mocap-s3-d1.mat"])


def test_saved_table_loads_with_np_load_and_safely(table, tmp_path):
    path = tmp_path / catalogue.MINI_ANNOTATION_NAME
    save_annotation(table, path)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left behind
    for loaded in (np.load(path, allow_pickle=True), load_annotation(path)):
        assert isinstance(loaded, dict)
        for cam in catalogue.CAMERA_NAMES:
            np.testing.assert_array_equal(loaded["table"]["2D_keypoints"][cam], table["table"]["2D_keypoints"][cam])
            assert loaded["table"]["image_path"][cam].dtype == table["table"]["image_path"][cam].dtype
        np.testing.assert_array_equal(loaded["cameras"][5][1]["Camera3"]["rotationMatrix"],
                                      table["cameras"][5][1]["Camera3"]["RotationMatrix"])  # fmt: skip
    # the file holds the .mat's own spellings only, as the official table does; loading adds the other
    on_disk = np.load(path, allow_pickle=True)["cameras"][5][1]["Camera3"]
    assert "rotationMatrix" in on_disk and "RotationMatrix" not in on_disk and "TranslationVector" not in on_disk
    assert set(load_annotation(path)["cameras"][5][1]["Camera3"]) >= {"RotationMatrix", "rotationMatrix"}
    broken = {**table, "table": {k: v for k, v in table["table"].items() if k != "2D_com"}}
    with pytest.raises(BadInputError, match="lacks key"):
        save_annotation(broken, tmp_path / "broken.pkl")
    assert not (tmp_path / "broken.pkl").exists()


def test_a_killed_saves_partial_table_is_removed_by_the_next_save(table, tmp_path):
    """SIGKILL mid-pickle leaves ``.table.pkl.PID.TID.tmp`` (hundreds of MB for the full table)."""
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    partial = tmp_path / f".table.pkl.{dead.stdout.strip()}.140.tmp"
    other = tmp_path / f".other.pkl.{dead.stdout.strip()}.140.tmp"  # another file's: left alone
    partial.write_bytes(b"half a pickle")
    other.write_bytes(b"half a pickle")
    save_annotation(table, tmp_path / "table.pkl")
    assert not partial.exists() and other.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [other.name, "table.pkl"]


def test_dataset_accessor_without_images(table, tmp_path):
    path = tmp_path / "t.pkl"
    save_annotation(table, path)
    test = MiniRat7m(path, split="test", cameras=["Camera2", "Camera5"], load_images=False)
    assert len(test) == SIZES["s5-d1"]
    sample = test[-1]
    row = N - 1
    assert sample["recording"] == "s5-d1" and sample["row"] == row and "images" not in sample
    assert list(sample["keypoints_2d"]) == ["Camera2", "Camera5"]
    np.testing.assert_array_equal(sample["keypoints_2d"]["Camera5"], table["table"]["2D_keypoints"]["Camera5"][row])
    assert sample["frame_idx"]["Camera2"] == table["table"]["frame_idx"]["Camera2"][row]
    assert set(sample["cameras"]) == {"Camera2", "Camera5"}
    assert sample["cameras"]["Camera5"] is table["cameras"][5][1]["Camera5"] or np.array_equal(
        sample["cameras"]["Camera5"]["RotationMatrix"], table["cameras"][5][1]["Camera5"]["RotationMatrix"]
    )
    with pytest.raises(BadInputError, match=r"t\.pkl: no camera camera2, Camera7; the table has Camera1, "):
        MiniRat7m(path, cameras=["camera2", "Camera7"])
    with pytest.raises(IndexError):
        test[len(test)]
    # as a DataLoader worker started by spawn gets it: pickled, the table comes back as its plain dict
    again = pickle.loads(pickle.dumps(test))
    assert again[-1]["row"] == row and set(again[-1]["cameras"]) == {"Camera2", "Camera5"}


def _mutated(table, change):
    """A deep copy of ``table`` (fixtures are shared) after ``change(copy)``."""
    copy = pickle.loads(pickle.dumps(table))
    change(copy)
    return copy


N = sum(SIZES.values())
MUTATIONS = {
    "missing key": (lambda t: t["table"].pop("2D_com"), r"table lacks key\(s\) '2D_com' \(found: 'subject_idx'"),
    "2D with 3 coords": (
        lambda t: t["table"]["2D_keypoints"].update(Camera3=np.zeros((N, 20, 3))),
        rf"table\['2D_keypoints'\]\['Camera3'\]: expected shape \({N}, 20, 2\), found shape \({N}, 20, 3\)",
    ),
    "3D in the original (n, 3, 20) layout": (
        lambda t: t["table"].update({"3D_keypoints": np.zeros((N, 3, 20))}),
        rf"table\['3D_keypoints'\]: expected shape \({N}, 20, 3\), found shape \({N}, 3, 20\)",
    ),
    "short column": (
        lambda t: t["table"].update(day_idx=t["table"]["day_idx"][:-1]),
        rf"table\['day_idx'\]: expected shape \({N},\), found shape \({N - 1},\)",
    ),
    "fractional frame": (
        lambda t: t["table"]["frame_idx"].update(Camera2=t["table"]["frame_idx"]["Camera2"] + 0.5),
        r"table\['frame_idx'\]\['Camera2'\]: expected whole numbers",
    ),
    "list column": (
        lambda t: t["table"]["image_path"].update(Camera1=list(t["table"]["image_path"]["Camera1"])),
        rf"table\['image_path'\]\['Camera1'\]: expected a numpy array of shape \({N},\), found a list",
    ),
    "bad split": (
        lambda t: t["table"]["train_test"].__setitem__(5, "val"),
        r"table\['train_test'\]: expected only 'train' or 'test', found 'val'",
    ),
    "unknown camera": (
        lambda t: t.update(camera_names=np.array(["Camera1", "Camera7"])),
        r"camera_names: expected distinct names among Camera1, .*, found Camera1, Camera7",
    ),
    "camera without a column": (
        lambda t: t["table"]["2D_com"].pop("Camera6"),
        r"table\['2D_com'\] lacks key\(s\) 'Camera6'",
    ),
    "unknown recording": (
        lambda t: t["table"]["subject_idx"].__setitem__(0, 9),
        r"table\['subject_idx'\] and \['day_idx'\]: expected a RAT7M recording \(s1-d1, .*\), "
        r"found subject 9, day 1 \(first at row 0\)",
    ),
    "no cameras for a recording": (
        lambda t: t["cameras"].pop(5),
        r"cameras has no entry for subject 5, day 1 \(s5-d1\)",
    ),
    "camera without distortion": (
        lambda t: t["cameras"][2][2]["Camera4"].pop("RadialDistortion"),
        r"cameras\[2\]\[2\]\['Camera4'\] lacks key\(s\) 'RadialDistortion'",
    ),
    "not a dict": (lambda t: t.update(table=[1, 2]), r"table: expected a dict, found a list"),
}


@pytest.mark.parametrize("case", list(MUTATIONS))
def test_each_schema_error_has_its_own_message(table, case):
    change, message = MUTATIONS[case]
    with pytest.raises(BadInputError, match=rf"^my\.pkl: {message}"):
        validate_annotation(_mutated(table, change), "my.pkl")


def test_official_style_tables_validate(table):
    # tables from other writers: float indices, object arrays of str, list of names, int64 keys, extra columns
    def officialise(t):
        t["table"]["subject_idx"] = t["table"]["subject_idx"].astype(np.float64)
        t["table"]["image_path"]["Camera1"] = t["table"]["image_path"]["Camera1"].astype(object)
        t["table"]["cluster_idx"] = np.zeros(N, np.int64)
        t["camera_names"] = list(catalogue.CAMERA_NAMES)
        t["cameras"] = {np.int64(s): {float(d): c for d, c in days.items()} for s, days in t["cameras"].items()}

    validate_annotation(_mutated(table, officialise))
    assert check_table(_mutated(table, officialise))[0].ok


def cli(argv, capsys):
    code = run_main(build_annotation.main, [*argv, "--quiet"])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_builds_summarises_and_checks(root, capsys, tmp_path):
    code, out, _ = cli(["--root", str(root), "--stride", "2", "--complete-only"], capsys)
    assert code == 0
    path = root / catalogue.MINI_ANNOTATION_NAME
    built = load_annotation(path)
    subjects = built["table"]["subject_idx"].tolist()
    counts = {name: subjects.count(catalogue.recording_by_name(name).subject) for name in SIZES}  # one day each
    assert f"wrote {path}: {sum(counts.values())} samples from 3 recordings" in out
    for name, split, count in [
        ("s2-d2", "train", counts["s2-d2"]),
        ("s5-d1", "test", counts["s5-d1"]),
        ("all", "test", counts["s5-d1"]),
        ("all", "train", counts["s1-d1"] + counts["s2-d2"]),
    ]:
        assert f"\n{name:<10} {split:<6} {count:>9}\n" in out  # fmt: skip

    out_path = tmp_path / "two.pkl"
    code, out, _ = cli(["--root", str(root), "--recordings", "s5-d1,s1-d1", "--out", str(out_path)], capsys)
    assert code == 0 and set(load_annotation(out_path)["table"]["subject_idx"].tolist()) == {1, 5}
    # an existing table (perhaps the official one) is never replaced without --overwrite
    before = out_path.read_bytes()
    code, out, err = cli(["--root", str(root), "--recordings", "s5-d1", "s2-d2", "--out", str(out_path)], capsys)
    assert code == 2 and f"{out_path} exists; use --overwrite" in err and out_path.read_bytes() == before
    code, out, _ = cli(["--root", str(root), "--recordings", "s5-d1", "s2-d2", "--out", str(out_path), "--overwrite"],
                       capsys)  # fmt: skip
    assert code == 0 and set(load_annotation(out_path)["table"]["subject_idx"].tolist()) == {2, 5}

    code, out, _ = cli(["--check", "--root", str(root)], capsys)  # the table at its default place
    assert code == 0, out
    assert out.startswith(f"{path}: {sum(counts.values())} samples\n")
    assert "reprojection of 3D_keypoints vs 2D_keypoints (px): OK" in out
    assert "image_path follows" in out and "frame_idx inside the video chunks: skipped" in out
    assert f"{root / catalogue.VIDEO_DIR} not found; pass --root DIR" in out


def test_cli_check_finds_a_bad_table(table, tmp_path, capsys):
    path = tmp_path / "bad.pkl"

    def shift_camera4(t):
        t["table"]["2D_keypoints"]["Camera4"] = t["table"]["2D_keypoints"]["Camera4"] + [0.05, 0.0]

    save_annotation(_mutated(table, shift_camera4), path)
    code, out, _ = cli(["--check", str(path)], capsys)
    assert code == 1
    assert "reprojection of 3D_keypoints vs 2D_keypoints (px): FAILED" in out
    assert "Camera4: max 0.05 " in out and "Camera3: max 0 " in out

    def wrong_paths(t):
        t["table"]["image_path"]["Camera2"] = np.char.replace(t["table"]["image_path"]["Camera2"], "camera2", "Camera2")

    save_annotation(_mutated(table, wrong_paths), path)
    code, out, _ = cli(["--check", str(path)], capsys)
    assert code == 1 and "Camera2: 285 of 285 paths differ (first: row 0: 'images_unpacked/s1-d1/Camera2/" in out

    def unofficial_split(t):
        t["table"]["train_test"][:] = "train"

    save_annotation(_mutated(table, unofficial_split), path)
    code, out, _ = cli(["--check", str(path)], capsys)
    assert code == 0 and "differs from the official split: s5-d1: train (official: test)" in out


def test_cli_exit_2_on_bad_input(root, tmp_path, capsys):
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(b"cos\nsystem\n(S'touch " + str(tmp_path / "pwned").encode() + b"'\ntR.")
    truncated = tmp_path / "truncated.pkl"
    save_annotation(build_table([root / catalogue.ANNOTATION_DIR / "mocap-s5-d1.mat"]), truncated)
    truncated.write_bytes(truncated.read_bytes()[:5000])
    cases = [
        (["--check", str(evil)], "global 'os.system'"),
        (["--check", str(truncated)], "truncated"),
        (["--check", str(tmp_path / "none.pkl")], "cannot read"),
        (["--root", str(tmp_path)], "no mocap-sS-dD.mat files"),
        (["--root", str(root), "--recordings", "s3-d1"], "missing mocap-s3-d1.mat"),
        (["--root", str(root), "--recordings", "s9-d9"], "--recordings: unknown recording 's9-d9'"),
        (["--root", str(root), "--split", "s1-d1=validation"], "--split"),
        (["--root", str(root), "--stride", "0"], "build_annotation.py: error: argument --stride: expected a positive"),
        (["--check", "--tolerance", "-0.5"], "argument --tolerance: expected a number >= 0"),
    ]
    for argv, message in cases:
        code, _, err = cli(argv, capsys)
        assert code == 2 and message in err and "Traceback" not in err, (argv, err)
    assert not (tmp_path / "pwned").exists()


def test_script_runs_as_a_process(tmp_path):
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(b"cos\nsystem\n(S'touch " + str(tmp_path / "pwned").encode() + b"'\ntR.")
    done = subprocess.run([sys.executable, "build_annotation.py", "--check", str(evil)], cwd=REPO,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    lines = [line for line in done.stderr.splitlines() if not line.startswith("dataset root:")]
    assert done.returncode == 2 and lines[0].startswith("error: ") and "Traceback" not in done.stderr
    assert not (tmp_path / "pwned").exists()


def _write_chunk(path, frames):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, (32, 32))
    for i in range(frames):
        writer.write(np.full((32, 32, 3), i, np.uint8))
    writer.release()


def test_frames_inside_video_chunks(table, tmp_path):
    # s1-d1's frames run 0..60; chunks of 40 frames starting at 0 and 40 hold them
    video_dir = tmp_path / catalogue.VIDEO_DIR
    video_dir.mkdir()
    rec = catalogue.recording_by_name("s1-d1")
    for cam in catalogue.CAMERA_NAMES:
        for start in (0, 40):
            _write_chunk(video_dir / catalogue.video_chunk_name(rec, cam, start), 40)
    (video_dir / "s1-d1-camera1-80.mp4.part").write_bytes(b"partial download")
    result = check_frames_in_video(table, video_dir)
    assert result.ok, result.format()
    assert "no chunks on disk (not checked): s2-d2 Camera1" in result.format()
    # only s1-d1 has videos: the status line itself says the pass is partial
    status = result.format().splitlines()[0]
    assert status.endswith(": OK for 6 of 18 recording-cameras; 12 not checked (no chunks on disk)"), status
    s1d1 = int((table["table"]["subject_idx"] == 1).sum())
    assert f"{s1d1 * 6} frame indices checked" in result.format()

    (video_dir / catalogue.video_chunk_name(rec, "Camera2", 40)).unlink()  # frames 40.. of Camera2 gone
    _write_chunk(video_dir / catalogue.video_chunk_name(rec, "Camera5", 40), 10)  # a short last chunk
    result = check_frames_in_video(table, video_dir)
    assert result.ok is False
    camera2 = int((table["table"]["frame_idx"]["Camera2"][:s1d1] >= 40).sum())
    camera5 = int((table["table"]["frame_idx"]["Camera5"][:s1d1] >= 50).sum())
    assert f"s1-d1 Camera2: {camera2} of {s1d1} frames outside every chunk (first: frame 40;" in result.format()
    assert f"s1-d1 Camera5: {camera5} of {s1d1} frames outside every chunk (first: frame 50;" in result.format()
    assert "Camera1:" not in result.format()


# --- on the synthetic dataset: real .mat files and real H.264 chunks whose frames show the skeleton


@pytest.fixture(scope="module")
def synthetic_table(synthetic_dataset, tmp_path_factory):
    path = tmp_path_factory.mktemp("synthetic_table") / "table.pkl"  # the shared dataset stays untouched
    code = run_main(build_annotation.main, ["--root", str(synthetic_dataset.root), "--out", str(path), "--quiet"])
    assert code == 0
    return load_annotation(path)


def test_synthetic_table_schema_counts_and_split(synthetic_dataset, synthetic_table, capsys):
    columns = synthetic_table["table"]
    assert columns["3D_keypoints"].dtype == np.float64 and columns["frame_idx"]["Camera4"].dtype == np.int64
    for rec in synthetic_dataset.recordings.values():
        mine = (columns["subject_idx"] == rec.recording.subject) & (columns["day_idx"] == rec.recording.day)
        assert mine.sum() == rec.n_samples
        assert set(columns["train_test"][mine]) == {rec.recording.split}
        for cam, offset in rec.frame_offsets.items():  # the synthetic frame maps: sample + offset
            np.testing.assert_array_equal(columns["frame_idx"][cam][mine], np.arange(rec.n_samples) + offset)
    assert set(columns["train_test"][columns["subject_idx"] == 5]) == {"test"}

    strided = build_table([r.mat_path for r in synthetic_dataset.recordings.values()], stride=3, complete_only=True)
    for name, rec in synthetic_dataset.recordings.items():
        mocap = load_recording(rec.mat_path).mocap
        expected = sum(bool(np.isfinite(mocap[i]).all()) for i in range(0, rec.n_samples, 3))
        subject, day = strided["table"]["subject_idx"], strided["table"]["day_idx"]
        assert ((subject == rec.recording.subject) & (day == rec.recording.day)).sum() == expected > 0, name

    code = run_main(build_annotation.main, ["--check", str(synthetic_dataset.root / "none.pkl"), "--quiet"])
    assert code == 2
    capsys.readouterr()


def test_synthetic_check_passes_with_the_videos(synthetic_dataset, synthetic_table, tmp_path, capsys):
    path = tmp_path / "table.pkl"
    save_annotation(synthetic_table, path)
    code, out, _ = cli(["--check", str(path), "--root", str(synthetic_dataset.root)], capsys)
    assert code == 0, out
    n = len(synthetic_table["table"]["subject_idx"])
    assert f"frame_idx inside the video chunks of {synthetic_dataset.video_dir}: OK\n  {n * 6} frame indices" in out

    def beyond_the_videos(t):  # s1-d1 Camera3 pointing one chunk past its last frame
        frames = t["table"]["frame_idx"]["Camera3"]
        frames[t["table"]["subject_idx"] == 1] += synthetic_dataset.recordings["s1-d1"].chunk_length
        t["table"]["image_path"]["Camera3"] = np.array(
            [catalogue.image_path(catalogue.recording_for(s, d), "Camera3", f)
             for s, d, f in zip(t["table"]["subject_idx"], t["table"]["day_idx"], frames, strict=True)]
        )  # fmt: skip

    save_annotation(_mutated(synthetic_table, beyond_the_videos), path)
    code, out, _ = cli(["--check", str(path), "--root", str(synthetic_dataset.root)], capsys)
    s1 = synthetic_dataset.recordings["s1-d1"]
    outside = int((np.arange(s1.n_samples) + s1.frame_offsets["Camera3"] + s1.chunk_length >= s1.n_frames).sum())
    assert code == 1 and f"s1-d1 Camera3: {outside} of {s1.n_samples} frames outside every chunk" in out, out


def _decode(dataset, recording, camera, frame):
    """Frame ``frame`` of a camera, decoded from the chunk whose start is the largest start <= frame."""
    pattern = f"{recording.name}-camera{catalogue.camera_number(camera)}-*.mp4"
    starts = [catalogue.parse_video_chunk_name(p.name).start for p in dataset.video_dir.glob(pattern)]
    start = max(s for s in starts if s <= frame)
    capture = cv2.VideoCapture(str(dataset.video_dir / catalogue.video_chunk_name(recording, camera, start)))
    for _ in range(frame - start + 1):
        ok, image = capture.read()
        assert ok
    capture.release()
    return image


def test_synthetic_keypoints_land_on_the_drawn_skeleton(synthetic_dataset, synthetic_table):
    # joints are drawn as white dots on a grey-beige floor; look in a 3x3 patch at each keypoint
    from rat7m.barcode import barcode_height, read_barcode

    columns = synthetic_table["table"]
    rows = np.random.default_rng(0).choice(len(columns["subject_idx"]), 12, replace=False)
    on_joint, shifted = [], []
    for row in rows:
        rec = catalogue.recording_for(columns["subject_idx"][row], columns["day_idx"][row])
        for cam in catalogue.CAMERA_NAMES:
            frame = int(columns["frame_idx"][cam][row])
            image = _decode(synthetic_dataset, rec, cam, frame)
            assert read_barcode(image) == frame  # the picture is the frame the table names
            height, width = image.shape[:2]
            for offset, found in (((0, 0), on_joint), ((6, 6), shifted)):
                for x, y in np.round(columns["2D_keypoints"][cam][row] - 1 + offset):  # MATLAB's pixels - 1
                    if np.isfinite(x) and 2 <= x < width - 2 and barcode_height(width) + 2 <= y < height - 2:
                        patch = image[int(y) - 1 : int(y) + 2, int(x) - 1 : int(x) + 2]
                        found.append(patch.min(axis=2).max() > 200)  # white, not floor
    assert len(on_joint) > 500
    assert np.mean(on_joint) > 0.97
    assert np.mean(shifted) < 0.5  # 6 px off, mostly floor: the check can tell
