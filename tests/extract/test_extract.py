"""extract_frames.py on the synthetic dataset: exact frames at the table's paths, resume after SIGKILL,
shards that cover everything once, faults reported frame by frame, verify, bad input.

Extraction tests run on both encodings (``any_dataset``: B-frame H.264 and the rig's capture
encoding, the same frames and .mat files) and, where the decoder matters, with both decoders."""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

import extract_frames
from rat7m import catalogue, extract
from rat7m.barcode import read_barcode
from rat7m.cli import run_main
from rat7m.errors import BadInputError
from rat7m.table import save_annotation
from rat7m.table_build import build_table
from rat7m.video import ChunkIndex
from tests.helpers.shared import group_alive

REPO = Path(__file__).resolve().parents[2]
STRIDE = 3  # one mocap sample in 3 becomes a row: chunks are decoded past unwanted frames


pytestmark = pytest.mark.usefixtures("outside_slurm")


@pytest.fixture(scope="module")
def table(synthetic_dataset, tmp_path_factory):
    """A table built from the synthetic .mat files, saved once; returns (path, table dict)."""
    built = build_table([r.mat_path for r in synthetic_dataset.recordings.values()], stride=STRIDE)
    path = tmp_path_factory.mktemp("table") / catalogue.MINI_ANNOTATION_NAME
    save_annotation(built, path)
    return path, built


def make_root(tmp_path, dataset, table, copy_video=False):
    """A dataset root for one test: the table, and the shared videos (linked) or a copy to damage."""
    root = tmp_path / "data"
    root.mkdir()
    if copy_video:
        shutil.copytree(dataset.video_dir, root / catalogue.VIDEO_DIR)
    else:
        (root / catalogue.VIDEO_DIR).symlink_to(dataset.video_dir, target_is_directory=True)
    shutil.copyfile(table[0], catalogue.mini_annotation_path(root))
    return root


def expected_images(table, recordings=None):
    """{image_path: frame_idx} of every image the table wants (optionally of some recordings)."""
    columns = table[1]["table"]
    names = {r.name for r in catalogue.parse_recordings(recordings)}
    wanted = {}
    for row, (subject, day) in enumerate(zip(columns["subject_idx"], columns["day_idx"], strict=True)):
        if catalogue.recording_for(subject, day).name in names:
            for cam in catalogue.CAMERA_NAMES:
                wanted[str(columns["image_path"][cam][row])] = int(columns["frame_idx"][cam][row])
    return wanted


