"""The command contract (README, "The command contract"), kept by every console command and mode.

One table, :data:`COMMANDS`: a row per console command and mode, saying how to run it on the
shared synthetic dataset, which flag names what it writes, which flag names a file it reads, and
which optional extra it needs. Every row goes through the same battery, each a test below:

- ``RAT7M_ROOT`` only (no ``--root``): it works, and says once which root it uses;
- its output folder read-only, or ``--out`` naming a file: exit 2, one line naming the path;
- the extra's module not importable (blocked in the subprocess): one line naming the extra;
- a FIFO, and a symlink pointing at itself, where it reads a file: exit 2, one line, no hang;
- SIGINT while Python starts and while it works, SIGTERM during the imports: exit 130 / 143, one line;
- and in all of them, no traceback on stdout or stderr.

A new command joins by adding a row. Rows failing only because their fix lives on another branch
are marked ``xfail`` with that branch's name (the lead removes the marks when merging).
"""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import pytest

import extract_frames
from metric_utils import compute_metrics
from rat7m import catalogue
from rat7m.cli import run_main
from rat7m.demo.figshare_server import FigshareServer
from rat7m.demo.pipeline import write_noisy_2d_predictions, write_noisy_predictions
from rat7m.table import save_annotation
from rat7m.table_build import build_table
from tests.helpers.read_only import read_only_command, restore_writable

REPO = Path(__file__).resolve().parents[2]
#: Where the console commands are installed (next to this Python, as by ``pip install``).
BIN = Path(sys.executable).parent
#: The recordings of the contract's table: a training one (YOLO's validation) and the test split.
RECORDINGS = ("s4-d1", "s5-d1", "s5-d2")
#: Seconds a run may take before it counts as hung (a FIFO read blocks forever).
HANG = 20
#: The line every command prints after Ctrl-C, and after SIGTERM.
INTERRUPTED = "interrupted; rerun the same command to resume"
TERMINATED = "terminated; rerun the same command to resume"
#: What must never appear in a command's output.
TRACEBACK = ("Traceback (most recent call last)", "Fatal Python error", "Exception ignored in")



@dataclasses.dataclass(frozen=True)
class Command:
    """One console command and mode, and what the battery needs to know about it.

    ``argv`` may hold ``{table}``, ``{pred3d}``, ``{pred2d}``, ``{metrics}``, ``{api}``, ``{zips}`` (the
    world's files and servers) and ``{out}`` (this run's output: a folder, or ``{out}/NAME`` where the command
    writes a file).
    """

    id: str
    argv: tuple[str, ...]
    out: str | None = None  # the flag whose value (in argv) is what it writes
    reads: str | None = None  # a flag naming a file it reads (given a FIFO or a symlink loop instead)
    reads_inside: str | None = None  # ``reads`` names a folder: the file inside it that is replaced
    extra: tuple[str, str, tuple[str, ...]] | None = None  # (module, extra name, arguments that need it)
    extra_optional: bool = False  # without the extra it does the rest and says what it left out (exit 0)
    empty_root: bool = False  # runs on an empty root (it fills it: the download)
    xfail: Mapping[str, str] = dataclasses.field(default_factory=dict)  # battery -> why (the fixing branch)

    @property
    def console(self) -> str:
        """The console command it runs (``rat7m download`` is ``rat7m-download``)."""
        return f"rat7m-{self.argv[1]}" if self.argv[0] == "rat7m" else self.argv[0]


def _export(fmt: str, *extra_args: str, reads: str | None = None, **kwargs) -> Command:
    return Command(f"export-{fmt}", ("rat7m-export", fmt, "--out", "{out}", *extra_args), out="--out", reads=reads,
                   **kwargs)  # fmt: skip


