"""The XAS plugin's numerics (readers, xraylarch normalisation, merge, convergence agent) as
units with plot hints, for the viewer's tests while the plugin's own runtime classes are being
written: the same functions the xas units call, the P65 pipeline's shape, real beamline data.

Installed by the tests as a plugin distribution; heavy imports happen inside the workers only.
"""

from __future__ import annotations

from typing import Any

from asapo_pipelines_xas.params import (
    ConvergenceParams,
    MergeParams,
    NormalizeParams,
    ScanFilesParams,
)

from asapo_pipelines.descriptor import PlotHint
from asapo_pipelines.sdk import Message, Processor, Source, describe, hookimpl, inp, out


class ScansParams(ScanFilesParams):
    #: seconds between two scans, as the beamline measures them
    delay: float = 1.0


SCANS = describe(
    "viewerxas.scans",
    kind="connector",
    summary="Sends the scan files of a directory one by one, as they are measured.",
    runtime=f"{__name__}:Scans",
    outputs=[out("scans", "xas/scan")],
    params=ScansParams,
)
NORMALIZE = describe(
    "viewerxas.normalize",
    kind="processor",
    summary="Normalises each scan with xraylarch (the xas plugin's normalize_scan).",
    runtime=f"{__name__}:Normalize",
    inputs=[inp("scans", "xas/scan")],
    outputs=[out("spectra", "xas/spectrum")],
    params=NormalizeParams,
    plots=[
        PlotHint(port="spectra", kind="xy", x="arrays.energy", y="arrays.norm",
                 label="metadata.file", figure="spectra", keep=20,
                 title="normalised scans and their merge"),
    ],
)  # fmt: skip
MERGE = describe(
    "viewerxas.merge",
    kind="processor",
    summary="Merges the repeats (the xas plugin's Merger).",
    runtime=f"{__name__}:Merge",
    inputs=[inp("spectra", "xas/spectrum")],
    outputs=[out("merged", "xas/merged")],
    params=MergeParams,
    plots=[
        PlotHint(port="merged", kind="xy", x="arrays.energy", y="arrays.norm",
                 figure="spectra", keep=1, label="n_merged"),
        PlotHint(port="merged", kind="scalar", x="n_merged", y="values.epsilon_k",
                 title="noise against the number of scans merged"),
    ],
)  # fmt: skip
AGENT = describe(
    "viewerxas.agent",
    kind="processor",
    summary="Decides after each merge whether more scans are needed (ConvergenceAgent).",
    runtime=f"{__name__}:Agent",
    inputs=[inp("merged", "xas/merged")],
    outputs=[out("plans", "plan/suggestion")],
    params=ConvergenceParams,
    plots=[PlotHint(port="plans", kind="scalar", y="action", label="reason",
                    title="the agent's decisions")],
)  # fmt: skip


class Scans(Source):
    def run(self) -> None:
        from pathlib import Path

        from asapo_pipelines_xas.scanfiles import list_scan_files, read_for_params

        p = self.params
        for i, path in enumerate(list_scan_files(p.directory, p.pattern), start=1):
            if self.stopping:
                return
            scan = read_for_params(path, p).to_json()
            scan["metadata"]["scan_id"] = f"raw-scans/{i}"
            self.emit("scans", scan, metadata={"file": Path(path).name}, key=str(i))
            if p.delay:
                self.wait(p.delay)


class Normalize(Processor):
    def process(self, message: Message) -> Any:
        from asapo_pipelines_xas.normalize import normalize_scan
        from asapo_pipelines_xas.readers import Scan

        return normalize_scan(Scan.from_json(message.value), self.params).to_json()


class Merge(Processor):
    def on_start(self) -> None:
        from asapo_pipelines_xas.merge import Merger

        self.merger = Merger(self.params)

    def process(self, message: Message) -> Any:
        return self.merger.add(message.value).to_json()


class Agent(Processor):
    def on_start(self) -> None:
        from asapo_pipelines_xas.agent import ConvergenceAgent

        self.agent = ConvergenceAgent(self.params)

    def process(self, message: Message) -> Any:
        return self.agent.decide(message.value)


@hookimpl
def register_units(register: Any) -> None:
    for descriptor in (SCANS, NORMALIZE, MERGE, AGENT):
        register(descriptor)
