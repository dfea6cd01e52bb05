"""A simulated XAS beamline for the tests' RE Manager: ophyd's simulated detector and motor
stand in for the monochromator and the ion chamber; `xas_scan` is the plan the agent asks for."""

from bluesky import RunEngine
from bluesky.plans import scan
from ophyd.sim import det, motor

RE = RunEngine({})


def xas_scan(
    sample: str,
    element: str = "Fe",
    edge: str = "K",
    mode: str = "transmission",
    repeats: int = 1,
    points: int = 3,
    md: dict = None,  # noqa: RUF013 (queue-server reads plan signatures; keep it plain)
):
    """Measure `repeats` energy scans of `sample` (simulated: a motor stands in for the mono)."""
    md = dict(md or {})
    md.update({"sample": sample, "element": element, "edge": edge, "mode": mode})
    for _ in range(int(repeats)):
        yield from scan([det], motor, -1, 1, int(points), md=md)
