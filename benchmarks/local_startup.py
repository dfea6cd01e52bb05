"""How long `pipeline run` takes from its launch to the first task started, for a 5-group job,
against starting the same 5 task commands directly with subprocess (the peer, same run); and,
when the pipeline model, compiler and worker are installed, from `pipeline run FILE` to the
first message out of a 5-unit core pipeline, against its 5 `pipeline worker` processes started
directly (same run).

Each task writes the time it started into a file as its first statement; both sides pay the
same interpreter start-up for the tasks, so the ratio shows what the local executor adds: the
`pipeline` command's own start-up, reading the job, the allocation layout and NOMAD_* set-up.
The job is a compiled Nomad job (JSON), so the pipeline compiler is not measured here (see
benchmarks/compile.py for that). Goal from the issue: start-up to first message under 3 s.

And, when the XAS and NeXus plugins are installed (issue 17): from `pipeline run` of the P65
example (examples/p65-xas.pipeline.yaml on its two bundled scans) to the first normalised
spectrum in its `spectra` stream, against `python -c "import larch.xafs"` alone (same run): the
import every XAS worker pays, and what the scientist waits for before the first scan. Workers
load only the plugins of the pipeline's units and import their runtime while joining the run.

    python benchmarks/local_startup.py [--json] [--runs N] [--skip-core]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GROUPS = 5
PIPELINE = str(Path(sys.executable).with_name("pipeline"))
TASK = (
    "import os, sys, time\n"
    "open(sys.argv[1] + '/' + os.environ.get('NOMAD_GROUP_NAME', sys.argv[2]), 'w')"
    ".write(repr(time.time()))\n"
)


def job(marks: Path) -> dict:
    return {
        "Job": {
            "ID": "bench",
            "Type": "batch",
            "TaskGroups": [
                {
                    "Name": f"unit{i}",
                    "Count": 1,
                    "RestartPolicy": {"Attempts": 0, "Interval": 10**9, "Delay": 0, "Mode": "fail"},
                    "Tasks": [
                        {
                            "Name": f"unit{i}",
                            "Driver": "raw_exec",
                            "Config": {
                                "command": sys.executable,
                                "args": ["-c", TASK, str(marks), f"unit{i}"],
                            },
                        }
                    ],
                }
                for i in range(GROUPS)
            ],
        }
    }


def first_mark(marks: Path, timeout: float = 60) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stamps = []
        for path in marks.iterdir():
            text = path.read_text()
            if text:
                stamps.append(float(text))
        if stamps:
            return min(stamps)
        time.sleep(0.001)
    raise RuntimeError("no task started")


def measure_run(work: Path) -> float:
    marks = work / "marks"
    marks.mkdir()
    job_file = work / "job.json"
    job_file.write_text(json.dumps(job(marks)))
    t0 = time.time()
    proc = subprocess.Popen(
        [PIPELINE, "run", str(job_file)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    started = first_mark(marks) - t0
    proc.wait(timeout=60)
    return started


def measure_direct(work: Path) -> float:
    marks = work / "marks"
    marks.mkdir()
    t0 = time.time()
    procs = [
        subprocess.Popen([sys.executable, "-c", TASK, str(marks), f"unit{i}"])
        for i in range(GROUPS)
    ]
    started = first_mark(marks) - t0
    for proc in procs:
        proc.wait(timeout=60)
    return started


def pipeline_doc(work: Path) -> Path:
    files = work / "files"
    files.mkdir()
    for i in range(5):
        (files / f"f{i}.txt").write_text(f"file {i}\n")
    units: dict = {
        "files": {
            "unit": "core.files",
            "params": {"directory": str(files)},
            "outputs": {"files": "s0"},
        },
    }
    for i in range(1, 4):
        units[f"copy{i}"] = {
            "unit": "core.identity",
            "inputs": {"input": f"s{i - 1}"},
            "outputs": {"output": f"s{i}"},
        }
    units["sink"] = {
        "unit": "core.jsonl-sink",
        "inputs": {"messages": "s3"},
        "params": {"path": str(work / "out.jsonl")},
    }
    path = work / "bench.pipeline.yaml"
    path.write_text(json.dumps({"pipeline": "bench", "units": units}))
    return path


def first_line(path: Path, timeout: float = 120) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.stat().st_size:
            return time.time()
        time.sleep(0.002)
    raise RuntimeError("no message came out of the pipeline")


def measure_pipeline_run(work: Path) -> float:
    file = pipeline_doc(work)
    t0 = time.time()
    proc = subprocess.Popen(
        [PIPELINE, "run", str(file)], cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    took = first_line(work / "out.jsonl") - t0
    proc.wait(timeout=120)
    return took


def measure_workers(work: Path) -> float:
    file = pipeline_doc(work)
    t0 = time.time()
    procs = [
        subprocess.Popen(
            [PIPELINE, "worker", str(file), unit],
            cwd=work,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for unit in ("files", "copy1", "copy2", "copy3", "sink")
    ]
    took = first_line(work / "out.jsonl") - t0
    for proc in procs:
        proc.wait(timeout=120)
    return took


ROOT = Path(__file__).resolve().parents[1]


def p65_copy(work: Path) -> Path:
    """The P65 example and its two scans in a fresh folder (its own store)."""
    import shutil

    (work / "data").mkdir()
    for scan in sorted((ROOT / "examples" / "data").glob("20K_GOE_*.xdi")):
        shutil.copy(scan, work / "data" / scan.name)
    path = work / "p65-xas.pipeline.yaml"
    shutil.copy(ROOT / "examples" / "p65-xas.pipeline.yaml", path)
    return path


def first_in_stream(
    store: Path, stream: str, proc: subprocess.Popen, timeout: float = 120
) -> float:
    """When the first message appears in the run's data source for `stream`."""
    sys.path.insert(0, str(ROOT / "core"))
    from asapo_pipelines.transport import open_transport

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if store.joinpath("store.json").exists():
            with open_transport({"embedded": {"path": str(store), "create": False}}) as t:
                for source in t.data_sources():
                    if source.endswith("." + stream):
                        with t.consumer(source, "bench-startup") as c:
                            if any(info.last_id for info in c.streams()):
                                return time.time()
        if proc.poll() is not None:
            raise RuntimeError(f"pipeline run ended ({proc.returncode}) before a {stream} message")
        time.sleep(0.01)
    raise RuntimeError(f"no message in {stream}")


