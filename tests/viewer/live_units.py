"""Small units with plot hints that the viewer's tests run as real workers.

`live.waves` emits noisy copies of one curve (a "scan" each), `live.average` merges them into a
running mean with a noise estimate, `live.judge` decides after each merge whether more scans are
needed: the shape of the XAS pipeline (scans, merge, agent) without xraylarch.
"""

from __future__ import annotations

import math
import random
from typing import Any

from asapo_pipelines.descriptor import PlotHint
from asapo_pipelines.sdk import Message, Params, Processor, Source, describe, hookimpl, inp, out

POINTS = 120


class WavesParams(Params):
    count: int = 30
    delay: float = 0.2
    sample: str = "foil"
    #: raise on scans whose number is a multiple of this (0: never)
    fail_every: int = 0


class JudgeParams(Params):
    target_noise: float = 0.02


WAVES = describe(
    "live.waves",
    kind="connector",
    summary="Emits noisy copies of a curve, one per scan.",
    runtime=f"{__name__}:Waves",
    outputs=[out("waves", "test/curve")],
    params=WavesParams,
    plots=[
        PlotHint(
            port="waves",
            kind="xy",
            x="x",
            y="y",
            label="metadata.scan_name",
            figure="curves",
            title="each scan and the running mean",
            keep=10,
        )
    ],
)
AVERAGE = describe(
    "live.average",
    kind="processor",
    summary="Running mean of the curves with a noise estimate.",
    runtime=f"{__name__}:Average",
    inputs=[inp("waves", "test/curve")],
    outputs=[out("mean", "test/mean")],
    params=WavesParams,
    plots=[
        PlotHint(port="mean", kind="xy", x="x", y="mean", figure="curves", keep=1, label="label"),
        PlotHint(port="mean", kind="scalar", x="n", y="noise", title="noise against scans"),
    ],
)
JUDGE = describe(
    "live.judge",
    kind="processor",
    summary="Asks for more scans until the noise is low.",
    runtime=f"{__name__}:Judge",
    inputs=[inp("mean", "test/mean")],
    outputs=[out("decisions", "test/decision")],
    params=JudgeParams,
    plots=[
        PlotHint(port="decisions", kind="scalar", y="action", label="reason", title="decisions")
    ],
)


def curve(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-(x - 60) / 4.0))


class Waves(Source):
    def run(self) -> None:
        rng = random.Random(7)
        p = self.params
        for scan in range(1, p.count + 1):
            if self.stopping:
                return
            xs = list(range(POINTS))
            ys = [curve(x) + rng.gauss(0, 0.1) for x in xs]
            self.emit(
                "waves",
                {"x": xs, "y": ys, "scan": scan},
                metadata={"scan": scan, "scan_name": f"scan {scan}", "sample": p.sample},
                key=str(scan),
            )
            if p.delay:
                self.wait(p.delay)


class Average(Processor):
    def on_start(self) -> None:
        self.sum = [0.0] * POINTS
        self.n = 0
        self.seen: set[int] = set()

    def process(self, message: Message) -> Any:
        value = message.value
        if self.params.fail_every and value["scan"] % self.params.fail_every == 0:
            raise ValueError(f"scan {value['scan']} looks <b>odd</b> & is rejected")
        if value["scan"] not in self.seen:  # a redelivered scan counts once
            self.seen.add(value["scan"])
            self.n += 1
            self.sum = [a + b for a, b in zip(self.sum, value["y"], strict=True)]
        mean = [s / self.n for s in self.sum]
        noise = math.sqrt(sum((m - curve(x)) ** 2 for x, m in enumerate(mean)) / POINTS)
        return {
            "x": value["x"],
            "mean": mean,
            "n": self.n,
            "noise": noise,
            "label": f"mean of {self.n}",
        }


class Judge(Processor):
    def process(self, message: Message) -> Any:
        noise = message.value["noise"]
        more = noise > self.params.target_noise
        return {
            "action": "more_scans" if more else "stop",
            "reason": f"noise {noise:.3f} after {message.value['n']} scans",
        }


@hookimpl
def register_units(register: Any) -> None:
    for descriptor in (WAVES, AVERAGE, JUDGE):
        register(descriptor)
