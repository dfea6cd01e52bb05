"""What stream information costs as a stream grows: the embedded store's `streams()` on a long
stream against the same call on a short one, in the same run.

Every worker asks for stream information twice a second (to see streams end and report its
backlog), `pipeline status` and retention ask too. The store keeps running totals (index
version 1), so the answer should cost the same for 1,000 and for 200,000 messages; before the
totals it counted rows, 21 ms at 20,000 messages and growing with the stream.

Goal: `long / short` under 2 (it does not grow with the stream).

    python benchmarks/stream_info.py [--json] [--short N] [--long N] [--repeats N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "core"))

from asapo_pipelines.transport import open_transport  # noqa: E402

BATCH = 1000


def fill(store: Path, source: str, count: int) -> None:
    """`count` 1 KiB messages, half of them taken and acknowledged by a group."""
    payload = b"x" * 1024
    with open_transport({"embedded": {"path": str(store)}}) as t, t.producer(source) as p:
        for start in range(0, count, BATCH):
            p.send_many("scan", [(payload, {"i": i}) for i in range(start, start + BATCH)])
        p.finish_stream("scan")
        with t.consumer(source, "fit", prefetch=BATCH) as c:
            ids = [c.get_next("scan", timeout=1.0).id for _ in range(count // 2)]
            c.acknowledge_many("scan", ids)


def seconds_per_call(store: Path, source: str, repeats: int) -> float:
    with open_transport({"embedded": {"path": str(store)}}) as t, t.consumer(source, "obs") as c:
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            (info,) = c.streams()
            times.append(time.perf_counter() - t0)
        if not info.message_count:
            raise SystemExit(f"stream information of {source} counts no messages")
        return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--short", type=int, default=1_000, help="messages in the short stream")
    parser.add_argument("--long", type=int, default=200_000, help="messages in the long stream")
    parser.add_argument("--repeats", type=int, default=200, help="calls timed (median kept)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-info-") as tmp:
        store = Path(tmp)
        fill(store, "short", args.short)
        fill(store, "long", args.long)
        short = seconds_per_call(store, "short", args.repeats)
        long = seconds_per_call(store, "long", args.repeats)
    result = {
        "benchmark": "stream_info",
        "short_messages": args.short,
        "long_messages": args.long,
        "short_ms": round(short * 1e3, 4),
        "long_ms": round(long * 1e3, 4),
        "long_vs_short": round(long / short, 3),
        "goal_met": long / short < 2,
    }
    if args.json:
        print(json.dumps(result))
        return
    print(
        f"streams(): {result['short_ms']} ms at {args.short} messages, {result['long_ms']} ms "
        f"at {args.long}; long/short {result['long_vs_short']}x "
        f"(goal < 2: {'met' if result['goal_met'] else 'not met'})"
    )


if __name__ == "__main__":
    main()