def measure_p65(work: Path) -> float:
    file = p65_copy(work)
    t0 = time.time()
    proc = subprocess.Popen(
        [PIPELINE, "run", str(file)], cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        took = first_in_stream(work / ".pipeline-data", "spectra", proc) - t0
        proc.send_signal(signal.SIGINT)  # measured: the rest of the run is not start-up
        proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return took


def measure_larch_import(work: Path) -> float:
    del work
    t0 = time.time()
    subprocess.run([sys.executable, "-c", "import larch.xafs"], check=True)
    return time.time() - t0


def has_xas() -> bool:
    import importlib.util

    return all(
        importlib.util.find_spec(m) is not None
        for m in ("asapo_pipelines_xas", "asapo_pipelines_nexus", "larch")
    )


def has_pipeline_parts() -> bool:
    import importlib.util

    return all(
        importlib.util.find_spec(m) is not None
        for m in (
            "asapo_pipelines.pipeline",
            "asapo_pipelines.launchplan",
            "asapo_pipelines.worker",
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--skip-core", action="store_true", help="only the P65 start-up against import larch"
    )
    args = parser.parse_args()
    run_times, direct_times = [], []
    p65_times: list[float] = []
    larch_times: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        if has_xas():
            for i in range(args.runs):
                for name, fn, out in (
                    ("p65", measure_p65, p65_times),
                    ("larch", measure_larch_import, larch_times),
                ):
                    work = Path(tmp) / f"{name}{i}"
                    work.mkdir()
                    out.append(fn(work))
        if args.skip_core:
            report_p65(p65_times, larch_times, args)
            return
        for i in range(args.runs):
            for name, fn, out in (
                ("run", measure_run, run_times),
                ("direct", measure_direct, direct_times),
            ):
                work = Path(tmp) / f"{name}{i}"
                work.mkdir()
                out.append(fn(work))
        pipe_times: list[float] = []
        worker_times: list[float] = []
        if has_pipeline_parts() and not args.skip_core:
            for i in range(args.runs):
                for name, fn, out in (
                    ("prun", measure_pipeline_run, pipe_times),
                    ("workers", measure_workers, worker_times),
                ):
                    work = Path(tmp) / f"{name}{i}"
                    work.mkdir()
                    out.append(fn(work))
    run_s, direct_s = statistics.median(run_times), statistics.median(direct_times)
    result = {
        "benchmark": "local_startup",
        "groups": GROUPS,
        "runs": args.runs,
        "pipeline_run_to_first_task_s": round(run_s, 4),
        "direct_subprocess_to_first_task_s": round(direct_s, 4),
        "ratio": round(run_s / direct_s, 2),
        "goal_s": 3.0,
        "cpus": os.cpu_count(),
    }
    if pipe_times:
        pipe_s, workers_s = statistics.median(pipe_times), statistics.median(worker_times)
        result.update(
            pipeline_run_to_first_message_s=round(pipe_s, 4),
            workers_direct_to_first_message_s=round(workers_s, 4),
            first_message_ratio=round(pipe_s / workers_s, 2),
        )
    if p65_times:
        result.update(p65_result(p65_times, larch_times))
    if args.json:
        print(json.dumps(result))
        return
    print_p65(result)
    print(
        f"`pipeline run` to first of {GROUPS} tasks started: {run_s * 1000:.0f} ms (median "
        f"of {args.runs})"
    )
    print(f"subprocess.Popen of the same commands:     {direct_s * 1000:.0f} ms")
    print(f"ratio: {result['ratio']}x")
    if pipe_times:
        print(f"`pipeline run FILE` to first message out of 5 units: {pipe_s * 1000:.0f} ms")
        print(f"the 5 `pipeline worker` processes started directly: {workers_s * 1000:.0f} ms")
        print(f"ratio: {result['first_message_ratio']}x   goal: under {result['goal_s']:g} s")


def p65_result(p65_times: list[float], larch_times: list[float]) -> dict:
    p65_s, larch_s = statistics.median(p65_times), statistics.median(larch_times)
    return {
        "p65_run_to_first_spectrum_s": round(p65_s, 3),
        "import_larch_xafs_s": round(larch_s, 3),
        "p65_first_spectrum_vs_import_larch": round(p65_s / larch_s, 2),
    }


def print_p65(result: dict) -> None:
    if "p65_run_to_first_spectrum_s" not in result:
        return
    print(
        f"`pipeline run` of the P65 example to its first spectrum: "
        f"{result['p65_run_to_first_spectrum_s'] * 1000:.0f} ms"
    )
    print(f'`python -c "import larch.xafs"`: {result["import_larch_xafs_s"] * 1000:.0f} ms')
    print(f"ratio: {result['p65_first_spectrum_vs_import_larch']}x")


def report_p65(p65_times: list[float], larch_times: list[float], args: argparse.Namespace) -> None:
    result = {"benchmark": "local_startup", "runs": args.runs, "cpus": os.cpu_count()}
    if p65_times:
        result.update(p65_result(p65_times, larch_times))
    if args.json:
        print(json.dumps(result))
    else:
        print_p65(result)


if __name__ == "__main__":
    main()
