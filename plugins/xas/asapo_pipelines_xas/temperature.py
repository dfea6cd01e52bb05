"""The sample's temperature as the merge groups it (`group_by: [..., temperature]`).

XDI's `Sample.temperature` is "float + units", its units "degrees K, degrees C" (the XDI
dictionary), written by hand or by beamline software: `100 K`, `100.0 K`, `100K`, `-20 °C`,
`25 degC`. Compared as text, each spelling of one temperature was a group of its own, and so was
each reading of a cryostat around its setpoint (`20.1 K`, `20.3 K`). Here the text is read as a
number and its unit, converted to kelvin and grouped by its nearest multiple of the merge's
`temperature_step` (1 K by default), whose label (`100 K`) is the group's temperature.

Why the nearest multiple of a step, and not readings within a tolerance of a group's first one:
a scan's group then depends on the scan alone, so the same files give the same groups in any
order they arrive in (a transport promises none) and a group never changes once a scan is in it.
Matching a tolerance to the groups seen so far does neither: 20.0 K, 20.4 K and 20.8 K with a
tolerance of 0.5 K make one group or two depending on which came first, and a scan that bridges
two groups would have to merge them after both sent their merges and the agent asked for
repeats of each. What a step gives up: readings either side of a half step (20.49 K and 20.51 K
with a step of 1 K) are two groups. Setpoints are round numbers and a controller holds its
reading well within half a step of them, so a step matched to the setpoints (1 K; 5 K or 10 K
for a series in steps of 10 K at room temperature; 0.1 K below a few kelvin) groups what a
scientist calls one temperature.

Text that is no temperature (`room temperature`, a number without a unit, which the dictionary
does not allow and which could be K or °C) is grouped by the text itself, as before; the merge
unit warns of it once. A file that says nothing is in the group `temperature unknown`.
"""

from __future__ import annotations

import math
import re
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal

#: the group's temperature of the scans whose file names none
UNKNOWN = "temperature unknown"

#: unit (lower case, spaces removed, "degrees"/"deg"/"°" left out) -> (scale, offset) to kelvin
_UNITS: dict[str, tuple[float, float]] = {
    "k": (1.0, 0.0),
    "kelvin": (1.0, 0.0),
    "mk": (1e-3, 0.0),
    "millikelvin": (1e-3, 0.0),
    "c": (1.0, 273.15),
    "celsius": (1.0, 273.15),
    "centigrade": (1.0, 273.15),
    "℃": (1.0, 273.15),
    "f": (5 / 9, 273.15 - 32 * 5 / 9),
    "fahrenheit": (5 / 9, 273.15 - 32 * 5 / 9),
    "℉": (5 / 9, 273.15 - 32 * 5 / 9),
}

_READING = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(.*?)\s*$")


def _unit(text: str) -> str:
    """A unit as `_UNITS` spells it: lower case, spaces, "°" and "degrees" left out."""
    unit = text.lower().replace(" ", "").replace("°", "")
    for prefix in ("degrees", "degree", "deg"):
        if unit.startswith(prefix) and unit != prefix:
            return unit[len(prefix) :]
    return unit


def kelvin(text: object) -> float | None:
    """The temperature `text` says, in kelvin; None when it says none that this reads (no
    unit, an unknown unit, not a number, below absolute zero)."""
    match = _READING.match(str(text))
    if match is None:
        return None
    scale = _UNITS.get(_unit(match.group(2)))
    if scale is None:
        return None
    value = float(match.group(1)) * scale[0] + scale[1]
    if not math.isfinite(value) or value < 0:
        return None
    return value


def problem(text: object) -> str:
    """What is wrong with a temperature `kelvin` cannot read, as a clause."""
    match = _READING.match(str(text))
    scale = _UNITS.get(_unit(match.group(2))) if match is not None else None
    if match is None or scale is None:
        return "no temperature with a unit (K, mK, °C, °F)"
    value = float(match.group(1)) * scale[0] + scale[1]
    return "not a finite number" if not math.isfinite(value) else "below absolute zero"


def label(value: float, step: float) -> str:
    """`value` (kelvin) at its nearest multiple of `step`, as the group's temperature: `100 K`,
    with as many decimals as the step has (`20.5 K` for a step of 0.5)."""
    # half up, not to even: 20.5 K with a step of 1 is 21 K however it came about
    nearest = math.floor(value / step + 0.5) * step
    exponent = Decimal(repr(float(step))).normalize().as_tuple().exponent
    decimals = max(0, -exponent) if isinstance(exponent, int) else 0
    return f"{nearest:.{decimals}f} K"


#: decimals a reading keeps (a microkelvin): a reading in °C converted to kelvin carries the
#: float's error in its last digits (-20 °C is 253.14999999999998 K)
READING_DECIMALS = 6


def reading(text: object) -> float | None:
    """The temperature `text` says, in kelvin to a microkelvin; None as for `kelvin`."""
    value = kelvin(text)
    return None if value is None else round(value, READING_DECIMALS)


def setpoint(readings: list[float]) -> str:
    """The temperature a group's scans were measured at, for a plan to ask for again: of the
    numbers between the lowest and the highest reading, the one with the fewest decimals, and
    of those the nearest the median reading. The readings around a setpoint include it (20.1,
    20.3 and 19.6 K: `20 K`); one reading is itself (`20.5 K`), where the group's label, a
    multiple of the merge's step, is the step's number (`21 K` with a step of 1 K) and a plan
    asking for it would set a temperature nobody measured at. Written exactly, so that it
    reads back as the same number (`298.15 K`, not `298 K`)."""
    values = sorted(Decimal(repr(float(v))) for v in readings)
    low, high = values[0], values[-1]
    middle = values[len(values) // 2]
    if len(values) % 2 == 0:
        middle = (middle + values[len(values) // 2 - 1]) / 2
    for decimals in range(READING_DECIMALS + 1):
        quantum = Decimal(1).scaleb(-decimals)
        first = (low / quantum).to_integral_value(ROUND_CEILING) * quantum
        last = (high / quantum).to_integral_value(ROUND_FLOOR) * quantum
        if first <= last:
            nearest = middle.quantize(quantum, ROUND_HALF_UP)
            return f"{min(max(nearest, first), last):f} K"
    return f"{middle:f} K"  # not reached: the readings have at most READING_DECIMALS


def group(text: object, step: float) -> str:
    """The group's temperature of a scan whose file says `text` (None: says nothing)."""
    if text is None or not str(text).strip():
        return UNKNOWN
    value = kelvin(text)
    return str(text).strip() if value is None else label(value, step)


def unreadable(text: object) -> bool:
    """True when a file says a temperature that `kelvin` cannot read (grouped by its text)."""
    return text is not None and bool(str(text).strip()) and kelvin(text) is None
