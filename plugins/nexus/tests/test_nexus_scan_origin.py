"""What a scan entry says of the instrument is what the scan file says, after a real run
(`xas.scan-files` on the bundled files into `nexus.writer`). An XDI file without a time per
point got `monitor/preset = NaN` with `units = "s"`, which a reader takes at face value; an APS
scan whose header names its beamline (`Beamline.name: APS 13ID`) but no facility got the
writer's default facility, `source/name = "PETRA III"`. Now both are left out when the file
does not say them, and the configured facility is kept for the configured beamline's scans."""

from __future__ import annotations

import shutil
from typing import Any

import h5py
import pytest
from nexus_cli import pipeline_ok
from nexus_cli import text as _text
from nexus_testdata import DATA, P65_SCANS, SCANS_TO_WRITER

pytest.importorskip("asapo_pipelines_xas")

PIPELINE_FILE = SCANS_TO_WRITER.format(name="nexus-origin")
#: an APS scan naming its beamline only, one naming its facility, and a P65 scan
FILES = ("cu_metal_rt.xdi", "fe_metal_rt.xdi", P65_SCANS[0])


@pytest.fixture(scope="module")
def scans(tmp_path_factory) -> dict[str, dict[str, Any]]:
    """file -> what its entry says of the source, the instrument and the monitor's preset."""
    work = tmp_path_factory.mktemp("nexus-origin")
    (work / "data").mkdir()
    for name in FILES:
        shutil.copy(DATA / name, work / "data" / name)
    (work / "origin.pipeline.yaml").write_text(PIPELINE_FILE)
    pipeline_ok(work, "run", "origin.pipeline.yaml")
    found = {}
    with h5py.File(work / "results" / "scans.nxs", "r") as f:
        for entry in f.values():
            source = entry["instrument/source"]
            preset = entry["monitor"].get("preset")
            found[_text(entry["title"][()]).partition(": ")[2]] = {
                "instrument": _text(entry["instrument/name"][()]),
                "source": _text(source["name"][()]) if "name" in source else None,
                "preset": None if preset is None else (float(preset[()]), preset.attrs["units"]),
            }
    return found


def test_a_scan_naming_another_beamline_but_no_facility_gets_no_default_facility(scans):
    assert scans["Cu cu_metal_rt.xdi"]["instrument"] == "APS 13ID"
    assert scans["Cu cu_metal_rt.xdi"]["source"] is None
    # a header naming the facility is taken as it says
    assert scans["Fe metal foil fe_metal_rt.xdi"]["source"] == "APS"
    # the configured beamline's scans: the configured facility
    assert scans[P65_SCANS[0]]["instrument"] == "P65"
    assert scans[P65_SCANS[0]]["source"] == "PETRA III"


def test_a_scan_without_a_time_per_point_has_no_monitor_preset(scans):
    assert scans["Cu cu_metal_rt.xdi"]["preset"] is None
    assert scans["Fe metal foil fe_metal_rt.xdi"]["preset"] is None
    # P65 files give it (time_pp): seconds per point, a number
    seconds, units = scans[P65_SCANS[0]]["preset"]
    assert units == "s"
    assert seconds > 0
