"""One sample measured at two temperatures, its files naming it alike (`Sample.name: Cu`): the
header's name groups them, so they were averaged as repeats whatever the files were called
(`cu_T_100.xdi`, `cu_T_300.xdi`), and `group_by` could not hold the temperature. The XDI
reader now takes `Sample.temperature`, and `group_by: [..., temperature]` keeps the two apart;
the default still groups by sample (documented).

Real data: the Cu foil of shared/data/xas (SOURCES.md), its header given a temperature and its
It counts made noisier (a fixed seed) for the 'other' measurement; real xraylarch.

The temperature was then compared as text (outside tester): `100 K`, `100.0 K` and `100K` were
three groups, a file naming none a group with an empty label, and the agent asked for repeats at
"100 K" three times and with `temperature: ''` in its plan. It is now read in kelvin and grouped
by its nearest multiple of `temperature_step` (the order the files arrive in changes nothing);
files naming none are `temperature unknown`, which no plan is asked to set."""

from __future__ import annotations

import json
import logging
import random
import shutil

import numpy as np
import pytest
from xas_procs import pipeline_command, scan_chain, write_pipeline
from xas_testdata import DATA, P65_SCANS, REFERENCE_SETTINGS, p65_variant

from asapo_pipelines.testing.harness import run_unit
from asapo_pipelines_xas import temperature
from asapo_pipelines_xas.agent import ConvergenceAgent
from asapo_pipelines_xas.merge import Merger
from asapo_pipelines_xas.normalize import normalize_scan
from asapo_pipelines_xas.params import ConvergenceParams, MergeParams, NormalizeParams
from asapo_pipelines_xas.readers import read_scan
from asapo_pipelines_xas.units import group_label

FOIL = "cu_metal_rt.xdi"
BY_TEMPERATURE = ["sample", "element", "edge", "mode", "temperature"]
NORMALIZE = {"mode": "transmission", **REFERENCE_SETTINGS}
#: the tester's agent: a target one foil scan does not reach, so it asks for repeats
ADVISOR = {"target_noise": 1.2e-4, "max_scans": 20}
#: the tester's files (qa-s41): one sample at 100 K written three ways, 300 K, and one file
#: that names no temperature
TESTER = {
    "cu_a.xdi": "100 K",
    "cu_b.xdi": "100.0 K",
    "cu_c.xdi": "100K",
    "cu_d.xdi": "300 K",
    "cu_e.xdi": None,
    "cu_f.xdi": "100 K",
}


def _at(tmp_path, name: str, kelvin: int | str | None, seed: int):
    """The foil's file as measured at `kelvin` (a number: kelvin; text: the header's value as
    written; None: the header names no temperature), It with its own noise."""
    rng = np.random.default_rng(seed)
    said = f"{kelvin} K" if isinstance(kelvin, int) else kelvin
    out = []
    for line in (DATA / FOIL).read_text().splitlines():
        if line.startswith("# Sample.name"):
            out += [line, *([f"# Sample.temperature: {said}"] if said is not None else [])]
        elif line.startswith("#") or not line.strip():
            out.append(line)
        else:
            energy, i0, it, _mu = (float(v) for v in line.split())
            it *= 1 + 2e-4 * rng.standard_normal()
            out.append(f"{energy:.3f} {i0:.6g} {it:.6g} {np.log(i0 / it):.8f}")
    path = tmp_path / name
    path.write_text("\n".join(out) + "\n")
    return path


def test_temperature_in_group_by_keeps_two_temperatures_of_one_sample_apart(tmp_path):
    scans = [read_scan(_at(tmp_path, f"cu_T_{k}.xdi", k, k)) for k in (100, 300)]
    assert [s.metadata["temperature"] for s in scans] == ["100 K", "300 K"]
    assert {s.metadata["sample"] for s in scans} == {"Cu"}
    spectra = [normalize_scan(s, NormalizeParams(mode="transmission")) for s in scans]

    by_sample = Merger()
    merges = [by_sample.add(s) for s in spectra]
    assert merges[-1].n_merged == 2  # the default: one sample, two repeats (documented)

    apart = Merger(MergeParams(group_by=["sample", "element", "edge", "mode", "temperature"]))
    merges = [apart.add(s) for s in spectra]
    assert [m.n_merged for m in merges] == [1, 1]
    assert [m.group["temperature"] for m in merges] == ["100 K", "300 K"]