COMMANDS = [
    Command("download", ("rat7m-download", "--api-url", "{api}", "--recordings", "s5-d1", "--cameras", "1"),
            empty_root=True),  # its --out is the root
    Command("download-via-zip", ("rat7m-download", "--via-zip", "--api-url", "{api}", "--zip-url", "{zips}",
                                 "--recordings", "s5-d1", "--cameras", "1"), empty_root=True),
    Command("build-annotation", ("rat7m-build-annotation", "--recordings", "s5-d1", "--out", "{out}/table.pkl"),
            out="--out"),
    Command("build-annotation-check", ("rat7m-build-annotation", "--check", "{table}"), reads="--check"),
    Command("extract", ("rat7m-extract", "--images-root", "{out}", "--recordings", "s5-d1", "--cameras", "1",
                        "--jobs", "1"),
            out="--images-root", reads="--annotation", extra=("av", "pyav", ("--decoder", "pyav"))),
    Command("extract-shards", ("rat7m-extract", "--format", "shards", "--shards-dir", "{out}", "--recordings", "s5-d1",
                               "--cameras", "1", "--jobs", "1"),
            out="--shards-dir", reads="--annotation", extra=("av", "pyav", ("--decoder", "pyav"))),
    Command("metrics-3d", ("rat7m-metrics", "--pred_path", "{pred3d}", "--save_dir", "{out}"),
            out="--save_dir", reads="--pred_path"),
    Command("metrics-2d", ("rat7m-metrics", "--pred2d", "{pred2d}", "--save_dir", "{out}"),
            out="--save_dir", reads="--pred2d"),  # OKS AP needs no extra library any more
    Command("metrics-2d-triangulate", ("rat7m-metrics", "--pred2d", "{pred2d}", "--triangulate", "--save_dir", "{out}"),
            out="--save_dir", reads="--gt_path"),
    Command("metrics-2d-report", ("rat7m-metrics", "--pred2d", "{pred2d}", "--report", "--save_dir", "{out}"),
            out="--save_dir", reads="--pred2d"),
    Command("metrics-3d-report", ("rat7m-metrics", "--pred_path", "{pred3d}", "--report", "--save_dir", "{out}"),
            out="--save_dir", reads="--pred_path"),
    Command("metrics-2d-triangulated-out", ("rat7m-metrics", "--pred2d", "{pred2d}", "--triangulate", "--save_dir",
                                            "{out}/metrics", "--triangulated_out", "{out}/triangulated.csv"),
            out="--triangulated_out", reads="--pred2d"),
    Command("doctor", ("rat7m-doctor",), reads="--annotation"),
    _export("coco", reads="--annotation"),  # one reader of the table for every format
    _export("dlc", "--split", "train"),  # the split DLC takes by default, said so: no warning line to race the signal
    _export("yolo"),
    _export("slp", extra=("sleap_io", "sleap", ())),
    _export("anipose", "--allow-skew"),
    _export("dannce"),
    _export("all", "--allow-skew", reads="--annotation"),
    Command("render-samples", ("rat7m-render", "samples", "--pred_path", "{pred3d}", "--samples", "0",
                               "--out", "{out}"), out="--out", reads="--pred_path"),
    Command("render-video", ("rat7m-render", "video", "--recording", "s5-d1", "--camera", "1", "--stop", "5",
                             "--out", "{out}/video.mp4"), out="--out", extra=("av", "render", ("--codec", "pyav"))),
    # `rat7m <command>` (the one entry point) keeps the same contract as the rat7m-* commands
    Command("rat7m-download", ("rat7m", "download", "--api-url", "{api}", "--recordings", "s5-d1", "--cameras", "1"),
            empty_root=True),
    Command("rat7m-export-coco", ("rat7m", "export", "coco", "--out", "{out}"), out="--out", reads="--annotation"),
    Command("render-report", ("rat7m-render", "report", "--metrics_dir", "{metrics}", "--worst", "0",
                              "--out", "{out}/report.html"), out="--out",
            reads="--metrics_dir", reads_inside="summary.json"),
]


# --------------------------------------------------------------------------------------------- the world


