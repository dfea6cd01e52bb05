"""Slurm's command-line tools, each call under a deadline, their failures as one sentence.

Every call inherits the caller's environment, so ``SLURM_CONF`` (and the site's PATH or module
setup) choose the cluster exactly as for a user typing the commands.
"""

from __future__ import annotations

import difflib
import os
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from typing import Any

from asapo_pipelines.sdk import ExecutorUnreachable, PipelinesError, SubmissionFailed

#: How long one Slurm command may take: the controller's own MessageTimeout is 10 s by
#: default, and a command retries once or twice before it gives up.
TIMEOUT = 45.0
#: What the tools print when they cannot reach slurmctld (Slurm 20 to 24).
_UNREACHABLE = re.compile(
    r"Unable to contact slurm controller|Socket timed out|Connection refused|"
    r"Zero Bytes were transmitted|Communication connection failure",
    re.IGNORECASE,
)


#: What the tools print when no cluster is configured on this host (no slurm.conf, no
#: configuration server), or the configuration file cannot be read.
_UNCONFIGURED = re.compile(
    r"Could not establish a configuration source|Unable to process configuration file",
    re.IGNORECASE,
)


class SlurmError(PipelinesError):
    """Slurm refused or could not be asked; the message is the one sentence to show."""


class SlurmFailed(SlurmError, SubmissionFailed):
    """`deploy` or `start` failed as a unit failed for good within the wait (its sentence),
    with the document the command would have returned (`result`: `failed`, instance -> why),
    which the core prints under --json before the error (`SubmissionFailed`)."""

    def __init__(self, message: str, result: dict[str, Any]) -> None:
        SubmissionFailed.__init__(self, message, result)


class SlurmOffline(SlurmError, ExecutorUnreachable):
    """The cluster cannot be asked from here: its tools are missing or not configured, or its
    controller does not answer. `pipeline plan` goes on without its checks then."""


class SlurmUnreachable(SlurmOffline):
    pass


class NoSuchPartition(SlurmError):
    pass


class SlurmRejected(SlurmError):
    pass


def reason(stderr: str) -> str:
    """Slurm's own words from a tool's error output, without the `tool: error:` prefixes."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    cleaned = [re.sub(r"^(\w+: )?(error: )+", "", line) for line in lines]
    cleaned = [re.sub(r"^Batch job submission failed: ", "", line) for line in cleaned]
    text = "; ".join(line for line in cleaned if line)
    return text.rstrip(".") or "no reason given"


def run(
    argv: Sequence[str],
    *,
    timeout: float = TIMEOUT,
    env: Mapping[str, str] | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run a Slurm tool; raises `SlurmError` when it is missing, hangs, cannot reach the
    controller, or (with ``check``) exits non-zero."""
    tool = argv[0]
    environ = env or os.environ
    if shutil.which(tool, path=environ.get("PATH")) is None:
        raise SlurmOffline(
            f"the Slurm command {tool} is not on PATH; run on a login node of the cluster "
            "(or install the Slurm client tools, e.g. Debian's slurm-client)"
        )
    conf = environ.get("SLURM_CONF")
    # checked here: the tools retry a missing configuration file (or an empty name) for a
    # minute before they fail
    if conf is not None and not os.path.isfile(conf):
        raise SlurmOffline(f"SLURM_CONF names {conf!r}, which is not a file")
    try:
        done = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise SlurmUnreachable(
            f"the Slurm controller did not answer {tool} within {timeout:g} s; check that "
            "slurmctld is up (`scontrol ping`)"
        ) from None
    except OSError as exc:
        raise SlurmError(f"cannot run the Slurm command {tool}: {exc.strerror}") from None
    if done.returncode != 0 and _UNCONFIGURED.search(done.stderr):
        raise SlurmOffline(
            "no Slurm cluster is configured on this host (no slurm.conf and no configuration "
            "server found); set SLURM_CONF or run on a login node of the cluster"
        )
    if done.returncode != 0 and _UNREACHABLE.search(done.stderr):
        raise SlurmUnreachable(
            f"the Slurm controller is unreachable ({reason(done.stderr)}); check SLURM_CONF "
            "and that slurmctld is up (`scontrol ping`)"
        )
    if check and done.returncode != 0:
        raise SlurmError(f"{tool} failed: {reason(done.stderr or done.stdout)}")
    return done


def check_partition(partition: str | None) -> dict[str, str]:
    """The partition's settings (`scontrol show partition`: State, MaxTime, Nodes...), empty
    without a partition; `NoSuchPartition` in one sentence naming the ones that exist."""
    if partition is None:
        return {}
    done = run(["scontrol", "show", "partition", partition, "--oneliner"], check=False)
    fields = _fields(done.stdout) if done.returncode == 0 else {}
    if fields.get("PartitionName") == partition:
        return fields
    listed = sorted(set(run(["sinfo", "--noheader", "--format=%R"], check=False).stdout.split()))
    near = difflib.get_close_matches(partition, listed, n=1)
    hint = f"did you mean {near[0]}? " if near else ""
    known = ", ".join(listed) or "none"
    raise NoSuchPartition(f"Slurm has no partition {partition!r} ({hint}its partitions: {known})")


def _fields(oneliner: str) -> dict[str, str]:
    """`Key=value` tokens of a `scontrol show ... --oneliner` line; the first of each key."""
    fields: dict[str, str] = {}
    for token in oneliner.split():
        key, sep, value = token.partition("=")
        if sep and key not in fields:
            fields[key] = value
    return fields