@pytest.fixture(scope="module")
def tester_spectra(tmp_path_factory):
    """The tester's six files, normalised (each with its own noise: repeats, not copies)."""
    directory = tmp_path_factory.mktemp("tester")
    params = NormalizeParams(**NORMALIZE)
    return [
        normalize_scan(read_scan(_at(directory, name, said, seed)), params)
        for seed, (name, said) in enumerate(TESTER.items())
    ]


def _groups(spectra, **params) -> dict[str, list[str]]:
    """Each group's label -> its merged scans' file names, after every spectrum was added."""
    merger = Merger(MergeParams(group_by=BY_TEMPERATURE, **params))
    last = {}
    for spectrum in spectra:
        merged = merger.add(spectrum).to_json()
        last[group_label(merged)] = merged
    return {
        label: sorted(scan.rsplit(":", 1)[-1] for scan in merged["accepted"])
        for label, merged in last.items()
    }


def test_a_temperature_in_the_file_name_is_read_when_the_header_names_none(tmp_path):
    """P65 files say no Sample.temperature; their names do (`20K_GOE_...`, `300K_GOE_...`).
    Named as one sample (`sample: GOE`) and grouped by temperature, the 20 K repeats and a
    300 K scan were one group `temperature unknown` and averaged (outside tester, s43)."""
    cold = [shutil.copyfile(DATA / name, tmp_path / name) for name in P65_SCANS]
    warm = p65_variant(
        P65_SCANS[0], tmp_path / P65_SCANS[0].replace("20K_", "300K_"), seed=3, noise=2e-4
    )
    scans = [read_scan(path, sample="GOE") for path in [*cold, warm]]
    assert [s.metadata["temperature"] for s in scans] == ["20 K", "20 K", "300 K"]
    params = NormalizeParams(**NORMALIZE)
    groups = _groups([normalize_scan(s, params) for s in scans])
    assert groups == {
        "GOE/Fe/K/transmission/20 K": sorted(P65_SCANS),
        "GOE/Fe/K/transmission/300 K": [warm.name],
    }


@pytest.mark.parametrize(
    ("name", "said"),
    [
        ("LiFePO4_1C_Fe_K.001.xdi", None),  # a battery's charge rate, not 1 degree C
        ("cu_T_300.xdi", None),  # a number alone: K or degrees C?
        ("4.2K_cu.001.xdi", "4.2 K"),
    ],
)
def test_only_a_number_with_a_capital_k_in_a_name_is_a_temperature(tmp_path, name, said):
    path = tmp_path / name
    path.write_text((DATA / FOIL).read_text())
    scan = read_scan(path)
    assert scan.metadata.get("temperature") == said


@pytest.mark.parametrize(
    ("text", "kelvin"),
    [
        ("100 K", 100.0),
        ("100.0 K", 100.0),
        ("100K", 100.0),
        ("77 kelvin", 77.0),
        ("25 °C", 298.15),
        ("25 C", 298.15),
        ("-20 degC", 253.15),
        ("0 deg C", 273.15),
        ("25 degrees C", 298.15),
        ("350 mK", 0.35),
        ("100", None),  # no unit: K or °C? the dictionary asks for one
        ("room temperature", None),
        ("-5 K", None),  # below absolute zero
        ("100 furlongs", None),
    ],
)
def test_a_temperature_is_read_with_its_unit_in_kelvin(text, kelvin):
    if kelvin is None:
        assert temperature.kelvin(text) is None
        assert temperature.group(text, 1.0) == text  # grouped by its text, as written
    else:
        assert temperature.kelvin(text) == pytest.approx(kelvin)


def test_spellings_of_one_temperature_are_one_group_and_no_label_is_empty(tester_spectra):
    """The tester's case: two temperatures and one file naming none make three groups, each
    with a label that reads (no empty segment)."""
    groups = _groups(tester_spectra)
    assert groups == {
        "Cu/Cu/K/transmission/100 K": ["cu_a.xdi", "cu_b.xdi", "cu_c.xdi", "cu_f.xdi"],
        "Cu/Cu/K/transmission/300 K": ["cu_d.xdi"],
        "Cu/Cu/K/transmission/temperature unknown": ["cu_e.xdi"],
    }


def test_the_plan_names_the_canonical_temperature_and_never_an_unknown_one(tester_spectra):
    merger = Merger(MergeParams(group_by=BY_TEMPERATURE))
    agent = ConvergenceAgent(ConvergenceParams(**ADVISOR))
    seen: dict[str, list[int]] = {}
    for spectrum in tester_spectra:
        decision = agent.decide(merger.add(spectrum).to_json())
        assert decision is not None
        group = decision["target"]
        seen.setdefault(group["temperature"], []).append(decision["metrics"]["n_scans"])
        if decision["item"] is None:
            continue
        kwargs = decision["item"]["kwargs"]
        assert "" not in kwargs.values(), kwargs
        if group["temperature"] == temperature.UNKNOWN:
            assert "temperature" not in kwargs, kwargs
        else:
            assert kwargs["temperature"] == group["temperature"]
    # the agent decides on one group at 100 K that counts every spelling's scans (it was three
    # groups of one scan, each asking for repeats at "100 K")
    assert seen == {"100 K": [1, 2, 3, 4], "300 K": [1], temperature.UNKNOWN: [1]}


