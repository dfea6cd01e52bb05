"""How long compiling a 100-unit pipeline to its Nomad job takes, against loading and validating
the same file (the step every command pays before compiling), measured in the same run.

The pipeline is generated from the core's units: a directory source, a chain of 98 identity
processors and a JSON-lines sink. Compilation includes building the job plan, the pipeline file
template, and checking the job against the strict Nomad job schema in schemas/. Goal from the
issue: under 1 s. The other goal of the issue, `pipeline run` start-up to first message for a
5-unit pipeline (under 3 s), is measured by benchmarks/local_startup.py.

    python benchmarks/compile.py [--json] [--runs N] [--units N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path


def generate(path: Path, units: int) -> None:
    body: dict = {
        "pipeline": "bench-compile",
        "units": {
            "source": {
                "unit": "core.files",
                "params": {"directory": str(path.parent)},
                "outputs": {"files": "s0"},
            }
        },
        "deploy": {"nomad": {"datacenters": ["dc1"], "driver": "raw_exec"}},
    }
    for i in range(1, units - 1):
        body["units"][f"hop{i}"] = {
            "unit": "core.identity",
            "inputs": {"input": f"s{i - 1}"},
            "outputs": {"output": f"s{i}"},
        }
    body["units"]["sink"] = {
        "unit": "core.jsonl-sink",
        "params": {"path": str(path.parent / "out.jsonl")},
        "inputs": {"messages": f"s{units - 2}"},
    }
    path.write_text(json.dumps(body, indent=1))


def median(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--units", type=int, default=100)
    args = parser.parse_args()

    import jsonschema

    from asapo_pipelines.catalog import Catalog
    from asapo_pipelines.launchplan.compile import compile_pipeline
    from asapo_pipelines.nomad import schema_path
    from asapo_pipelines.pipeline.validate import load_pipeline

    catalog = Catalog.load(strict=True)
    schema_file = schema_path()
    assert schema_file is not None, "schemas/nomad-job.schema.json not found"
    validator = jsonschema.Draft7Validator(json.loads(schema_file.read_text()))

    with tempfile.TemporaryDirectory(prefix="bench-compile-") as tmp:
        path = Path(tmp) / "bench.pipeline.yaml"
        generate(path, args.units)
        pipeline = load_pipeline(path, catalog)

        def compile_and_check() -> dict:
            job = compile_pipeline(pipeline, catalog).job
            validator.validate(job)
            return job

        job = compile_and_check()
        groups = len(job["Job"]["TaskGroups"])
        load_s = median(lambda: load_pipeline(path, catalog), args.runs)
        compile_s = median(compile_and_check, args.runs)
        end_to_end_s = median(lambda: compile_pipeline(load_pipeline(path, catalog), catalog), 3)
        job_bytes = len(json.dumps(job))

    result = {
        "units": args.units,
        "task_groups": groups,
        "job_bytes": job_bytes,
        "compile_s": round(compile_s, 4),
        "load_and_validate_s": round(load_s, 4),
        "compile_over_load": round(compile_s / load_s, 2),
        "load_validate_compile_s": round(end_to_end_s, 4),
        "goal_s": 1.0,
        "goal_met": end_to_end_s < 1.0,
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{args.units}-unit pipeline -> {groups} task groups, {job_bytes} bytes of job JSON")
        print(f"  compile + schema check  {compile_s:.3f} s")
        print(
            f"  load + validate (peer)  {load_s:.3f} s  (compile is x{result['compile_over_load']})"
        )
        print(f"  all three               {end_to_end_s:.3f} s  (goal < 1 s)")
    return 0 if groups == args.units else 1


if __name__ == "__main__":
    sys.exit(main())
