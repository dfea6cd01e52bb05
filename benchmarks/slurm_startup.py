"""How long the 5-unit P65 pipeline takes from deploy to its first processed message on a real
one-node Slurm (started here on loopback, as the Slurm executor's tests start it), against
`pipeline run` with the local executor on the same file, measured in the same run.

"First processed message": the first normalised spectrum in the NeXus file, i.e. a scan read,
normalised with xraylarch and written by the writer. Both sides pay the same worker start-up
(importing xraylarch dominates); the ratio shows what Slurm adds: sbatch per unit, the
scheduler's placement, slurmstepd's job launch, and the executor's watcher.

Both are started as a user would: `pipeline run FILE`, and `pipeline deploy FILE` with a
`deploy: {slurm: ...}` section. Needs root and Debian's slurmctld, slurmd, slurm-client and
munge (see noxfile.py), plus the xas and nexus plugins.

    python benchmarks/slurm_startup.py [--json] [--runs N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PIPELINE = str(Path(sys.executable).with_name("pipeline"))
EXAMPLE = ROOT / "examples" / "p65-xas.pipeline.yaml"


def copy(work: Path, deploy: str | None = None) -> Path:
    """The example and its data in `work`; with `deploy`, that deploy section instead of the
    example's own."""
    work.mkdir(parents=True)
    text = EXAMPLE.read_text()
    if deploy is not None:
        text = text.split("\ndeploy:", 1)[0] + f"\ndeploy:\n{deploy}\n"
    (work / EXAMPLE.name).write_text(text)
    shutil.copytree(EXAMPLE.parent / "data", work / "data")
    return work / EXAMPLE.name


def first_spectrum(nexus: Path, timeout: float = 300) -> float:
    import h5py

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if nexus.exists():
            try:
                with h5py.File(nexus, "r", swmr=True) as f:
                    kinds = [str(e.attrs.get("asapo_content_type")) for e in f.values()]
                if "xas/spectrum" in kinds:
                    return time.time()
            except (OSError, KeyError, AttributeError):
                pass  # the writer is creating the file or an entry (SWMR shows it half-made)
        time.sleep(0.05)
    raise RuntimeError(f"no spectrum in {nexus} within {timeout:g} s")


def measure_local(work: Path) -> float:
    file = copy(work)
    env = {**os.environ, "PATH": f"{Path(PIPELINE).parent}{os.pathsep}{os.environ['PATH']}"}
    t0 = time.time()
    proc = subprocess.Popen(
        [PIPELINE, "run", str(file)],
        cwd=work,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    took = first_spectrum(work / "results" / "p65.nxs") - t0
    proc.wait(timeout=300)
    return took


def measure_slurm(work: Path, env: dict[str, str]) -> float:
    file = copy(work, deploy="  slurm: {poll_interval: 0.5}")
    t0 = time.time()
    subprocess.run(
        [PIPELINE, "deploy", str(file), "--wait", "0"],
        env=env,
        check=True,
        timeout=120,
        stdout=subprocess.DEVNULL,
    )
    took = first_spectrum(work / "results" / "p65.nxs") - t0
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        status = subprocess.run(
            [PIPELINE, "status", str(file), "--json"], env=env, capture_output=True, text=True
        )
        if json.loads(status.stdout or "{}").get("state") in ("complete", "failed"):
            break
        time.sleep(1)
    subprocess.run([PIPELINE, "stop", str(file)], env=env, capture_output=True, timeout=120)
    return took


def main() -> None:
    from asapo_pipelines_slurm.testing import LocalSlurm

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    local_times, slurm_times = [], []
    directory = Path(tempfile.mkdtemp(prefix="asapo-slurm-bench-"))
    work = Path(tempfile.mkdtemp(prefix="asapo-slurm-bench-work-"))
    cluster = LocalSlurm(directory).start()
    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(cluster.conf)
    try:
        for i in range(args.runs):
            local_times.append(measure_local(work / f"local{i}"))
            slurm_times.append(measure_slurm(work / f"slurm{i}", cluster.env))
    finally:
        if previous is None:
            os.environ.pop("SLURM_CONF", None)
        cluster.stop()
        shutil.rmtree(directory, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    local, slurm = statistics.median(local_times), statistics.median(slurm_times)
    result = {
        "runs": args.runs,
        "local_run_to_first_spectrum_s": round(local, 3),
        "slurm_deploy_to_first_spectrum_s": round(slurm, 3),
        "ratio_slurm_over_local": round(slurm / local, 3),
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"P65 pipeline, to the first normalised spectrum (median of {args.runs}):")
    print(f"  local executor (pipeline run)  {local:7.2f} s")
    print(f"  Slurm executor (deploy)        {slurm:7.2f} s")
    print(f"  ratio Slurm / local            {slurm / local:7.2f}")


if __name__ == "__main__":
    main()
