"""The test cluster itself: a real array job runs, reports its states, and nothing outlives shutdown.

These prove the machinery in ``tests/helpers/slurm_cluster.py`` before the extraction test relies on it.
"""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import pytest

from tests.helpers.slurm_cluster import SlurmCluster, _expand_task_ids, is_running, slurm_cluster, slurm_installed

pytestmark = pytest.mark.slurm
__all__ = ["slurm_cluster", "slurm_installed"]  # fixtures, imported for the tests below

#: A job script that reports what SLURM gave it, then fails in task 1 with exit code 3.
ECHO_SCRIPT = textwrap.dedent(
    """\
    #!/bin/bash
    echo "task=$SLURM_ARRAY_TASK_ID count=$SLURM_ARRAY_TASK_COUNT cwd=$PWD arg1=[$1] colour=$COLOUR"
    if [ "$SLURM_ARRAY_TASK_ID" = 1 ]; then exit 3; fi
    """
)


def test_task_id_expansion():
    assert _expand_task_ids("0") == [0]
    assert _expand_task_ids("1-3,5") == [1, 2, 3, 5]
    assert _expand_task_ids("0-4%2") == [0, 1, 2, 3, 4]


def test_array_job_runs_each_task_with_its_environment_and_exit_code(slurm_cluster: SlurmCluster, tmp_path: Path):
    script = tmp_path / "echo.sbatch"
    script.write_text(ECHO_SCRIPT)
    job = slurm_cluster.submit_array(
        script, 3, args=["two words"], env={"COLOUR": "green"}, options=["--output=task-%a.log"], cwd=tmp_path
    )
    states = slurm_cluster.wait(job, timeout=60)

    assert states == {0: ("COMPLETED", 0), 1: ("FAILED", 3), 2: ("COMPLETED", 0)}
    logs = slurm_cluster.task_logs(job)
    assert logs == {task: tmp_path / f"task-{task}.log" for task in range(3)}
    for task, path in logs.items():
        log = path.read_text()
        assert log == f"task={task} count=3 cwd={tmp_path} arg1=[two words] colour=green\n"


def test_shutdown_with_jobs_still_running_leaves_nothing(slurm_installed: None, tmp_path: Path):
    """What the fixture does when a test fails mid-job: shutdown cancels the jobs and stops everything."""
    script = tmp_path / "sleep.sbatch"
    script.write_text("#!/bin/bash\nsleep 600\n")
    cluster = SlurmCluster(tmp_path)
    try:
        cluster.start()
        job = cluster.submit_array(script, 2, options=["--output=/dev/null"], cwd=tmp_path)
        deadline = time.monotonic() + 30
        while cluster.job_states(job) != {0: ("RUNNING", 0), 1: ("RUNNING", 0)} and time.monotonic() < deadline:
            time.sleep(0.2)
        # RUNNING comes before each job's shell has started its `sleep` (seen on a loaded machine): wait for both
        running = {pid: _command(pid) for pid in cluster.leftover_pids()}
        while [c.split(" ")[0] for c in running.values()].count("sleep") < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
            running = {pid: _command(pid) for pid in cluster.leftover_pids()}
    finally:
        killed = cluster.shutdown()

    assert killed == []
    # the processes found were the cluster's: both daemons and both jobs' processes, among others
    commands = [command.split(" ")[0] for command in running.values()]
    assert commands.count("slurmctld") == commands.count("slurmd") == 1 and commands.count("sleep") == 2
    assert [pid for pid in running if is_running(pid)] == []


def _command(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
