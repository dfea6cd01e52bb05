"""Runtime of acme-xrd.integrate: imported only inside a worker, where numpy is installed.

A facility would call pyFAI here (`pyFAI.load(poni_file).integrate1d(frame, bins, unit=...)`).
To keep the documented example runnable without pyFAI, this one does the same job for a flat
detector perpendicular to the beam: each pixel's scattering angle from the geometry in the PONI
file, then the mean intensity in `bins` equal radial bins.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from asapo_pipelines.sdk import Message, PipelinesError, Processor


def read_poni(path: str) -> dict[str, float]:
    """The geometry in a pyFAI PONI file: Distance, Poni1, Poni2, Rot1-3, Wavelength and the
    pixel sizes PixelSize1, PixelSize2 (metres, radians). Files of version 1 name the pixel
    sizes on their own lines; those pyFAI writes today (`poni_version: 2` and later) keep them
    in `Detector_config`, as `pixel1` and `pixel2`."""
    values: dict[str, float] = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        key, sep, value = line.partition(":")
        if not sep or line.lstrip().startswith("#"):
            continue
        key, value = key.strip(), value.strip()
        if key == "Detector_config":
            config = json.loads(value) or {}
            for name, ours in (("pixel1", "PixelSize1"), ("pixel2", "PixelSize2")):
                if config.get(name) is not None:
                    values[ours] = float(config[name])
            continue
        try:
            values[key] = float(value)
        except ValueError:
            continue  # other text entries (Detector, a version's name...) are not needed
    return values


NEEDED = ("Distance", "Poni1", "Poni2", "PixelSize1", "PixelSize2", "Wavelength")


def checked(path: str, geometry: dict[str, float]) -> dict[str, float]:
    """`geometry` when this unit can integrate with it; otherwise one sentence, at start (a
    missing key found per frame would send every frame to the error stream)."""
    missing = [key for key in NEEDED if key not in geometry]
    if missing:
        raise PipelinesError(f"poni_file {path} gives no {', '.join(missing)}")
    tilted = {key: geometry[key] for key in ("Rot1", "Rot2", "Rot3") if geometry.get(key)}
    if tilted:
        raise PipelinesError(
            f"poni_file {path} describes a tilted detector ({tilted}); this example "
            "integrates a detector perpendicular to the beam only: use pyFAI for it"
        )
    return geometry


def two_theta(shape: tuple[int, ...], g: dict[str, float]) -> np.ndarray:
    """Each pixel's scattering angle (radians), from its centre, as pyFAI reckons it."""
    rows, cols = np.indices(shape, dtype=float)
    y = (rows + 0.5) * g["PixelSize1"] - g["Poni1"]
    x = (cols + 0.5) * g["PixelSize2"] - g["Poni2"]
    return np.arctan2(np.hypot(x, y), g["Distance"])


class Integrate(Processor):
    def on_start(self) -> None:
        path = self.params.poni_file
        self.geometry = checked(path, read_poni(path))

    def process(self, message: Message) -> Any:
        frame = np.asarray(message.value, dtype=float)
        g = self.geometry
        angles = two_theta(frame.shape, g)
        if self.params.unit == "2th_deg":
            radial = np.degrees(angles)
        else:  # q in 1/nm: 4 pi sin(theta) / lambda
            radial = 4 * math.pi * np.sin(angles / 2) / (g["Wavelength"] * 1e9)
        edges = np.linspace(radial.min(), radial.max(), self.params.bins + 1)
        total, _ = np.histogram(radial, edges, weights=frame)
        count, _ = np.histogram(radial, edges)
        with np.errstate(invalid="ignore"):
            mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
        centres = (edges[:-1] + edges[1:]) / 2
        keep = count > 0
        # numpy values go straight onto a JSON port; the SDK encodes them
        return {"radial": centres[keep], "intensity": mean[keep], "unit": self.params.unit}