def sbatch(argv: Sequence[str], what: str) -> str:
    """Submit; returns the job id. A refusal quotes Slurm's reason."""
    done = run(["sbatch", "--parsable", *argv], check=False)
    if done.returncode != 0:
        raise SlurmRejected(f"Slurm rejected the job of {what}: {reason(done.stderr)}")
    # --parsable prints `<id>` or `<id>;<cluster>`
    job_id = done.stdout.strip().split(";", 1)[0]
    if not job_id.isdigit():
        raise SlurmError(f"sbatch answered {done.stdout.strip()!r} instead of a job id")
    return job_id


#: squeue's fields, `|`-separated: job id, name, state, reason, node list.
_SQUEUE_FORMAT = "%i|%j|%T|%r|%N"


def queue(job_ids: Sequence[str]) -> dict[str, dict[str, str]]:
    """job id -> {name, state, reason, nodes} for the jobs slurmctld still knows (running,
    pending, and recently ended ones; finished jobs are forgotten after MinJobAge)."""
    if not job_ids:
        return {}
    done = run(
        [
            "squeue",
            "--noheader",
            "--states=all",
            f"--jobs={','.join(job_ids)}",
            f"--format={_SQUEUE_FORMAT}",
        ],
        check=False,
    )
    if done.returncode != 0:
        if "Invalid job id" in done.stderr:
            return {}  # none of them is known any more
        raise SlurmError(f"squeue failed: {reason(done.stderr)}")
    out: dict[str, dict[str, str]] = {}
    for line in done.stdout.splitlines():
        parts = line.split("|")
        if len(parts) != 5:
            continue
        job, name, state, why, nodes = parts
        out[job] = {"name": name, "state": state, "reason": why, "nodes": nodes}
    return out


#: squeue's reasons for a pending job that cannot start as the cluster is set up: waiting does
#: not help, an administrator or a changed request does (Slurm's "Job Reason Codes"). Reasons
#: that pass by themselves (Resources, Priority, BeginTime, Dependency, a node rebooting:
#: ReqNodeNotAvail, an aggregate limit: AssocGrp*, QOSGrp*) are not here: such a job is pending.
NEVER_STARTS = {
    "PartitionConfig": "it asks for more CPUs, memory or GPUs than a node of its partition "
    "has, or the partition has no nodes",
    "PartitionDown": "its partition is down",
    "PartitionInactive": "its partition is inactive",
    "PartitionNodeLimit": "it asks for more nodes than its partition allows, or the "
    "partition's nodes are down or drained",
    "PartitionTimeLimit": "its time limit is longer than its partition's",
    "BadConstraints": "no node has the features its constraint asks for",
    "InvalidAccount": "its account is not valid",
    "AccountNotAllowed": "its account may not use the partition",
    "InvalidQOS": "its QOS is not valid",
    "QOSNotAllowed": "its QOS may not be used in the partition",
    "DependencyNeverSatisfied": "a job it depends on can no longer satisfy the dependency",
}
#: A job over a per-job maximum of its association or QOS (e.g. QOSMaxWallDurationPerJobLimit)
#: never fits; the per-user and aggregate limits (QOSMaxJobsPerUserLimit) pass.
_PER_JOB_LIMIT = re.compile(r"^(Assoc|QOS)Max\w*PerJob")


def never_starts(reason: str) -> str | None:
    """Why a job pending for squeue's `reason` cannot start, or None when it may (waiting for
    resources, priority, a start time)."""
    code = reason.split(",", 1)[0].strip()  # `ReqNodeNotAvail, UnavailableNodes:...`
    if code in NEVER_STARTS:
        return NEVER_STARTS[code]
    if _PER_JOB_LIMIT.match(code):
        return "it asks for more than a single job of its account or QOS may have"
    return None


def job_details(job_id: str) -> dict[str, str] | None:
    """`scontrol show job` as a dict (JobState, ExitCode, Reason...), None when forgotten."""
    done = run(["scontrol", "show", "job", job_id, "--oneliner"], check=False)
    if done.returncode != 0:
        if "Invalid job id" in done.stderr:
            return None
        raise SlurmError(f"scontrol show job {job_id} failed: {reason(done.stderr)}")
    return _fields(done.stdout)


def jobs_of(scripts: Mapping[str, str]) -> list[str]:
    """Ids of this user's pending or running jobs of one deployment, given as job name -> its
    script. The name alone is not the deployment's: two folders (or two files) deploying
    pipelines of one `pipeline:` name submit jobs of the same names, and a `stop` of the one
    cancelled the other's. A job's command (`%o`, the script sbatch was given) lies in its
    deployment's state directory, so it is."""
    if not scripts:
        return []
    done = run(
        [
            "squeue",
            "--noheader",
            "--me",
            "--states=PENDING,RUNNING,CONFIGURING,SUSPENDED,REQUEUED",
            f"--name={','.join(scripts)}",
            "--format=%i|%j|%o",
        ],
        check=False,
    )
    if done.returncode != 0:
        raise SlurmError(f"squeue failed: {reason(done.stderr)}")
    mine = []
    for line in done.stdout.splitlines():
        job, name, command = [*line.split("|", 2), "", ""][:3]
        if scripts.get(name) == command:
            mine.append(job)
    return mine


def scancel(job_ids: Sequence[str]) -> None:
    if not job_ids:
        return
    done = run(["scancel", *job_ids], check=False)
    # a job that ended meanwhile is not an error for us
    if done.returncode != 0 and "Invalid job id" not in done.stderr:
        raise SlurmError(f"scancel failed: {reason(done.stderr)}")
