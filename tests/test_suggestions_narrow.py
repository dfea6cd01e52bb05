"""`pipeline suggestions` on an 80-column terminal (or a pipe) prints a block per suggestion:
its eight-column table cut an agent's reason into some 50 lines of five letters and its target
inside words. A wide terminal keeps the table."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest

from asapo_pipelines.cli.suggestions import _table

REASON = (
    "noise 1.30e-04 after 2 merged scans, target 1.20e-04; uncertain: the fitted floor "
    "1.12e-04 ± 3.56e-05 (fit of eps² = a²/N + b² to 3 points) is not used: 3 points at 2 "
    "numbers of scans cannot tell a floor from 1/sqrt(N); asking for 1 more"
)
TARGET = "20K_GOE_Fe_K_240/Fe/K/transmission"


def _entry(uid: str) -> SimpleNamespace:
    """A suggestion as the bluesky plugin's inbox lists it (the fields the listing reads)."""
    return SimpleNamespace(
        uid=uid,
        state="submitted",
        action="more_scans",
        target=TARGET,
        scans=1,
        confidence=0.5,
        reason=REASON,
        state_reason="queued as item 7",
        numbers={"noise": 1.302e-4, "target_noise": 1.2e-4, "merged": 2, "predicted_scans": 3},
    )


def _shown(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], cols: int) -> str:
    monkeypatch.setenv("COLUMNS", str(cols))
    _table([_entry("a1b2c3d4e5f6a7b8"), _entry("0f9e8d7c6b5a4")])
    return capsys.readouterr().out


def test_a_narrow_terminal_gets_a_readable_block_per_suggestion(monkeypatch, capsys):
    out = _shown(monkeypatch, capsys, 80)
    lines = out.splitlines()
    assert all(len(line) <= 80 for line in lines), out
    heads = [line for line in lines if re.match(r"^[0-9a-f]{12}  ", line)]
    assert heads == [
        f"a1b2c3d4e5f6  submitted  more_scans  {TARGET}",
        f"0f9e8d7c6b5a  submitted  more_scans  {TARGET}",
    ]
    # every word of the reason, in order, and no word cut in two
    words = " ".join(line.strip() for line in lines if line.startswith("    ")).split()
    assert " ".join(words).endswith(f"{REASON} [queued as item 7]")
    assert len(lines) <= 1 + 2 * 8, out  # a few lines each, not one per five letters


def test_a_wide_terminal_keeps_the_table(monkeypatch, capsys):
    out = _shown(monkeypatch, capsys, 200)
    assert re.search(r"┃ id\s+┃ state\s+┃ action", out), out
    assert TARGET in out
