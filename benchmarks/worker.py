"""What the worker runtime costs on top of the transport: identity hops on the embedded store.

For 1 KiB and 1 MiB messages, measured in the same run on the same store:

- `transport_hop`: the transport alone, one hop: a loop doing get_next -> send onward ->
  acknowledge, the least any processor must do (the single-hop transport peer);
- `batched_hop`: the same bare hop in batches of `--batch` messages (prefetching get_next,
  one send_many, one acknowledge_many per batch): the transport's best, the peer of a worker
  that batches;
- `worker_hop`: the same hop done by a `core.identity` worker (hooks, provenance, error
  handling, status thread; outputs written and made durable, then inputs acknowledged, per
  batch of `--batch` messages);
- `transport_chain`, `batched_chain` and `worker_chain`: three such hops in a row, each in its
  own process, running concurrently; throughput is messages delivered at the end of the chain
  per second;
- `idle_worker_cpu_share`: the share of a core an identity worker uses while its input gets
  nothing (`--idle` seconds): it should sleep until data arrives, stop() or its next refresh.

Goals: issue 5, `worker_hop / transport_hop >= 0.8`; issue 17, the same against the batched
transport: `worker_hop / batched_hop >= 0.8` for 1 KiB messages. Rates are the best of
`--repeats` interleaved rounds; a ratio is the median of the rounds' own ratios (its range is
printed too), since this VM's speed drifts between runs more than the ratio's margin.

Each figure's CPU time per message is measured too (`*_cpu_us_per_msg`: the process's CPU time
from the start of the hop to its end, its threads included; a chain's is the sum over its
three processes, from each one's start signal to its end), and the same ratios are given of
it (`*_cpu` keys: the peer's CPU per message over the worker's). On a machine shared with
other jobs the wall clock measures the other jobs as much as the hop (at load average 10-20,
one run's rounds gave wall-clock ratios from 0.38 to 0.96); CPU time is disturbed less, though
not at all (caches and clock speed are shared too).

Each figure is a whole run, start-up and close included, so it takes 20,000 small messages by
default: a stream at 10-50 kHz runs for hours, and at 5,000 messages (a third of a second) the
worker's fixed costs (opening and, at the end, checkpointing and closing four SQLite indexes
where the bare loop has two: about 20-30 ms more) were 7-15 % of the figure and decided the
ratio. `--small 5000` still gives the short-run figure.

    python benchmarks/worker.py [--json] [--small N] [--large N] [--repeats N] [--batch N]
                                [--dir DIR] [--idle SECONDS]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "core"))

from asapo_pipelines.catalog import Catalog  # noqa: E402
from asapo_pipelines.transport import NoData, StreamFinished, open_transport  # noqa: E402
from asapo_pipelines.worker.runtime import Worker  # noqa: E402

STREAM = "default"
#: messages per batch: the bare batched hop's and the worker's (set by --batch)
BATCH = 128


def fill(store: Path, source: str, count: int, size: int) -> None:
    payload = os.urandom(size)
    with open_transport({"embedded": {"path": str(store)}}) as t, t.producer(source) as p:
        for i in range(count):
            p.send(STREAM, payload, {"format": "bytes", "i": i})
        p.finish_stream(STREAM)


def transport_hop(store: Path, source: str, target: str) -> None:
    """The bare hop: what any unit's loop has to do on the transport."""
    with (
        open_transport({"embedded": {"path": str(store)}}) as t,
        t.consumer(source, f"bare-{source}") as c,
        t.producer(target) as p,
    ):
        while True:
            try:
                msg = c.get_next(STREAM, timeout=0.5)
            except NoData:
                continue
            except StreamFinished:
                break
            p.send(STREAM, msg.payload, msg.metadata)
            c.acknowledge(STREAM, msg.id)
        p.finish_stream(STREAM)


def batched_hop(store: Path, source: str, target: str) -> None:
    """The bare hop in batches: what a unit's loop costs the transport at best."""
    with (
        open_transport({"embedded": {"path": str(store)}}) as t,
        t.consumer(source, f"batch-{source}", prefetch=BATCH) as c,
        t.producer(target) as p,
    ):
        done = False
        while not done:
            batch: list[Any] = []
            while len(batch) < BATCH:
                try:
                    batch.append(c.get_next(STREAM, timeout=0.0 if batch else 0.5))
                except NoData:
                    if batch:
                        break
                except StreamFinished:
                    done = True
                    break
            if batch:
                p.send_many(STREAM, [(m.payload, m.metadata) for m in batch])
                c.acknowledge_many(STREAM, [m.id for m in batch])
        p.finish_stream(STREAM)


