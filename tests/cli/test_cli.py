"""The command-line conventions every script shares (rat7m/cli.py): list forms, one-line errors, --help."""

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import build_annotation
import download_all
import extract_frames
from metric_utils import compute_metrics
from rat7m import catalogue, cli
from rat7m.cli import doctor
from rat7m.demo import pipeline, synthetic
from tests.helpers.read_only import read_only_command, restore_writable

REPO = Path(__file__).resolve().parents[2]

#: Every script's parser builder, by the name its errors carry, and its module (for the docstring).
PARSERS = {
    "download_all.py": (download_all.build_parser, download_all),
    "build_annotation.py": (build_annotation.build_parser, build_annotation),
    "extract_frames.py": (extract_frames.build_parser, extract_frames),
    "compute_metrics.py": (compute_metrics.build_parser, compute_metrics),
    "python -m rat7m.demo.synthetic": (synthetic._parser, synthetic),
    "python -m rat7m.demo": (pipeline.build_parser, pipeline),
}
REQUIRED = {"compute_metrics.py": ["--pred_path", "p.csv"], "python -m rat7m.demo.synthetic": ["--out", "x"]}


def _parse(prog, argv):
    build, _ = PARSERS[prog]
    return build().parse_args([*REQUIRED.get(prog, []), *argv])


@pytest.mark.parametrize("prog", [p for p in PARSERS if "--recordings" in PARSERS[p][0]().format_help()])
def test_recordings_and_cameras_in_both_forms(prog):
    spaced = _parse(prog, ["--recordings", "s1-d1", "s5-d2"])
    commas = _parse(prog, ["--recordings", "s1-d1,s5-d2"])
    assert spaced.recordings == commas.recordings == (catalogue.recording_by_name("s1-d1"),
                                                      catalogue.recording_by_name("s5-d2"))  # fmt: skip
    assert _parse(prog, []).recordings is None  # not given: the script's own default
    if "--cameras" in PARSERS[prog][0]().format_help():
        assert _parse(prog, ["--cameras", "1", "Camera3"]).cameras == _parse(prog, ["--cameras", "1,3"]).cameras
        assert _parse(prog, ["--cameras", "2,3"]).cameras == ("Camera2", "Camera3")
    with pytest.raises(cli.UsageError) as info:
        _parse(prog, ["--recordings", "s1-d1", "s9-d9"])
    message = str(info.value)
    assert message.startswith(f"{prog}: error: argument --recordings: unknown recording 's9-d9'; valid names: s1-d1")
    assert message.endswith("(see --help)") and "\n" not in message


@pytest.mark.parametrize("prog", list(PARSERS))
def test_help_shows_the_whole_docstring_and_every_default(prog):
    build, module = PARSERS[prog]
    parser = build()
    text = parser.format_help()
    last_paragraph = module.__doc__.strip().split("\n\n")[-1]
    assert last_paragraph in text, f"{prog} --help lacks the end of its docstring"
    assert "Exit codes" in text
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._StoreTrueAction)) or action.required:
            continue
        assert "default" in action.help, f"{prog} {action.option_strings}: help does not state the default"
    quiet = next(a.help for a in parser._actions if "--quiet" in a.option_strings)
    assert ("progress bar" in quiet) == (prog not in ("compute_metrics.py", "python -m rat7m.demo")), quiet


def test_value_checks_are_argument_errors():
    with pytest.raises(cli.UsageError, match=r"argument --tolerance: expected a number >= 0, not -0\.1"):
        _parse("build_annotation.py", ["--tolerance", "-0.1"])
    assert _parse("build_annotation.py", []).tolerance == pytest.approx(0.01)
    with pytest.raises(cli.UsageError, match="argument --stride: expected a positive integer, not 0"):
        _parse("build_annotation.py", ["--stride", "0"])
    with pytest.raises(cli.UsageError, match="argument --recordings: no names in ','"):
        _parse("extract_frames.py", ["--recordings", ","])
    with pytest.raises(cli.UsageError, match="argument --cameras: unknown camera '7'"):
        _parse("download_all.py", ["--cameras", "1,7"])


