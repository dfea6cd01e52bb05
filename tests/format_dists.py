"""Throwaway plugin distributions for payload formats as plugins: `acme-npy` registers the `npy`
format (numpy's own `.npy` bytes) and nothing else; `acme-frames` provides units whose ports
use it (a source of arrays and a processor that sums them), so the units' plugin needs another
distribution's format, as a facility's units would use a format its detector group publishes."""

from __future__ import annotations

from asapo_pipelines.testing.distributions import PluginProject

NPY_PLUGIN = """
from asapo_pipelines.sdk import FormatDescriptor, hookimpl


@hookimpl
def register_formats(register):
    register(FormatDescriptor(
        name="npy",
        summary="numpy arrays as .npy bytes (numpy.save).",
        runtime="acme_npy.codec:Npy",
    ))
"""

NPY_RUNTIME = """
import io
import os

import numpy as np


class Npy:
    def __init__(self):
        mark = os.environ.get("NPY_MARK")
        if mark:  # which processes made the format, to see the workers load it
            with open(mark, "a") as f:
                f.write(f"{os.getpid()}\\n")

    def encode(self, value):
        if not isinstance(value, np.ndarray):
            raise TypeError(f"npy needs a numpy array, not {type(value).__name__}")
        buf = io.BytesIO()
        np.save(buf, value, allow_pickle=False)
        return buf.getvalue(), {"npy_shape": list(value.shape)}

    def decode(self, payload, metadata):
        return np.load(io.BytesIO(bytes(payload)), allow_pickle=False)
"""

FRAMES_PLUGIN = """
from typing import Annotated

from pydantic import Field

from asapo_pipelines.sdk import Params, Port, UnitDescriptor, hookimpl


class MakeParams(Params):
    count: Annotated[int, Field(ge=1, description="Frames to make.")] = 3
    shape: Annotated[list[int], Field(min_length=1, description="Shape of each frame.")] = [2, 3]


@hookimpl
def register_units(register):
    register(UnitDescriptor(
        name="frames.make",
        kind="connector",
        summary="Makes numbered frames (arange times the frame number).",
        outputs=(Port(name="frames", content_type="acme/frame", format="npy"),),
        params=MakeParams,
        runtime="acme_frames.runtime:Make",
    ))
    register(UnitDescriptor(
        name="frames.sum",
        kind="processor",
        summary="Sums each frame.",
        inputs=(Port(name="frames", content_type="acme/frame", format="npy"),),
        outputs=(Port(name="sums", content_type="acme/sum", format="json"),),
        runtime="acme_frames.runtime:Sum",
    ))
"""

FRAMES_RUNTIME = """
import math

import numpy as np

from asapo_pipelines.sdk import Processor, Source


class Make(Source):
    def run(self):
        size = math.prod(self.params.shape)
        for i in range(self.params.count):
            frame = np.arange(size, dtype=np.float64).reshape(self.params.shape) * (i + 1)
            self.emit("frames", frame, key=f"frame{i}")


class Sum(Processor):
    def process(self, message):
        frame = message.value
        self.emit("sums", {
            "sum": float(frame.sum()),
            "shape": list(frame.shape),
            "npy_shape": message.metadata.get("npy_shape"),
        })
"""


def format_projects() -> list[PluginProject]:
    return [
        PluginProject(
            "acme-npy",
            "0.2.0",
            {"plugin.py": NPY_PLUGIN, "codec.py": NPY_RUNTIME},
            {"acme-npy": "acme_npy.plugin"},
        ),
        PluginProject(
            "acme-frames",
            "0.3.0",
            {"plugin.py": FRAMES_PLUGIN, "runtime.py": FRAMES_RUNTIME},
            {"acme-frames": "acme_frames.plugin"},
        ),
    ]
