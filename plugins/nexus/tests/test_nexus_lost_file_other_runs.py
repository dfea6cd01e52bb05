"""A resume that finds its NeXus file lost names the other runs' entries that went with it.

The P65 example's run r1, then `pipeline reprocess --from r1` of an agent-only change (run r2)
writing into the same file; the file is moved away and r1 resumed. The resume rebuilt r1's
entries and said the file had held r1's 8, while r2's entries (its `stop` decision among them)
were gone from the path without a word: `entries_rebuilt_in_file 8, entries_in_file 8`. Now the
warning names r2's entries and the command that writes them again (the lock file beside the
path keeps the ledger of the runs' entries), the summary counts them
(`entries_of_other_runs_lost`), and that command does write them again."""

from __future__ import annotations

import json
import shlex
import shutil
from collections import Counter
from pathlib import Path

import h5py
import pytest
from nexus_cli import pipeline_ok, text
from nexus_testdata import DATA, P65_SCANS

pytest.importorskip("asapo_pipelines_xas")

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "p65-xas.pipeline.yaml"


def entries_by_run(path: Path) -> Counter[str]:
    with h5py.File(path, "r", swmr=True, locking=False) as f:
        return Counter(text(f[name].attrs.get("asapo_run", "")) for name in f)


def _run_and_reprocess(work: Path) -> Counter[str]:
    """The example's r1, then its reprocess r2 into the same file: the entries of each run."""
    shutil.copytree(DATA, work / "data", ignore=lambda _d, names: set(names) - set(P65_SCANS))
    shutil.copy(EXAMPLE, work / EXAMPLE.name)
    pipeline_ok(work, "run", EXAMPLE.name)
    pipeline_ok(
        work, "reprocess", EXAMPLE.name, "--from", "r1", "--set", "advisor.target_noise=1.5e-4"
    )
    return entries_by_run(work / "results" / "p65.nxs")


def test_a_resume_after_the_file_was_lost_names_the_other_runs_entries_it_held(tmp_path):
    work = tmp_path
    held = _run_and_reprocess(work)
    results = work / "results" / "p65.nxs"
    assert set(held) == {"r1", "r2"}, held

    moved = work / "moved.nxs"
    results.rename(moved)
    done = pipeline_ok(work, "run", EXAMPLE.name)
    said = " ".join((done.stdout + done.stderr).split())  # the console wraps long lines

    assert (
        f"{results} was removed or moved away since run r1 last wrote it, with "
        f"{held['r1']} entries" in said
    ), said
    command = (
        f"pipeline reprocess {work / EXAMPLE.name} --from r1 --set advisor.target_noise=0.00015"
    )
    assert (
        f"the lost file also held {held['r2']} entries of other runs, which this resume does "
        f"not write: {held['r2']} entries of run r2 of pipeline p65-xas (`{command}` writes "
        "them again)" in said
    ), said
    assert (
        f"entries_rebuilt_in_file {held['r1']}, entries_of_other_runs_lost {held['r2']}, "
        f"entries_in_file {held['r1']}" in said
    ), said

    # the command it names writes r2's results again, as a new run of the same settings
    pipeline_ok(work, *shlex.split(command)[1:])
    assert sorted(entries_by_run(results).values()) == sorted(held.values())


def test_a_run_whose_settings_the_writer_did_not_keep_is_named_with_where_they_are(tmp_path):
    """Entries written by a writer that kept no ledger (before it did): the next writer counts
    them by run, but knows no `--set` overrides for them; it names the run and where its
    settings are."""
    work = tmp_path
    held = _run_and_reprocess(work)
    lock = work / "results" / "p65.nxs.lock"
    record = json.loads(lock.read_text())
    lock.write_text(json.dumps({k: v for k, v in record.items() if k != "ledger"}))
    pipeline_ok(work, "run", EXAMPLE.name)  # r1 again: its writer counts the file's entries

    (work / "results" / "p65.nxs").unlink()
    done = pipeline_ok(work, "run", EXAMPLE.name)
    said = " ".join((done.stdout + done.stderr).split())

    assert (
        f"{held['r2']} entries of run r2 of pipeline p65-xas (`pipeline runs "
        f"{work / EXAMPLE.name}` shows run r2's settings, and `pipeline reprocess` with them "
        "writes them again)" in said
    ), said
    assert f"entries_of_other_runs_lost {held['r2']}," in said, said
