"""Session fixtures shared by every test module.

``synthetic_dataset`` is a RAT7M-format tree made once per run (by one xdist worker, for all) by
:mod:`rat7m.demo.synthetic` (profile ``test``: 192x152 frames, all 7 recordings, s1-d1 in 13 chunks
of 10 with a short last one). It is shared: a test that changes files must copy what it changes
(``shutil.copytree(synthetic_dataset.root, tmp_path / "data")``). At the end of the session
the fixture checks that no file in it was added, removed or rewritten, and fails loudly if so.
``capture_dataset`` is the same (same seed: the same .mat files, pictures and chunks) in the
rig's capture encoding (x264 ultrafast, no B-frames), so video tests run on both encodings.
"""

from __future__ import annotations

import fcntl
import os
import pickle
from collections.abc import Iterator
from pathlib import Path

# As the commands do (rat7m.cli.entry.one_blas_thread), for the test processes and every process they start
# (xdist's workers, scripts, helpers), before anything here imports numpy: OpenBLAS starting a thread per core
# costs ~80 ms of CPU in each of the hundreds of processes a run starts.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import pytest

from rat7m.demo.synthetic import SyntheticDataset, generate_dataset

#: The test files that take longest, longest first (per-file sums of ``pytest --durations=0``), by path under
#: tests/. They run first: ``make test`` hands out whole files (``--dist loadfile``) in collection order
#: (``--no-loadscope-reorder``; xdist's default order is by number of tests, which left the 30 s demo to the end),
#: so the two workers finish together instead of one waiting for the other's long last file. Unlisted files
#: follow, as collected.
SLOWEST_FIRST = (
    "cli/test_contract.py", "extract/test_extract.py", "render/test_report.py", "training/test_training_data.py",
    "geometry/test_pixel_convention.py", "render/test_paths.py", "demo/test_pipeline.py", "cli/test_interrupt.py",
    "evaluation/test_scoring2d.py", "render/test_render.py", "test_install.py",
    "evaluation/test_hostile_predictions.py", "extract/test_slurm_extract.py", "demo/test_synthetic.py",
)  # fmt: skip
TESTS = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Put the files of :data:`SLOWEST_FIRST` first, in that order (a stable sort: tests in a file keep theirs)."""
    missing = [name for name in SLOWEST_FIRST if not (TESTS / name).is_file()]
    if missing:  # a moved or renamed file would silently lose its place
        raise pytest.UsageError(f"tests/conftest.py: SLOWEST_FIRST names files that are not there: {missing}")
    rank = {TESTS / name: i for i, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.resolve(), len(rank)))


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


def _read_only(dataset: SyntheticDataset) -> Iterator[SyntheticDataset]:
    before = _snapshot(dataset.root)
    yield dataset
    after = _snapshot(dataset.root)
    changed = sorted(name for name in before.keys() | after.keys() if before.get(name) != after.get(name))
    if changed:
        pytest.fail(f"a test changed the shared synthetic dataset (copy it first): {', '.join(changed[:10])}")


def _made_once(tmp_path_factory: pytest.TempPathFactory, name: str, **options: str) -> SyntheticDataset:
    """``generate_dataset(seed=0, profile="test", **options)`` once per run, by whichever xdist worker asks first.

    The others wait for it (a lock on a file in the run's folder, above each worker's) and read what it wrote
    (~2 s of CPU a dataset saved on each of them).
    """
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # pytest-N/, shared by the run's workers (pytest-N/popen-gwK/ is each one's)
    made = base / f"{name}.pickle"
    with open(base / f"{name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released as the file closes, also if this worker dies
        if not made.exists():
            dataset = generate_dataset(base / name / "rat7m", seed=0, profile="test", **options)
            made.with_suffix(".partial").write_bytes(pickle.dumps(dataset))
            made.with_suffix(".partial").rename(made)
        return pickle.loads(made.read_bytes())  # written just above by this test run: trusted


@pytest.fixture(scope="session")
def synthetic_dataset(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SyntheticDataset]:
    """The ``test`` profile dataset (seed 0, H.264 with B-frames), generated once per run; read only."""
    yield from _read_only(_made_once(tmp_path_factory, "synthetic"))


@pytest.fixture(scope="session")
def capture_dataset(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SyntheticDataset]:
    """``synthetic_dataset`` in the rig's capture encoding (no B-frames), generated once per run; read only."""
    yield from _read_only(_made_once(tmp_path_factory, "capture", encoding="capture"))


@pytest.fixture(params=["bframes", "capture"])
def any_dataset(request: pytest.FixtureRequest) -> SyntheticDataset:
    """Each of the two session datasets in turn (B-frame H.264, then the capture encoding)."""
    return request.getfixturevalue("synthetic_dataset" if request.param == "bframes" else "capture_dataset")


@pytest.fixture
def sigint_default() -> Iterator[None]:
    """Children start with SIGINT's default action even where the suite runs with it ignored (``make test &``)."""
    import signal

    old = signal.getsignal(signal.SIGINT)
    if old == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, old)


@pytest.fixture
def outside_slurm(monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs must not pick up a shard from a SLURM job the test suite itself may run in."""
    for name in ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_COUNT"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def server(tree: Path) -> Iterator[object]:
    """A local Figshare serving the module's ``tree`` fixture (a published folder) on 127.0.0.1."""
    from rat7m.demo.figshare_server import FigshareServer

    with FigshareServer(tree) as srv:
        yield srv


@pytest.fixture
def slept(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The downloader's retries sleep into this list instead of waiting (jitter fixed at the middle)."""
    from rat7m.download import gdrive, http, run

    record: list[float] = []
    policy = http.RetryPolicy(attempts=4, backoff=1.0, cap=8.0, sleep=record.append, random=lambda: 0.5)
    monkeypatch.setattr(run, "retry_policy", policy)
    monkeypatch.setattr(gdrive, "BACKOFF_SECONDS", 0.0)
    return record
