"""A real one-node SLURM cluster for tests, run as child processes of the test.

Users run extraction as a SLURM job array; the only way to know that the shipped sbatch script
works (environment, working directory, logs, exit codes) is to submit it to the real scheduler.
Debian's SLURM starts as a one-node cluster in about a second: ``slurmctld`` and ``slurmd`` run in
the foreground (``-D``) as children of the test, with their configuration, state, spool and logs in
a temporary directory and ports chosen free at runtime, so nothing goes to /etc and two test runs
on one machine do not collide. No munge daemon is needed: SLURM 22.05 ships ``auth/none``.

Every process of one cluster (daemons, step daemons, job scripts) carries ``MARKER_ENV`` in its
environment, so the test can prove that nothing of *its* cluster outlives it without mistaking
another run's cluster for its own.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from tests.helpers.shared import free_port

#: Where Debian puts the daemons; often not on a normal user's PATH.
_SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])
#: Binaries the cluster needs (packages slurmctld, slurmd, slurm-client).
REQUIRED_BINARIES = ("slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scontrol")
#: Environment variable carried by every process of one cluster; its value is the cluster's directory.
MARKER_ENV = "RAT7M_TEST_SLURM_CLUSTER"
#: Set this variable (CI should) to make a missing SLURM installation a test failure, not a skip.
REQUIRE_ENV = "RAT7M_REQUIRE_SLURM"
#: Job states after which a task no longer runs (see ``man squeue``, JOB STATE CODES).
FINAL_STATES = frozenset(
    {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE", "PREEMPTED"}
)
#: Resources the node advertises; ``SlurmdParameters=config_overrides`` lets them exceed the real
#: machine, so a script asking for a realistic ``--mem`` or ``--cpus-per-task`` is still accepted.
NODE_CPUS = 16
NODE_MEMORY_MB = 64000

_CONFIG = """\
ClusterName=rat7mtest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser={user}
SlurmdUser={user}
AuthType=auth/none
CredType=cred/none
MpiDefault=none
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
SlurmdParameters=config_overrides
MinJobAge=600
KillWait=2
SchedulerParameters=sched_interval=1
StateSaveLocation={dir}/state
SlurmdSpoolDir={dir}/spool
SlurmctldPidFile={dir}/slurmctld.pid
SlurmdPidFile={dir}/slurmd.pid
SlurmctldLogFile={dir}/slurmctld.log
SlurmdLogFile={dir}/slurmd.log
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory} State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


class SlurmError(RuntimeError):
    """The test cluster did not start, refused a command, or a job did not finish in time."""


def missing_binaries() -> list[str]:
    """Return the SLURM binaries not installed here (empty when a cluster can run)."""
    return [name for name in REQUIRED_BINARIES if shutil.which(name, path=_SEARCH_PATH) is None]


def is_running(pid: int) -> bool:
    """True if process ``pid`` exists and is not a zombie (exited, waiting to be reaped)."""
    try:
        return "\nState:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False