def test_readings_around_one_setpoint_are_repeats(tmp_path):
    """A cryostat's readback around its 20 K setpoint (20.1 K, 20.3 K) is one measurement."""
    params = NormalizeParams(**NORMALIZE)
    spectra = [
        normalize_scan(read_scan(_at(tmp_path, f"cu_{i}.xdi", said, 10 + i)), params)
        for i, said in enumerate(["20.1 K", "20.3 K", "19.6 K"])
    ]
    merger = Merger(MergeParams(group_by=BY_TEMPERATURE))
    merges = [merger.add(s) for s in spectra]
    assert [m.n_merged for m in merges] == [1, 2, 3]
    assert {m.group["temperature"] for m in merges} == {"20 K"}
    # the step is the scientist's: with setpoints 0.1 K apart, these are three temperatures
    finer = Merger(MergeParams(group_by=BY_TEMPERATURE, temperature_step=0.1))
    merges = [finer.add(s) for s in spectra]
    assert [m.n_merged for m in merges] == [1, 1, 1]
    assert [m.group["temperature"] for m in merges] == ["20.1 K", "20.3 K", "19.6 K"]


def test_the_groups_do_not_depend_on_the_order_the_files_arrive_in(tmp_path, tester_spectra):
    """Readings that a tolerance around a group's first reading would group by their order
    (20.0, 20.4, 20.8 K with 0.5 K) and the tester's spellings: the same groups in any order."""
    params = NormalizeParams(**NORMALIZE)
    drifting = [
        normalize_scan(read_scan(_at(tmp_path, f"cu_{k}.xdi", f"{k} K", 20 + i)), params)
        for i, k in enumerate(["20.0", "20.4", "20.8", "19.7"])
    ]
    spectra = [*tester_spectra, *drifting]
    expected = _groups(spectra)
    assert expected["Cu/Cu/K/transmission/20 K"] == ["cu_19.7.xdi", "cu_20.0.xdi", "cu_20.4.xdi"]
    assert expected["Cu/Cu/K/transmission/21 K"] == ["cu_20.8.xdi"]
    shuffle = random.Random(7)
    orders = [spectra[::-1]] + [shuffle.sample(spectra, len(spectra)) for _ in range(3)]
    for order in orders:
        assert _groups(order) == expected


