"""The shipped ``examples/slurm_extract.sbatch``, submitted to a real one-node SLURM cluster as users do.

An array of 3 tasks extracts a copy of the synthetic dataset: together the tasks write every
wanted image exactly once, each the right frame by its barcode, and each task's log names the
chunks it owned. With one chunk removed, the task owning its frames ends FAILED with exit code 1
and names exactly those frames; the other tasks still complete. The script is passed nothing but
what its header tells users: extract_frames.py arguments after the script name, and the
RAT7M_PYTHON / RAT7M_TOOLKIT variables (the test submits from a temporary folder, so the logs
land there and not in the repository).
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import cv2
import pytest

from rat7m import catalogue
from rat7m.barcode import read_barcode
from rat7m.table import load_annotation, save_annotation
from rat7m.table_build import build_table
from tests.helpers.slurm_cluster import SlurmCluster, slurm_cluster, slurm_installed

pytestmark = pytest.mark.slurm
__all__ = ["slurm_cluster", "slurm_installed"]  # fixtures, imported for the tests below

REPO = Path(__file__).resolve().parents[2]
SBATCH = REPO / "examples" / "slurm_extract.sbatch"
N_TASKS = 3
STRIDE = 3  # one mocap sample in 3 becomes a row, so chunks are decoded past unwanted frames
#: The recording and camera that lose a chunk in the failure case.
DAMAGED = ("s1-d1", "Camera3")

#: What extract_frames.py prints: the shard and where it came from, its chunks, its result, its failures.
_SHARD_RE = re.compile(
    r"^shard (\d+)/(\d+) \(from SLURM_ARRAY_TASK_ID=(\d+)[^)]*\): (\d+) of (\d+) chunks: (.*)$", re.MULTILINE
)
_SUMMARY_RE = re.compile(r"^extract: (\d+) images: (\d+) written, (\d+) skipped, (\d+) failed", re.MULTILINE)
_FAILURE_RE = re.compile(r"^  (\S+) (Camera\d): (\d+) frames \((.*)\): ([\d, -]+)$", re.MULTILINE)


@pytest.fixture(scope="module")
def table_path(synthetic_dataset, tmp_path_factory) -> Path:
    """A table built by the table builder from the synthetic .mat files."""
    table = build_table([r.mat_path for r in synthetic_dataset.recordings.values()], stride=STRIDE)
    path = tmp_path_factory.mktemp("slurm-table") / catalogue.MINI_ANNOTATION_NAME
    save_annotation(table, path)
    return path


def wanted_images(table_path: Path) -> dict[str, tuple[str, str, int]]:
    """``{image_path: (recording, camera, frame)}`` of every image the table wants."""
    columns = load_annotation(table_path)["table"]
    wanted = {}
    for row, (subject, day) in enumerate(zip(columns["subject_idx"], columns["day_idx"], strict=True)):
        recording = catalogue.recording_for(int(subject), int(day)).name
        for camera in catalogue.CAMERA_NAMES:
            frame = int(columns["frame_idx"][camera][row])
            wanted[str(columns["image_path"][camera][row])] = (recording, camera, frame)
    return wanted


def make_root(tmp_path: Path, synthetic_dataset, table_path: Path) -> Path:
    """A private copy of the dataset's videos with the table at its default place (the fixture stays untouched)."""
    root = tmp_path / "rat7m"
    shutil.copytree(synthetic_dataset.video_dir, root / catalogue.VIDEO_DIR)
    shutil.copyfile(table_path, catalogue.mini_annotation_path(root))
    return root


def submit_and_wait(cluster: SlurmCluster, root: Path, submit_dir: Path) -> tuple[dict, dict[int, str]]:
    """Submit the shipped script as README says; return the tasks' ``(state, exit code)`` and logs."""
    job = cluster.submit_array(
        SBATCH,
        N_TASKS,
        args=["--root", str(root)],
        env={"RAT7M_PYTHON": sys.executable, "RAT7M_TOOLKIT": str(REPO)},
        cwd=submit_dir,
    )
    states = cluster.wait(job, timeout=120)
    logs = {task: path.read_text() for task, path in cluster.task_logs(job).items()}
    assert all(path.parent == submit_dir for path in cluster.task_logs(job).values())
    return states, logs


def shard_chunks(task: int, log: str) -> tuple[list[str], int]:
    """The chunks a task's log says it owned and the total it says there are; checks the shard came from SLURM."""
    shards = _SHARD_RE.findall(log)
    assert len(shards) == 1, f"task {task}: expected one shard line in its log:\n{log}"
    k, n, task_id, owned, total, names = shards[0]
    assert (int(k), int(n), int(task_id)) == (task, N_TASKS, task)
    chunks = names.split(", ")
    assert len(chunks) == int(owned) > 0
    return chunks, int(total)