def images_on_disk(root):
    """{path relative to root: (inode, mtime_ns)} of every final-named JPEG."""
    return {
        p.relative_to(root).as_posix(): (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in (root / catalogue.IMAGES_DIR).rglob("*.jpg")
    }


def assert_exact(root, expected):
    """Every image in ``expected`` is a complete JPEG showing its frame's barcode."""
    for path, frame in expected.items():
        assert extract.is_complete_jpeg(root / path), path
        assert read_barcode(cv2.imread(str(root / path))) == frame, path


def run(capsys, *args):
    code = run_main(extract_frames.main, [str(a) for a in args])
    return code, capsys.readouterr().out


def parse_failures(out):
    """{(recording, camera): (reason, frames)} from the summary's failure lines."""
    failures = {}
    for rec, cam, reason, frames in re.findall(r"^  (\S+) (Camera\d): \d+ frames \((.*)\): ([\d, -]+)$", out, re.M):
        numbers = set()
        for part in frames.split(", "):
            first, _, last = part.partition("-")
            numbers.update(range(int(first), int(last or first) + 1))
        failures[(rec, cam)] = (reason, numbers)
    return failures


@pytest.mark.parametrize("decoder", ["pyav", "opencv"])
def test_every_image_exact_at_the_tables_path_rerun_writes_nothing_verify_catches_loss(
    any_dataset, table, tmp_path, capsys, decoder
):
    root = make_root(tmp_path, any_dataset, table)
    expected = expected_images(table)
    code, out = run(capsys, "--root", root, "--dry-run")
    assert code == 0 and f"{len(expected)} images to write, 0 already done" in out
    assert not (root / catalogue.IMAGES_DIR).exists()

    # STRIDE 3 leaves unreferenced B-frames unwanted between wanted ones: PyAV skips them
    code, out = run(capsys, "--root", root, "--jobs", 2, "--quiet", "--decoder", decoder)
    assert code == 0, out
    assert f"{len(expected)} written, 0 skipped, 0 failed" in out and f"read by {decoder}" in out
    on_disk = images_on_disk(root)
    assert set(on_disk) == set(expected)  # exactly the table's image_path, camera<n> folders and all
    assert_exact(root, expected)
    assert not list(root.rglob("*.tmp"))

    code, out = run(capsys, "--root", root, "--jobs", 2, "--quiet")
    assert code == 0 and f"0 written, {len(expected)} skipped" in out
    assert images_on_disk(root) == on_disk  # not one file rewritten

    code, out = run(capsys, "--root", root, "--verify", "--quiet", "--jobs", 2)
    assert code == 0 and f"{len(expected)} images checked: {len(expected)} good, 0 missing" in out
    lost, broken = sorted(expected)[5], sorted(expected)[-1]
    (root / lost).unlink()
    (root / broken).write_bytes((root / broken).read_bytes()[:300])  # a partial file from elsewhere
    code, out = run(capsys, "--root", root, "--verify", "--quiet")
    assert code == 1
    failures = parse_failures(out)
    assert {v[1].pop() for v in failures.values()} == {expected[lost], expected[broken]}
    assert {v[0] for v in failures.values()} == {"missing", "incomplete JPEG (no end marker)"}

    code, out = run(capsys, "--root", root, "--quiet")
    assert code == 0 and f"2 written, {len(expected) - 2} skipped" in out
    assert_exact(root, {p: expected[p] for p in (lost, broken)})


def test_sigkill_midway_leaves_no_partial_image_and_a_rerun_completes(any_dataset, table, tmp_path, capsys):
    root = make_root(tmp_path, any_dataset, table)
    expected = expected_images(table)
    command = [sys.executable, str(REPO / "extract_frames.py"), "--root", str(root), "--jobs", "2", "--quiet"]
    proc = subprocess.Popen(command, cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL)
    try:
        while not any((root / catalogue.IMAGES_DIR).rglob("*.jpg")):
            assert proc.poll() is None, "the run ended before it could be killed"
            time.sleep(0.002)
        os.killpg(proc.pid, signal.SIGSTOP)  # freeze the main process and its workers mid-work
        frozen = images_on_disk(root)
        assert 0 < len(frozen) < len(expected)
        assert_exact(root, {p: expected[p] for p in frozen})  # whatever carries a final name is whole
        proc.kill()  # SIGKILL the main process only: its workers must notice and leave
        proc.wait()
    finally:
        os.killpg(proc.pid, signal.SIGCONT)
    deadline = time.monotonic() + 10
    while group_alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if group_alive(proc.pid):
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("worker processes outlived the killed main process")

    done = images_on_disk(root)
    assert_exact(root, {p: expected[p] for p in done})
    code, out = run(capsys, "--root", root, "--quiet")
    assert code == 0, out
    assert f"{len(expected) - len(done)} written, {len(done)} skipped, 0 failed" in out
    assert set(images_on_disk(root)) == set(expected)
    assert_exact(root, expected)


def test_a_killed_worker_is_reported_and_a_rerun_finishes(any_dataset, table, tmp_path, capsys):
    root = make_root(tmp_path, any_dataset, table)
    expected = expected_images(table)
    command = [sys.executable, str(REPO / "extract_frames.py"), "--root", str(root), "--jobs", "2", "--quiet"]
    proc = subprocess.Popen(command, cwd=REPO, start_new_session=True, stdout=subprocess.PIPE, text=True)
    try:
        while not any((root / catalogue.IMAGES_DIR).rglob("*.jpg")):
            assert proc.poll() is None, "the run ended before a worker could be killed"
            time.sleep(0.002)
        os.killpg(proc.pid, signal.SIGSTOP)
        try:
            workers = [pid for pid in _children(proc.pid) if b"resource_tracker" not in _cmdline(pid)]
            os.kill(workers[0], signal.SIGKILL)  # as the out-of-memory killer would
        finally:
            os.killpg(proc.pid, signal.SIGCONT)
        out = proc.communicate(timeout=60)[0]
    finally:
        proc.kill()
    assert proc.returncode == 1, out
    failures = parse_failures(out)
    assert failures and {reason for reason, _ in failures.values()} == {extract.WORKER_DIED}
    failed = {
        catalogue.image_path(catalogue.recording_by_name(rec), cam, frame)
        for (rec, cam), (_, frames) in failures.items()
        for frame in frames
    }
    done = set(images_on_disk(root))
    assert done | failed == set(expected) and not done & failed  # every image accounted for, exactly once
    assert_exact(root, {p: expected[p] for p in done})

    code, out = run(capsys, "--root", root, "--quiet")
    assert code == 0 and f"{len(failed)} written, {len(done)} skipped, 0 failed" in out
    assert_exact(root, expected)


def _children(pid):
    """Pids of the processes whose parent is ``pid`` (from /proc)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return children


def _cmdline(pid):
    return Path(f"/proc/{pid}/cmdline").read_bytes()


def test_shards_as_separate_processes_write_every_image_exactly_once(any_dataset, table, tmp_path):
    root = make_root(tmp_path, any_dataset, table)
    recordings = ["s1-d1", "s5-d1"]
    expected = expected_images(table, ",".join(recordings))
    base = [sys.executable, str(REPO / "extract_frames.py"), "--root", str(root), "--jobs", "1", "--quiet"]
    base += ["--recordings", *recordings]
    slurm = {**os.environ, "SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_COUNT": "3"}
    procs = [
        subprocess.Popen([*base, "--shard", f"{k}/3"], cwd=REPO, stdout=subprocess.PIPE, text=True) for k in (0, 1)
    ]
    procs.append(subprocess.Popen(base, cwd=REPO, stdout=subprocess.PIPE, text=True, env=slurm))  # shard 2/3
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outs

    assert "shard 2/3 (from SLURM_ARRAY_TASK_ID=3, SLURM_ARRAY_TASK_MIN=1, SLURM_ARRAY_TASK_COUNT=3)" in outs[2]
    owned = [re.search(r"^shard \d/3 .*: \d+ of \d+ chunks: (.*)$", out, re.M).group(1).split(", ") for out in outs]
    index = ChunkIndex.from_dir(any_dataset.video_dir)
    streams = [(r, cam) for r in catalogue.parse_recordings(",".join(recordings)) for cam in catalogue.CAMERA_NAMES]
    chunks = {c.name for r, cam in streams for c in index.chunks(r, cam)}
    assert sorted(name for names in owned for name in names) == sorted(chunks)  # every chunk owned by exactly one shard
    written = [int(re.search(r"(\d+) written, 0 skipped, 0 failed", out).group(1)) for out in outs]
    assert sum(written) == len(expected) and min(written) > 0
    assert set(images_on_disk(root)) == set(expected)
    assert_exact(root, expected)


@pytest.mark.parametrize("decoder", ["pyav", "opencv"])
def test_faults_are_reported_frame_by_frame_and_the_rest_is_extracted(
    any_dataset, table, tmp_path, capsys, decoder
):
    root = make_root(tmp_path, any_dataset, table, copy_video=True)
    videos = root / catalogue.VIDEO_DIR
    (videos / "s1-d1-camera3-50.mp4").unlink()  # a chunk missing in the middle
    (videos / "s5-d1-camera2-30.mp4").unlink()  # the camera's last chunk missing
    (videos / "s4-d1-camera6-0.mp4").unlink()  # the first chunk missing
    truncated = videos / "s2-d1-camera5-10.mp4"
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    expected = expected_images(table)

    code, out = run(capsys, "--root", root, "--jobs", 2, "--quiet", "--decoder", decoder)
    assert code == 1 and f"read by {decoder}" in out
    failures = parse_failures(out)

    def wanted(recording, camera, first, end):
        folder = f"{catalogue.IMAGES_DIR}/{recording}/camera{camera[-1]}/"
        return {f for p, f in expected.items() if p.startswith(folder) and first <= f < end}

    lost = {
        ("s1-d1", "Camera3"): wanted("s1-d1", "Camera3", 50, 60),
        ("s5-d1", "Camera2"): wanted("s5-d1", "Camera2", 30, 10**6),
        ("s4-d1", "Camera6"): wanted("s4-d1", "Camera6", 0, 10),
        ("s2-d1", "Camera5"): wanted("s2-d1", "Camera5", 10, 20),
    }
    assert {key: frames for key, (_, frames) in failures.items()} == lost
    assert all(lost.values())
    reasons = {key: reason for key, (reason, _) in failures.items()}
    assert "no chunk covers frames 50..59 (missing s1-d1-camera3-50.mp4?)" in reasons[("s1-d1", "Camera3")]
    assert "last chunk" in reasons[("s5-d1", "Camera2")] and "s5-d1-camera2-30.mp4" in reasons[("s5-d1", "Camera2")]
    assert "no chunk starts at or before" in reasons[("s4-d1", "Camera6")]
    assert "cannot open s2-d1-camera5-10.mp4" in reasons[("s2-d1", "Camera5")]

    failed_paths = {
        catalogue.image_path(catalogue.recording_by_name(rec), cam, f) for (rec, cam), fs in lost.items() for f in fs
    }
    assert set(images_on_disk(root)) == set(expected) - failed_paths
    assert_exact(root, {p: f for p, f in expected.items() if p not in failed_paths})


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--annotation", "nowhere.pkl"], {}, "no annotation table at nowhere.pkl"),
        (["--shard", "3/3"], {}, "expected K/N with 0 <= K < N"),
        (["--shard", "one/two"], {}, "expected K/N"),
        ([], {"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_COUNT": "3"}, "not a contiguous job array"),
        (["--quality", "0"], {}, "--quality 0"),
        (["--recordings", "s9-d9"], {}, "unknown recording"),
        (["--cameras", "7"], {}, "unknown camera"),
    ],
)
def test_bad_input_exits_2_with_one_line(synthetic_dataset, table, tmp_path, capsys, monkeypatch, args, env, message):
    root = make_root(tmp_path, synthetic_dataset, table)
    monkeypatch.chdir(tmp_path)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert run_main(extract_frames.main, ["--root", str(root), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (root / catalogue.IMAGES_DIR).exists()


@pytest.mark.parametrize(("encoding", "chosen"), [("bframes", "pyav"), ("capture", "opencv")])
def test_auto_picks_pyav_for_b_frames_and_opencv_for_the_capture_encoding(
    synthetic_dataset, capture_dataset, table, tmp_path, capsys, encoding, chosen
):
    dataset = synthetic_dataset if encoding == "bframes" else capture_dataset
    root = make_root(tmp_path, dataset, table)
    expected = expected_images(table, "s1-d1")
    code, out = run(capsys, "--root", root, "--recordings", "s1-d1", "--jobs", 2, "--quiet")
    assert code == 0 and f"{len(expected)} written" in out and f"read by {chosen}," in out, out
    assert_exact(root, expected)


def test_without_pyav_auto_falls_back_to_opencv_and_pyav_is_bad_input(
    synthetic_dataset, table, tmp_path, capsys, monkeypatch
):
    root = make_root(tmp_path, synthetic_dataset, table)
    monkeypatch.setitem(sys.modules, "av", None)  # as if PyAV were not installed: `import av` fails
    assert run_main(extract_frames.main, ["--root", str(root), "--decoder", "pyav"]) == 2
    err = capsys.readouterr().err
    assert "--decoder pyav" in err and "pip install av" in err and "Traceback" not in err
    assert not (root / catalogue.IMAGES_DIR).exists()

    expected = expected_images(table, "s3-d1")
    code, out = run(capsys, "--root", root, "--recordings", "s3-d1", "--jobs", 1, "--quiet")
    assert code == 0 and f"{len(expected)} written" in out and "read by opencv" in out
    assert_exact(root, expected)


def test_no_video_folder_is_bad_input(table, tmp_path, capsys):
    shutil.copyfile(table[0], catalogue.mini_annotation_path(tmp_path))
    assert run_main(extract_frames.main, ["--root", str(tmp_path)]) == 2
    assert "no video_sequences/ folder" in capsys.readouterr().err


def test_plan_takes_the_union_over_rows_and_refuses_paths_outside_the_root(synthetic_dataset, table):
    index = ChunkIndex.from_dir(synthetic_dataset.video_dir)
    jobs = extract.plan_jobs(table[1], index, catalogue.RECORDINGS, catalogue.CAMERA_NAMES)
    columns = table[1]["table"]
    doubled = {key: _twice(value) for key, value in columns.items()}  # every frame wanted by two rows
    assert extract.plan_jobs({"table": doubled}, index, catalogue.RECORDINGS, catalogue.CAMERA_NAMES) == jobs
    assert sum(len(j.targets) for j in jobs) == len(expected_images(table))

    paths = {cam: np.array(values, dtype=object) for cam, values in columns["image_path"].items()}
    paths["Camera2"][4] = "../../etc/frame.jpg"
    with pytest.raises(BadInputError, match=r"image_path\['Camera2'\]\[4\].*has an empty, '.' or '..' part"):
        extract.plan_jobs({"table": {**columns, "image_path": paths}}, index, catalogue.RECORDINGS, ["Camera2"])

    # a path that two frames claim would end up holding whichever was written last
    paths["Camera2"][4] = paths["Camera2"][5]
    with pytest.raises(BadInputError, match=r"\[.Camera2.\]\[\d\].*is also the path of frame \d+ of s1-d1 Camera2"):
        extract.plan_jobs({"table": {**columns, "image_path": paths}}, index, catalogue.RECORDINGS, ["Camera2"])


def _twice(value):
    if isinstance(value, dict):
        return {key: np.concatenate([v, v]) for key, v in value.items()}
    return np.concatenate([value, value])


def test_shards_partition_the_chunks_deterministically_and_balance_the_work(synthetic_dataset, table):
    index = ChunkIndex.from_dir(synthetic_dataset.video_dir)
    jobs = extract.plan_jobs(table[1], index, catalogue.RECORDINGS, catalogue.CAMERA_NAMES)
    for n in (1, 2, 3, 5):
        shards = [extract.shard_jobs(jobs, k, n) for k in range(n)]
        assert sorted(j.key for s in shards for j in s) == sorted(j.key for j in jobs)
        assert shards == [extract.shard_jobs(list(reversed(jobs)), k, n) for k in range(n)]  # input order is irrelevant
        loads = [sum(j.cost for j in s) for s in shards]
        assert max(loads) - min(loads) <= max(j.cost for j in jobs)
    assert extract.parse_shard(" 2 / 5 ") == (2, 5)
    assert extract.shard_from_environment({}) is None
    assert extract.shard_from_environment({"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_COUNT": "4"})[:2] == (0, 4)


def test_list_forms_agree_and_the_shard_line_is_printed_once(synthetic_dataset, table, tmp_path, capsys, caplog):
    root = make_root(tmp_path, synthetic_dataset, table)
    spaced = run(capsys, "--root", root, "--recordings", "s3-d1", "s5-d2", "--cameras", "1", "Camera3", "--dry-run")
    commas = run(capsys, "--root", root, "--recordings", "s3-d1,s5-d2", "--cameras", "1,Camera3", "--dry-run")
    images = len(expected_images(table, "s3-d1,s5-d2")) // 6 * 2  # both recordings, two of six cameras
    assert spaced == commas and spaced[0] == 0 and f"{images} images to write" in spaced[1]

    caplog.set_level("INFO")
    code, out = run(capsys, "--root", root, "--recordings", "s3-d1", "--cameras", "2", "--shard", "0/2", "--jobs", 1)
    assert code == 0 and "written" in out
    assert (out + caplog.text).count("shard 0/2") == 1, out + caplog.text


def test_shards_do_not_depend_on_hash_seeds(synthetic_dataset, table, tmp_path):
    # every task of a job array plans on its own, with its own hash seed: their shards must agree
    root = make_root(tmp_path, synthetic_dataset, table)
    command = [sys.executable, str(REPO / "extract_frames.py"), "--root", str(root), "--dry-run", "--shard", "1/3"]
    lines = set()
    for seed in ("1", "2", "random"):
        out = subprocess.run(
            command, cwd=REPO, env={**os.environ, "PYTHONHASHSEED": seed}, capture_output=True, text=True, check=True
        ).stdout
        lines.add(re.search(r"^shard 1/3 .*$", out, re.M).group(0))
    assert len(lines) == 1 and len(lines.pop()) > 100
