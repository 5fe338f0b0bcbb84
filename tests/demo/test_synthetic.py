"""The synthetic dataset is RAT7M-shaped and tells the truth: files, frames, B-frames, .mat content, pictures."""

import dataclasses

import av
import cv2
import numpy as np
import pytest
import scipy.io
from av.video.frame import PictureType

from rat7m import catalogue
from rat7m.barcode import barcode_height, read_barcode
from rat7m.cli import run_main
from rat7m.demo import synthetic
from rat7m.geometry import project
from rat7m.matfile import load_cameras, load_mocap, load_recording
from rat7m.table_build import build_table, find_mocap_files
from rat7m.table_check import check_table


def decode_all(path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


def test_tree_has_exactly_the_real_layout(synthetic_dataset):
    ds = synthetic_dataset
    assert [r.name for r in ds.recordings.values()] == [r.name for r in catalogue.RECORDINGS]
    expected = {catalogue.mocap_file_name(r.recording) for r in ds.recordings.values()}
    assert {p.name for p in ds.annotation_dir.iterdir()} == expected
    names = {p.name for p in ds.video_dir.iterdir()}
    assert names == {p.name for p in ds.files() if p.suffix == ".mp4"}
    for name in names:  # every file is a chunk name the catalogue parses back (no leftovers like .part)
        assert catalogue.parse_video_chunk_name(name) is not None, name
    assert {p.parent for p in ds.root.rglob("*") if p.is_file()} == {ds.annotation_dir, ds.video_dir}

    s1 = ds.recordings["s1-d1"]
    assert len(s1.chunk_starts) > 10 and s1.chunk_frames(s1.chunk_starts[-1]) < s1.chunk_length
    # chunk starts taken from the file names: sorted as strings they come out in the wrong order
    starts = [catalogue.parse_video_chunk_name(p.name).start for p in ds.video_dir.glob("s1-d1-camera1-*.mp4")]
    assert sorted(starts) == list(s1.chunk_starts)
    assert sorted(map(str, starts)) != [str(s) for s in s1.chunk_starts]


def test_every_frame_of_every_chunk_carries_its_recording_wide_index(synthetic_dataset):
    checked = 0
    for rec in synthetic_dataset.recordings.values():
        for camera in catalogue.CAMERA_NAMES:
            for start in rec.chunk_starts:
                path = rec.chunk_path(camera, start)
                start_in_name = catalogue.parse_video_chunk_name(path.name).start
                frames = decode_all(path)
                assert frames[0].shape == (synthetic_dataset.height, synthetic_dataset.width, 3)
                indices = [read_barcode(f) for f in frames]
                assert indices == list(range(start_in_name, start_in_name + rec.chunk_frames(start))), path.name
                checked += len(frames)
    assert checked == sum(r.n_frames for r in synthetic_dataset.recordings.values()) * 6


def test_chunks_are_h264_with_b_frames(synthetic_dataset):
    rec = synthetic_dataset.recordings["s1-d1"]
    for path in rec.chunk_paths("Camera3"):
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            assert stream.codec_context.name == "h264"
            types = [PictureType(frame.pict_type).name for frame in container.decode(stream)]
        assert types[0] == "I"
        if len(types) >= 5:  # full chunks use B-frames (a 5-frame tail may too, a tiny one cannot)
            assert "B" in types, (path.name, types)
    with av.open(str(rec.chunk_path("Camera3", 0))) as container:  # and B-frames are out of order in the file
        packets = [p for p in container.demux(video=0) if p.pts is not None]
    pts = [p.pts for p in packets]
    assert pts != sorted(pts)


def test_capture_encoding_is_the_rigs_x264_ultrafast(capture_dataset, tmp_path):
    path = capture_dataset.recordings["s1-d1"].chunk_path("Camera3", 20)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.has_b_frames == 0 and stream.codec_context.profile == "Constrained Baseline"
        packets = [p for p in container.demux(stream) if p.size]
    options = bytes(packets[0])  # x264 writes its settings into the first frame (an SEI message)
    options = options[options.index(b"options: ") :].split(b"\x00")[0].decode().split()
    for setting in ("cabac=0", "deblock=0:0:0", "bframes=0", "scenecut=0", "keyint=250", "ref=1"):
        assert setting in options, (setting, options)
    pts = [p.pts for p in packets]
    assert pts == sorted(pts)  # no frame reordering at all

    # a key frame every 250 frames exactly, each an IDR, the first of the chunk too (new encoder per chunk)
    profile = dataclasses.replace(synthetic.PROFILES["test"], encoding="capture")
    picture = np.full((profile.height, profile.width, 3), 90, np.uint8)
    long_chunk = tmp_path / "s1-d1-camera1-0.mp4"
    synthetic._encode_chunk(long_chunk, (picture + (i % 7) for i in range(520)), profile)
    with av.open(str(long_chunk)) as container:
        decoded = [(frame.key_frame, PictureType(frame.pict_type).name) for frame in container.decode(video=0)]
    assert len(decoded) == 520
    assert [i for i, (key, _) in enumerate(decoded) if key] == [0, 250, 500]
    assert {kind for _, kind in decoded} == {"I", "P"}


def test_mat_files_round_trip_with_documented_content(synthetic_dataset):
    for rec in synthetic_dataset.recordings.values():
        loaded = load_recording(rec.mat_path)
        assert loaded.recording == rec.recording
        assert loaded.name == f"Subject{rec.recording.subject}-Day{rec.recording.day}"
        cameras, mocap = load_cameras(rec.mat_path), load_mocap(rec.mat_path)
        assert list(cameras) == list(catalogue.CAMERA_NAMES)
        assert mocap.shape == (rec.n_samples, 20, 3) and mocap.dtype == np.float64
        np.testing.assert_array_equal(mocap, loaded.mocap)
        for name, cam in cameras.items():
            assert cam["IntrinsicMatrix"].shape == (3, 3) and cam["RotationMatrix"].shape == (3, 3)
            assert cam["TranslationVector"].shape == (1, 3) and cam["TangentialDistortion"].shape == (1, 2)
            assert cam["RadialDistortion"].shape == (1, 2)
            frame = cam["frame"]
            assert frame.dtype == np.int64 and frame.shape == (rec.n_samples,)
            # a constant offset per camera, every mapped frame inside the video
            np.testing.assert_array_equal(frame, np.arange(rec.n_samples) + rec.frame_offsets[name])
            assert 0 <= frame.min() and frame.max() < rec.n_frames
        assert rec.frame_offsets["Camera2"] == 2 and len(set(rec.frame_offsets.values())) > 1
        # markers are stored in the file in another order than the joint order: readers must map by name
        raw_order = scipy.io.loadmat(rec.mat_path)["mocap"].dtype.names
        assert sorted(raw_order) == sorted(catalogue.JOINT_NAMES) and list(raw_order) != list(catalogue.JOINT_NAMES)


def test_the_rat_is_plausible(synthetic_dataset):
    j = {name: i for i, name in enumerate(catalogue.JOINT_NAMES)}
    for rec in synthetic_dataset.recordings.values():
        mocap = load_mocap(rec.mat_path)
        lost = np.isnan(mocap).any(axis=2)
        assert lost.any(), "no marker dropouts"
        assert lost.mean() < 0.05 and np.all(np.isnan(mocap[lost]))  # a marker is lost as a whole
        finite = mocap[~lost]
        assert finite[:, 0].min() > -320 and finite[:, 0].max() < 70, "x outside the arena"
        assert finite[:, 1].min() > -100 and finite[:, 1].max() < 210, "y outside the arena"
        assert finite[:, 2].min() >= 0 and finite[:, 2].max() < 220, "z outside the arena"
        with np.errstate(invalid="ignore"):
            steps = np.linalg.norm(np.diff(mocap, axis=0), axis=2)
        assert np.nanmax(steps) < 20, "motion is not smooth (mm per sample)"
        # joint order: the nose leads, the shins are near the floor, the spine is above the hips
        spine = np.nanmedian(mocap[:, j["SpineL"]] - mocap[:, j["SpineF"]], axis=0)
        head = np.nanmedian(mocap[:, j["HeadF"]] - mocap[:, j["SpineF"]], axis=0)
        assert head[:2] @ spine[:2] < 0, "HeadF is not in front of the spine"
        assert np.nanmedian(mocap[:, j["ShinL"], 2]) < np.nanmedian(mocap[:, j["HipL"], 2])
        assert np.nanmedian(mocap[:, j["HipR"], 2]) < np.nanmedian(mocap[:, j["SpineM"], 2])
        bones = np.linalg.norm(
            mocap[:, [a for a, _ in catalogue.BONES]] - mocap[:, [b for _, b in catalogue.BONES]], axis=2
        )
        assert np.nanmax(bones) < 90, "a bone is longer than a rat's"


def test_cameras_are_realistic_and_see_the_rat(synthetic_dataset):
    ds = synthetic_dataset
    scale = ds.width / synthetic.FULL_WIDTH
    for rec in ds.recordings.values():
        mocap = load_mocap(rec.mat_path)
        centres = []
        for cam in load_cameras(rec.mat_path).values():
            K, R, t = cam["IntrinsicMatrix"], cam["RotationMatrix"], cam["TranslationVector"]
            assert K[0, 1] == K[0, 2] == K[1, 2] == 0 and K[2, 2] == 1 and K[1, 0] != 0  # MATLAB layout, skew
            assert 2000 * scale <= K[0, 0] <= 4100 * scale and 400 * scale <= K[2, 0] <= 920 * scale
            np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
            assert np.isclose(np.linalg.det(R), 1)
            assert np.all(cam["RadialDistortion"] != 0) and np.all(cam["TangentialDistortion"] != 0)
            depth = (mocap.reshape(-1, 3) @ R + t)[:, 2]
            assert np.nanmin(depth) > 500, "a marker is behind or too close to a camera"
            pixels = project(mocap, cam).reshape(-1, 2)
            pixels = pixels[np.isfinite(pixels).all(axis=1)]
            inside = (pixels[:, 0] >= 0) & (pixels[:, 0] < ds.width) & (pixels[:, 1] >= 0) & (pixels[:, 1] < ds.height)
            assert inside.mean() > 0.95
            centres.append((-t @ R.T).ravel())
        centres = np.array(centres)  # all around the arena: cameras on every side of its centre
        directions = centres[:, :2] - synthetic.ARENA_CENTRE[:2]
        angles = np.sort(np.arctan2(directions[:, 1], directions[:, 0]))
        assert np.max(np.diff(np.r_[angles, angles[0] + 2 * np.pi])) < np.deg2rad(100)


def test_skeleton_is_drawn_where_projection_says(synthetic_dataset):
    ds = synthetic_dataset
    rec = ds.recordings["s1-d1"]
    mocap, cameras = load_mocap(rec.mat_path), load_cameras(rec.mat_path)
    strip = barcode_height(ds.width)
    hits = 0
    for camera in ("Camera1", "Camera2", "Camera5"):
        cam = cameras[camera]
        floor = synthetic.render_floor(cam, ds.width, ds.height).astype(int)
        for start in rec.chunk_starts[::4]:
            frames = decode_all(rec.chunk_path(camera, start))
            for offset, frame in enumerate(frames):
                index = start + offset
                diff = np.abs(frame.astype(int) - floor).mean(axis=2)
                samples = np.flatnonzero(cam["frame"] == index)
                drawn = np.zeros(frame.shape[:2], np.uint8)
                for sample in samples:
                    at = project(mocap[sample], cam) - 1  # MATLAB's 1-based pixels: the picture's are 0-based
                    synthetic.draw_skeleton(drawn, at)
                    for x, y in at:
                        if np.isfinite(x) and strip + 3 <= y < ds.height - 3 and 3 <= x < ds.width - 3:
                            assert diff[round(y), round(x)] > 60, (camera, index, x, y)
                            hits += 1
                # away from the skeleton (and the barcode), the picture is the empty floor
                far = cv2.dilate(drawn, np.ones((9, 9), np.uint8)) == 0
                far[: strip + 4] = False
                assert np.median(diff[far]) < 6 and np.percentile(diff[far], 99) < 30, (camera, index)
                # no rat before a camera's first mapped frame or after its last one
                assert (len(samples) == 0) == (index < cam["frame"][0] or index > cam["frame"][-1])
    assert hits > 500


def test_same_seed_same_data_and_cli(synthetic_dataset, tmp_path, capsys):
    args = ["--out", str(tmp_path / "a"), "--recordings", "s5-d2", "--frames", "12", "--chunk-length", "5", "-q"]
    assert run_main(synthetic.main, args) == 0
    summary = capsys.readouterr().out
    assert "wrote 19 files" in summary and "18 MP4 chunks holding 72 frames" in summary
    again = synthetic.generate_dataset(tmp_path / "b", recordings=["s5-d2"], n_frames=12, chunk_length=5)
    mat_a = tmp_path / "a" / catalogue.ANNOTATION_DIR / "mocap-s5-d2.mat"
    np.testing.assert_array_equal(load_mocap(mat_a), load_mocap(again.recordings["s5-d2"].mat_path))
    np.testing.assert_array_equal(
        load_cameras(mat_a)["Camera4"]["RotationMatrix"],
        load_cameras(again.recordings["s5-d2"].mat_path)["Camera4"]["RotationMatrix"],
    )
    chunk = again.recordings["s5-d2"].chunk_path("Camera6", 10)
    assert [read_barcode(f) for f in decode_all(chunk)] == [10, 11]
    # a rerun with fewer frames leaves no stale chunk (or unfinished .part file) behind
    (tmp_path / "b" / catalogue.VIDEO_DIR / "s5-d2-camera1-0.mp4.part").write_bytes(b"killed")
    shorter = synthetic.generate_dataset(tmp_path / "b", recordings=["s5-d2"], n_frames=7, chunk_length=5)
    assert sorted(shorter.video_dir.iterdir()) == sorted(shorter.recordings["s5-d2"].chunk_paths())
    assert len(shorter.recordings["s5-d2"].chunk_starts) == 2
    # another seed, another rat
    other = synthetic.generate_dataset(tmp_path / "c", seed=1, recordings="s5-d2", n_frames=4, chunk_length=5)
    assert not np.allclose(load_mocap(other.recordings["s5-d2"].mat_path)[:2], load_mocap(mat_a)[:2], equal_nan=True)


@pytest.mark.parametrize(
    "args,message",
    [
        (["--recordings", "s9-d9"], "unknown recording 's9-d9'"),
        (["--frames", "2"], "n_frames must be more than 2"),
        (["--chunk-length", "0"], "argument --chunk-length: expected a positive integer"),
    ],
)
def test_cli_bad_input_exits_2_with_a_message(tmp_path, capsys, args, message):
    assert run_main(synthetic.main, ["--out", str(tmp_path), "-q", *args]) == 2
    assert message in capsys.readouterr().err


def test_help_names_profiles(capsys):
    with pytest.raises(SystemExit) as exc:
        synthetic.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "--profile" in out and "bench: 1328x1048" in out and "video_sequences" in out


def test_mat_files_make_a_consistent_table(synthetic_dataset):
    """The seam to the table builder: a table built from the .mat files passes every consistency check."""
    table = build_table(find_mocap_files(synthetic_dataset.root), complete_only=True)
    n_rows = len(table["table"]["subject_idx"])
    assert 0.5 * sum(r.n_samples for r in synthetic_dataset.recordings.values()) < n_rows
    results = check_table(table, synthetic_dataset.root)
    assert all(r.ok is not False for r in results), "\n".join(r.format() for r in results)
    assert any("frame" in r.name and r.ok for r in results)