class SlurmCluster:
    """slurmctld + slurmd on this machine, configured under ``directory``.

    Use as a context manager: the cluster is shut down and its daemons waited for on exit,
    whatever happened inside.

    Args:
        directory: an empty directory for configuration, state, spool and daemon logs.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.config_path = self.directory / "slurm.conf"
        self.host = socket.gethostname().split(".")[0]
        self._daemons: list[subprocess.Popen] = []
        # Variables of a SLURM job the tests may themselves run in would leak into sbatch here.
        outside = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_", "SRUN_"))}
        self.env = {
            **outside,
            "PATH": _SEARCH_PATH,
            "SLURM_CONF": str(self.config_path),
            MARKER_ENV: str(self.directory),
        }

    def __enter__(self) -> SlurmCluster:
        try:
            self.start()
        except BaseException:
            self.shutdown()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()

    def start(self, timeout: float = 30.0) -> None:
        """Write the configuration, start both daemons and wait until the node is idle.

        Raises:
            SlurmError: a daemon exited or the node was not idle within ``timeout`` seconds
                (the message carries the end of both daemon logs).
        """
        for sub in ("state", "spool"):
            (self.directory / sub).mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(
            _CONFIG.format(
                host=self.host,
                ctld_port=free_port(),
                slurmd_port=free_port(),
                user=pwd.getpwuid(os.getuid()).pw_name,
                dir=self.directory,
                cpus=NODE_CPUS,
                memory=NODE_MEMORY_MB,
            )
        )
        # -D: stay in the foreground, so these are our children and can be waited for;
        # -i: ignore state left by an earlier run (there is none, but say so).
        self._spawn(["slurmctld", "-D", "-i", "-f", str(self.config_path)], "slurmctld.out")
        self._spawn(["slurmd", "-D", "-N", self.host, "-f", str(self.config_path)], "slurmd.out")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for daemon in self._daemons:
                if daemon.poll() is not None:
                    raise SlurmError(f"{daemon.args[0]} exited with {daemon.returncode}\n{self.daemon_logs()}")
            state = self._run(["sinfo", "-h", "-o", "%T"], check=False).stdout.strip()
            if state == "idle":
                return
            time.sleep(0.2)
        raise SlurmError(f"the node was not idle after {timeout:.0f} s (sinfo says {state!r})\n{self.daemon_logs()}")

    def _spawn(self, command: list[str], output_name: str) -> None:
        with open(self.directory / output_name, "wb") as output:
            self._daemons.append(
                subprocess.Popen(
                    command,
                    env=self.env,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    cwd=self.directory,
                    preexec_fn=_stop_with_parent,
                )
            )

    def _run(self, command: Sequence[str], check: bool = True, **kwargs: object) -> subprocess.CompletedProcess:
        kwargs.setdefault("env", self.env)
        result = subprocess.run(command, capture_output=True, text=True, timeout=30, **kwargs)
        if check and result.returncode != 0:
            raise SlurmError(f"{' '.join(command)} failed ({result.returncode}): {result.stderr.strip()}")
        return result

    def submit_array(
        self,
        script: Path,
        n_tasks: int,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        options: Sequence[str] = (),
        cwd: Path | None = None,
    ) -> str:
        """Submit ``script`` as an array of ``n_tasks`` tasks, as a user would with sbatch.

        Args:
            script: the batch script.
            n_tasks: array size; task ids are 0 .. n_tasks - 1.
            args: arguments after the script name (the script's ``$1``, ``$2``...).
            env: variables added to the submitting environment (sbatch exports it to the job).
            options: further sbatch options, e.g. ``["--output=logs/%A_%a.out"]``.
            cwd: the directory sbatch runs in, which becomes the job's working directory.

        Returns:
            The array's job id.
        """
        command = ["sbatch", "--parsable", f"--array=0-{n_tasks - 1}", *options, str(script), *args]
        result = self._run(command, env={**self.env, **(env or {})}, cwd=cwd)
        return result.stdout.strip().split(";")[0]

    def job_states(self, job_id: str) -> dict[int, tuple[str, int]]:
        """Return ``{task_id: (state, exit_code)}`` for an array job, from ``scontrol show job``."""
        return {
            task: (fields["JobState"], int(fields["ExitCode"].split(":")[0]))
            for task, fields in self._task_records(job_id).items()
        }

    def task_logs(self, job_id: str) -> dict[int, Path]:
        """Return ``{task_id: path of its output file}``, as SLURM expanded the job's ``--output``."""
        return {task: Path(fields["StdOut"]) for task, fields in self._task_records(job_id).items()}

    def _task_records(self, job_id: str) -> dict[int, dict[str, str]]:
        """``scontrol show job`` as ``{task_id: {field: value}}``.

        Tasks not yet started are folded into one record by SLURM (``ArrayTaskId=1-2``); they are
        expanded here so every task id appears.
        """
        records: dict[int, dict[str, str]] = {}
        for line in self._run(["scontrol", "-o", "show", "job", job_id]).stdout.splitlines():
            fields = dict(re.findall(r"(\w+)=(\S*)", line))
            for task in _expand_task_ids(fields.get("ArrayTaskId", "")):
                records[task] = fields
        return records

    def wait(self, job_id: str, timeout: float = 60.0) -> dict[int, tuple[str, int]]:
        """Wait until every task of ``job_id`` has ended; return :meth:`job_states`.

        Raises:
            SlurmError: still running after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            states = self.job_states(job_id)
            if states and all(state in FINAL_STATES for state, _ in states.values()):
                return states
            if time.monotonic() > deadline:
                raise SlurmError(f"job {job_id} not finished after {timeout:.0f} s: {states}\n{self.daemon_logs()}")
            time.sleep(0.2)

    def daemon_logs(self, lines: int = 15) -> str:
        """The last lines of each daemon's log, for error messages."""
        parts = []
        for name in ("slurmctld.log", "slurmd.log", "slurmctld.out", "slurmd.out"):
            path = self.directory / name
            if path.exists():
                tail = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {name}\n" + "\n".join(tail))
        return "\n".join(parts)

    def shutdown(self, timeout: float = 20.0) -> list[int]:
        """Stop the cluster and wait for its daemons; kill whatever of it is left.

        Jobs still running (a failed test may leave some) are cancelled, then ``scontrol shutdown``
        asks both daemons to stop, or SIGTERM does if the controller is not there to pass the word
        on. A daemon still alive after ``timeout`` seconds, and any step or job process of this
        cluster still running then, is killed.

        Returns:
            The PIDs that had to be killed: empty after a clean shutdown.
        """
        deadline = time.monotonic() + timeout
        try:
            if self._daemons and self._daemons[0].poll() is None:  # the controller is up
                self._run(["scancel", "--partition=debug"], check=False)
                while self._run(["squeue", "-h"], check=False).stdout.strip() and time.monotonic() < deadline - 5:
                    time.sleep(0.2)
                self._run(["scontrol", "shutdown"], check=False)
            else:
                for daemon in self._daemons:
                    if daemon.poll() is None:
                        daemon.terminate()
        except subprocess.TimeoutExpired:
            pass  # the controller does not answer: its daemons are killed below
        killed = []
        for daemon in self._daemons:
            try:
                daemon.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()
                killed.append(daemon.pid)
        self._daemons.clear()
        # Step daemons are not our children: give them a moment to exit on their own.
        while (leftovers := self.leftover_pids()) and time.monotonic() < deadline:
            time.sleep(0.2)
        for pid in leftovers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            killed.append(pid)
        return killed

    def leftover_pids(self) -> list[int]:
        """PIDs of running processes that belong to this cluster (found by ``MARKER_ENV``)."""
        marker = f"{MARKER_ENV}={self.directory}".encode()
        pids = []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit() or int(proc.name) == os.getpid():
                continue
            try:
                environ = (proc / "environ").read_bytes().split(b"\0")
            except OSError:
                continue  # gone already, or not ours to read
            if marker in environ and is_running(int(proc.name)):
                pids.append(int(proc.name))
        return pids


def _stop_with_parent() -> None:
    """Ask the kernel to send SIGTERM to this child when its parent dies (Linux ``PR_SET_PDEATHSIG``).

    A test run killed outright (SIGKILL, a hard timeout) gets no chance to shut the cluster down;
    the daemons then stop on their own instead of lingering.
    """
    pr_set_pdeathsig = 1
    ctypes.CDLL(None).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _expand_task_ids(text: str) -> list[int]:
    """``"0"`` -> [0]; ``"1-3,5"`` -> [1, 2, 3, 5]; ``"0-5%2"`` (throttled) -> [0..5]."""
    ids: list[int] = []
    for part in text.split("%")[0].split(","):
        if not part:
            continue
        first, _, last = part.partition("-")
        ids.extend(range(int(first), int(last or first) + 1))
    return ids


@pytest.fixture(scope="session")
def slurm_installed() -> None:
    """Skip where SLURM is not installed, unless ``REQUIRE_ENV`` is set (then fail: CI must run these)."""
    missing = missing_binaries()
    if missing:
        msg = f"SLURM is not installed (no {', '.join(missing)}): apt-get install slurmctld slurmd slurm-client"
        if os.environ.get(REQUIRE_ENV):
            pytest.fail(f"{msg}, and {REQUIRE_ENV} is set")
        pytest.skip(msg)


@pytest.fixture(scope="module")
def slurm_cluster(slurm_installed: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    """A running one-node cluster shared by one test module, shut down after it whatever happens.

    A cluster that is installed but does not start is an error, not a skip. Teardown fails if
    anything of the cluster had to be killed.
    """
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    try:
        cluster.start()
        yield cluster
    finally:
        killed = cluster.shutdown()
    assert not killed, f"processes of the test cluster outlived its shutdown and were killed: {killed}"
