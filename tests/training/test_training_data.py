"""Training data: crops with exact intrinsics, tar shards from the videos, the PyTorch datasets over both.

One module fixture builds, on the session's synthetic dataset, a table (one mocap sample in 3), the
per-file extraction and shards of both splits (7 samples a shard): the tests compare them sample by
sample, project the 3D keypoints through the adjusted cameras, read an epoch on 2 real nodes x 2
workers, kill a shard writer mid-shard, and measure what loader workers hold of the table.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the PyTorch datasets need torch (requirements-torch.txt)")
pytest.importorskip("webdataset", reason="the shard dataset needs webdataset (requirements-torch.txt)")

from rat7m import catalogue, crops, extract, shards  # noqa: E402
from rat7m.dataset import MiniRat7m  # noqa: E402
from rat7m.errors import BadInputError  # noqa: E402
from rat7m.geometry import project  # noqa: E402
from rat7m.table import load_annotation, save_annotation  # noqa: E402
from rat7m.table_build import build_table  # noqa: E402
from rat7m.torch_dataset import Rat7mCrops, _receive_images, collate, shard_dataset  # noqa: E402
from rat7m.video import ChunkIndex  # noqa: E402
from tests.helpers.shared import START, free_port  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
#: The TensorFlow recipe's tests run where tensorflow is installed (requirements-tensorflow.txt; CI installs it).
needs_tensorflow = pytest.mark.skipif(
    importlib.util.find_spec("tensorflow") is None, reason="tensorflow is not installed (pip install tensorflow-cpu)"
)
PER_SHARD = 7
#: Crops that leave the 192x152 test frames (padding) and are resized non-uniformly.
CROP = crops.CropSpec(size=(120, 100), output=(90, 60))


pytestmark = pytest.mark.usefixtures("outside_slurm")


@pytest.fixture(scope="module")
def built(synthetic_dataset, tmp_path_factory):
    """Root (videos linked, table), the per-file extraction, and shards of both splits."""
    root = tmp_path_factory.mktemp("training") / "data"
    root.mkdir()
    (root / catalogue.VIDEO_DIR).symlink_to(synthetic_dataset.video_dir, target_is_directory=True)
    table = build_table([r.mat_path for r in synthetic_dataset.recordings.values()], stride=3)
    table_path = catalogue.mini_annotation_path(root)
    save_annotation(table, table_path)
    index = ChunkIndex.from_dir(root / catalogue.VIDEO_DIR)
    jobs = extract.plan_jobs(table, index, catalogue.RECORDINGS, catalogue.CAMERA_NAMES)
    assert not extract.extract(jobs, root, progress=False).failures
    out = root / "shards"
    for split in ("train", "test"):
        dataset = Rat7mCrops(table_path, root=root, split=split, crop=CROP)
        summary = shards.write_shards(
            shards.plan_shards(dataset.base, split, samples_per_shard=PER_SHARD, index=index), table_path, root, out,
            split,
            progress=False,
        )
        assert not summary.failures
    return SimpleNamespace(root=root, table_path=table_path, out=out)


def _members(path: Path) -> list[tuple[str, bytes]]:
    with tarfile.open(path) as tar:
        return [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()]


def check_shards(out: Path, dataset: Rat7mCrops, split: str) -> None:
    """Every sample of the split once, in order: each view's bytes are the extracted file's, the JSON the table's."""
    paths = shards.shard_paths(out, split)
    assert len(paths) >= -(-len(dataset) // PER_SHARD)
    assert all(len(_members(path)) <= PER_SHARD * 7 for path in paths)
    members = [m for path in paths for m in _members(path)]
    suffixes = [crops.member_name(c) for c in dataset.cameras] + ["json"]
    assert len(members) == len(dataset) * len(suffixes)
    index = shards.load_index(out, split)
    for i in range(len(dataset)):
        ann = dataset.annotation(i)
        group = members[i * len(suffixes) : (i + 1) * len(suffixes)]
        assert [name for name, _ in group] == [f"{ann['key']}.{s}" for s in suffixes]
        assert [data for _, data in group[:-1]] == dataset.jpegs(i)
        assert group[-1][1] == crops.to_json(ann)
        assert set(index[ann["key"]][1]) == set(suffixes)


@pytest.mark.parametrize("split", ["train", "test"])
def test_shards_hold_the_extracted_jpegs_and_the_table(built, split):
    check_shards(built.out, Rat7mCrops(built.table_path, root=built.root, split=split), split)


def test_index_points_at_the_members(built):
    index = shards.load_index(built.out, "test")
    key, (name, members) = next(iter(index.items()))
    offset, size = members["cam3.jpg"]
    data = (built.out / name).read_bytes()[offset : offset + size]
    dataset = Rat7mCrops(built.table_path, root=built.root, split="test")
    keys = [dataset.annotation(i)["key"] for i in range(len(dataset))]
    assert data == dataset.jpegs(keys.index(key))[2]


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        if isinstance(a[name], torch.Tensor):
            assert a[name].dtype == b[name].dtype and torch.equal(a[name].nan_to_num(-7), b[name].nan_to_num(-7)), name
        else:
            assert a[name] == b[name], name


def test_shard_dataset_gives_the_map_style_samples(built):
    mapped = Rat7mCrops(built.table_path, root=built.root, split="train", crop=CROP)
    streamed = list(shard_dataset(built.out / "rat7m-train-000000.tar", CROP, shuffle=0))
    streamed += list(shard_dataset([str(p) for p in shards.shard_paths(built.out, "train")[1:]], CROP, shuffle=0))
    assert len(streamed) == len(mapped)
    for i, sample in enumerate(streamed):
        assert sample.pop("__key__") == sample["key"]  # webdataset's own copy of the key
        _assert_same(sample, mapped[i])
    batch = collate([mapped[0], mapped[1]])
    assert batch["images"].shape == (2, 6, 60, 90, 3) and batch["K"].shape == (2, 6, 3, 3)
    assert batch["key"] == [mapped[0]["key"], mapped[1]["key"]]


def test_a_pickled_annotator_gives_the_same_annotations(built):
    """A DataLoader started by spawn (macOS, Windows) pickles the dataset, and a Table pickles as the plain dict."""
    table = load_annotation(built.table_path)
    annotator = crops.Annotator(table, table.camera_names)
    again = pickle.loads(pickle.dumps(annotator))
    for row in (0, 7, table.n_samples - 1):
        ours, theirs = annotator(row), again(row)
        assert ours.keys() == theirs.keys() and ours["key"] == theirs["key"]
        for key in ("K", "R", "t", "dist", "keypoints_2d", "com_2d"):
            np.testing.assert_array_equal(ours[key], theirs[key])


def _matlab_camera(K, R, t, dist):
    """An OpenCV-layout camera as the table's MATLAB dict, to project with rat7m.geometry (not our code)."""
    k1, k2, p1, p2, k3 = dist
    return {"IntrinsicMatrix": K.T, "RotationMatrix": R.T, "TranslationVector": t, "RadialDistortion": [k1, k2, k3],
            "TangentialDistortion": [p1, p2]}  # fmt: skip


@pytest.mark.parametrize(
    "spec",
    [crops.CropSpec(size=None), CROP, crops.CropSpec(size=64, output=128),
     crops.CropSpec(size=80, output=(40, 50), jitter_shift=0.3, jitter_scale=0.5)],
    ids=["full", "crop-shrink", "crop-grow", "jitter"],
)  # fmt: skip
def test_adjusted_intrinsics_project_onto_the_crop_keypoints(built, spec):
    torch.manual_seed(0)
    dataset = Rat7mCrops(built.table_path, root=built.root, split="all", crop=spec)
    checked = 0
    for i in range(0, len(dataset), 3):
        s = {k: v.numpy() if isinstance(v, torch.Tensor) else v for k, v in dataset[i].items()}
        for v in range(len(dataset.cameras)):
            camera = _matlab_camera(s["K"][v], s["R"][v], s["t"][v], s["dist"][v])
            projected = project(s["keypoints_3d"], camera)
            np.testing.assert_array_equal(np.isnan(projected), np.isnan(s["keypoints_2d"][v]))
            assert np.nanmax(np.abs(projected - s["keypoints_2d"][v])) < 1e-9
            np.testing.assert_allclose(crops.project(s["keypoints_3d"], s["K"][v], s["R"][v], s["t"][v], s["dist"][v]),
                                       s["keypoints_2d"][v], atol=1e-9)  # fmt: skip
            checked += 1
    assert checked > 100


def test_crop_pixels_are_the_source_pixels_in_the_box(built):
    spec = crops.CropSpec(size=(150, 140))  # no resize: crop pixel (i, j) is source pixel (x0 + i, y0 + j)
    dataset = Rat7mCrops(built.table_path, root=built.root, split="train", crop=spec)
    padded = 0
    for i in (0, 17, 40):
        sample = dataset[i]
        for v, data in enumerate(dataset.jpegs(i)):
            full = crops.decode_jpeg(data)
            x0, y0, w, h = (int(x) for x in sample["box"][v])
            big = np.zeros((full.shape[0] + 400, full.shape[1] + 400, 3), np.uint8)
            big[200:-200, 200:-200] = full
            expected = big[y0 + 200 : y0 + 200 + h, x0 + 200 : x0 + 200 + w]
            np.testing.assert_array_equal(sample["images"][v].numpy(), expected)
            padded += x0 < 0 or y0 < 0 or x0 + w > full.shape[1] or y0 + h > full.shape[0]
    assert padded  # the boxes do leave the 192x152 frames


def test_opencv_decoder_names_an_unreadable_jpeg_and_agrees_with_the_default(built):
    """OpenCV's fallback (no simplejpeg) says which input it could not decode, as the default does."""
    from rat7m import images

    dataset = Rat7mCrops(built.table_path, root=built.root, split="train", crop=crops.CropSpec(size=None))
    data = dataset.jpegs(0)[0]
    assert np.abs(images._decode_opencv(data, "x").astype(int) - crops.decode_jpeg(data).astype(int)).max() <= 2
    for decode in (images._decode_opencv, images._decode_simplejpeg):
        with pytest.raises(BadInputError, match=r"^view\.jpg: not a"):
            decode(b"\xff\xd8junk", "view.jpg")  # imdecode gives None: cvtColor once failed on it (!_src.empty())


def test_zero_based_table_gives_the_same_samples(built, tmp_path):
    """A table stored 0-based (Table.pixel_convention) gives the same 0-based keypoints as the MATLAB one."""
    annotation = load_annotation(built.table_path)
    for column in ("2D_keypoints", "2D_com"):
        for cam in annotation["camera_names"]:
            annotation["table"][column][str(cam)] = annotation["table"][column][str(cam)] - 1.0
    path = tmp_path / "zero.pkl"
    save_annotation(annotation, path)
    matlab = Rat7mCrops(built.table_path, root=built.root, split="test", crop=CROP)
    zero = Rat7mCrops(path, root=built.root, split="test", crop=CROP)
    assert zero.convention != matlab.convention
    for i in (0, len(zero) - 1):
        _assert_same(zero[i], matlab[i])


def test_missing_image_names_the_fix(built, tmp_path):
    dataset = Rat7mCrops(built.table_path, root=built.root, images_root=tmp_path, split="train")
    with pytest.raises(BadInputError, match=r"extract_frames\.py --root .*shard_dataset"):
        dataset[0]


def test_a_jpeg_bomb_among_the_images_or_in_a_shard_is_named_not_decoded(built, tmp_path):
    """An extracted image or a shard's view replaced by 600 bytes declaring 60000 x 60000 px: each reader names the
    file or the member and refuses it from its header (simplejpeg allocated 10.8 GB for it, OpenCV up to 3 GB)."""
    from tests.helpers.hostile_files import jpeg_bomb

    images_root = tmp_path / "images"
    shutil.copytree(built.root / catalogue.IMAGES_DIR, images_root / catalogue.IMAGES_DIR)
    dataset = Rat7mCrops(built.table_path, root=built.root, images_root=images_root, split="train")
    victim = Path(dataset._image_paths(2)[1])
    victim.write_bytes(jpeg_bomb())
    declares = "the image declares 60000 x 60000 px"
    with pytest.raises(BadInputError, match=rf"^{re.escape(str(victim))}: {declares}.*replace the file$"):
        next(iter(torch.utils.data.DataLoader(dataset, batch_size=3, collate_fn=collate)))
    images = MiniRat7m(built.table_path, root=built.root, images_root=images_root, split="train")
    over = "the image declares over 16,777,216 px"  # read by Pillow, whose own bomb error gives no size
    with pytest.raises(BadInputError, match=rf"^{re.escape(str(victim))}: {over}.*extract_frames\.py"):
        images[2]
    shard = shards.shard_paths(built.out, "train")[0]
    raw = next(shards.iter_samples(shard))
    broken = tmp_path / shard.name
    with tarfile.open(broken, "w", format=tarfile.USTAR_FORMAT) as tar:
        for suffix, data in raw.items():
            if not suffix.startswith("__"):
                shards._add(tar, f"{raw['__key__']}.{suffix}", jpeg_bomb() if suffix == "cam2.jpg" else data)
    with pytest.raises(BadInputError, match=rf"^{re.escape(str(broken))}: {raw['__key__']}\.cam2\.jpg: {declares}"):
        next(iter(shard_dataset([broken], CROP, shuffle=0, batch_size=2)))


def test_two_nodes_two_workers_see_every_sample_once(built, tmp_path):
    keys = {json.loads(m[1])["key"] for p in shards.shard_paths(built.out, "train") for m in _members(p)
            if m[0].endswith(".json")}  # fmt: skip
    assert len(shards.shard_paths(built.out, "train")) >= 4
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "WORLD_SIZE": "2"}
    nodes = [
        subprocess.Popen([sys.executable, str(REPO / "tests" / "helpers" / "ddp_reader.py"), str(built.out), "train",
                          str(tmp_path / f"rank{rank}.json")], env={**env, "RANK": str(rank)}, cwd=REPO)
        for rank in range(2)
    ]  # fmt: skip
    assert [node.wait(timeout=120) for node in nodes] == [0, 0]
    seen = [tuple(s) for rank in range(2) for s in json.loads((tmp_path / f"rank{rank}.json").read_text())]
    assert sorted(key for key, _, _ in seen) == sorted(keys)  # each sample exactly once
    assert {(rank, worker) for _, rank, worker in seen} == {(0, 0), (0, 1), (1, 0), (1, 1)}


