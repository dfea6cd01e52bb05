"""`pipeline reprocess` against the run it replays, and what provenance costs in a NeXus file.

40 scan files (copies of the two bundled P65 repeats under new names) go through the P65
pipeline once with `pipeline run`; then `pipeline reprocess --from r1` replays the stored scan
messages with another agent target. Both are timed in the same process tree on the same
machine; the ratio reprocess/run shows what reading, parsing and sending the files costs (the
reprocess reads no file) next to the processing both do.

Then the spectra of the run are written twice with the NeXus writer, into two scratch files,
once without and once with the entry provenance (`provenance` NXprocess and attributes): the
difference of the file sizes per entry is what provenance adds on disk.

    python benchmarks/reprocess.py [--files 40] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PIPELINE = str(Path(sys.executable).with_name("pipeline"))
SCANS = ("20K_GOE_Fe_K_240.00000.xdi", "20K_GOE_Fe_K_240.00001.xdi")


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASAPO_PIPELINES_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def _timed(args: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    done = subprocess.run(
        [PIPELINE, *args], cwd=cwd, env=_env(), capture_output=True, text=True, check=False
    )
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"pipeline {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return elapsed


def setup(work: Path, files: int) -> None:
    data = work / "data"
    data.mkdir()
    for i in range(files):
        # new names, same sample prefix: one merge group of `files` repeats
        shutil.copy(
            ROOT / "examples" / "data" / SCANS[i % 2], data / f"20K_GOE_Fe_K_240.{i:05d}.xdi"
        )
    text = (ROOT / "examples" / "p65-xas.pipeline.yaml").read_text()
    text = text.replace('pattern: "20K_GOE_*.xdi"', 'pattern: "*.xdi"')
    text = text.replace("max_scans: 20", f"max_scans: {files + 10}")
    (work / "p65-xas.pipeline.yaml").write_text(text)


def provenance_bytes(store: Path, scratch: Path) -> tuple[float, int]:
    """Bytes per entry the provenance adds: the run's spectra written without and with it."""
    from asapo_pipelines_nexus.units import entry_key, entry_provenance
    from asapo_pipelines_nexus.writer import NexusWriter

    from asapo_pipelines.sdk.units import Message
    from asapo_pipelines.transport import open_transport

    messages = []
    with (
        open_transport({"embedded": {"path": str(store), "create": False}}) as t,
        t.consumer("p65-xas.r1.spectra", "bench") as c,
    ):
        for i in range(1, c.stream_info("default").last_id + 1):
            m = c.get_by_id("default", i)
            messages.append(
                Message("spectra", m.data_source, m.stream, m.id, m.payload, m.metadata,
                        timestamp=m.timestamp)
            )  # fmt: skip
    run = {"run": "r1", "pipeline_file": str(store.parent / "p65-xas.pipeline.yaml")}
    sizes = []
    for with_provenance in (False, True):
        path = scratch / f"spectra-{with_provenance}.nxs"
        writer = NexusWriter(path).open()
        for msg in messages:
            body = msg.value
            prov = entry_provenance(msg, body, run) if with_provenance else None
            writer.write("xas/spectrum", body, entry_key(msg), provenance=prov)
        writer.close()
        sizes.append(path.stat().st_size)
    return (sizes[1] - sizes[0]) / len(messages), len(messages)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=40)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-reprocess-") as tmp:
        work = Path(tmp)
        setup(work, args.files)
        run_s = _timed(["run", "p65-xas.pipeline.yaml"], work)
        reprocess_s = _timed(
            ["reprocess", "p65-xas.pipeline.yaml", "--from", "r1",
             "--set", "advisor.target_noise=1.0e-4"], work,
        )  # fmt: skip
        per_entry, entries = provenance_bytes(work / ".pipeline-data", work)
    result = {
        "files": args.files,
        "run_seconds": round(run_s, 2),
        "reprocess_seconds": round(reprocess_s, 2),
        "reprocess_over_run": round(reprocess_s / run_s, 3),
        "provenance_bytes_per_entry": round(per_entry),
        "entries_measured": entries,
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"{args.files} scan files: run {run_s:.1f} s, reprocess {reprocess_s:.1f} s "
          f"(reprocess/run {reprocess_s / run_s:.2f}; the reprocess reads no file)")  # fmt: skip
    print(f"provenance adds {per_entry:.0f} bytes per NeXus entry ({entries} spectra entries)")


if __name__ == "__main__":
    main()