@pytest.mark.parametrize(
    "argv",
    [
        ["build_annotation.py", "--recordings", "s1-d1", "s9-d9"],
        ["extract_frames.py", "--jobs", "0"],
        ["metric_utils/compute_metrics.py", "--metric", "mae", "--pred_path", "p.csv"],
        ["-m", "rat7m.demo.synthetic", "--bogus"],
    ],
)
def test_argument_errors_are_one_line_and_exit_2(argv, tmp_path):
    done = subprocess.run([sys.executable, *argv], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and "usage:" not in done.stderr and lines[0].endswith("(see --help)"), done.stderr
    prog = "python -m rat7m.demo.synthetic" if argv[0] == "-m" else Path(argv[0]).name
    assert lines[0].startswith(f"{prog}: error: ")


def test_progress_bars_only_on_a_terminal(monkeypatch):
    class Terminal:
        def isatty(self):
            return True

    quiet, loud = argparse.Namespace(quiet=True), argparse.Namespace(quiet=False)
    assert not cli.progress_enabled(loud)  # pytest's captured stderr is not a terminal: a log, no bars
    monkeypatch.setattr(sys, "stderr", Terminal())
    assert cli.progress_enabled(loud) and not cli.progress_enabled(quiet)


def test_root_is_the_flag_else_rat7m_root_else_here(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv(cli.ROOT_ENV, raising=False)
    assert cli.resolve_root(None) == Path(".")
    assert "(from the current folder)" in capsys.readouterr().err
    monkeypatch.setenv(cli.ROOT_ENV, str(tmp_path))
    assert cli.resolve_root(None) == tmp_path and cli.default_root() == tmp_path
    assert capsys.readouterr().err == f"dataset root: {tmp_path} (from $RAT7M_ROOT)\n"  # said once, with its source
    assert cli.resolve_root(tmp_path / "x", "--out", quiet=True) == tmp_path / "x" and not capsys.readouterr().err
    for prog in ("download_all.py", "build_annotation.py", "extract_frames.py", "compute_metrics.py"):
        assert "$RAT7M_ROOT" in PARSERS[prog][0]().format_help(), prog
    assert "$RAT7M_ROOT" in doctor.build_parser().format_help()


def test_a_mistyped_flag_gets_did_you_mean_even_before_a_missing_required_one():
    with pytest.raises(cli.UsageError, match=r"--pred-path --pred2d is required; did you mean --pred-path\?"):
        compute_metrics.build_parser().parse_args(["--pred-pth", "p.csv"])
    with pytest.raises(cli.UsageError, match=r"unrecognized arguments: --recordngs s1-d1; did you mean --recordings\?"):
        extract_frames.build_parser().parse_args(["--recordngs", "s1-d1"])
    args = compute_metrics.build_parser().parse_args(["--pred-path", "p.csv", "--save-dir", "o", "--gt-path", "t"])
    assert (args.pred_path, args.save_dir, args.gt_path) == (Path("p.csv"), Path("o"), Path("t"))  # aliases


@pytest.mark.parametrize("script", ["download_all.py", "extract_frames.py", "metric_utils/compute_metrics.py"])
def test_a_python_without_the_dependencies_gets_one_line_saying_how_to_install(script):
    # -S: no site-packages, as with a system python3 that has never seen requirements.txt
    done = subprocess.run([sys.executable, "-S", script, "--help"], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    (line,) = done.stderr.splitlines()
    assert "lacks numpy" in line and "pip install ." in line


def test_build_annotation_refuses_a_read_only_out_before_building(synthetic_dataset, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(synthetic_dataset.annotation_dir, root / catalogue.ANNOTATION_DIR)
    command = read_only_command(root, [sys.executable, str(REPO / "build_annotation.py"), "--root", root])
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    finally:
        restore_writable(root)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    (line,) = [line for line in done.stderr.splitlines() if not line.startswith("dataset root:")]
    assert line.startswith(f"error: cannot write the table to {root}") and "pass --out PATH" in line


def test_sigterm_inside_main_runs_the_clean_up_then_one_line_and_143(capsys):
    import os
    import signal
    import time

    from rat7m import interrupt

    cleaned = []

    def main(argv):  # a command's main that is stopped while it works
        try:
            os.kill(os.getpid(), signal.SIGTERM)  # as `kill PID`: raised here as interrupt.Terminated
            time.sleep(5)
        finally:
            cleaned.append(True)
        return 0

    before = signal.getsignal(signal.SIGTERM)
    assert cli.run_main(main, []) == 143 and cleaned == [True]
    assert capsys.readouterr().err == "terminated; rerun the same command to resume\n"
    assert signal.getsignal(signal.SIGTERM) == before  # the caller's handler is back
    assert interrupt.exit_code(KeyboardInterrupt()) == 130 and interrupt.exit_code(interrupt.Terminated()) == 143


@pytest.mark.parametrize("command", ["rat7m-export", "rat7m-render"])
def test_console_commands_name_themselves_in_help_and_errors(command):
    exe = Path(sys.executable).with_name(command)
    if not exe.exists():
        pytest.skip("the console commands are not installed next to this Python")
    done = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.startswith(f"usage: {command} "), done.stdout[:200]
    done = subprocess.run([str(exe), "--bogus"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stderr.startswith(f"{command}: error: "), done.stderr


@pytest.mark.parametrize(("preset", "expected"), [(None, "1"), ("2", "2")])
def test_commands_start_one_blas_thread_unless_told(preset, expected):
    """OpenBLAS starting a thread per core cost ~80 ms of CPU at numpy's import in every command and worker."""
    code = (
        "import os, sys; from rat7m.cli.entry import run_command; assert 'numpy' not in sys.modules; "
        "code = 0\ntry: run_command('metrics', argv=['--help'])\nexcept SystemExit as exc: code = exc.code\n"
        "print(code, os.environ['OPENBLAS_NUM_THREADS'], 'numpy' in sys.modules)"
    )
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    if preset is not None:
        env["OPENBLAS_NUM_THREADS"] = preset
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-3:] == ["0", expected, "True"]  # set before the command imported numpy


def test_ctrl_c_inside_a_class_definition_is_still_ctrl_c(capsys):
    """Before Python 3.12 a KeyboardInterrupt raised in __set_name__ (a signal landing while a module defining a
    cached_property is imported) reaches the script as a RuntimeError; the contract test's random moments hit it
    once in CI: exit 1 and a traceback, where Ctrl-C is one line and exit 130."""
    from rat7m.cli.common import run_main

    class Interrupting:
        def __set_name__(self, owner, name):
            raise KeyboardInterrupt

    def main(argv):
        type("Defined", (), {"attribute": Interrupting()})
        return 0

    assert run_main(main, []) == 130
    assert capsys.readouterr().err.startswith("interrupted")

    def broken(argv):
        raise RuntimeError("not a signal")

    with pytest.raises(RuntimeError, match="not a signal"):
        run_main(broken, [])
