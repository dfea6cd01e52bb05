"""Configuration fingerprints, their differences in words, `--set` checks, and the run store
(on the real embedded transport) without workers."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from runs_helpers import p65_copy

from asapo_pipelines.catalog import Catalog
from asapo_pipelines.errors import UsageError
from asapo_pipelines.pipeline import load_pipeline
from asapo_pipelines.runs import RunsError, RunStore, configurations, diff_configurations
from asapo_pipelines.runs.overrides import apply, flat, parse, unflat
from asapo_pipelines.transport import open_transport

pytest.importorskip("asapo_pipelines_xas", reason="needs the XAS plugin (plugins/xas)")


@pytest.fixture
def p65(tmp_path: Path):
    catalog = Catalog.load()
    return load_pipeline(p65_copy(tmp_path), catalog), catalog


def test_a_param_changes_its_unit_and_everything_downstream(p65):
    pipeline, catalog = p65
    before = configurations(pipeline, catalog)
    assert before == configurations(pipeline, catalog), "fingerprints are deterministic"
    apply(pipeline, catalog, parse(["normalize.autobk.rbkg=1.2"]))
    after = configurations(pipeline, catalog)
    changed = diff_configurations(before, after)
    assert set(changed) == {"normalize", "merge", "advisor", "writer"}
    assert changed["normalize"] == ["autobk.rbkg 1.0 -> 1.2"]
    assert changed["merge"] == ["upstream configuration changed"]
    assert after["scans"] == before["scans"]
    assert after["merge"]["upstream"]["spectra"] == after["normalize"]["fingerprint"]
    norm = after["normalize"]
    assert norm["unit"] == "xas.normalize"
    assert norm["distribution"] == "asapo-pipelines-xas"
    assert norm["params"]["autobk"]["rbkg"] == 1.2
    # resolved params: the defaults the file left out are part of the configuration
    assert "kstep" not in (p65[0].units["normalize"].params["autobk"])
    assert norm["params"]["autobk"]["kstep"] > 0


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (["normalize"], "write it as UNIT.PARAM=VALUE"),
        (["normalize.rbkg"], "write it as UNIT.PARAM=VALUE"),
        (["normalise.mode=mu"], "no unit normalise; did you mean normalize?"),
        (["normalize.autobk.rbgk=1"], "no parameter autobk.rbgk; did you mean rbkg?"),
        (["normalize.mdoe=mu"], "no parameter mdoe; did you mean mode?"),
        # the value given, beside why it does not fit: a typo is then seen at once
        (["advisor.target_noise=lots"], "--set advisor.target_noise: "),
        (["advisor.target_noise=lots"], "(got 'lots')"),
        # in validate's words (P202)
        (["normalize.autobk.rbkg=abc"], "input should be a valid number (got 'abc')"),
        (["advisor.target_noise=[1"], "is not a YAML value"),
    ],
)
def test_bad_overrides_are_one_sentence(p65, items, message):
    pipeline, catalog = p65
    with pytest.raises(UsageError) as caught:
        apply(pipeline, catalog, parse(items))
    assert message in caught.value.message
    assert "\n" not in caught.value.message


def test_a_glob_yaml_cannot_read_is_taken_as_text():
    """`*.xdi` is an alias in YAML: `--set scans.pattern=*.xdi` was refused as "not a YAML
    value", though a scientist writing a glob means the text."""
    assert parse(["scans.pattern=*.xdi"]) == {"scans": {"pattern": "*.xdi"}}
    assert parse(["scans.pattern=20K_*.xdi"]) == {"scans": {"pattern": "20K_*.xdi"}}


def test_overrides_round_trip_as_recorded():
    parsed = parse(["normalize.autobk.rbkg=1.2", "advisor.target_noise=1.0e-4", "scans.watch=true"])
    assert unflat(flat(parsed)) == parsed
    assert flat(parsed)["advisor.target_noise"] == pytest.approx(1.0e-4)
    assert flat(parsed)["scans.watch"] is True


def test_the_first_claim_of_a_namespace_wins_and_run_ids_are_unique(tmp_path):
    spec = {"embedded": {"path": str(tmp_path / "store")}}
    with open_transport(spec) as transport:
        store = RunStore(transport, "demo")
        for name in ("a", "b"):  # two files beside each other: the owner still exists
            (tmp_path / f"{name}.pipeline.yaml").write_text("pipeline: demo\n")
        store.claim(tmp_path / "a.pipeline.yaml")
        store.claim(tmp_path / "a.pipeline.yaml")  # the owner again: fine
        with pytest.raises(
            RunsError, match=r"belongs to .*a\.pipeline\.yaml, so .*b\.pipeline\.yaml"
        ):
            store.claim(tmp_path / "b.pipeline.yaml")
        ids: list[str] = []

        def begin() -> None:
            run = store.begin(pipeline_file=None, text="x", configurations={}, overrides={})
            ids.append(run.id)

        threads = [threading.Thread(target=begin) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(ids, key=lambda r: int(r[1:])) == [f"r{i}" for i in range(1, 9)]
        assert store.run_ids() == [f"r{i}" for i in range(1, 9)]
        with pytest.raises(RunsError, match=r"has no run .r9."):
            store.get("r9")
        assert store.get("3").id == "r3"


def test_workers_started_together_in_an_empty_store_all_join_run_r1(tmp_path):
    spec = {"embedded": {"path": str(tmp_path / "store")}}
    with open_transport(spec):
        pass  # the store exists (creating it is the transport's business, tested there)
    got: list[str] = []
    failed: list[BaseException] = []

    def join() -> None:
        try:
            with open_transport(spec) as transport:
                got.append(RunStore(transport, "demo").ensure({}, "text").id)
        except BaseException as exc:  # shown by the assertion below
            failed.append(exc)

    threads = [threading.Thread(target=join) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failed == []
    assert got == ["r1"] * 6
    with open_transport(spec) as transport:
        assert RunStore(transport, "demo").run_ids() == ["r1"]
