"""Sustained throughput and disk use of the embedded store over a long run, retention on.

4 MiB messages go through a chain of 3 `core.identity` workers (each its own process, as
`pipeline run` starts them) on a store in a tmpfs (/dev/shm when there is one). The source sends
scans (streams) of `--per-stream` messages one after another, each naming the next, and stays
at most `--ahead` scans ahead of the end of the chain (as a detector is paced by its scans); a
reader at the end takes and acknowledges everything. The store's retention policy
(`transport: {embedded: {retention: {max_streams: N}}}`) removes scans every reader is done with.

Reported per interval (a minute by default): GB/s delivered at the end of the chain and the
store's size on disk. Goal (issue 17): throughput flat within 10 % (the slowest interval at
least 0.9x the median; the first interval, which pays the start-up, is left out), the store's
size bounded (its mean size over the second half of the run no more than 1.1x its mean over the
first half: no trend; single readings swing with the scans in flight).

    python benchmarks/soak.py [--minutes 10] [--interval 60] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "core"))

from asapo_pipelines.transport import NoData, StreamFinished, open_transport  # noqa: E402

MESSAGE = 4 * 2**20
HOPS = 3


def spec(store: Path, keep: int) -> dict[str, Any]:
    return {"embedded": {"path": str(store), "retention": {"max_streams": keep}}}


def stream_name(n: int) -> str:
    return "default" if n == 0 else f"scan-{n:06d}"


def source(store: Path, keep: int, per_stream: int, ahead: int, done: Any, stop: Any) -> None:
    payload = os.urandom(MESSAGE)
    with open_transport(spec(store, keep)) as t, t.producer("s0") as p:
        n = 0
        while True:
            while n - done.value >= ahead and not stop.is_set():
                time.sleep(0.002)
            name = stream_name(n)
            for i in range(per_stream):
                p.send(name, payload, {"format": "bytes", "i": i})
            last = stop.is_set()
            p.finish_stream(name, next_stream=None if last else stream_name(n + 1))
            if last:
                return
            n += 1


def hop(store: Path, keep: int, index: int) -> None:
    from asapo_pipelines.catalog import Catalog
    from asapo_pipelines.worker.runtime import Worker

    worker = Worker(
        open_transport(spec(store, keep)),
        Catalog.load().get("core.identity"),
        {},
        pipeline="soak",
        instance=f"copy{index}",
        inputs={"input": f"s{index}"},
        outputs={"output": f"s{index + 1}"},
        linger=0.0,
    )
    assert worker.run() == "finished"
    worker.transport.close()


def sink(store: Path, keep: int, done: Any, delivered: Any) -> None:
    """The end of the chain: takes and acknowledges every message, scan after scan."""
    with (
        open_transport(spec(store, keep)) as t,
        t.consumer(f"s{HOPS}", "soak-end", prefetch=8) as c,
    ):
        n, name = 0, stream_name(0)
        while True:
            try:
                msg = c.get_next(name, timeout=0.5)
            except NoData:
                continue
            except StreamFinished as fin:
                n += 1
                done.value = n
                if not fin.next_stream:
                    return
                name = fin.next_stream
                continue
            with delivered.get_lock():
                delivered.value += len(msg.payload)
            c.acknowledge(name, msg.id)


def disk_bytes(root: Path) -> int:
    total = 0
    for folder, _dirs, files in os.walk(root):
        for name in files:
            # a file removed by retention while we look counts as gone
            with contextlib.suppress(FileNotFoundError):
                total += os.stat(os.path.join(folder, name)).st_blocks * 512
    return total


def run(args: argparse.Namespace, store: Path) -> dict[str, Any]:
    ctx = mp.get_context("fork")
    done = ctx.Value("q", 0)
    delivered = ctx.Value("q", 0)
    stop = ctx.Event()
    procs = [ctx.Process(target=hop, args=(store, args.keep, i)) for i in range(HOPS)]
    procs.append(ctx.Process(target=sink, args=(store, args.keep, done, delivered)))
    procs.append(
        ctx.Process(target=source, args=(store, args.keep, args.per_stream, args.ahead, done, stop))
    )
    for proc in procs:
        proc.start()
    rows = []
    start = last_t = time.monotonic()
    last_bytes = 0
    try:
        while last_t - start < args.minutes * 60 - 1e-6:
            time.sleep(max(0.0, min(args.interval, start + args.minutes * 60 - last_t)))
            now = time.monotonic()
            with delivered.get_lock():
                got = delivered.value
            rows.append(
                {
                    "t_s": round(now - start, 1),
                    "gb_per_s": round((got - last_bytes) / (now - last_t) / 1e9, 3),
                    "store_mib": round(disk_bytes(store) / 2**20, 1),
                    "scans_done": done.value,
                }
            )
            if not args.json:
                row = rows[-1]
                print(
                    f"  {row['t_s']:>7.1f} s  {row['gb_per_s']:.3f} GB/s  "
                    f"store {row['store_mib']:>8.1f} MiB  scans {row['scans_done']}",
                    flush=True,
                )
            last_t, last_bytes = now, got
    finally:
        stop.set()
        for proc in procs:
            proc.join(timeout=120)
            if proc.is_alive():
                proc.kill()
                proc.join()
    bad = [p.exitcode for p in procs if p.exitcode != 0]
    if bad:
        raise SystemExit(f"a process of the chain failed (exit codes {bad})")
    # the first interval pays the start-up (processes, imports, the chain filling): shown,
    # but not part of the flatness
    rates = [r["gb_per_s"] for r in rows[1:]] or [r["gb_per_s"] for r in rows]
    sizes = [r["store_mib"] for r in rows]
    half = max(1, len(sizes) // 2)
    median = statistics.median(rates)
    return {
        "benchmark": "soak",
        "minutes": args.minutes,
        "interval_s": args.interval,
        "message_bytes": MESSAGE,
        "messages_per_scan": args.per_stream,
        "retention": {"max_streams": args.keep},
        "store_dir": str(store),
        "cpus": os.cpu_count(),
        "load_average": round(os.getloadavg()[0], 2),
        "intervals": rows,
        "median_gb_per_s": round(median, 3),
        "slowest_vs_median": round(min(rates) / median, 3) if median else 0.0,
        "throughput_flat": bool(median) and min(rates) >= 0.9 * median,
        "store_max_mib": max(sizes),
        "store_mean_first_half_mib": round(statistics.mean(sizes[:half]), 1),
        "store_mean_second_half_mib": round(statistics.mean(sizes[half:] or sizes[:half]), 1),
        "store_bounded": statistics.mean(sizes[half:] or sizes[:half])
        <= 1.1 * statistics.mean(sizes[:half]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="how long (CI: 0.5)")
    parser.add_argument("--interval", type=float, default=60.0, help="seconds per row")
    parser.add_argument("--per-stream", type=int, default=16, help="4 MiB messages per scan")
    parser.add_argument("--ahead", type=int, default=4, help="scans the source may lead by")
    parser.add_argument("--keep", type=int, default=2, help="retention: done scans kept")
    parser.add_argument("--dir", help="where the store goes (default: /dev/shm if present)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if args.interval > args.minutes * 60:
        args.interval = args.minutes * 60
    base = args.dir or ("/dev/shm" if os.path.isdir("/dev/shm") else None)
    with tempfile.TemporaryDirectory(prefix="bench-soak-", dir=base) as tmp:
        result = run(args, Path(tmp) / "store")
    if args.json:
        print(json.dumps(result))
        return
    print(
        f"median {result['median_gb_per_s']:.3f} GB/s, slowest interval "
        f"{result['slowest_vs_median']:.2f}x the median (goal >= 0.9: "
        f"{'met' if result['throughput_flat'] else 'not met'}); store at most "
        f"{result['store_max_mib']:.0f} MiB, on average {result['store_mean_first_half_mib']:.0f}"
        f" MiB in the first half and {result['store_mean_second_half_mib']:.0f} MiB in the "
        f"second ({'bounded' if result['store_bounded'] else 'growing'})"
    )


if __name__ == "__main__":
    main()
