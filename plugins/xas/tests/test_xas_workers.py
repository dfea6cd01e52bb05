"""The XAS units as `pipeline worker` processes on the embedded transport: the live beamline case,
with scan files copied into the watched directory one by one while the pipeline runs."""

from __future__ import annotations

import shutil

from xas_procs import last_status, read, spawn, stop, wait_until, watch_units, write_pipeline
from xas_testdata import DATA, P65_SCANS

UNITS = ("scans", "normalize", "merge", "advisor")


def live_pipeline(tmp_path, target_noise: float):
    (tmp_path / "incoming").mkdir()
    advisor = {
        "unit": "xas.convergence-agent",
        "params": {"target_noise": target_noise},
        "inputs": {"merged": "merged"},
        "outputs": {"plans": "plans"},
    }
    units = {**watch_units(settle_seconds=0.5), "advisor": advisor}
    return write_pipeline(tmp_path, "p65-live", units)


def copy_in(name: str, directory, *, as_tool: bool) -> None:
    """As a beamline's copy tool (hidden name, then rename) or written in place, in chunks."""
    data = (DATA / name).read_bytes()
    if as_tool:
        hidden = directory / f".{name}.part"
        hidden.write_bytes(data)
        hidden.rename(directory / name)
        return
    with (directory / name).open("wb") as f:
        for start in range(0, len(data), len(data) // 4 + 1):
            f.write(data[start : start + len(data) // 4 + 1])
            f.flush()


def test_files_copied_in_one_by_one_are_each_processed_once(tmp_path):
    # a target between the single-scan and the merged noise of the two repeats (tutorial values:
    # 1.55e-4 and 1.36e-4 single, 1.30e-4 merged); the in-process tests compute it from the data
    target = 1.4e-4
    pipeline = live_pipeline(tmp_path, target)
    store, incoming = tmp_path / "store", tmp_path / "incoming"
    procs = {unit: spawn(pipeline, unit, tmp_path) for unit in UNITS}
    try:
        arrivals = [
            (P65_SCANS[0], True),
            ("broken.xdi", False),
            (P65_SCANS[1], False),
        ]
        for i, (name, as_tool) in enumerate(arrivals):
            if name == "broken.xdi":
                (incoming / name).write_text("# not a scan\n# energy i0 it\n1 2\n")
            else:
                copy_in(name, incoming, as_tool=as_tool)
                done = sum(1 for n, _ in arrivals[: i + 1] if n != "broken.xdi")
                # each good file reaches the agent before the next one arrives
                assert wait_until(
                    lambda d=done: len(read(store, "plans")) >= d, procs=list(procs.values())
                ), f"{name} did not reach the agent; logs in {tmp_path}"
                if done == 1:
                    # the merge dies (kill -9) and comes back: it rebuilds its group from the
                    # spectra it had merged, so the next scan merges with the first
                    procs["merge"].kill()
                    procs["merge"].wait()
                    procs["merge"] = spawn(pipeline, "merge", tmp_path)
        # the pipeline is idle, not finished: the source keeps watching
        assert all(p.poll() is None for p in procs.values())
    finally:
        codes = {unit: stop(proc) for unit, proc in procs.items()}
    assert codes == dict.fromkeys(UNITS, 0), f"logs in {tmp_path}"

    scans = read(store, "raw-scans")
    assert [v["metadata"]["file"] for _, v in scans] == list(P65_SCANS)
    spectra = read(store, "spectra")
    assert [v["metadata"]["file"] for _, v in spectra] == list(P65_SCANS)
    merged = [v for _, v in read(store, "merged")]
    assert [m["n_merged"] for m in merged] == [1, 2]
    # the restarted merge's summary counts both scans (without restoring it would say 1)
    (group,) = last_status(store, "p65-live", "merge")["summary"]["merges"].values()
    assert (group["scans"], group["merged"]) == (2, 2)
    singles = [v["values"]["epsilon_k"] for _, v in spectra]
    assert merged[1]["values"]["epsilon_k"] < min(singles)
    plans = [v for _, v in read(store, "plans")]
    assert [p["action"] for p in plans] == ["more_scans", "stop"]
    assert plans[0]["plan"]["kwargs"]["repeats"] == plans[0]["arguments"]["scans"] == 1
    # the malformed file is on the error stream with its name and reason, nowhere else
    errors = [v for _, v in read(store, "p65-live.errors", "scans")]
    assert [e["key"] for e in errors] == ["broken.xdi"]
    assert errors[0]["error"].startswith("cannot read scan file broken.xdi")
    # each worker's final status record carries its unit's summary
    assert last_status(store, "p65-live", "scans")["summary"]["scans_sent"] == 2
    advisor = last_status(store, "p65-live", "advisor")
    assert advisor["state"] == "stopped"
    (decision,) = advisor["summary"]["decisions"].values()
    assert decision["action"] == "stop"

    # a restarted source (files still there) sends no scan and no error twice
    source = spawn(pipeline, "scans", tmp_path)
    try:
        assert wait_until(lambda: last_status(store, "p65-live", "scans")["pid"] == source.pid)
        shutil.copy(DATA / "cu_metal_rt.xdi", incoming / "cu_metal_rt.xdi")
        assert wait_until(lambda: len(read(store, "raw-scans")) == 3, procs=[source])
    finally:
        assert stop(source) == 0
    assert [v["metadata"]["file"] for _, v in read(store, "raw-scans")] == [
        *P65_SCANS,
        "cu_metal_rt.xdi",
    ]
    assert len(read(store, "p65-live.errors", "scans")) == 1


def test_a_missing_watch_directory_stops_the_worker_with_one_sentence(tmp_path):
    pipeline = live_pipeline(tmp_path, 1e-4)
    shutil.rmtree(tmp_path / "incoming")
    proc = spawn(pipeline, "scans", tmp_path)
    assert proc.wait(120) == 78  # a configuration error: not restarted by the executor
    log = (tmp_path / "scans.log").read_text()
    assert (
        "error: unit xas.scan-files failed to start: the scan directory incoming does not exist"
        in log
    )
    assert "Traceback" not in log
