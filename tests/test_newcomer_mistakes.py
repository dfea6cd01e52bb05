"""Mistakes of a first hour with the core units and `pipeline new-unit`, through the real
`pipeline` command: each answer names the fix, not only what is wrong."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from helpers import run_pipeline, wait_for

#: one level of indentation off, both ways: a parameter and a port beside `params:`, and an
#: instance's `outputs:` under it
MISPLACED = """\
pipeline: indent
units:
  files:
    unit: core.files
    params:
      directory: data
    settle_seconds: 2
    files: raw
  copy:
    unit: core.identity
    inputs: {input: raw}
    params:
      outputs: {output: copied}
"""


def test_a_key_at_the_wrong_indentation_says_where_it_belongs(tmp_path: Path):
    (tmp_path / "indent.pipeline.yaml").write_text(MISPLACED, encoding="utf-8")
    checked = run_pipeline("validate", "indent.pipeline.yaml", cwd=tmp_path)
    assert checked.returncode == 1, checked.stdout + checked.stderr
    lines = checked.stdout.splitlines()
    assert (
        "indent.pipeline.yaml:7:5: error P102 unknown field 'settle_seconds' in units.files: "
        "it is a parameter of core.files; indent it under params:"
    ) in lines, checked.stdout
    assert (
        "indent.pipeline.yaml:8:5: error P102 unknown field 'files' in units.files: it is an "
        "output port of core.files; write it under outputs:"
    ) in lines, checked.stdout
    assert (
        "indent.pipeline.yaml:13:7: error P204 unknown parameter 'outputs' in units.copy.params: "
        "it is a field of the unit instance, not a parameter of core.identity; indent it as far "
        "as params:"
    ) in lines, checked.stdout


def test_an_unknown_field_of_no_unit_still_lists_the_allowed_ones(tmp_path: Path):
    text = MISPLACED.replace("    settle_seconds: 2\n    files: raw\n", "    ouputs: {a: b}\n")
    (tmp_path / "typo.pipeline.yaml").write_text(text, encoding="utf-8")
    checked = run_pipeline("validate", "typo.pipeline.yaml", cwd=tmp_path)
    assert "unknown field 'ouputs' in units.files; did you mean outputs?" in checked.stdout


def test_a_list_where_a_mapping_belongs_says_to_drop_the_dashes(tmp_path: Path):
    # units written as a list, the way other tools' files list their steps
    text = "pipeline: dashes\nunits:\n  - files:\n      unit: core.files\n"
    (tmp_path / "dashes.pipeline.yaml").write_text(text, encoding="utf-8")
    checked = run_pipeline("validate", "dashes.pipeline.yaml", cwd=tmp_path)
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert checked.stdout.splitlines() == [
        "dashes.pipeline.yaml:3:3: error P103 units: input should be a valid dictionary; it is "
        "a list here, where `key: value` lines (no `- ` before them) belong"
    ]


def test_text_where_a_boolean_or_a_number_belongs_says_what_to_write(tmp_path: Path):
    text = (
        "pipeline: types\nunits:\n  files:\n    unit: core.files\n    params:\n"
        '      directory: data\n      watch: yes\n      recursive: "true"\n'
        '      settle_seconds: "2.5"\n    outputs: {files: f}\n    replicas: "2"\n'
        '    retry: {attempts: "1.5"}\n'
        "streams:\n  f: {}\n"
    )
    (tmp_path / "types.pipeline.yaml").write_text(text, encoding="utf-8")
    checked = run_pipeline("validate", "types.pipeline.yaml", cwd=tmp_path)
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert [line.split(" error ")[1] for line in checked.stdout.splitlines()] == [
        "P202 units.files.params.watch: input should be a valid boolean (got 'yes'); write true "
        "or false (yes, no, on and off are text)",
        "P202 units.files.params.recursive: input should be a valid boolean (got 'true'); write "
        "true without quotes",
        "P202 units.files.params.settle_seconds: input should be a valid number (got '2.5'); "
        "write the number without quotes",
        "P103 units.files.replicas: input should be a valid integer (got '2'); write the number "
        "without quotes",
        # not a whole number: unquoted it is still no integer, so no such advice
        "P103 units.files.retry.attempts: input should be a valid integer (got '1.5')",
    ], checked.stdout


def test_add_to_the_folder_new_unit_ran_in_names_the_package_folder(tmp_path: Path):
    made = run_pipeline("new-unit", "acme.peak-finder", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    # from where `new-unit` was run, `--add-to .` as the package's README says
    added = run_pipeline(
        "new-unit", "acme.counter", "--kind", "source", "--add-to", ".", cwd=tmp_path
    )
    assert added.returncode == 2
    assert added.stderr == (
        "error: . is not a plugin package (it has no pyproject.toml): --add-to names the "
        "package's own directory; did you mean --add-to asapo-pipelines-acme?\n"
    )
    assert not (tmp_path / "asapo_pipelines_acme").exists()


def test_add_to_the_package_here_says_no_cd(tmp_path: Path):
    assert run_pipeline("new-unit", "acme.peak-finder", cwd=tmp_path).returncode == 0
    package = tmp_path / "asapo-pipelines-acme"
    added = run_pipeline(
        "new-unit", "acme.counter", "--kind", "source", "--add-to", ".", cwd=package
    )
    assert added.returncode == 0, added.stderr
    assert added.stdout.splitlines()[-1] == "next: pip install -e '.[test]' && pytest"


def _docs_feed_example() -> str:
    """The Python block of docs/pipeline-files.md that feeds an external stream."""
    page = (Path(__file__).parents[1] / "docs" / "pipeline-files.md").read_text(encoding="utf-8")
    (block,) = [b for b in re.findall(r"```python\n(.*?)```", page, re.S) if "def feed" in b]
    return block


def test_the_documented_feed_of_an_external_stream_reaches_the_starter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    made = run_pipeline("new", "fed", "-u", "core.identity", "-u", "core.jsonl-sink", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert "identity-input: {external: true}" in (tmp_path / "fed.pipeline.yaml").read_text()
    monkeypatch.chdir(tmp_path)  # "run it in the file's folder"
    exec(compile(_docs_feed_example(), "pipeline-files.md", "exec"), {})
    started = run_pipeline("run", "fed.pipeline.yaml", "--detach", cwd=tmp_path)
    assert started.returncode == 0, started.stdout + started.stderr
    out = tmp_path / "results" / "out.jsonl"
    try:
        wait_for(
            lambda: out.is_file() and len(out.read_text().splitlines()) == 2,
            timeout=60,
            what="the two fed messages in the sink's file",
        )
    finally:
        stopped = run_pipeline("stop", "fed.pipeline.yaml", cwd=tmp_path)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    tail = run_pipeline("tail", "fed.pipeline.yaml", "output", "--json", cwd=tmp_path)
    assert [json.loads(line)["value"] for line in tail.stdout.splitlines()] == [
        {"value": 1},
        {"value": 2},
    ]


def test_a_starter_with_a_sink_twice_gives_each_its_own_file(tmp_path: Path):
    made = run_pipeline(
        "new", "two", "-u", "core.files", "-u", "core.jsonl-sink", "-u", "core.jsonl-sink",
        cwd=tmp_path,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    (tmp_path / "data" / "a.txt").write_text("a")
    ran = run_pipeline("run", "two.pipeline.yaml", cwd=tmp_path)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    # each sink's file holds the one file's message once, not both sinks' lines in one file
    for name in ("out.jsonl", "out_2.jsonl"):
        lines = (tmp_path / "results" / name).read_text().splitlines()
        assert [json.loads(line)["metadata"]["name"] for line in lines] == ["a.txt"], name


def test_validate_without_a_file_checks_the_files_here(tmp_path: Path):
    # `pipeline run` takes the one file here; `pipeline validate` typed the same way checks it
    assert run_pipeline("new", "here", cwd=tmp_path).returncode == 0
    checked = run_pipeline("validate", cwd=tmp_path)
    assert (checked.returncode, checked.stdout) == (0, ""), checked.stderr
    assert checked.stderr.splitlines()[-1] == "here.pipeline.yaml: valid"
    (tmp_path / "broken.pipeline.yaml").write_text("pipeline: broken\n", encoding="utf-8")
    both = run_pipeline("validate", cwd=tmp_path)
    assert both.returncode == 1
    assert both.stdout.startswith("broken.pipeline.yaml:1:1: error P101 "), both.stdout
    assert both.stderr.splitlines()[-2:] == [
        "broken.pipeline.yaml: invalid (1 error)",
        "here.pipeline.yaml: valid",
    ]
    empty = tmp_path / "empty"
    empty.mkdir()
    none = run_pipeline("validate", cwd=empty)
    assert (none.returncode, none.stderr) == (
        2,
        "error: give the pipeline files to check (there is no *.pipeline.yaml here)\n",
    )


def test_a_show_unit_snippet_pasted_unindented_says_to_indent_it(tmp_path: Path):
    shown = run_pipeline("show-unit", "core.files")
    snippet = shown.stdout.split("Example (paste under `units:`):\n")[1]
    text = f"pipeline: pasted\nunits:\n{snippet}"
    (tmp_path / "pasted.pipeline.yaml").write_text(text, encoding="utf-8")
    checked = run_pipeline("validate", "pasted.pipeline.yaml", cwd=tmp_path)
    assert checked.returncode == 1
    assert (
        "pasted.pipeline.yaml:3:1: error P102 unknown field 'files' in the top level: it is a "
        "unit instance (it has unit:); indent it under units:"
    ) in checked.stdout.splitlines(), checked.stdout


def test_a_pipeline_file_named_without_its_suffix_is_found_for_the_user(tmp_path: Path):
    assert run_pipeline("new", "night", cwd=tmp_path).returncode == 0
    checked = run_pipeline("validate", "night.yaml", "nihgt.pipeline.yaml", cwd=tmp_path)
    assert checked.returncode == 2
    assert checked.stdout.splitlines() == [
        "night.yaml:1:1: error P001 cannot read the file: no such file or directory; did you "
        "mean night.pipeline.yaml?",
        "nihgt.pipeline.yaml:1:1: error P001 cannot read the file: no such file or directory; "
        "did you mean night.pipeline.yaml?",
    ]
    status = run_pipeline("status", "night", cwd=tmp_path)
    assert (status.returncode, status.stderr) == (
        2,
        "error: no such file: night; did you mean night.pipeline.yaml?\n",
    )
    folder = run_pipeline("graph", tmp_path.name, cwd=tmp_path.parent)
    assert (
        f"is a directory, not a file; did you mean {tmp_path.name}/night.pipeline.yaml?"
        in folder.stderr
    ), folder.stderr
    # nothing near: the sentence stays as it was
    far = run_pipeline("status", "other.pipeline.yaml", cwd=tmp_path)
    assert far.stderr == "error: no such file: other.pipeline.yaml\n"


def test_run_and_tail_of_a_misspelled_file_say_which_file_was_meant(tmp_path: Path):
    """`pipeline run` and `pipeline tail` said only `no such file` (tail: `pipeline file ...
    does not exist`) where `validate`, `status` and `logs` name the file beside it."""
    assert run_pipeline("new", "night", cwd=tmp_path).returncode == 0
    meant = "; did you mean night.pipeline.yaml?\n"
    for args in (
        ("run", "nihgt.pipeline.yaml"),
        ("run", "night"),
        ("reprocess", "--from", "r1", "night.yml"),
        ("tail", "nihgt.pipeline.yaml", "files"),
        ("runs", "night"),
    ):
        said = run_pipeline(*args, cwd=tmp_path)
        assert (said.returncode, said.stderr) == (
            2,
            f"error: no such file: {args[-2] if args[0] == 'tail' else args[-1]}{meant}",
        ), args
    streams = run_pipeline("streams", "nihgt.pipeline.yaml", cwd=tmp_path)
    assert streams.stderr.endswith(meant), streams.stderr
    assert not (tmp_path / ".pipeline-data").exists()  # nothing ran, nothing was made


def test_a_starter_ending_in_a_result_validates_and_runs_here_first(tmp_path: Path):
    """A starter whose last unit writes a stream validated `valid (1 warning)` (P307, a
    stream no unit reads: the result the user chained the units for), and named Nomad in its
    `deploy:`, so `status` before a first run said `cannot reach Nomad` rather than to run it."""
    made = run_pipeline("new", "night", "-u", "core.files", "-u", "core.identity", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    checked = run_pipeline("validate", "night.pipeline.yaml", cwd=tmp_path)
    assert (checked.returncode, checked.stdout, checked.stderr) == (
        0,
        "",
        "night.pipeline.yaml: valid\n",
    )
    assert (
        "pipeline tail night.pipeline.yaml output" in (tmp_path / "night.pipeline.yaml").read_text()
    )
    status = run_pipeline("status", "night.pipeline.yaml", cwd=tmp_path)
    assert (status.returncode, status.stderr) == (
        2,
        "error: no local run of night.pipeline.yaml is recorded; start one with `pipeline run`\n",
    )
    # the cluster is the one edit the file's comment says: the nomad line for `local: {}`
    text = (tmp_path / "night.pipeline.yaml").read_text()
    nomad = text.replace("  local: {}\n  # nomad:", "  nomad:")
    assert nomad != text
    (tmp_path / "night.pipeline.yaml").write_text(nomad)
    checked = run_pipeline("validate", "night.pipeline.yaml", cwd=tmp_path)
    assert (checked.returncode, checked.stdout, checked.stderr) == (
        0,
        "",
        "night.pipeline.yaml: valid\n",
    )
    # the file now names the cluster: `status` asks it (here a port nobody listens on)
    import socket

    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        nobody = f"http://127.0.0.1:{free.getsockname()[1]}"
    status = run_pipeline("status", "night.pipeline.yaml", cwd=tmp_path, env={"NOMAD_ADDR": nobody})
    assert f"cannot reach Nomad at {nobody}" in status.stderr, status.stderr


def test_the_starters_empty_data_folder_is_said_on_the_first_run(tmp_path: Path):
    """`pipeline new` makes an empty `data/`; the first run ended `lines_written 0` with every
    task exiting 0 and no hint, where `xas.scan-files` warns of a folder nothing matches in."""
    assert run_pipeline("new", "night", cwd=tmp_path).returncode == 0
    warning = "files[0] WARNING no file in data matches pattern '*' (it holds no files): nothing"
    ran = run_pipeline("run", "night.pipeline.yaml", cwd=tmp_path)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "lines_written 0" in ran.stdout
    assert warning in ran.stdout + ran.stderr
    logs = run_pipeline("logs", "night.pipeline.yaml", "files", cwd=tmp_path)
    assert f"{warning} is read\n" in logs.stdout + logs.stderr
    # files put there: read, and no warning
    (tmp_path / "data" / "a.txt").write_text("a\n")
    again = run_pipeline("run", "night.pipeline.yaml", "--fresh", cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "lines_written 1" in again.stdout
    assert "WARNING" not in again.stdout + again.stderr


def test_a_directory_param_that_does_not_exist_is_a_located_warning(tmp_path: Path):
    """`validate` called a file valid whose core.files directory was mistyped; `run` then
    stopped at start (exit 78). Now a warning at the value's line (not an error: on a
    cluster the directory may exist only on the nodes), naming the folder beside it."""
    assert run_pipeline("new", "night", cwd=tmp_path).returncode == 0
    path = tmp_path / "night.pipeline.yaml"
    path.write_text(path.read_text().replace('directory: "data"', 'directory: "dta"'))
    checked = run_pipeline("validate", "night.pipeline.yaml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    line = next(n for n, t in enumerate(path.read_text().splitlines(), 1) if "dta" in t)
    assert checked.stdout.splitlines() == [
        f"night.pipeline.yaml:{line}:18: warning P208 units.files.params.directory: dta does "
        "not exist here (did you mean data?), so `pipeline run` here would refuse to start; "
        "make it, or ignore this if it exists only on the nodes the pipeline deploys to"
    ]
    assert checked.stderr == "night.pipeline.yaml: valid (1 warning)\n"
    (tmp_path / "dta").mkdir()
    checked = run_pipeline("validate", "night.pipeline.yaml", cwd=tmp_path)
    assert (checked.stdout, checked.stderr) == ("", "night.pipeline.yaml: valid\n")


def test_a_run_with_a_set_directory_that_does_not_exist_is_refused_before_it_starts(
    tmp_path: Path,
):
    """`pipeline run FILE --set files.directory=nosuch/ --resume` started every worker, then
    the source failed (exit 78), and the session was recorded `failed` under that override:
    the next plain `pipeline run FILE` was refused for a changed configuration. The folder is
    now checked of the pipeline as it will run, before anything is recorded: one sentence,
    exit 78 (a configuration error, as the worker's), the run as it was."""
    assert run_pipeline("new", "night", cwd=tmp_path).returncode == 0
    (tmp_path / "data" / "a.txt").write_text("a\n")
    first = run_pipeline("run", "night.pipeline.yaml", cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr

    def runs() -> list[tuple[str, str, int]]:
        listed = run_pipeline("runs", "night.pipeline.yaml", "--json", cwd=tmp_path)
        assert listed.returncode == 0, listed.stderr
        return [(r["id"], r["state"], r["sessions"]) for r in json.loads(listed.stdout)["runs"]]

    before = runs()
    folder = tmp_path.resolve() / "nosuch"
    for extra in (("--resume",), ("--fresh",), ("--detach",)):
        ran = run_pipeline(
            "run", "night.pipeline.yaml", "--set", "files.directory=nosuch/", *extra,
            cwd=tmp_path, timeout=120,
        )  # fmt: skip
        assert (ran.returncode, ran.stdout) == (78, ""), (extra, ran.stdout + ran.stderr)
        assert ran.stderr == (
            f"error: --set files.directory: the folder {folder} does not exist here, so unit "
            "files could not start; nothing was started or recorded\n"
        ), ran.stderr
        assert runs() == before
    # the file's own folder, mistyped: the same refusal, named as the file's param
    path = tmp_path / "night.pipeline.yaml"
    text = path.read_text()
    path.write_text(text.replace('directory: "data"', 'directory: "dta"'))
    ran = run_pipeline("run", "night.pipeline.yaml", "--fresh", cwd=tmp_path)
    assert ran.returncode == 78, ran.stdout + ran.stderr
    assert ran.stderr.startswith(
        f"error: files.directory: the folder {tmp_path.resolve() / 'dta'} does not exist here "
        "(did you mean data?)"
    ), ran.stderr
    assert runs() == before
    path.write_text(text)
    # nothing was recorded under the override: a plain run goes on with the run as it was
    again = run_pipeline("run", "night.pipeline.yaml", cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "resuming run r1 of pipeline night (unchanged)" in again.stdout, again.stdout


def test_a_bad_set_value_is_said_in_validates_words(tmp_path: Path):
    """`--set files.recursive=yes` said `Input should be a valid boolean, not 'yes'` where
    `validate` says of the same value in the file `input should be a valid boolean (got
    'yes'); write true or false ...`: one mistake, one sentence, wherever it is made."""
    assert run_pipeline("new", "night", cwd=tmp_path).returncode == 0
    path = tmp_path / "night.pipeline.yaml"
    text = path.read_text()
    for param, value in (("recursive", "yes"), ("settle_seconds", "lots")):
        path.write_text(text.replace(f"      # {param}:", f"      {param}: {value}  #"))
        checked = run_pipeline("validate", "night.pipeline.yaml", cwd=tmp_path)
        assert checked.returncode == 1, checked.stdout
        said = checked.stdout.split(f"error P202 units.files.params.{param}: ")[1].rstrip("\n")
        path.write_text(text)
        ran = run_pipeline(
            "run", "night.pipeline.yaml", "--set", f"files.{param}={value}", cwd=tmp_path
        )
        assert (ran.returncode, ran.stderr) == (1, f"error: --set files.{param}: {said}\n")
    assert (
        "(got 'yes'); write true or false"
        in run_pipeline(
            "run", "night.pipeline.yaml", "--set", "files.recursive=yes", cwd=tmp_path
        ).stderr
    )


def test_a_run_waiting_on_an_external_stream_says_so(tmp_path: Path):
    """The starter of `pipeline new -u core.identity -u core.jsonl-sink` reads a stream
    declared external; its run waited for what another program writes there and said
    nothing of it, looking hung."""
    import subprocess

    from helpers import PIPELINE
    from leaked_processes import stop_run

    assert (
        run_pipeline(
            "new", "feed", "-u", "core.identity", "-u", "core.jsonl-sink", cwd=tmp_path
        ).returncode
        == 0
    )
    run = subprocess.Popen(
        [PIPELINE, "run", "feed.pipeline.yaml"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert run.stdout is not None
        first = [run.stdout.readline() for _ in range(2)]
    finally:
        stop_run(run, tmp_path / "feed.pipeline.yaml", cwd=tmp_path)
    assert first == [
        "run r1 of pipeline feed starts\n",
        "waiting for messages on external stream identity-input, which another program writes "
        "(see docs/pipeline-files.md, `streams`); the run goes on until stopped (Ctrl-C)\n",
    ]
