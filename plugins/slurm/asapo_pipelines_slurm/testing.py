"""A real one-node Slurm cluster on 127.0.0.1, for tests and benchmarks.

`LocalSlurm(directory).start()` starts munged (as the ``munge`` user, with its socket and a
fresh key inside ``directory``), slurmctld and slurmd with a generated ``slurm.conf`` (free
loopback ports, state and spool inside ``directory``, accounting off), waits until ``sinfo``
shows the node idle, and ``stop()`` ends the three daemons it started, by pid. Slurm commands
find the cluster through ``SLURM_CONF`` (`LocalSlurm.env`). Needs root (slurmd runs jobs as
their user) and Debian's slurmctld, slurmd, slurm-client and munge packages; when the
daemons cannot start, `SlurmUnavailable` says why, in one sentence.

`slow_completion(seconds)` keeps every job that ends meanwhile COMPLETING for that long (the
cluster's epilog waits), as a busy cluster does after `scancel`: a test then sees what a
command does with jobs Slurm has not ended yet.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

#: The partition of the test cluster; each CPU may be shared by this many jobs, so that a
#: 5-unit pipeline runs on a 2-core machine (its workers mostly wait for messages).
PARTITION = "debug"
SHARE_PER_CPU = 16
DAEMONS = ("munged", "slurmctld", "slurmd", "sinfo", "sbatch", "squeue", "scontrol", "scancel")


class SlurmUnavailable(RuntimeError):
    """The local cluster cannot run on this machine; the message says why."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _memory_mb() -> int:
    with open("/proc/meminfo", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    return 1024  # pragma: no cover - every Linux has MemTotal


class LocalSlurm:
    def __init__(self, directory: Path, node: str | None = None) -> None:
        self.dir = Path(directory)
        #: the machine's short name, where slurmctld runs (it finds itself in SlurmctldHost)
        self.host = socket.gethostname().split(".")[0]
        #: the Slurm name of the one node: the host's, or `node`, as on a site whose Slurm
        #: node names are not their hostnames (slurmd -N runs as that node)
        self.node = node or self.host
        self.conf = self.dir / "slurm.conf"
        self.munge_socket = self.dir / "munge" / "munge.socket"
        self.cpus = os.cpu_count() or 1
        # what slurmd will find; leave headroom so that slurmd's own check passes
        self.memory_mb = max(256, int(_memory_mb() * 0.9))
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def env(self) -> dict[str, str]:
        """The environment of a Slurm command talking to this cluster."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    @contextlib.contextmanager
    def slow_completion(self, seconds: float) -> Iterator[None]:
        """Within the block, each job that ends stays COMPLETING for `seconds`: slurmd runs the
        cluster's epilog (`Epilog=`, which waits while the file below names a time) before it
        lets the job go, as Slurm does on a cluster whose epilog or clean-up takes a while."""
        self._epilog_wait.write_text(f"{seconds:g}\n")
        try:
            yield
        finally:
            self._epilog_wait.unlink(missing_ok=True)

    @property
    def _epilog_wait(self) -> Path:
        return self.dir / "epilog-wait"

    # -- start -------------------------------------------------------------------------------

    def check(self) -> None:
        missing = [tool for tool in DAEMONS if shutil.which(tool) is None]
        if missing:
            raise SlurmUnavailable(
                f"{', '.join(missing)} not found (install Debian's slurmctld, slurmd, "
                "slurm-client and munge)"
            )
        if os.geteuid() != 0:
            raise SlurmUnavailable("starting slurmd needs root (it runs jobs as their user)")
        try:
            pwd.getpwnam("munge")
        except KeyError:
            raise SlurmUnavailable("there is no munge user (install the munge package)") from None

    def start(self, timeout: float = 60.0) -> LocalSlurm:
        self.check()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o755)  # munged checks every directory above its socket
        for parent in self.dir.resolve().parents:
            if not parent.stat().st_mode & 0o001:
                raise SlurmUnavailable(
                    f"munged runs as the munge user and cannot reach {self.dir} through "
                    f"{parent} (mode {parent.stat().st_mode & 0o777:o}); use a folder such as "
                    "one made by tempfile.mkdtemp() in /tmp"
                )
        try:
            self._start_munge()
            self._write_conf()
            self._spawn("slurmctld", ["slurmctld", "-D", "-i", "-f", str(self.conf)])
            self._spawn("slurmd", ["slurmd", "-D", "-N", self.node, "-f", str(self.conf)])
            self._wait_idle(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _start_munge(self) -> None:
        munge_dir = self.munge_socket.parent
        munge_dir.mkdir(exist_ok=True)
        user = pwd.getpwnam("munge")
        key = munge_dir / "munge.key"
        key.write_bytes(os.urandom(1024))
        for path in (munge_dir, key):
            os.chown(path, user.pw_uid, user.pw_gid)
        munge_dir.chmod(0o755)
        key.chmod(0o600)
        argv = [
            "munged",
            "--foreground",
            f"--socket={self.munge_socket}",
            f"--key-file={key}",
            f"--pid-file={munge_dir / 'munged.pid'}",
            f"--log-file={munge_dir / 'munged.log'}",
            f"--seed-file={munge_dir / 'munged.seed'}",
        ]
        self._spawn("munged", argv, user=user.pw_uid, group=grp.getgrgid(user.pw_gid).gr_gid)
        deadline = time.monotonic() + 10
        while not self.munge_socket.exists():
            if self.procs["munged"].poll() is not None or time.monotonic() > deadline:
                raise SlurmUnavailable(f"munged did not start: {self._tail('munged')}")
            time.sleep(0.05)

    def _write_conf(self) -> None:
        for sub in ("state", "spool", "log"):
            (self.dir / sub).mkdir(exist_ok=True)
        d = self.dir
        epilog = d / "epilog.sh"
        wait = self._epilog_wait
        epilog.write_text(f'#!/bin/sh\n[ -f "{wait}" ] && sleep "$(cat "{wait}")"\nexit 0\n')
        epilog.chmod(0o755)
        self.conf.write_text(
            "\n".join(
                [
                    "ClusterName=asapotest",
                    f"SlurmctldHost={self.host}(127.0.0.1)",
                    f"SlurmctldPort={free_port()}",
                    f"SlurmdPort={free_port()}",
                    "SlurmUser=root",
                    "SlurmdUser=root",
                    "AuthType=auth/munge",
                    "CredType=cred/munge",
                    f"AuthInfo=socket={self.munge_socket}",
                    f"StateSaveLocation={d / 'state'}",
                    f"SlurmdSpoolDir={d / 'spool'}",
                    f"SlurmctldPidFile={d / 'slurmctld.pid'}",
                    f"SlurmdPidFile={d / 'slurmd.pid'}",
                    f"SlurmctldLogFile={d / 'log' / 'slurmctld.log'}",
                    f"SlurmdLogFile={d / 'log' / 'slurmd.log'}",
                    "ProctrackType=proctrack/linuxproc",
                    "TaskPlugin=task/none",
                    "JobAcctGatherType=jobacct_gather/none",
                    "AccountingStorageType=accounting_storage/none",
                    "JobCompType=jobcomp/none",
                    "MpiDefault=none",
                    "SchedulerType=sched/backfill",
                    "SelectType=select/cons_tres",
                    "SelectTypeParameters=CR_CPU",
                    "ReturnToService=2",
                    # react within a second: tests wait for jobs to start and end
                    "SchedulerParameters=sched_interval=1",
                    "MessageTimeout=10",
                    f"Epilog={epilog}",  # see slow_completion
                    f"NodeName={self.node} NodeAddr=127.0.0.1 CPUs={self.cpus} "
                    f"RealMemory={self.memory_mb} State=UNKNOWN",
                    f"PartitionName={PARTITION} Nodes={self.node} Default=YES MaxTime=INFINITE "
                    f"State=UP OverSubscribe=FORCE:{SHARE_PER_CPU}",
                    "",
                ]
            ),
            encoding="utf-8",
        )

    def _spawn(self, name: str, argv: list[str], **kwargs: object) -> None:
        log = open(self.dir / f"{name}.out", "wb")  # noqa: SIM115 - the daemon keeps it
        self.procs[name] = subprocess.Popen(  # type: ignore[call-overload]
            argv,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            **kwargs,
        )
        log.close()

    def _tail(self, name: str, lines: int = 3) -> str:
        text = ""
        with contextlib.suppress(OSError):
            text = (self.dir / f"{name}.out").read_text(errors="replace")
        for log in (self.dir / "log").glob(f"{name}.log"):
            with contextlib.suppress(OSError):
                text += log.read_text(errors="replace")
        found = [line for line in text.splitlines() if line.strip()]
        return " | ".join(found[-lines:]) or "no output"

    def _wait_idle(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise SlurmUnavailable(
                        f"{name} exited with code {proc.returncode}: {self._tail(name)}"
                    )
            try:
                out = subprocess.run(
                    ["sinfo", "-h", "-N", "-n", self.node, "-o", "%t"],
                    env=self.env,
                    capture_output=True,
                    text=True,
                    timeout=10,
                )
                state = out.stdout.strip() or out.stderr.strip()
            except subprocess.TimeoutExpired:
                state = "sinfo timed out"
            if state == "idle":
                return
            time.sleep(0.25)
        raise SlurmUnavailable(f"the node did not become idle within {timeout:g} s ({state})")

    # -- stop --------------------------------------------------------------------------------

    def stop(self) -> None:
        """Cancel the jobs left on this cluster, then end the daemons this object started
        (slurmd first), by pid."""
        if "slurmctld" in self.procs and self.procs["slurmctld"].poll() is None:
            self._cancel_all()
        for name in ("slurmd", "slurmctld", "munged"):
            proc = self.procs.pop(name, None)
            if proc is None or proc.poll() is not None:
                continue
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)

    def _cancel_all(self, timeout: float = 15.0) -> None:
        def jobs() -> list[str]:
            out = subprocess.run(
                ["squeue", "--noheader", "--format=%i"],
                env=self.env,
                capture_output=True,
                text=True,
                timeout=10,
            )
            return out.stdout.split()

        with contextlib.suppress(subprocess.TimeoutExpired, OSError):
            left = jobs()
            if left:
                subprocess.run(["scancel", *left], env=self.env, capture_output=True, timeout=10)
            deadline = time.monotonic() + timeout
            while left and time.monotonic() < deadline:
                time.sleep(0.2)
                left = jobs()

    def __enter__(self) -> LocalSlurm:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