@dataclasses.dataclass
class World:
    """What every run shares: a dataset root's parts, predictions, a metrics folder, a Figshare server."""

    data: Path  # video_sequences, annotations, images_unpacked and the table (the parts linked into each root)
    values: dict[str, str]


@pytest.fixture(scope="module")
def world(synthetic_dataset, tmp_path_factory) -> World:
    """Built once: the table of :data:`RECORDINGS`, their images, 3D and 2D predictions, one metrics folder."""
    data = tmp_path_factory.mktemp("contract") / "data"
    data.mkdir()
    (data / catalogue.VIDEO_DIR).symlink_to(synthetic_dataset.video_dir, target_is_directory=True)
    (data / catalogue.ANNOTATION_DIR).symlink_to(synthetic_dataset.annotation_dir, target_is_directory=True)
    table_path = catalogue.mini_annotation_path(data)
    save_annotation(build_table([synthetic_dataset.recordings[r].mat_path for r in RECORDINGS]), table_path)
    assert run_main(extract_frames.main, ["--root", str(data), "--jobs", "2", "--decoder", "opencv", "-q"]) == 0
    pred3d, pred2d, metrics = data.parent / "pred3d.csv", data.parent / "pred2d.csv", data.parent / "metrics"
    write_noisy_predictions(table_path, pred3d)
    write_noisy_2d_predictions(table_path, pred2d)
    argv = ["--pred_path", str(pred3d), "--gt_path", str(table_path), "--save_dir", str(metrics), "-q"]
    assert run_main(compute_metrics.main, argv) == 0
    with FigshareServer(synthetic_dataset.root) as server:
        yield World(data, {"table": str(table_path), "pred3d": str(pred3d), "pred2d": str(pred2d),
                           "metrics": str(metrics), "api": server.api_url,
                           "zips": f"{server.base_url}/ndownloader"})  # fmt: skip


def _root(world: World, folder: Path, command: Command) -> Path:
    """A dataset root for one run: the world's parts linked in (nothing of the world can be written)."""
    root = folder / "root"
    root.mkdir()
    if not command.empty_root:
        for part in world.data.iterdir():
            (root / part.name).symlink_to(part.resolve(), target_is_directory=part.is_dir())
    return root


@dataclasses.dataclass
class Run:
    code: int | None
    out: str
    err: str

    @property
    def lines(self) -> list[str]:
        """stderr without the ``dataset root:`` line."""
        return [line for line in self.err.splitlines() if not line.startswith("dataset root:")]

    def __str__(self) -> str:
        return f"exit {self.code}\n--- stdout\n{self.out[-3000:]}\n--- stderr\n{self.err[-3000:]}"


def _argv(
    command: Command, world: World, out: Path, replace: Mapping[str, str] | None = None, quiet: bool = True
) -> list[str]:
    """The row's arguments with the world's files and ``out`` filled in, ``replace`` flags set (added if absent).

    With ``quiet``, ``-q``: only the summary and errors (no log lines around the one line that matters).
    """
    values = {**world.values, "out": str(out)}
    argv = [a.format(**values) for a in command.argv] + (["-q"] if quiet else [])
    for flag, value in (replace or {}).items():
        if flag in argv:
            argv[argv.index(flag) + 1] = value
        else:
            argv += [flag, value]
    return argv


def _env(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "RAT7M_"))}
    env["RAT7M_ROOT"] = str(root)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def _run(argv: list[str], root: Path, cwd: Path, wrap=None) -> Run:
    """Run a console command with ``RAT7M_ROOT=root`` (never ``--root``), from ``cwd``, within :data:`HANG`."""
    command = [str(BIN / argv[0]), *argv[1:]]
    if wrap is not None:
        command = wrap(command)
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=_env(root), cwd=cwd, timeout=HANG)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{' '.join(argv)} hung for {HANG} s (stderr so far: {exc.stderr!r})")
    return Run(done.returncode, done.stdout, done.stderr)