def test_killed_shard_writer_resumes_without_a_corrupt_tar(built, tmp_path):
    out = tmp_path / "shards"
    command = [sys.executable, str(REPO / "extract_frames.py"), "--root", str(built.root), "--format", "shards",
               "--split", "train", "--shards-dir", str(out), "--samples-per-shard", "25", "--jobs", "1", "--quiet",
               "--decoder", "opencv"]  # fmt: skip
    writer = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # kill it while it writes the second shard
        if (out / shards.shard_name("train", 0)).exists() and any(p.stat().st_size for p in out.glob(".*.tmp")):
            break
        time.sleep(0.005)
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    assert list(out.glob(".*.tmp")), "the writer was not killed mid-shard"
    for path in shards.shard_paths(out, "train"):  # whatever carries a final name is a whole shard
        index = json.loads(path.with_name(path.name + shards.INDEX_SUFFIX).read_text())
        assert len(_members(path)) == len(index["samples"]) * 7
    finished = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr
    assert "in shards already there" in finished.stdout and not list(out.glob(".*.tmp"))
    dataset = Rat7mCrops(built.table_path, root=built.root, split="train")
    assert sum(len(_members(p)) for p in shards.shard_paths(out, "train")) == len(dataset) * 7
    members = [m for p in shards.shard_paths(out, "train") for m in _members(p)]
    for i in range(len(dataset)):
        assert [data for _, data in members[i * 7 : i * 7 + 6]] == dataset.jpegs(i)


