"""The toolkit as a user installs it: a wheel in a fresh venv, console commands run from another folder.

The wheel is built from this checkout (``pip wheel --no-build-isolation``: offline) and installed
with ``--no-deps`` into a new venv whose only link to the test venv is a ``.pth`` line giving it the
dependencies (numpy, OpenCV...), so installing takes seconds; the toolkit itself comes only from the
wheel (the checkout is never on ``sys.path``). Then, with ``RAT7M_ROOT`` set instead of flags and
the current folder elsewhere, the console commands run the whole synthetic pipeline: download from
a real local Figshare server, build the table, extract to an images root outside the dataset while
the dataset is mounted read-only, score predictions.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from rat7m import catalogue
from rat7m.demo.figshare_server import FigshareServer
from rat7m.demo.synthetic import generate_dataset
from rat7m.table import load_annotation
from tests.helpers.read_only import read_only_command, restore_writable

REPO = Path(__file__).resolve().parents[1]
COMMANDS = ["rat7m-download", "rat7m-build-annotation", "rat7m-extract", "rat7m-metrics", "rat7m-doctor",
            "rat7m-export", "rat7m-render", "rat7m", "rat7m download"]  # fmt: skip
#: What the wheel installs at the top level: the toolkit's package, nothing else.
TOP_LEVEL = {"rat7m"}


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the toolkit installed from a wheel built from this checkout; its bin folder."""
    base = tmp_path_factory.mktemp("install")
    wheels = base / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", wheels, REPO],
        check=True, cwd=base, capture_output=True,
    )  # fmt: skip
    (wheel,) = wheels.glob("rat7m_toolkit-*.whl")
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    Path(purelib, "test-venv-dependencies.pth").write_text("\n".join(sorted(deps)) + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-deps", "--no-index", wheel],
        check=True, capture_output=True,
    )  # fmt: skip
    return venv / "bin"


def _env(bin_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "RAT7M_ROOT", "VIRTUAL_ENV")}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    return {**env, **extra}


def _run(command: list, cwd: Path, env: dict[str, str], code: int = 0) -> subprocess.CompletedProcess:
    result = subprocess.run([str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == code, f"{command[:3]}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    return result


def test_every_console_command_has_help_from_any_folder(installed, tmp_path):
    env = _env(installed)
    for command in COMMANDS:
        program, *mode = command.split()
        result = _run([installed / program, *mode, "--help"], tmp_path, env)
        assert result.stdout.startswith(f"usage: {command} ") and "Exit codes" in result.stdout
    probe = (
        "import rat7m, rat7m.cli.download, rat7m.cli.metrics; from rat7m import load_annotation, MiniRat7m, mpjpe; "
        "print(rat7m.__file__)"
    )
    where = _run([installed / "python", "-c", probe], tmp_path, env).stdout.strip()
    assert where.startswith(str(installed.parent)) and not where.startswith(str(REPO))  # from the wheel, not here
    site = Path(where).parents[1]  # the top level of the wheel's modules: one package, no scripts
    top = {p.name.removesuffix(".py") for p in site.iterdir() if p.suffix == ".py" or (p / "__init__.py").is_file()}
    assert top == TOP_LEVEL, top
    bad = _run([installed / "rat7m-metrics", "--pred-pth", "p.csv"], tmp_path, env, code=2)
    assert bad.stderr.startswith("rat7m-metrics: error: ") and "did you mean --pred-path?" in bad.stderr


@pytest.mark.slow
def test_synthetic_pipeline_with_rat7m_root_and_a_read_only_dataset(installed, tmp_path):
    source, dataset, images, elsewhere = (tmp_path / name for name in ("figshare", "dataset", "images", "cwd"))
    elsewhere.mkdir()
    generate_dataset(source, seed=3, profile="test", recordings="s1-d1,s5-d1", n_frames=20)
    env = _env(installed, RAT7M_ROOT=str(dataset))
    with FigshareServer(source) as server:
        got = _run([installed / "rat7m-download", "--api-url", server.api_url, "--recordings", "s1-d1,s5-d1", "-q"],
                   elsewhere, env)  # fmt: skip
        assert (dataset / catalogue.VIDEO_DIR).is_dir() and "files" in got.stdout
        _run([installed / "rat7m-build-annotation"], elsewhere, env)
        table = load_annotation(dataset / catalogue.MINI_ANNOTATION_NAME)

        # the dataset is read-only from here on (a read-only bind mount, or no write permission)
        verify = [installed / "rat7m-download", "--api-url", server.api_url, "--recordings", "s1-d1,s5-d1", "--verify"]
        _run(read_only_command(dataset, verify), elsewhere, env)
    refused = _run(read_only_command(dataset, [installed / "rat7m-extract", "-q"]), elsewhere, env, code=2)
    assert "cannot write images to" in refused.stderr and "--images-root" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and not (dataset / catalogue.IMAGES_DIR).exists()
    extracted = _run(read_only_command(dataset, [installed / "rat7m-extract", "--images-root", images, "-q"]),
                     elsewhere, env)  # fmt: skip
    assert " 0 failed" in extracted.stdout
    paths = {str(p) for cam in table["table"]["image_path"].values() for p in cam}
    assert all((images / p).is_file() for p in paths) and not (dataset / catalogue.IMAGES_DIR).exists()

    test = np.asarray(table["table"]["train_test"]) == "test"
    truth = np.nan_to_num(np.asarray(table["table"]["3D_keypoints"])[test])
    np.savetxt(elsewhere / "preds.csv", truth.reshape(len(truth), -1) + 1.0, delimiter=",")
    scored = _run(read_only_command(dataset, [installed / "rat7m-metrics", "--pred-path", "preds.csv"]),
                  elsewhere, env)  # fmt: skip
    assert f"{test.sum()} test samples of {dataset / catalogue.MINI_ANNOTATION_NAME}" in scored.stdout
    assert (elsewhere / "metrics_output" / "summary.json").is_file()

    script = f"from rat7m.dataset import MiniRat7m; s = MiniRat7m(split='test', images_root={str(images)!r})[0]; " \
             "print(sorted(s['images']), s['images']['Camera1'].shape)"  # fmt: skip
    sample = _run([installed / "python", "-c", script], elsewhere, env)
    assert sample.stdout.startswith("['Camera1', 'Camera2'") and "(152, 192, 3)" in sample.stdout
    restore_writable(dataset)


def test_the_demo_runs_the_installed_commands_from_the_wheel(installed, tmp_path):
    """``python -m rat7m.demo`` from an installed package: its steps are the venv's rat7m-* commands, no script."""
    env = _env(installed)
    helped = _run([installed / "python", "-m", "rat7m.demo", "--help"], tmp_path, env)
    assert helped.stdout.startswith("usage: python -m rat7m.demo") and "Exit codes" in helped.stdout
    probe = "from rat7m.demo import pipeline; print(pipeline.command('rat7m-build-annotation'), pipeline.NOTEBOOK)"
    found, notebook = _run([installed / "python", "-c", probe], tmp_path, env).stdout.split()
    assert found == str(installed / "rat7m-build-annotation") and not Path(notebook).exists()  # no checkout here
