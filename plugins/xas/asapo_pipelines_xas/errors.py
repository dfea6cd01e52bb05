"""Errors of the XAS units: one clear sentence each (they derive from PipelinesError, so the CLI
and the worker's error stream show the message without a traceback)."""

from __future__ import annotations

from asapo_pipelines.sdk import BadMessage


class XasError(BadMessage):
    """Base of the errors the XAS units raise for bad input: the scan, not the moment, is at
    fault, so the message goes to the error stream without the unit's retries."""


class ScanFileError(XasError):
    """A scan file cannot be read: the message names the file and the reason."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"cannot read scan file {name}: {reason}")
        self.name = name
        self.reason = reason


class SpectrumError(XasError):
    """A scan cannot be normalised (missing channel, non-positive counts, bad calibration)."""


class EdgeLabelError(SpectrumError):
    """A scan's E0 is far from the tabulated energy of the element and edge it is labelled with:
    the label (a typo in the file name, a wrong header) is wrong, not the measurement."""