def _no_traceback(run: Run) -> None:
    for marker in TRACEBACK:
        assert marker not in run.out and marker not in run.err, str(run)


def _one_line_error(run: Run, *names: str) -> None:
    """Exit 2 with one line on stderr (besides the root) that names each of ``names``; nothing else."""
    _no_traceback(run)
    assert run.code == 2, str(run)
    assert len(run.lines) == 1, str(run)
    for name in names:
        assert name in run.lines[0], f"the line does not name {name}\n{run}"


def _cases(battery: str, where=lambda command: True, moments: tuple[str, ...] = ()) -> list:
    """The rows a battery applies to (for each moment, if given), each ``xfail`` where its row says so."""
    cases = []
    for command in COMMANDS:
        if not where(command):
            continue
        for moment in moments or (None,):
            key = battery if moment is None else f"{battery}-{moment}"
            reason = command.xfail.get(key) or command.xfail.get(battery)
            marks = [pytest.mark.xfail(strict=False, reason=reason)] if reason else []
            values = (command,) if moment is None else (command, moment)
            name = command.id if moment is None else f"{command.id}-{moment}"
            cases.append(pytest.param(*values, id=name, marks=marks))
    return cases


# --------------------------------------------------------------------------------------------- the battery


@pytest.mark.parametrize("command", _cases("root"))
def test_rat7m_root_alone_is_the_root_and_is_said_once(command, world, tmp_path):
    root = _root(world, tmp_path, command)
    before = sorted(p.name for p in root.iterdir())
    run = _run(_argv(command, world, tmp_path / "out", quiet=False), root, cwd=tmp_path)
    _no_traceback(run)
    assert run.code == 0, str(run)
    said = [line for line in run.err.splitlines() if line.startswith("dataset root:")]
    assert said == [f"dataset root: {root} (from $RAT7M_ROOT)"], str(run)
    # nothing created outside its output (the download's output is the root; the working folder stays as it was)
    assert {p.name for p in tmp_path.iterdir()} <= {"root", "out"}, sorted(p.name for p in tmp_path.iterdir())
    if not command.empty_root:
        assert sorted(p.name for p in root.iterdir()) == before


@pytest.mark.parametrize("command", _cases("readonly", lambda c: c.out is not None or c.empty_root))
def test_a_read_only_output_folder_is_one_line_and_exit_2(command, world, tmp_path):
    root = _root(world, tmp_path, command)
    locked = tmp_path / "locked"
    locked.mkdir()
    if command.empty_root:  # the download's output is its root
        argv, names = _argv(command, world, tmp_path / "out", {"--out": str(locked)}), [str(locked)]
    else:
        argv, names = _argv(command, world, locked), [str(locked)]
    try:
        run = _run(argv, root, cwd=tmp_path, wrap=lambda cmd: read_only_command(locked, cmd))
    finally:
        restore_writable(locked)
    _one_line_error(run, *names)
    assert not list(locked.iterdir()), "something was written into the read-only folder"


@pytest.mark.parametrize("command", _cases("outfile", lambda c: c.out is not None or c.empty_root))
def test_an_output_folder_that_is_a_file_is_one_line_and_exit_2(command, world, tmp_path):
    root = _root(world, tmp_path, command)
    a_file = tmp_path / "a_file"
    a_file.write_text("mine\n")
    if command.empty_root:
        argv = _argv(command, world, tmp_path / "out", {"--out": str(a_file)})
    else:
        argv = _argv(command, world, a_file)
    run = _run(argv, root, cwd=tmp_path)
    _one_line_error(run, str(a_file))
    assert a_file.read_text() == "mine\n"


