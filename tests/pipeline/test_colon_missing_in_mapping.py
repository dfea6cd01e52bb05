"""A key written without its colon inside a mapping (`factor 5` under `params:`) parses: YAML
reads the line as text, the value of the section. `pipeline validate` says so and how to write
it, as it does for `unit xas.normalize` (P002), under the code the value's problem always had.
Each case is one edit of the P65 example, through a real `pipeline validate` process."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import run_pipeline

# the cases edit the P65 example, whose units the XAS plugin provides (the core's own session
# has no plugin: there every unit of the file is unknown); they run in the `all` session
pytest.importorskip("asapo_pipelines_xas", reason="the P65 example needs the XAS plugin")

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "p65-xas.pipeline.yaml"

#: (first line replaced, lines replaced, new lines, the first problem reported)
CASES = {
    "a parameter under params": (
        26,
        3,
        ["      mode transmission"],
        "26:7: error P103 units.normalize.params: input should be a valid dictionary (got "
        "'mode transmission'); YAML reads `mode transmission` as text, not as a key (it has no "
        "`:`); write `mode: transmission`",
    ),
    "a field of a nested parameter": (
        27,
        1,
        ["      autobk:", "        rbkg 1"],
        "28:9: error P202 units.normalize.params.autobk: input should be a valid dictionary "
        "(got 'rbkg 1'); YAML reads `rbkg 1` as text, not as a key (it has no `:`); "
        "write `rbkg: 1`",
    ),
    "two parameters, folded into one text": (
        20,
        2,
        ["      directory data/", '      pattern "20K_GOE_*.xdi"'],
        "20:7: error P103 units.scans.params: input should be a valid dictionary (got "
        "'directory data/ pattern \"20K_GOE_*.xdi\"'); YAML reads `directory data/ pattern "
        '"20K_GOE_*.xdi"` as text, not as a key (it has no `:`); write each key with `:` after '
        "it",
    ),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_validate_names_the_missing_colon(tmp_path: Path, case: str) -> None:
    first, count, new, problem = CASES[case]
    lines = EXAMPLE.read_text().splitlines()
    lines[first - 1 : first - 1 + count] = new
    (tmp_path / "bad.pipeline.yaml").write_text("\n".join(lines) + "\n")
    done = run_pipeline("validate", "bad.pipeline.yaml", cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert done.stdout.splitlines()[0] == f"bad.pipeline.yaml:{problem}"


def test_text_that_is_no_key_gets_no_hint(tmp_path: Path) -> None:
    """A port's stream written as a value (`outputs: raw-scans`) is not a key without a colon:
    the fix is not `raw-scans:`, so nothing is suggested."""
    lines = EXAMPLE.read_text().splitlines()
    lines[21] = "    outputs: raw-scans"
    (tmp_path / "bad.pipeline.yaml").write_text("\n".join(lines) + "\n")
    done = run_pipeline("validate", "bad.pipeline.yaml", cwd=tmp_path)
    assert done.returncode == 1
    assert (
        "bad.pipeline.yaml:22:14: error P103 units.scans.outputs: input should be a valid "
        "dictionary (got 'raw-scans')"
    ) in done.stdout.splitlines()
