"""Runtime of acme-xrd.integrate: imported only inside a worker, where numpy is installed.

A facility would call pyFAI here (`pyFAI.load(poni_file).integrate1d(frame, bins, unit=...)`).
To keep the documented example runnable without pyFAI, this one does the same job for a flat
detector perpendicular to the beam: each pixel's scattering angle from the geometry in the PONI
file, then the mean intensity in `bins` equal radial bins.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from asapo_pipelines.sdk import Message, Processor


def read_poni(path: str) -> dict[str, float]:
    """The numeric `Key: value` lines of a pyFAI PONI file (Distance, Poni1, Poni2,
    PixelSize1, PixelSize2, Wavelength; lengths in metres)."""
    values: dict[str, float] = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        key, sep, value = line.partition(":")
        if sep and not line.lstrip().startswith("#"):
            try:
                values[key.strip()] = float(value)
            except ValueError:
                continue  # non-numeric entries (Detector, poni_version...) are not needed
    return values


class Integrate(Processor):
    def on_start(self) -> None:
        self.geometry = read_poni(self.params.poni_file)

    def process(self, message: Message) -> Any:
        frame = np.asarray(message.value, dtype=float)
        g = self.geometry
        rows, cols = np.indices(frame.shape, dtype=float)
        y = (rows + 0.5) * g["PixelSize1"] - g["Poni1"]
        x = (cols + 0.5) * g["PixelSize2"] - g["Poni2"]
        two_theta = np.arctan2(np.hypot(x, y), g["Distance"])
        if self.params.unit == "2th_deg":
            radial = np.degrees(two_theta)
        else:  # q in 1/nm: 4 pi sin(theta) / lambda
            radial = 4 * math.pi * np.sin(two_theta / 2) / (g["Wavelength"] * 1e9)
        edges = np.linspace(radial.min(), radial.max(), self.params.bins + 1)
        total, _ = np.histogram(radial, edges, weights=frame)
        count, _ = np.histogram(radial, edges)
        with np.errstate(invalid="ignore"):
            mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
        centres = (edges[:-1] + edges[1:]) / 2
        keep = count > 0
        # numpy values go straight onto a JSON port; the SDK encodes them
        return {"radial": centres[keep], "intensity": mean[keep], "unit": self.params.unit}