def make_worker(store: Path, source: str, target: str, **options: Any) -> Worker:
    """An identity worker, built before the clock starts: start-up is paid once per process,
    not per message (loading the catalog, validating params). `options` override the hop's."""
    return Worker(
        open_transport({"embedded": {"path": str(store)}}),
        Catalog.load().get("core.identity"),
        {},
        pipeline="bench",
        instance=f"copy-{source}",
        inputs={"input": source},
        outputs={"output": target},
        **{"linger": 0.0, "poll": 0.002, "ack_batch": BATCH, **options},
    )


def run_worker(worker: Worker) -> None:
    assert worker.run() == "finished"
    worker.transport.close()


def _child(
    kind: str, store: Path, source: str, target: str, ready: Any, go: Any, cpu: Any, slot: int
) -> None:
    worker = make_worker(store, source, target) if kind == "worker" else None
    ready.wait()
    go.wait()
    began = time.process_time()  # the hop's CPU time, not its set-up's
    if worker is not None:
        run_worker(worker)
    else:
        BARE[kind](store, source, target)
    cpu[slot] = time.process_time() - began


BARE = {"transport": transport_hop, "batched": batched_hop}


#: (messages per second, CPU microseconds per message) of one figure
Timed = tuple[float, float]


def timed_hop(kind: str, count: int, size: int) -> Timed:
    with tempfile.TemporaryDirectory(prefix="bench-worker-") as tmp:
        store = Path(tmp)
        fill(store, "s0", count, size)
        worker = make_worker(store, "s0", "s1") if kind == "worker" else None
        start, cpu = time.perf_counter(), time.process_time()
        if worker is not None:
            run_worker(worker)
        else:
            BARE[kind](store, "s0", "s1")
        cpu = time.process_time() - cpu
        return count / (time.perf_counter() - start), cpu / count * 1e6


def timed_chain(kind: str, count: int, size: int, hops: int = 3) -> Timed:
    ctx = mp.get_context("fork")
    with tempfile.TemporaryDirectory(prefix="bench-worker-") as tmp:
        store = Path(tmp)
        fill(store, "s0", count, size)
        ready = ctx.Barrier(hops + 1)
        go = ctx.Event()
        cpu = ctx.Array("d", hops)
        procs = [
            ctx.Process(target=_child, args=(kind, store, f"s{i}", f"s{i + 1}", ready, go, cpu, i))
            for i in range(hops)
        ]
        for proc in procs:
            proc.start()
        ready.wait()
        start = time.perf_counter()
        go.set()
        for proc in procs:
            proc.join()
            if proc.exitcode != 0:
                raise SystemExit(f"a {kind} hop failed with exit code {proc.exitcode}")
        return count / (time.perf_counter() - start), sum(cpu) / count * 1e6


def idle_cpu(seconds: float) -> float:
    """Share of a core an idle identity worker uses (its status thread included): waiting for
    an input that gets nothing, over `seconds`, the process otherwise asleep."""
    with tempfile.TemporaryDirectory(prefix="bench-worker-") as tmp:
        store = Path(tmp)
        fill(store, "s0", 1, 1024)  # one message, taken at once; then nothing more comes
        # a worker's own poll (the hop's is for the clock), and a finished input: stay, as a
        # pipeline's worker does for late data
        worker = make_worker(store, "s0", "s1", poll=0.02, linger=3600.0)
        thread = threading.Thread(target=worker.run)
        thread.start()
        time.sleep(1.0)  # started, processed its message, idle
        cpu, wall = time.process_time(), time.perf_counter()
        time.sleep(seconds)
        share = (time.process_time() - cpu) / (time.perf_counter() - wall)
        worker.stop()
        thread.join()
        worker.transport.close()
        return share