def summary(task: int, log: str) -> tuple[int, int, int, int]:
    """``(images, written, skipped, failed)`` from a task's summary line."""
    found = _SUMMARY_RE.findall(log)
    assert len(found) == 1, f"task {task}: expected one summary line in its log:\n{log}"
    return tuple(int(x) for x in found[0])


def expand_frames(text: str) -> set[int]:
    """``"3, 5-7"`` -> {3, 5, 6, 7}."""
    frames = set()
    for part in text.split(", "):
        first, _, last = part.partition("-")
        frames.update(range(int(first), int(last or first) + 1))
    return frames


def assert_images(root: Path, expected: dict[str, tuple[str, str, int]]) -> None:
    """Exactly the expected JPEGs exist under images_unpacked/ (nothing else), each showing its frame."""
    on_disk = {p.relative_to(root).as_posix() for p in (root / catalogue.IMAGES_DIR).rglob("*") if p.is_file()}
    assert on_disk == set(expected)
    for path, (_, _, frame) in expected.items():
        assert read_barcode(cv2.imread(str(root / path))) == frame, path


def test_array_writes_every_image_once_and_each_task_logs_its_chunks(
    slurm_cluster: SlurmCluster, synthetic_dataset, table_path: Path, tmp_path: Path
):
    root = make_root(tmp_path, synthetic_dataset, table_path)
    wanted = wanted_images(table_path)

    states, logs = submit_and_wait(slurm_cluster, root, tmp_path)

    assert states == {task: ("COMPLETED", 0) for task in range(N_TASKS)}, logs
    shards = [shard_chunks(task, logs[task]) for task in range(N_TASKS)]
    owned = [name for names, _ in shards for name in names]
    assert len(owned) == len(set(owned)), "a chunk was given to two tasks"
    assert {total for _, total in shards} == {len(owned)}, "the tasks' chunks do not add up to the plan"
    assert set(owned) <= {p.name for p in (root / catalogue.VIDEO_DIR).iterdir()}
    totals = [summary(task, logs[task]) for task in range(N_TASKS)]
    # every image written by exactly one task: counts add up to the table's, nothing skipped or failed
    assert [sum(column) for column in zip(*totals, strict=True)] == [len(wanted), len(wanted), 0, 0]
    assert_images(root, wanted)


def test_a_missing_chunk_fails_only_its_task_which_names_the_frames(
    slurm_cluster: SlurmCluster, synthetic_dataset, table_path: Path, tmp_path: Path
):
    root = make_root(tmp_path, synthetic_dataset, table_path)
    wanted = wanted_images(table_path)
    recording, camera = catalogue.recording_by_name(DAMAGED[0]), DAMAGED[1]
    starts = synthetic_dataset.recordings[recording.name].chunk_starts
    i = len(starts) // 2  # a chunk in the middle: its frames now fall to the previous chunk, which is too short
    removed = root / catalogue.VIDEO_DIR / catalogue.video_chunk_name(recording, camera, starts[i])
    removed.unlink()
    lost = {path: w for path, w in wanted.items() if w[:2] == DAMAGED and starts[i] <= w[2] < starts[i + 1]}
    assert lost, "the removed chunk should hold wanted frames"

    states, logs = submit_and_wait(slurm_cluster, root, tmp_path)

    failed = [task for task, (state, _) in states.items() if state != "COMPLETED"]
    assert len(failed) == 1, states
    owner = failed[0]
    assert states[owner] == ("FAILED", 1)
    assert all(states[task] == ("COMPLETED", 0) for task in range(N_TASKS) if task != owner)
    previous = catalogue.video_chunk_name(recording, camera, starts[i - 1])
    assert previous in shard_chunks(owner, logs[owner])[0]
    failures = _FAILURE_RE.findall(logs[owner])
    assert [(rec, cam) for rec, cam, *_ in failures] == [DAMAGED], logs[owner]
    _, _, count, reason, frames = failures[0]
    assert expand_frames(frames) == {frame for _, _, frame in lost.values()} and int(count) == len(lost)
    assert removed.name in reason
    assert summary(owner, logs[owner])[3] == len(lost)
    for task in set(range(N_TASKS)) - {owner}:
        assert summary(task, logs[task])[3] == 0 and not _FAILURE_RE.search(logs[task])
    assert_images(root, {path: where for path, where in wanted.items() if path not in lost})