def test_a_temperature_that_is_no_temperature_is_grouped_by_its_text_with_one_warning(
    tmp_path, caplog
):
    params = NormalizeParams(**NORMALIZE)
    spectra = [
        normalize_scan(read_scan(_at(tmp_path, f"cu_{i}.xdi", said, 30 + i)), params).to_json()
        for i, said in enumerate(["room temperature", "room temperature", "300 K"])
    ]
    with caplog.at_level(logging.WARNING):
        merged = run_unit("xas.merge", spectra, params={"group_by": BY_TEMPERATURE})
    assert merged.errors == []
    groups = {group_label(m): m["n_merged"] for m in merged.values("merged")}
    assert groups == {
        "Cu/Cu/K/transmission/room temperature": 2,
        "Cu/Cu/K/transmission/300 K": 1,
    }
    warnings = [r.getMessage() for r in caplog.records if "Sample.temperature" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert "'room temperature'" in warnings[0]


@pytest.mark.parametrize(
    ("said", "why"),
    [
        ("-5 K", "is below absolute zero"),
        ("1e999 K", "is not a finite number"),
        ("room temperature", "is no temperature with a unit (K, mK, °C, °F)"),
    ],
)
def test_a_plan_never_asks_for_a_temperature_that_is_none(tmp_path, caplog, said, why):
    """An outside tester's `-5 K` went out to the queue as the plan's `temperature: '-5 K'`:
    text grouped as it is written is no temperature a plan can be asked to set. The warning
    says what is wrong with it."""
    params = NormalizeParams(**NORMALIZE)
    spectrum = normalize_scan(read_scan(_at(tmp_path, "cu_0.xdi", said, 30)), params).to_json()
    with caplog.at_level(logging.WARNING):
        merged = run_unit("xas.merge", [spectrum], params={"group_by": BY_TEMPERATURE})
    (merge,) = merged.values("merged")
    assert merge["group"]["temperature"] == said
    warnings = [r.getMessage() for r in caplog.records if "Sample.temperature" in r.getMessage()]
    assert warnings == [
        f"Sample.temperature {said!r} {why}: its scans are grouped by that text, apart from "
        "scans at a temperature read in kelvin, and no plan is asked to set it; write it as "
        "e.g. `100 K` to group it by temperature"
    ]
    decision = ConvergenceAgent(ConvergenceParams(**ADVISOR)).decide(merge)
    assert decision is not None
    assert decision["item"] is not None, decision
    assert decision["target"]["temperature"] == said
    assert "temperature" not in decision["item"]["kwargs"], decision["item"]


def test_a_pipeline_run_on_the_testers_files(tmp_path):
    """`pipeline run` on the tester's files: three groups (100 K, 300 K, unknown), the agent's
    plans naming the canonical temperature or none, never an empty one."""
    for seed, (name, said) in enumerate(TESTER.items()):
        (tmp_path / "d").mkdir(exist_ok=True)
        _at(tmp_path / "d", name, said, seed)
    units = {
        **scan_chain("d", NORMALIZE, {"group_by": BY_TEMPERATURE}),
        "advisor": {
            "unit": "xas.convergence-agent",
            "params": ADVISOR,
            "inputs": {"merged": "merged"},
            "outputs": {"plans": "plans"},
        },
    }
    pipeline = write_pipeline(tmp_path, "temperature", units, streams={"plans": {}})
    run = pipeline_command(pipeline, "run")
    assert run.returncode == 0, run.stdout + run.stderr

    def every(stream: str) -> list[dict]:
        out = pipeline_command(pipeline, "tail", stream, "--all", "--json")
        assert out.returncode == 0, out.stderr
        return [json.loads(line)["value"] for line in out.stdout.splitlines()]

    merges = every("merged")
    last = {group_label(m): m for m in merges}
    assert {label: m["n_scans"] for label, m in last.items()} == {
        "Cu/Cu/K/transmission/100 K": 4,
        "Cu/Cu/K/transmission/300 K": 1,
        "Cu/Cu/K/transmission/temperature unknown": 1,
    }
    plans = every("plans")
    assert len(plans) == len(merges) == 6
    assert {p["target"] for p in plans} == set(last)
    for plan in plans:
        if plan.get("plan") is None:
            continue
        kwargs = plan["plan"]["kwargs"]
        assert "" not in kwargs.values(), kwargs
        if plan["target"].endswith(temperature.UNKNOWN):
            assert "temperature" not in kwargs, kwargs
        else:
            assert kwargs["temperature"] == plan["target"].rsplit("/", 1)[-1]


@pytest.mark.parametrize(
    ("readings", "asked"),
    [
        # a 20.5 K setpoint with the default 1 K step is the group `21 K` (half up): the plan
        # said "21 K", a temperature nobody measured at
        (["20.5 K", "20.52 K"], "20.5 K"),
        # a cryostat's readback around its setpoint: the setpoint, not a reading
        (["20.3 K", "19.8 K"], "20 K"),
        # -20 °C is 253.15 K: the plan said "253 K", which does not read back as -20 °C
        (["-20 °C", "-20 °C"], "253.15 K"),
    ],
)
def test_the_plan_asks_for_the_temperature_measured_at(tmp_path, readings, asked):
    params = NormalizeParams(**NORMALIZE)
    spectra = [
        normalize_scan(read_scan(_at(tmp_path, f"cu_{i}.xdi", said, 40 + i)), params)
        for i, said in enumerate(readings)
    ]
    merger = Merger(MergeParams(group_by=BY_TEMPERATURE))
    agent = ConvergenceAgent(ConvergenceParams(**ADVISOR))
    decisions = [agent.decide(merger.add(s).to_json()) for s in spectra]
    kelvins = [temperature.kelvin(said) for said in readings]
    label = temperature.label(float(np.median(kelvins)), 1.0)
    for n, decision in enumerate(decisions, 1):
        assert decision is not None
        assert decision["target"]["temperature"] == label, decision  # the step's, as before
        assert decision["action"] == "more_scans", decision["reason"]
        said = decision["item"]["kwargs"]["temperature"]
        # what the plan says reads back as a number within the readings so far: none is lost
        assert min(kelvins[:n]) - 1e-9 <= temperature.kelvin(said) <= max(kelvins[:n]) + 1e-9
    assert said == asked, (label, decisions[-1]["item"])