def test_missing_chunk_leaves_its_shard_unwritten(built, synthetic_dataset, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(synthetic_dataset.video_dir, root / catalogue.VIDEO_DIR)
    shutil.copyfile(built.table_path, catalogue.mini_annotation_path(root))
    (root / catalogue.VIDEO_DIR / "s5-d2-camera4-10.mp4").unlink()
    result = subprocess.run(
        [sys.executable, str(REPO / "extract_frames.py"), "--root", str(root), "--format", "shards", "--split", "test",
         "--samples-per-shard", str(PER_SHARD), "--jobs", "1", "--quiet"],
        cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert "s5-d2 Camera4" in result.stdout
    written = {p.name for p in shards.shard_paths(root / "shards", "test")}
    expected = {p.name for p in shards.shard_paths(built.out, "test")}
    assert written and written < expected
    for name in written:
        assert (root / "shards" / name).read_bytes() == (built.out / name).read_bytes()


def _frames_of(array: np.ndarray) -> list[int]:
    """Physical page frames of the pages wholly inside ``array``'s buffer (from /proc/self/pagemap; 0 if hidden)."""
    page = os.sysconf("SC_PAGE_SIZE")
    first = -(-array.ctypes.data // page)
    last = (array.ctypes.data + array.nbytes) // page  # exclusive
    with open("/proc/self/pagemap", "rb") as f:
        f.seek(first * 8)
        entries = np.frombuffer(f.read(max(last - first, 0) * 8), np.uint64)
    return (entries & np.uint64((1 << 55) - 1)).tolist()


def _table_arrays(dataset: Rat7mCrops) -> dict[str, np.ndarray]:
    table = dataset.base.annotation["table"]
    arrays = {"3D_keypoints": table["3D_keypoints"]}
    arrays.update({f"2D_keypoints/{c}": table["2D_keypoints"][c] for c in dataset.cameras})
    arrays.update({f"image_path/{c}": table["image_path"][c] for c in dataset.cameras})
    return arrays


class _PageReport(Rat7mCrops):
    """Reads a sample (so the worker uses the table), then reports the table's page frames and its own memory."""

    def __getitem__(self, i: int) -> dict:
        super().__getitem__(i)
        rollup = Path("/proc/self/smaps_rollup").read_text().split("\n")
        memory = {line.split(":")[0]: int(line.split()[1]) for line in rollup[1:] if line}
        return {"frames": {k: _frames_of(a) for k, a in _table_arrays(self).items()}, "pid": os.getpid(), **memory}


def test_loader_workers_share_the_table_pages(built):
    """Forked workers read the table in the pages the main process loaded: no per-worker copy (same physical pages)."""
    dataset = _PageReport(built.table_path, root=built.root, split="all", crop=crops.CropSpec(size=32))
    for array in _table_arrays(dataset).values():
        array.sum() if array.dtype.kind == "f" else array.tobytes()  # resident before the fork
    parent = {k: _frames_of(a) for k, a in _table_arrays(dataset).items()}
    if not any(f for frames in parent.values() for f in frames):
        pytest.skip("page frame numbers are hidden (/proc/self/pagemap needs CAP_SYS_ADMIN)")
    assert sum(len(f) for f in parent.values()) >= 20
    loader = torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=2, sampler=range(0, len(dataset), 5))
    reports = list(loader)
    assert len({r["pid"] for r in reports}) == 2
    for report in reports:
        assert report["frames"] == parent
    last = {r["pid"]: r for r in reports}
    print("worker memory (kB):", [{k: r[k] for k in ("Rss", "Pss", "Private_Dirty")} for r in last.values()])


# --------------------------------------------------------------------------------------------- TensorFlow
# tests/helpers/tf_reader.py reads the shards in a subprocess: TensorFlow's thread pools stay out of this
# process, whose other tests fork DataLoader workers.


@pytest.fixture(scope="module")
def tf_read(built, tmp_path_factory) -> dict:
    """What tests/helpers/tf_reader.py read through tf.data (one subprocess: importing TensorFlow is the slow part)."""
    out = tmp_path_factory.mktemp("tf") / "read.npz"
    reader = REPO / "tests" / "helpers" / "tf_reader.py"
    result = subprocess.run([sys.executable, str(reader), str(built.out), str(out)],
                            cwd=REPO, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return dict(np.load(out))


@needs_tensorflow
def test_tf_data_gives_the_map_style_samples(built, tf_read):
    mapped = Rat7mCrops(built.table_path, root=built.root, split="test", crop=CROP)
    assert tf_read["keys"].tolist() == [mapped.annotation(i)["key"] for i in range(len(mapped))]
    assert tuple(tf_read["batch_images_shape"]) == (2, 6, 60, 90, 3)
    for i in range(len(mapped)):
        expected = mapped[i]
        assert tf_read["rows"][i] == int(expected["row"])
        for key in ("images", "keypoints_2d", "com_2d", "K", "R", "t", "dist", "keypoints_3d", "box", "scale", "frame"):
            np.testing.assert_array_equal(tf_read[f"{i}/{key}"], expected[key].numpy(), err_msg=key)


@needs_tensorflow
def test_tf_workers_split_the_shards(tf_read):
    parts = [tf_read[f"train_part{k}"].tolist() for k in range(2)]
    assert parts[0] and parts[1]
    assert sorted(parts[0] + parts[1]) == sorted(tf_read["train_all"].tolist())


def test_slurm_array_tasks_write_disjoint_shards(built, tmp_path):
    """Two array tasks (SLURM's variables, as the scheduler sets them) write every shard once, byte-identical."""
    out = tmp_path / "shards"
    command = [sys.executable, str(REPO / "extract_frames.py"), "--root", str(built.root), "--format", "shards",
               "--shards-dir", str(out), "--samples-per-shard", str(PER_SHARD), "--jobs", "1", "--quiet"]  # fmt: skip
    owned = []
    for task in (4, 5):  # an array numbered from 4: tasks are counted from SLURM_ARRAY_TASK_MIN
        array = {"SLURM_ARRAY_TASK_ID": str(task), "SLURM_ARRAY_TASK_MIN": "4", "SLURM_ARRAY_TASK_COUNT": "2"}
        env = {**os.environ, **array}
        before = {p.name for p in out.glob("*.tar")}
        result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        assert f"shard {task - 4}/2" in result.stdout
        owned.append({p.name for p in out.glob("*.tar")} - before)
    expected = {p.name for p in built.out.glob("*.tar")}
    assert owned[0] and owned[1] and owned[0] | owned[1] == expected
    for name in expected:
        assert (out / name).read_bytes() == (built.out / name).read_bytes()


def _brighter(sample: dict) -> dict:
    return {**sample, "images": np.minimum(sample["images"].astype(np.int16) + 9, 255).astype(np.uint8)}


@pytest.mark.parametrize("workers", [0, 2])
def test_batches_are_the_samples_decoded_once_into_the_batch(built, workers):
    """A DataLoader's batch (__getitems__ into one batch tensor, which collate hands on) equals stacked samples."""
    for transform in (None, _brighter):
        dataset = Rat7mCrops(built.table_path, root=built.root, split="test", crop=CROP, transform=transform)
        loader = torch.utils.data.DataLoader(dataset, batch_size=3, num_workers=workers, collate_fn=collate)
        batches = list(loader)
        assert sum(len(b["key"]) for b in batches) == len(dataset)
        for n, batch in enumerate(batches):
            expected = collate([dataset[i] for i in range(3 * n, min(3 * n + 3, len(dataset)))])
            assert list(batch) == list(expected)
            _assert_same(batch, expected)
    items = dataset.__getitems__([4, 0, 2])
    batch = collate(items)
    assert batch["images"].data_ptr() == items[0]["images"].data_ptr()  # not copied again
    _assert_same(batch, collate([dataset[4], dataset[0], dataset[2]]))


def _as_in_a_worker(monkeypatch) -> None:
    """This process as a DataLoader worker for torch_dataset: batches on slots, none taken yet."""
    import rat7m.torch_dataset as torch_dataset

    monkeypatch.setattr(torch_dataset, "get_worker_info", lambda: object())
    monkeypatch.setattr(torch_dataset, "_SLOTS", {})
    monkeypatch.setattr(torch_dataset, "_MAPPED", {})


def test_a_workers_batch_arrives_on_its_slot_with_its_annotations_inline(built, monkeypatch):
    """In a loader worker the images are decoded onto a slot of its memory; received, they are that memory, lent.

    torch passes each tensor between processes as a shared-memory segment of its own (~1 ms of the
    worker's time each, and fresh pages for both sides to fault in): a batch used to cross as a dozen.
    Now its annotations travel inside the pickle and its images as the slot they were decoded onto (not
    copied again, neither in the worker nor in the receiver), which the worker writes again only once the
    receiver holds nothing of the batch.
    """
    from multiprocessing.reduction import ForkingPickler

    import rat7m.torch_dataset as torch_dataset

    dataset = Rat7mCrops(built.table_path, root=built.root, split="test", crop=CROP)
    expected = collate([dataset[i] for i in (3, 1, 0)])
    _as_in_a_worker(monkeypatch)
    items = dataset.__getitems__([3, 1, 0])
    batch = collate(items)
    assert batch["images"].data_ptr() == items[0]["images"].data_ptr()  # decoded onto the slot, not copied again
    _assert_same(batch, expected)
    received = pickle.loads(ForkingPickler.dumps(batch))  # what the main process gets from the worker's queue
    assert type(received) is dict and list(received) == list(batch)
    _assert_same(received, expected)
    shared = [k for k, v in received.items() if isinstance(v, torch.Tensor) and v.is_shared()]
    assert not shared, "no tensor came as a shared-memory segment of torch's"
    slot = torch_dataset._SLOTS[os.getpid()][0]
    assert slot.header[1] == 0, "held by the receiver: not given back"
    _assert_same(pickle.loads(pickle.dumps(batch)), expected)  # a plain pickle keeps it all
    del items, batch
    nxt = collate(dataset.__getitems__([2]))  # the worker goes on: onto another slot, the received batch intact
    assert nxt["images"].untyped_storage().data_ptr() != slot.pixels.ctypes.data
    _assert_same(received, expected)
    view = received["images"][1:].numpy()  # a view of the batch holds it too
    del received, nxt
    assert slot.header[1] == 0 and not slot.free()
    del view
    assert slot.header[1] == slot.header[0] == 1 and slot.free(), "given back once nothing of it is left"


def test_a_workers_slot_is_written_again_only_once_its_batch_is_given_back(built, monkeypatch):
    """A worker reuses a slot only when its batch has been received and given back, and nothing of its own is on it.

    Batches sent and not yet received keep their slots, so each arrives intact whatever the order it is
    received in; with every slot taken the worker falls back to a new segment per batch; a tensor the worker
    keeps holds its slot; a batch pickled twice goes the second time as torch sends it (two receivers would
    each give the slot back), so a receiver holding it sees its own pixels after the slot is written again.
    """
    from multiprocessing.reduction import ForkingPickler

    import rat7m.torch_dataset as torch_dataset

    dataset = Rat7mCrops(built.table_path, root=built.root, split="test", crop=CROP)
    n = torch_dataset.WORKER_SLOTS + 2
    expected = [collate([dataset[i]]) for i in range(n)]
    _as_in_a_worker(monkeypatch)
    sent, storages = [], []
    for i in range(n):
        batch = collate(dataset.__getitems__([i]))
        storages.append(batch["images"].untyped_storage().data_ptr())
        sent.append(ForkingPickler.dumps(batch))
        del batch
    slots = {slot.pixels.ctypes.data for slot in torch_dataset._SLOTS[os.getpid()]}
    assert len(slots) == torch_dataset.WORKER_SLOTS and set(storages[: len(slots)]) == slots
    assert not slots & set(storages[len(slots) :]), "with every slot on its way, a new segment"
    for i in reversed(range(n)):  # received in any order: each as it was
        _assert_same(pickle.loads(sent[i]), expected[i])

    kept = collate(dataset.__getitems__([0]))["images"]  # received: its slot is reused
    assert kept.untyped_storage().data_ptr() in slots
    other = collate(dataset.__getitems__([1]))["images"]
    assert other.untyped_storage().data_ptr() not in {kept.untyped_storage().data_ptr(), *storages[len(slots) :]}
    del kept, other

    batch = collate(dataset.__getitems__([2]))
    first, second = ForkingPickler.dumps(batch), ForkingPickler.dumps(batch)  # the second goes as torch sends it
    del batch
    held = pickle.loads(second)
    _assert_same(pickle.loads(first), expected[2])  # received and dropped: its slot goes back to the worker
    again = collate(dataset.__getitems__([3]))  # onto the slot the first batch was received from
    _assert_same(held, expected[2])
    _assert_same(pickle.loads(ForkingPickler.dumps(again)), expected[3])


def test_a_batch_is_a_plain_dict_that_torch_load_accepts(built, tmp_path):
    """A saved batch loads with torch.load's default (weights_only), which refuses dict subclasses and our classes."""
    dataset = Rat7mCrops(built.table_path, root=built.root, split="test", crop=CROP)
    batch = collate(dataset.__getitems__([0, 2]))
    assert type(batch) is dict
    torch.save(batch, tmp_path / "batch.pt")
    _assert_same(torch.load(tmp_path / "batch.pt"), batch)


def test_shard_batches_are_the_streamed_samples_collated(built):
    """shard_dataset(batch_size=...) decodes into one batch tensor per batch: the same as collating its samples."""
    paths = shards.shard_paths(built.out, "train")
    streamed = list(shard_dataset(paths, CROP, shuffle=0, transform=_brighter))
    batches = list(shard_dataset(paths, CROP, shuffle=0, transform=_brighter, batch_size=4))
    assert sum(len(b["key"]) for b in batches) == len(streamed)
    for n, batch in enumerate(batches):
        expected = collate(streamed[4 * n : 4 * n + 4])
        assert list(batch) == list(expected) and batch["__key__"] == batch["key"]
        _assert_same(batch, expected)


JITTER = crops.CropSpec(size=(120, 100), output=(90, 60), jitter_shift=0.3, jitter_scale=0.5)


def _decoded_on(monkeypatch) -> list[str]:
    """The names of the threads that decode views from now on."""
    import threading

    names: list[str] = []
    decode = crops.decode_jpeg

    def recording(data: bytes, where: str) -> np.ndarray:
        names.append(threading.current_thread().name)
        return decode(data, where)

    monkeypatch.setattr(crops, "decode_jpeg", recording)
    return names


#: Two decoding threads kept inside OpenCV for 1.0 and 1.5 s a view; Ctrl-C 0.3 s in, and the script ends; Ctrl-C
#: three times more, as Python waits for the threads on its way out.
VIEWS_INSIDE_OPENCV = """
import os, signal, threading, time
import cv2, numpy as np
from rat7m.torch_dataset import _map_views

def busy(k):
    image, end = np.zeros((600, 800, 3), np.uint8), time.monotonic() + (1.0, 1.5)[k % 2]
    while time.monotonic() < end:
        cv2.resize(image, (700, 500))
    return k

def ctrl_c_four_times():
    for pause in (0.3, 0.4, 0.2, 0.2):
        time.sleep(pause)
        os.kill(os.getpid(), signal.SIGINT)

threading.Thread(target=ctrl_c_four_times, daemon=True).start()
try:
    _map_views(2)(busy, range(4))
except KeyboardInterrupt:
    print("interrupted", flush=True)
"""


def test_a_process_ending_while_its_decoding_threads_are_inside_opencv_ends_cleanly(tmp_path):
    """Python ends daemon threads that take back the GIL after it has begun to finalise; one inside OpenCV dies in
    a C++ destructor, which aborts the whole process (exit 134, every time here). The threads are stopped and
    waited for as Python exits, more Ctrl-C meanwhile notwithstanding (an interrupted ``Thread.join`` took a thread
    still running for ended), so the views being decoded finish first and the process ends as it meant to."""
    script = tmp_path / "inside_opencv.py"
    script.write_text(VIEWS_INSIDE_OPENCV)
    done = subprocess.run([sys.executable, "-c", START, str(script)], capture_output=True,
                          text=True, timeout=60, cwd=REPO)  # fmt: skip
    assert (done.returncode, done.stdout) == (0, "interrupted\n"), done.stderr


def test_decoding_threads_stopped_as_python_exits_still_map_in_the_callers_thread():
    """An atexit hook registered before the threads runs after their stop (last in, first out): its map must
    not wait for threads that are gone (it hung), so it runs in the caller's thread."""
    import threading

    from rat7m.torch_dataset import _DecodingThreads

    pool = _DecodingThreads(2)
    pool.stop(time.monotonic() + 2)
    seen: list[str] = []
    assert pool.map(lambda k: seen.append(threading.current_thread().name) or 2 * k, range(3)) == [0, 2, 4]
    assert set(seen) == {threading.current_thread().name}


def test_decoding_threads_give_the_same_batches_and_random_crops(built, monkeypatch):
    """threads=3 reads, decodes and crops the views on a pool of threads; batches and jittered crops are unchanged."""
    names = _decoded_on(monkeypatch)
    for threads in (1, 3):
        torch.manual_seed(5)
        dataset = Rat7mCrops(built.table_path, root=built.root, split="test", crop=JITTER, threads=threads)
        batches = list(torch.utils.data.DataLoader(dataset, batch_size=4, collate_fn=collate))
        single = dataset[1]
        if threads == 1:
            expected, expected_single = batches, single
            assert set(names) == {"MainThread"}
            names.clear()
    assert len(batches) == len(expected) > 1
    for batch, reference in zip(batches, expected, strict=True):
        _assert_same(batch, reference)
    _assert_same(single, expected_single)
    assert {name.split("_")[0] for name in names} == {"rat7m-decode"} and len(set(names)) > 1


#: A sample read on 2 decoding threads, as a training loop would, one of its views on a stalled file system
#: (the read never returns); Ctrl-C half a second in. Prints when Ctrl-C reached the loop, and the seconds.
STALLED_VIEW_ON_THREADS = """
import os, signal, sys, threading, time
from rat7m.torch_dataset import Rat7mCrops

class Stalled(Rat7mCrops):
    def _read(self, path):
        if path == self._image_paths(0)[0]:
            time.sleep(600)
        return super()._read(path)

dataset = Stalled(sys.argv[1], root=sys.argv[2], split="test", threads=2)
start = time.monotonic()
threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()
try:
    dataset[0]
except KeyboardInterrupt:
    print(f"interrupted after {time.monotonic() - start:.1f} s", flush=True)
"""


def test_ctrl_c_while_the_decoding_threads_wait_stops_the_loop_and_the_process_at_once(built, tmp_path):
    """Ctrl-C in a training loop whose decoding thread waits on a read that does not return: the loop gets
    ``KeyboardInterrupt`` at once and the process ends (its threads waited for 2 s at most). A ``concurrent.futures``
    pool's threads were waited for at exit (and one could wait for ever on a future's lock Ctrl-C left taken:
    ``rat7m.torch_dataset._DecodingThreads``); deferring the signal until the views were done waited too."""
    script = tmp_path / "stalled.py"
    script.write_text(STALLED_VIEW_ON_THREADS)
    command = [sys.executable, "-c", START, str(script), str(built.table_path), str(built.root)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=30, cwd=REPO)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"the process did not end: {exc.stdout!r}") from None
    assert done.returncode == 0, done.stderr
    said = done.stdout.split()
    assert said[:2] == ["interrupted", "after"] and float(said[2]) < 5, done.stdout


def test_decoding_threads_in_the_shard_pipeline(built, monkeypatch):
    names = _decoded_on(monkeypatch)
    paths = shards.shard_paths(built.out, "train")
    results = {}
    for threads in (1, 2):
        torch.manual_seed(3)
        batches = list(shard_dataset(paths, JITTER, shuffle=0, batch_size=3, threads=threads))
        torch.manual_seed(4)
        results[threads] = batches, list(shard_dataset(paths, JITTER, shuffle=0, threads=threads))
    for ours, reference in zip(results[2][0] + results[2][1], results[1][0] + results[1][1], strict=True):
        _assert_same(ours, reference)
    assert any(name.startswith("rat7m-decode") for name in names)


def test_a_missing_image_read_on_a_decoding_thread_names_the_fix(built, tmp_path):
    dataset = Rat7mCrops(built.table_path, root=built.root, images_root=tmp_path, split="train", threads=2)
    with pytest.raises(BadInputError, match=r"extract_frames\.py --root .*shard_dataset"):
        dataset.__getitems__([0, 1])


def test_batch_memory_is_reused_only_once_nothing_can_reach_it(built):
    """In-process batches come from a pool of buffers; one returns only when no tensor, view or array of it is left."""
    import gc

    import rat7m.torch_dataset as torch_dataset

    dataset = Rat7mCrops(built.table_path, root=built.root, split="test", crop=CROP)
    torch_dataset._FREE_BATCHES.clear()

    def batch() -> dict:
        return collate(dataset.__getitems__([0, 1, 2]))

    first = batch()
    address = first["images"].data_ptr()
    view, array = first["images"][1], first["images"].numpy()[2]  # a tensor view and a numpy view of it
    pixels = first["images"].clone()
    del first
    gc.collect()
    held = [batch() for _ in range(3)]  # the pool may not hand out what `view` and `array` still show
    assert address not in {b["images"].data_ptr() for b in held}
    del held
    assert torch.equal(view, pixels[1]) and np.array_equal(array, pixels[2].numpy())
    del view
    assert batch()["images"].data_ptr() != address  # the numpy view still holds it
    torch_dataset._FREE_BATCHES.clear()  # room in the pool for the first batch's buffer
    del array
    gc.collect()
    assert batch()["images"].data_ptr() == address  # now nothing does: reused
    many = [batch() for _ in range(3 * torch_dataset.KEEP_FREE_BATCHES)]
    del many
    assert sum(len(v) for v in torch_dataset._FREE_BATCHES.values()) <= torch_dataset.KEEP_FREE_BATCHES


#: The slot batches the main process received (:func:`_received_recorded`): each one's number on its slot.
_RECEIVED: list[int] = []


def _received_recorded(descriptor, batch, shape, worker):
    """``torch_dataset._receive_images``, noting the batch (the workers pickle this in its place once patched)."""
    _RECEIVED.append(batch)
    return _receive_images(descriptor, batch, shape, worker)


def test_batches_from_workers_stay_as_they_were_while_held(built, monkeypatch):
    """Batches from 2 real workers are held for a while, some to the end: had their memory been written again, their
    pixels would change.

    The workers do reuse theirs (a few slots each, for many more batches), and the loop's batches are that
    memory, not copies (docs/benchmarks.md, Training data, says why); a slot goes back to its worker once
    nothing of its batch is left. A finished loader's slots are let go at the next batch of a loader already
    running.
    """
    import rat7m.torch_dataset as torch_dataset

    dataset = Rat7mCrops(built.table_path, root=built.root, split="train", crop=CROP)
    expected = [collate([dataset[i]]) for i in range(len(dataset))]
    assert len(expected) > 4 * torch_dataset.WORKER_SLOTS
    monkeypatch.setattr(torch_dataset, "_receive_images", _received_recorded)
    _RECEIVED.clear()
    running = iter(torch.utils.data.DataLoader(dataset, batch_size=1, num_workers=1, collate_fn=collate))
    next(running)
    loader = iter(torch.utils.data.DataLoader(dataset, batch_size=1, num_workers=2, collate_fn=collate))
    workers = {worker.pid for worker in loader._workers}
    held, kept, on_slots = {}, {}, 0
    for n, batch in enumerate(loader):
        _assert_same(batch, expected[n])
        on_slots += not batch["images"].is_shared()
        if n == 1:
            kept[n] = batch["images"][0]  # a view of the first batches, to the end
        elif n % 3 == 0:
            held[n] = batch
        for m in [m for m in held if m <= n - 4]:  # held while 4 more batches came
            _assert_same(held.pop(m), expected[m])
    assert len(_RECEIVED) == on_slots + 1 >= len(expected) // 2, "batches came on slots"
    assert max(_RECEIVED) >= len(expected) // (2 * torch_dataset.WORKER_SLOTS), "the slots were reused"
    for m, batch in held.items():
        _assert_same(batch, expected[m])
    for m, images in kept.items():
        assert torch.equal(images, expected[m]["images"][0])
    assert workers & {key[0] for key in torch_dataset._MAPPED}
    next(running)
    assert not workers & {key[0] for key in torch_dataset._MAPPED}, "a finished loader's slots are let go"


class _MixesWithEarlierImages:
    """A transform that keeps each sample's images (no copy) and blends them into the sample ``back`` samples
    later, as a mixup with earlier samples does: a worker must not write a batch's memory again while a
    transform of its own still holds part of it (as a numpy array: no tensor of the batch is left)."""

    def __init__(self, back: int) -> None:
        self.back, self.kept = back, []

    def __call__(self, sample: dict) -> dict:
        images = sample["images"]
        if len(self.kept) == self.back:
            sample["images"] = images // 2 + self.kept.pop(0) // 2
        self.kept.append(images)
        return sample


def test_a_worker_keeps_its_slot_while_a_transform_holds_its_images(built):
    """The same loader in-process and in one worker, with a transform that keeps each sample's images: equal."""
    import rat7m.torch_dataset as torch_dataset

    back = 2 * torch_dataset.WORKER_SLOTS + 2  # batches of 2: from further back than the worker has slots
    def make(workers: int) -> torch.utils.data.DataLoader:
        mixing = _MixesWithEarlierImages(back)
        dataset = Rat7mCrops(built.table_path, root=built.root, split="train", crop=CROP, transform=mixing)
        return torch.utils.data.DataLoader(dataset, batch_size=2, num_workers=workers, collate_fn=collate)

    for in_process, in_worker in zip(make(0), make(1), strict=True):
        _assert_same(in_worker, in_process)


def test_a_batch_under_two_keys_arrives_as_one_tensor_and_a_fork_drops_the_parents_memory(built, monkeypatch):
    """A collate that puts the images under a second key gets one tensor, read out once; a forked child
    keeps none of its parent's slot mappings or free batches (they would hold the parent's memory)."""
    from multiprocessing.reduction import ForkingPickler

    import rat7m.torch_dataset as torch_dataset

    dataset = Rat7mCrops(built.table_path, root=built.root, split="test", crop=CROP)
    _as_in_a_worker(monkeypatch)
    batch = collate(dataset.__getitems__([0, 1]))
    batch["also"] = batch["images"]
    received = pickle.loads(ForkingPickler.dumps(batch))
    assert received["also"] is received["images"]
    del received
    torch_dataset._recycled_array((2, 3))  # an in-process batch's memory, back in the pool at once
    assert torch_dataset._MAPPED and torch_dataset._FREE_BATCHES
    pid = os.fork()
    if pid == 0:  # the child: exit status 0 if it holds nothing of the parent's
        os._exit(0 if not torch_dataset._MAPPED and not torch_dataset._FREE_BATCHES else 1)
    assert os.waitpid(pid, 0)[1] == 0
    assert torch_dataset._MAPPED and torch_dataset._FREE_BATCHES, "the parent's are kept"


def test_a_batch_held_across_a_fork_retires_its_slot_and_the_worker_makes_another(built, monkeypatch):
    """A process that forks while it holds a received batch never gives that slot back: the child's copy of the
    batch is the worker's memory (shared, not copied on write), which the worker must then never write again.
    The slot is retired, not kept: the worker makes a new one, so forks (a validation loader's workers, say)
    do not use its slots up; and the child dropping its copy does not give back or retire its parent's."""
    import gc
    from multiprocessing.reduction import ForkingPickler

    import rat7m.torch_dataset as torch_dataset

    dataset = Rat7mCrops(built.table_path, root=built.root, split="test", crop=CROP)
    expected = collate([dataset[0]])["images"]
    _as_in_a_worker(monkeypatch)
    received = pickle.loads(ForkingPickler.dumps(collate(dataset.__getitems__([0]))))
    slot = torch_dataset._SLOTS[os.getpid()][0]
    (from_child, to_parent), (from_parent, to_child) = os.pipe(), os.pipe()
    pid = os.fork()
    if pid == 0:  # the child drops a view of the batch, then holds the batch until the parent has built more
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        signal.alarm(60)  # ended, not left behind, should anything here hang
        os.close(from_child)
        os.close(to_child)
        view = received["images"][0]
        del view
        gc.collect()
        os.write(to_parent, b"c")
        os.read(from_parent, 1)
        # numpy: torch's thread pool does not survive a fork (its parallel ops can hang in a forked child)
        same = np.array_equal(received["images"].numpy(), expected.numpy())
        del received  # the child's finalizer runs: it must not touch the slot
        gc.collect()
        os._exit(0 if same else 1)
    os.close(to_parent)  # so a child that dies early is an end of file here, not a wait
    os.close(from_parent)
    try:
        assert os.read(from_child, 1) == b"c", "the child ended early"
        assert slot.header[1] == 0, "the child gave back or retired its parent's batch"
        del received
        gc.collect()
        assert slot.retired and not slot.free(), "held by a child: retired, not given back"
        for i in range(2 * torch_dataset.WORKER_SLOTS):  # the worker goes on, every batch given back at once
            batch = collate(dataset.__getitems__([i % len(dataset)]))
            assert not batch["images"].is_shared(), "on a slot, not a segment of torch's"
            pickle.loads(ForkingPickler.dumps(batch))
            del batch
        assert slot.header[0] == 1, "the retired slot was written again"
        assert slot not in torch_dataset._SLOTS[os.getpid()]
    finally:
        os.write(to_child, b"x")
        status = os.waitpid(pid, 0)[1]
        os.close(from_child)
        os.close(to_child)
    assert status == 0, "the child's batch changed"
    assert slot.header[1] == -1, "the child retired or gave back the slot as it ended"

    for _ in range(2 * torch_dataset.WORKER_SLOTS):  # forks while a batch is held use no slot up
        held = pickle.loads(ForkingPickler.dumps(collate(dataset.__getitems__([1]))))
        child = os.fork()
        if child == 0:
            os._exit(0)
        os.waitpid(child, 0)
        del held
    assert not collate(dataset.__getitems__([2]))["images"].is_shared(), "still on a slot"


def test_a_batch_received_while_a_fork_is_under_way_counts_as_held_across_it(built, monkeypatch):
    """The fork count is odd from the first fork hook to the last (in parent and child): a batch another thread
    receives in between is retired when dropped, as the child may hold it; after the fork, the count is even."""
    import gc
    from multiprocessing.reduction import ForkingPickler

    import rat7m.torch_dataset as torch_dataset

    before = torch_dataset._FORKS[0]
    pid = os.fork()
    if pid == 0:
        os._exit(0 if torch_dataset._FORKS[0] == before + 2 else 1)
    assert os.waitpid(pid, 0)[1] == 0, "the child's count is not its parent's two more"
    assert torch_dataset._FORKS[0] == before + 2 and before % 2 == 0
    dataset = Rat7mCrops(built.table_path, root=built.root, split="test", crop=CROP)
    _as_in_a_worker(monkeypatch)
    monkeypatch.setattr(torch_dataset, "_FORKS", [before + 3])  # a fork's hooks running
    received = pickle.loads(ForkingPickler.dumps(collate(dataset.__getitems__([0]))))
    slot = torch_dataset._SLOTS[os.getpid()][0]
    del received
    gc.collect()
    assert slot.retired


def _moved_by_a_collate(change_images):
    """A collate that, as some do, changes the images tensor (``change_images(images)``) after collate made it."""
    def wrapped(samples):
        batch = collate(samples)
        change_images(batch["images"])
        return batch
    return wrapped


@pytest.mark.parametrize("change", ["transpose_", "share_memory_"])
def test_a_batch_tensor_a_collate_changed_is_sent_as_it_now_is(built, change):
    """The images tensor laid out anew in place (``transpose_``) or moved (``share_memory_()``, as torch's pickling of
    another view of it does) by a custom collate: torch sends it as it is, not the slot's bytes in its old shape."""
    dataset = Rat7mCrops(built.table_path, root=built.root, split="test", crop=CROP)
    changed = _moved_by_a_collate(lambda images: images.transpose_(2, 3) if change == "transpose_"
                                  else images.share_memory_())  # fmt: skip

    def make(workers: int) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(dataset, batch_size=2, num_workers=workers, collate_fn=changed)

    for in_process, in_worker in zip(make(0), make(1), strict=True):
        _assert_same(in_worker, in_process)


def test_a_slot_freed_before_its_batch_is_pickled_is_not_sent(built, monkeypatch):
    """A batch moved off its slot before it is pickled (the batch pickled after another view of its images, which
    torch's pickling moves to shared memory) leaves the slot free: another batch may be written there before
    this one is pickled, and this one must still arrive with its own pixels."""
    from multiprocessing.reduction import ForkingPickler

    import rat7m.torch_dataset as torch_dataset

    dataset = Rat7mCrops(built.table_path, root=built.root, split="test", crop=CROP)
    expected = collate([dataset[0]])
    _as_in_a_worker(monkeypatch)
    first = collate(dataset.__getitems__([0]))
    first["images"].share_memory_()  # what torch's pickling of a view of it does first
    # not sent from the slot it has left: another thread of the worker may be taking that slot right now
    assert torch_dataset._slot_images(first["images"], {}) is None
    second = collate(dataset.__getitems__([1]))  # onto the slot first has left
    _assert_same(pickle.loads(ForkingPickler.dumps(first)), expected)
    _assert_same(pickle.loads(ForkingPickler.dumps(second)), collate([dataset[1]]))


def test_a_subclass_that_reads_its_views_elsewhere_is_used(built):
    """Rat7mCrops reads files on its decoding threads, but a subclass's own jpegs() and annotation() still apply."""

    class Mirrored(Rat7mCrops):
        def jpegs(self, i: int) -> list[bytes]:
            return super().jpegs(len(self) - 1 - i)

        def annotation(self, i: int) -> dict:
            return super().annotation(len(self) - 1 - i)

    plain = Rat7mCrops(built.table_path, root=built.root, split="test", crop=CROP)
    mirrored = Mirrored(built.table_path, root=built.root, split="test", crop=CROP, threads=2)
    last = len(plain) - 1
    _assert_same(mirrored[0], plain[last])
    _assert_same(collate(mirrored.__getitems__([0, 1])), collate(plain.__getitems__([last, last - 1])))


@pytest.mark.parametrize("threads", [0, -2, 1.5])
def test_threads_must_be_a_whole_number_of_at_least_one(built, threads):
    with pytest.raises(ValueError, match="threads must be a whole number of at least 1"):
        Rat7mCrops(built.table_path, root=built.root, split="test", crop=CROP, threads=threads)
    with pytest.raises(ValueError, match="threads must be a whole number of at least 1"):
        shard_dataset(shards.shard_paths(built.out, "train"), CROP, threads=threads)
