"""Errors of the XAS units: one clear sentence each (they derive from PipelinesError, so the CLI
and the worker's error stream show the message without a traceback)."""

from __future__ import annotations

from asapo_pipelines.sdk import BadMessage


class XasError(BadMessage):
    """Base of the errors the XAS units raise for bad input: the scan, not the moment, is at
    fault, so the message goes to the error stream without the unit's retries."""


class ScanFileError(XasError):
    """A scan file cannot be read: the message names the file and the reason."""

    def __init__(self, name: str, reason: str, *, too_short: bool = False) -> None:
        super().__init__(f"cannot read scan file {name}: {reason}")
        self.name = name
        self.reason = reason
        #: too few data rows to be a scan (none after the header, fewer distinct energies than
        #: `min_points`): malformed in a finished file, but also what a file still being written
        #: looks like (a DAQ that closes it after every row), which watch mode waits on instead
        #: of reporting it. An attribute, not a subclass: the error records keep their type.
        self.too_short = too_short


class SpectrumError(XasError):
    """A scan cannot be normalised (missing channel, non-positive counts, bad calibration)."""


class EdgeLabelError(SpectrumError):
    """A scan's E0 is far from the tabulated energy of the element and edge it is labelled with:
    the label (a typo in the file name, a wrong header) is wrong, not the measurement."""