def measure(count: int, size: int, repeats: int) -> dict[str, Any]:
    row: dict[str, Any] = {"message_bytes": size, "messages": count, "repeats": repeats}
    kinds = {
        "transport_hop": lambda: timed_hop("transport", count, size),
        "batched_hop": lambda: timed_hop("batched", count, size),
        "worker_hop": lambda: timed_hop("worker", count, size),
        "transport_chain": lambda: timed_chain("transport", count, size),
        "batched_chain": lambda: timed_chain("batched", count, size),
        "worker_chain": lambda: timed_chain("worker", count, size),
    }
    rates: dict[str, list[float]] = {name: [] for name in kinds}
    cpus: dict[str, list[float]] = {name: [] for name in kinds}
    # interleaved rounds, the order reversed every other round: this VM's speed drifts by up
    # to 1.7x between runs, and page-cache write-back and warm-up hit whichever runs at the
    # wrong moment
    for round_ in range(repeats):
        for name in list(kinds)[:: -1 if round_ % 2 else 1]:
            rate, cpu = kinds[name]()
            rates[name].append(rate)
            cpus[name].append(cpu)
    for name, seen in rates.items():
        row[f"{name}_msgs_per_s"] = round(max(seen), 1)  # the best: what the code can do
        row[f"{name}_mib_per_s"] = round(max(seen) * size / 2**20, 2)
        row[f"{name}_cpu_us_per_msg"] = round(statistics.median(cpus[name]), 2)
    # a ratio is the median of the rounds' ratios, each of runs made next to each other: a
    # ratio of two bests can pair a fast moment of one with a slow moment of the other
    for worker, peer, key in (
        ("worker_hop", "transport_hop", "worker_vs_transport_hop"),
        ("worker_chain", "transport_chain", "worker_vs_transport_chain"),
        ("worker_hop", "batched_hop", "worker_vs_batched_hop"),
        ("worker_chain", "batched_chain", "worker_vs_batched_chain"),
    ):
        ratios = sorted(w / p for w, p in zip(rates[worker], rates[peer], strict=True))
        row[key] = round(statistics.median(ratios), 3)
        row[f"{key}_range"] = [round(ratios[0], 3), round(ratios[-1], 3)]
        # the same of CPU time: the peer's per message over the worker's (higher is better)
        ratios = sorted(p / w for w, p in zip(cpus[worker], cpus[peer], strict=True))
        row[f"{key}_cpu"] = round(statistics.median(ratios), 3)
        row[f"{key}_cpu_range"] = [round(ratios[0], 3), round(ratios[-1], 3)]
    row["runtime_cost_per_hop"] = round(1 - row["worker_vs_transport_hop"], 3)
    row["goal_met"] = row["worker_vs_transport_hop"] >= 0.8
    row["batched_goal_met"] = row["worker_vs_batched_hop"] >= 0.8
    return row


def _span(bounds: list[float]) -> str:
    return f"{bounds[0]:.3f}-{bounds[1]:.3f}"


def main() -> None:
    global BATCH
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--small", type=int, default=20000, help="number of 1 KiB messages")
    parser.add_argument("--large", type=int, default=200, help="number of 1 MiB messages")
    parser.add_argument(
        "--repeats",
        type=int,
        default=5,
        help="interleaved rounds (best rate kept; ratios: median of the rounds')",
    )
    parser.add_argument("--batch", type=int, default=BATCH, help="messages per batch")
    parser.add_argument("--dir", help="where to put the stores (default: the temp directory)")
    parser.add_argument(
        "--idle", type=float, default=5.0, help="seconds to watch an idle worker (0: skip)"
    )
    args = parser.parse_args()
    BATCH = max(1, args.batch)
    if args.dir:
        tempfile.tempdir = args.dir
    results = {
        "benchmark": "worker",
        "cpus": os.cpu_count(),
        "hops_in_chain": 3,
        "batch": BATCH,
        "store_dir": tempfile.gettempdir(),
        "runs": [
            measure(count, size, args.repeats)
            for count, size in ((args.small, 1024), (args.large, 2**20))
            if count > 0  # `--large 0`: the small messages only
        ],
    }
    if args.idle > 0:
        results["idle_worker_cpu_share"] = round(idle_cpu(args.idle), 4)
    if args.json:
        print(json.dumps(results))
        return
    for row in results["runs"]:
        print(f"{row['message_bytes']} B x {row['messages']}:")
        for name in (
            "transport_hop",
            "batched_hop",
            "worker_hop",
            "transport_chain",
            "batched_chain",
            "worker_chain",
        ):
            print(
                f"  {name:16} {row[f'{name}_msgs_per_s']:>10.1f} msg/s "
                f"{row[f'{name}_mib_per_s']:>9.2f} MiB/s "
                f"{row[f'{name}_cpu_us_per_msg']:>9.2f} us CPU/msg"
            )
        print(
            # issue 5's peer sends and acknowledges one message at a time; the worker batches,
            # so it is usually faster than its peer, and a "cost" below zero reads as nonsense
            f"  worker/one-at-a-time transport: hop {row['worker_vs_transport_hop']:.3f}, "
            f"chain {row['worker_vs_transport_chain']:.3f} "
            f"(goal >= 0.8: {'met' if row['goal_met'] else 'not met'})"
        )
        print(
            f"  worker/batched transport: hop {row['worker_vs_batched_hop']:.3f} "
            f"(rounds {_span(row['worker_vs_batched_hop_range'])}), "
            f"chain {row['worker_vs_batched_chain']:.3f} "
            f"(rounds {_span(row['worker_vs_batched_chain_range'])}) "
            f"(goal >= 0.8: {'met' if row['batched_goal_met'] else 'not met'})"
        )
        print(
            f"  worker/batched transport, CPU time per message: "
            f"hop {row['worker_vs_batched_hop_cpu']:.3f} "
            f"(rounds {_span(row['worker_vs_batched_hop_cpu_range'])}), "
            f"chain {row['worker_vs_batched_chain_cpu']:.3f} "
            f"(rounds {_span(row['worker_vs_batched_chain_cpu_range'])})"
        )
    if "idle_worker_cpu_share" in results:
        print(f"idle worker: {results['idle_worker_cpu_share']:.2%} of a core")


if __name__ == "__main__":
    main()
