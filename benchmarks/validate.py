"""How long `pipeline validate` takes on a large pipeline, against loading the same YAML alone.

A generated pipeline of 500 units (100 lanes of files -> identity x3 -> JSON-lines sink, with
parameters, resources and retries) is validated end to end: reading the file, the
position-keeping load, the shape, every unit's params, that each unit's runtime module is
installed (found, never imported), the graph. The peer is ruamel.yaml's
own safe loader reading the same text (what any YAML-reading tool pays at least). Goal: the
median end to end under 1 s.

    python benchmarks/validate.py [--units 500] [--repeat 15] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path


def generate(units: int) -> str:
    lanes = max(1, units // 5)
    lines = [
        "# yaml-language-server: $schema=../schemas/pipeline.schema.json",
        "pipeline: benchmark",
        "description: a generated pipeline",
        "transport: {embedded: {path: .pipeline-data}}",
        "units:",
    ]
    for lane in range(lanes):
        lines += [
            f"  files-{lane}:",
            "    unit: core.files",
            "    params:",
            f"      directory: data/lane-{lane}",
            '      pattern: "*.h5"',
            "      watch: true",
            "      settle_seconds: 0.5",
            f"    outputs: {{files: raw-{lane}}}",
            "    resources: {cpu: 200, memory: 128}",
        ]
        previous = f"raw-{lane}"
        for step in range(3):
            lines += [
                f"  copy-{lane}-{step}:",
                "    unit: core.identity",
                f"    inputs: {{input: {previous}}}",
                f"    outputs: {{output: step-{lane}-{step}}}",
                "    replicas: 2",
                "    retry: {attempts: 3, delay: 0.5}",
            ]
            previous = f"step-{lane}-{step}"
        lines += [
            f"  sink-{lane}:",
            "    unit: core.jsonl-sink",
            f"    params: {{path: results/lane-{lane}.jsonl, payload: text}}",
            f"    inputs: {{messages: {previous}}}",
        ]
    lines += ["deploy:", "  nomad: {datacenters: ['*'], driver: raw_exec}", ""]
    return "\n".join(lines)


def _median(fn, repeat: int) -> float:
    fn()  # warm up: imports, schema builds
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    from ruamel.yaml import YAML

    from asapo_pipelines.catalog import Catalog
    from asapo_pipelines.pipeline import validate_file

    text = generate(args.units)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "benchmark.pipeline.yaml"
        path.write_text(text)
        catalog = Catalog.load()
        # runtimes: the modules are looked up, as `pipeline validate` looks them up
        report = validate_file(path, catalog, runtimes=True)
        if not report.ok or report.problems:
            print(report.text(), file=sys.stderr)
            return 1

        def yaml_alone() -> None:
            YAML(typ="safe", pure=True).load(path.read_text())

        def validate() -> None:
            validate_file(path, catalog, runtimes=True)

        load = _median(yaml_alone, args.repeat)
        full = _median(validate, args.repeat)
        catalog_load = _median(Catalog.load, args.repeat)
    result = {
        "benchmark": "validate",
        "units": args.units,
        "bytes": len(text.encode()),
        "repeat": args.repeat,
        "yaml_load_median_s": round(load, 4),
        "validate_median_s": round(full, 4),
        "catalog_load_median_s": round(catalog_load, 4),
        "ratio_validate_to_yaml_load": round(full / load, 2),
        "goal_s": 1.0,
        "goal_met": full < 1.0,
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{args.units} units, {result['bytes']:,} bytes, median of {args.repeat}:")
        print(f"  YAML load alone (ruamel safe): {load * 1000:8.1f} ms")
        print(f"  pipeline validate, end to end: {full * 1000:8.1f} ms  ({full / load:.2f}x)")
        print(f"  unit catalog load:             {catalog_load * 1000:8.1f} ms")
        print(f"  goal < 1 s: {'met' if full < 1.0 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