@pytest.mark.parametrize("command", _cases("extra", lambda c: c.extra is not None))
def test_a_missing_optional_extra_is_one_line_naming_it(command, world, tmp_path):
    module, extra, needs = command.extra
    root = _root(world, tmp_path, command)
    argv = _argv(command, world, tmp_path / "out") + list(needs)
    # the console command's entry point, with the extra's module made unimportable (as if not installed)
    entry = argv[0].removeprefix("rat7m-").replace("-", "_")
    code = (f"import sys; sys.modules[{module!r}] = None; sys.argv[0] = {argv[0]!r}; "
            f"from rat7m import commands; sys.exit(commands.{entry}())")  # fmt: skip
    run = _run(["python", "-c", code, *argv[1:]], root, cwd=tmp_path)
    _no_traceback(run)
    requirement = re.split(r"[<>=\s]", (REPO / f"requirements-{extra}.txt").read_text().split("\n")[1], maxsplit=1)[0]
    names_it = re.compile(rf"pip install [^;]*(\[{extra}\]|\b{re.escape(requirement)}\b)")
    if not command.extra_optional:  # needed for what was asked: refused
        _one_line_error(run)
        assert names_it.search(run.lines[0]), f"the line does not say how to install [{extra}]\n{run}"
    else:  # an optional part of the output: done without it, saying which extra brings it
        assert run.code == 0, str(run)
        assert any(names_it.search(line) for line in run.lines + run.out.splitlines()), str(run)


#: The module whose ``build_parser`` each console command uses (the one :mod:`rat7m.commands` runs).
PARSERS = {
    "rat7m-download": "download_all",
    "rat7m-build-annotation": "build_annotation",
    "rat7m-extract": "extract_frames",
    "rat7m-metrics": "metric_utils.compute_metrics",
    "rat7m-doctor": "rat7m.cli.doctor",
    "rat7m-export": "rat7m.export.cli",
    "rat7m-render": "rat7m.render.__main__",
}


@pytest.mark.parametrize("command", _cases("help"))
def test_help_states_every_default_and_the_exit_codes_and_flags_take_both_spellings(command):
    """``--help`` (of the mode, for commands with modes) gives each option's default; ``_`` flags have a ``-`` twin."""
    import argparse
    import importlib

    parser = importlib.import_module(PARSERS[command.console]).build_parser()
    assert "Exit codes" in parser.format_help(), f"{command.console} --help does not state the exit codes"
    modes = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if modes and command.argv[1] in modes[0].choices:
        parser = modes[0].choices[command.argv[1]]
    for action in parser._actions:
        flags = action.option_strings
        for flag in flags:
            if "_" in flag:
                assert flag.replace("_", "-") in flags, f"{command.console}: {flag} has no {flag.replace('_', '-')}"
        quiet = isinstance(action, (argparse._HelpAction, argparse._StoreTrueAction, argparse._SubParsersAction))
        if flags and not quiet and not action.required:
            assert "default" in (action.help or ""), f"{command.console}: {flags} does not state its default"


def _special_reads(command: Command, world: World, tmp_path: Path, make) -> tuple[list[str], Path]:
    """The row's arguments with its ``reads`` file replaced by what ``make(path)`` creates."""
    if command.reads_inside:
        folder = tmp_path / "special"
        folder.mkdir()
        source = Path(_argv(command, world, tmp_path / "out", quiet=False)[command.argv.index(command.reads) + 1])
        for item in source.iterdir():
            if item.name != command.reads_inside:
                (folder / item.name).symlink_to(item)
        target = folder / command.reads_inside
        make(target)
        return _argv(command, world, tmp_path / "out", {command.reads: str(folder)}), target
    target = tmp_path / "special.file"
    make(target)
    return _argv(command, world, tmp_path / "out", {command.reads: str(target)}), target


@pytest.mark.parametrize("command", _cases("fifo", lambda c: c.reads is not None))
def test_a_fifo_where_it_reads_a_file_is_refused_without_hanging(command, world, tmp_path):
    argv, fifo = _special_reads(command, world, tmp_path, os.mkfifo)
    run = _run(argv, _root(world, tmp_path, command), cwd=tmp_path)
    _one_line_error(run, fifo.name)


