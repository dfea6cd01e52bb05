"""A YAML syntax error (P002) is said at the line the user got wrong, in words a scientist reads:
which line is indented inconsistently and how, a tab used for indentation, a quote or bracket
not closed. The parser noticed them lines later, in its own terms ("mapping values are not
allowed here" at line 19 for a key mis-indented on line 18); its words stay at the end of an
indentation sentence. Each case is one edit of the P65 example, checked through a real
`pipeline validate` process: line, column, sentence, exit 1, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import run_pipeline

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "p65-xas.pipeline.yaml"
NESTS = "YAML nests by indentation"


def _next_quote(after: int) -> int:
    """The example's first line below line `after` holding a `"`: where a quoted value left
    open on that line runs on to (the example's comments may move it)."""
    lines = EXAMPLE.read_text().splitlines()
    return next(n for n, line in enumerate(lines, 1) if n > after and '"' in line)


#: (line edited, its new text, the problem `pipeline validate` reports)
CASES = {
    "a key one space less than its siblings": (
        18,
        "   unit: xas.scan-files",
        "18:4: error P002 line 18 is indented 3 spaces where the keys around it use 4; "
        f"{NESTS} (YAML parser: mapping values are not allowed here, at line 19, column 11)",
    ),
    "a key one space more than its siblings": (
        18,
        "     unit: xas.scan-files",
        "18:6: error P002 line 18 is indented 5 spaces where the keys around it use 4; "
        f"{NESTS} (YAML parser: expected <block end>, but found '<block mapping start>', at "
        "line 19, column 5)",
    ),
    "a key under a key one space more than its siblings": (
        19,
        "     params:",
        "19:6: error P002 line 19 is indented 5 spaces where the keys around it use 4; "
        f"{NESTS} (YAML parser: mapping values are not allowed here, at line 19, column 12)",
    ),
    "the first unit one space less than the others": (
        17,
        " scans:",
        "17:2: error P002 line 17 is indented 1 space where the keys around it use 2; "
        f"{NESTS} (YAML parser: expected <block end>, but found '<block mapping start>', at "
        "line 23, column 3)",
    ),
    "a unit not indented under units:": (
        17,
        "scans:",
        "17:1: error P002 line 17 is not indented under `units:` on line 16 (0 spaces, where "
        f"line 23 below it uses 2), so `units` is left empty; {NESTS} (YAML parser: expected "
        "<block end>, but found '<block mapping start>', at line 23, column 3)",
    ),
    "a param not indented under params:": (
        20,
        "directory: data/",
        "20:1: error P002 line 20 is not indented under `params:` on line 19 (0 spaces, where "
        f"line 21 below it uses 6), so `params` is left empty; {NESTS} (YAML parser: mapping "
        "values are not allowed here, at line 21, column 14)",
    ),
    "a key with a flow value moved left out of its unit's block": (
        37,
        "  params: {target_noise: 1.2e-4, max_scans: 20}",
        # the parser stops on line 38, which is where it was: line 37 is the one that moved
        "37:3: error P002 line 37 is indented 2 spaces where the keys around it use 4; "
        f"{NESTS} (YAML parser: expected <block end>, but found '<block mapping start>', at "
        "line 38, column 5)",
    ),
    "a tab for indentation": (
        18,
        "\tunit: xas.scan-files",
        "18:1: error P002 line 18 is indented with a tab character; YAML indents with spaces only",
    ),
    "a quote not closed": (
        21,
        '      pattern: "20K_GOE_*.xdi',
        "21:16: error P002 the quoted value that starts on line 21, column 16 is not closed on "
        f'its line (no closing "), so it runs on to line {_next_quote(21)}',
    ),
    "a bracket not closed": (
        22,
        "    outputs: {scans: raw-scans",
        "22:14: error P002 the `{` on line 22, column 14 is not closed on its line (no `}`), so "
        "the file is read on to line 23, column 12, where YAML expected ',' or '}', but got ':'",
    ),
    "a colon in a value": (
        12,
        "description: XAS at P65: scan files",
        "12:24: error P002 the value of `description` on line 12 holds `: ` (column 24), which "
        "YAML reads as the start of a key; put the value in quotes",
    ),
    "a key without its colon above a block": (
        19,
        "    params",
        "19:5: error P002 line 19 `params` has no `:`, so YAML reads it as text, not as a key; "
        "write `params:` (YAML parser: could not find expected ':', at line 20, column 16)",
    ),
    "a key without its colon before its value": (
        18,
        "    unit xas.scan-files",
        "18:5: error P002 line 18 `unit xas.scan-files` has no `:`, so YAML reads it as text, "
        "not as a key; write `unit: xas.scan-files` (YAML parser: mapping values are not "
        "allowed here, at line 19, column 11)",
    ),
    "a unit's name without its colon": (
        17,
        "  scans",
        "17:3: error P002 line 17 `scans` has no `:`, so YAML reads it as text, not as a key; "
        "write `scans:` (YAML parser: mapping values are not allowed here, at line 18, column 9)",
    ),
    "a glob pattern not quoted": (
        21,
        "      pattern: *.xdi",
        "21:16: error P002 YAML reads `*.xdi` on line 21, which starts with `*`, as a reference "
        "to an anchor (`&.xdi`) the file does not define; a text that starts with `*`, such as a "
        'glob pattern, goes in quotes: "*.xdi"',
    ),
    "a lone star not quoted": (
        21,
        "      pattern: *",
        "21:16: error P002 YAML reads `*` on line 21, which starts with `*`, as a reference to "
        "an anchor the file does not define; a text that starts with `*`, such as a glob "
        'pattern, goes in quotes: "*"',
    ),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_validate_says_the_line_to_fix(tmp_path: Path, case: str) -> None:
    number, text, problem = CASES[case]
    lines = EXAMPLE.read_text().splitlines()
    lines[number - 1] = text
    (tmp_path / "bad.pipeline.yaml").write_text("\n".join(lines) + "\n")
    done = run_pipeline("validate", "bad.pipeline.yaml", cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert done.stdout.splitlines()[0] == f"bad.pipeline.yaml:{problem}"
