"""A merge redelivered after the writer was killed arrives after later merges: the root's
`default` (what NeXpy, silx and h5web open) still names the newest merge of the stream, also once
a writer reopens the file, and each merge's title numbers it by its place in the stream, not by
the order the writer got it in. A later run's merge is newer than any of an earlier run's."""

from __future__ import annotations

import json

import h5py
import pytest
from nexus_testdata import P65_SCANS, p65_scan_message, result_message

RUN_1 = {"run": "r1", "started": 1_700_000_000.0, "pipeline": "p65"}
RUN_2 = {"run": "r2", "started": 1_700_086_400.0, "pipeline": "p65"}
GROUP = {"sample": "20K_GOE_Fe_K_240", "element": "Fe", "edge": "K"}


@pytest.fixture(scope="module")
def body() -> dict:
    return result_message(p65_scan_message(P65_SCANS[0]), merged=True)


#: the pipeline of the merge unit (its provenance's unit label), which leads every title
PIPELINE = "p65"


def merge(unit_message, body, number, run, *, redelivered=False):
    """The merge of `number` scans, message `number` of its run's `merged` stream (every scan
    of the group makes one merge), as the writer's worker receives it."""
    sent = {**body, "n_merged": number, "n_scans": number, "group": dict(GROUP)}
    prov = {"unit": f"{PIPELINE}/merge", "port": "merged", "inputs": [], "seq": 0}
    prov.update(key=f"merge:{number}", run=run["run"], fingerprint="f" * 16)
    return unit_message(
        sent,
        port="merged",
        id=number,
        data_source=f"{PIPELINE}.{run['run']}.merged",
        metadata={"provenance": prov},
        delivery_count=2 if redelivered else 1,
    )


def write(unit_harness, path, run, *sent):
    """One writer process: opens the file, writes `sent` in that order, closes it."""
    harness = unit_harness("nexus.writer", params={"file": str(path)})
    harness.runner.context.run = dict(run)
    harness.send(*sent)
    assert harness.result.errors == []
    harness.shutdown()


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def merges(path) -> dict[tuple[str, int], dict]:
    """(run, message id) -> name, title and scan count of every merge entry, read with h5py."""
    found = {}
    with h5py.File(path, "r", swmr=True, locking=False) as f:
        for name, entry in f.items():
            if _text(entry.attrs["asapo_content_type"]) != "xas/merged":
                continue
            inputs = json.loads(_text(entry["provenance/inputs/data"][()]))
            found[(_text(entry.attrs["asapo_run"]), inputs["message"]["id"])] = {
                "entry": name,
                "title": _text(entry["title"][()]),
                "n_merged": int(entry["process/results/n_merged"][()]),
            }
    return found


def default(path) -> str:
    with h5py.File(path, "r", swmr=True, locking=False) as f:
        return _text(f.attrs["default"])


def test_a_merge_redelivered_after_a_kill_is_not_taken_for_the_newest(
    tmp_path, unit_harness, unit_message, body
):
    path = tmp_path / "p65.nxs"
    # the first writer stored merges 1 to 5 and was killed holding merge 6; its successor gets
    # merges 7 and 8 first, then merge 6 again
    write(unit_harness, path, RUN_1, *(merge(unit_message, body, n, RUN_1) for n in range(1, 6)))
    write(
        unit_harness,
        path,
        RUN_1,
        merge(unit_message, body, 7, RUN_1),
        merge(unit_message, body, 8, RUN_1),
        merge(unit_message, body, 6, RUN_1, redelivered=True),
    )
    stored = merges(path)
    assert sorted(stored) == [("r1", n) for n in range(1, 9)]  # none lost, none twice
    newest = stored[("r1", max(n for _, n in stored))]
    assert newest["n_merged"] == 8
    assert default(path) == newest["entry"]
    label = ", ".join(GROUP.values())
    for (_, number), merged in stored.items():
        scans = f"{merged['n_merged']} scan{'' if merged['n_merged'] == 1 else 's'}"
        assert merged["title"] == f"{PIPELINE} r1: merge {number} of {label} ({scans})"

    # a writer reopening the file (a restart, the next session) finds the newest merge in it
    with h5py.File(path, "a") as f:
        del f.attrs["default"]
    write(unit_harness, path, RUN_1)
    assert default(path) == newest["entry"]

    # the next run's streams number their messages from 1 again: its first merge is newer
    write(unit_harness, path, RUN_2, merge(unit_message, body, 1, RUN_2))
    later = merges(path)[("r2", 1)]
    assert default(path) == later["entry"]
    assert later["title"] == f"{PIPELINE} r2: merge 1 of {label} (1 scan)"
    write(unit_harness, path, RUN_2)
    assert default(path) == later["entry"]


def test_merges_of_two_groups_are_numbered_each_in_its_group(
    tmp_path, unit_harness, unit_message, body
):
    """Two samples measured in turn: the merged stream holds A, B, A, B. Titles numbered by
    message id said `merge 3 of A` for A's second merge, and no `merge 2` of A existed;
    `xas.merge` numbers each group's merges (`number`), and the titles follow it."""
    path = tmp_path / "p65.nxs"
    groups = [dict(GROUP), {**GROUP, "sample": "hematite"}]
    sent = []
    for msg_id in range(1, 5):
        group, number = groups[(msg_id - 1) % 2], (msg_id + 1) // 2
        message = merge(unit_message, body, msg_id, RUN_1)
        message.value.update(group=group, n_merged=number, n_scans=number, number=number)
        sent.append(message)
    write(unit_harness, path, RUN_1, *sent)
    titles = {msg_id: m["title"] for (_, msg_id), m in merges(path).items()}
    labels = [", ".join(g.values()) for g in groups]
    assert titles == {
        1: f"{PIPELINE} r1: merge 1 of {labels[0]} (1 scan)",
        2: f"{PIPELINE} r1: merge 1 of {labels[1]} (1 scan)",
        3: f"{PIPELINE} r1: merge 2 of {labels[0]} (2 scans)",
        4: f"{PIPELINE} r1: merge 2 of {labels[1]} (2 scans)",
    }