@pytest.mark.parametrize("command", _cases("loop", lambda c: c.reads is not None))
def test_a_symlink_loop_where_it_reads_a_file_is_one_line(command, world, tmp_path):
    argv, loop = _special_reads(command, world, tmp_path, lambda path: path.symlink_to(path.name))
    run = _run(argv, _root(world, tmp_path, command), cwd=tmp_path)
    _one_line_error(run, loop.name)


#: Runs of a command whose signal came after its work was done, before the test gives up on it.
MISSED_MOMENT_ATTEMPTS = 5


def _signalled_run(command: Command, moment: str, world: World, root: Path, out: Path, attempt: int = 0
                   ) -> tuple[Run, int]:  # fmt: skip
    """Start ``command``, send SIGINT or SIGTERM at ``moment``; its run and the signal sent.

    Each attempt after a missed moment sends the "imports" signal twice as early: a command whose
    bytecode is cached can be done in 0.15 s.
    """
    argv = _argv(command, world, out, quiet=False)
    # Held (blocked) while Python itself starts, where no code of ours can run: the command's first
    # line sets its handler and unblocks them (rat7m.interrupt.at_start), so they are acted on then.
    signals = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    try:
        proc = subprocess.Popen([str(BIN / argv[0]), *argv[1:]], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=_env(root), cwd=out.parent, start_new_session=True)  # fmt: skip
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, signals)
    head, sig = "", signal.SIGINT
    if moment == "imports":
        time.sleep(0.15 / 2**attempt)
        sig = signal.SIGTERM  # as `kill`, `scancel` or a container stopping
    elif moment == "working":
        head = proc.stderr.readline()  # the root line: imports done, arguments parsed
    os.killpg(proc.pid, sig)
    try:
        out_text, err = proc.communicate(timeout=HANG)
    finally:
        proc.kill()
    return Run(proc.returncode, out_text, head + err), sig


#: When the signal is sent: SIGINT at once (Python still starting: held until the command's first line),
#: SIGTERM during the imports, SIGINT once the command has said its root (imports done: working).
MOMENTS = ("start-up", "imports", "working")


@pytest.mark.parametrize(("command", "moment"), _cases("sigint", moments=MOMENTS))
def test_ctrl_c_or_sigterm_at_any_moment_is_one_line_and_exit_130_or_143(command, moment, world, tmp_path,
                                                                         sigint_default):  # fmt: skip
    # A small command can finish its work before the signal lands (a fast command, or the test process
    # descheduled on a busy machine): exit 0, or death by the signal's default action (Python restores it
    # while the process ends) with all of a run's output written, is a missed moment, tried again from a
    # fresh root. Death by the signal with output cut short is a handler lost while working: a failure.
    reference: Run | None = None
    for attempt in range(MISSED_MOMENT_ATTEMPTS):
        folder = tmp_path / f"try{attempt}"
        folder.mkdir()
        run, sig = _signalled_run(command, moment, world, _root(world, folder, command), folder / "out", attempt)
        if run.code == -sig:
            if reference is None:  # the same command, left alone: how much output a finished run writes
                (tmp_path / "left-alone").mkdir()
                left_alone = tmp_path / "left-alone"
                reference = _run(_argv(command, world, left_alone / "out", quiet=False),
                                 _root(world, left_alone, command), cwd=left_alone)  # fmt: skip
            if len(run.out.splitlines()) < len(reference.out.splitlines()) or len(run.lines) < len(reference.lines):
                break
        elif run.code != 0:
            break
    _no_traceback(run)
    expected = (143, TERMINATED) if sig == signal.SIGTERM else (130, INTERRUPTED)
    # a log line the command gave before the signal reached it (export all's DeepLabCut split warning: CI
    # once sent the "imports" signal after it) is its normal output, not a second line about the signal
    lines = [line for line in run.lines if not line.startswith(("INFO: ", "WARNING: "))]
    assert (run.code, lines) == (expected[0], [expected[1]]), str(run)
