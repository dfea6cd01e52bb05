"""Edge cases of reading a pipeline file: unbounded inputs, where empty and merged values are
located, names with a trailing newline, empty sections, bad bytes, merge keys, deep nesting.

Each test asserts what the user sees: the exact `FILE:LINE:COL: severity CODE message` lines.
"""

from __future__ import annotations

import os
import resource
import subprocess
from pathlib import Path

import pytest

from asapo_pipelines.pipeline import load_pipeline, validate_file
from asapo_pipelines.pipeline.loader import MAX_BYTES
from asapo_pipelines.pipeline.model import Batch, Retry, StreamDecl

from helpers import CACHE_DIR, PIPELINE

TOO_LARGE = f"error P001 the file holds more than the {MAX_BYTES:,} bytes a pipeline file may have"
#: a process that reads a device to its end must fail fast, not take the test machine with it
MEMORY_CAP = 2 * 1024**3


def _cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def _validate_cli(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """`pipeline validate ARGS` as a user runs it, with the core's units only."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASAPO_PIPELINES_")}
    env.update(ASAPO_PIPELINES_CACHE_DIR=CACHE_DIR, ASAPO_PIPELINES_PLUGINS="core")
    return subprocess.run(
        [PIPELINE, "validate", *args],
        input=stdin,
        capture_output=True,
        env=env,
        timeout=120,
        preexec_fn=_cap_memory,
        check=False,
    )


def _report(tmp_path: Path, catalog, text: str | bytes) -> str:
    path = tmp_path / "p.pipeline.yaml"
    if isinstance(text, str):
        text = text.encode()
    path.write_bytes(text)
    return validate_file(path, catalog).text().replace(f"{path}:", "")


# -- 1: inputs without a size ------------------------------------------------------------------
@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_a_device_is_refused_after_the_size_limit() -> None:
    done = _validate_cli("/dev/zero")
    assert done.stdout.decode() == f"/dev/zero:1:1: {TOO_LARGE}\n"
    assert done.stderr.decode() == "/dev/zero: could not be checked\n"
    assert done.returncode == 2  # like a regular file past the limit (P001)


def test_standard_input_is_refused_after_the_size_limit() -> None:
    lines = b"# a comment line of a pipeline file that never ends\n"
    done = _validate_cli("-", stdin=lines * (MAX_BYTES // len(lines) + 1))
    assert done.stdout.decode() == f"<stdin>:1:1: {TOO_LARGE}\n"
    assert done.returncode == 2


def test_standard_input_that_is_not_utf8_is_located_like_a_file() -> None:
    done = _validate_cli("-", stdin=b"pipeline: \xff\n")
    assert done.stdout.decode() == (
        "<stdin>:1:11: error P002 the file is not UTF-8 text (byte 0xff)\n"
    )
    assert done.returncode == 1


# -- 2: empty values are located at their key ---------------------------------------------------
def test_an_empty_value_is_located_at_its_key(tmp_path: Path, catalog) -> None:
    text = (
        "pipeline: p\n"
        "units:\n"
        "  files:\n"
        "    unit: core.files\n"
        "    params:\n"
        "      directory:\n"
        '      pattern: "*.txt"\n'
        "    outputs: {files: raw}\n"
        "    replicas:\n"
    )
    assert _report(tmp_path, catalog, text).splitlines() == [
        "6:7: error P202 units.files.params.directory: input should be a valid string (got None)",
        "8:22: warning P307 stream 'raw' written by files.files is not read by any unit; "
        "declare it under streams: if another program reads it",
        "9:5: error P103 units.files.replicas: input should be a valid integer (got None)",
    ]


# -- 3: the mapping's own keys win over `<<:` ------------------------------------------------------
def test_a_value_overriding_a_merge_is_located_where_it_is_written(tmp_path: Path, catalog) -> None:
    text = (
        "pipeline: p\n"
        "x-defaults: &d\n"
        "  replicas: 2\n"
        "  resources: {cpu: 100}\n"
        "units:\n"
        "  files:\n"
        "    <<: *d\n"
        "    unit: core.files\n"
        '    params: {directory: ".", pattern: "*.txt"}\n'
        '    replicas: "two"\n'
        "    resources: {cpu: 0}\n"
        "    outputs: {files: raw}\n"
        "streams: {raw: {}}\n"
    )
    assert _report(tmp_path, catalog, text).splitlines() == [
        "10:15: error P103 units.files.replicas: input should be a valid integer (got 'two')",
        "11:22: error P103 units.files.resources.cpu: input should be greater than or equal to 1 "
        "(got 0)",
    ]


# -- 4: names ending in a newline ---------------------------------------------------------------
def test_names_ending_in_a_newline_are_refused(tmp_path: Path, catalog) -> None:
    text = (
        'pipeline: "nlx\\n"\n'
        "units:\n"
        '  "files\\n":\n'
        "    unit: core.files\n"
        '    params: {directory: ".", pattern: "*.txt"}\n'
        '    outputs: {"files\\n": "raw\\n"}\n'
    )
    problems = [line for line in _report(tmp_path, catalog, text).splitlines() if "P104" in line]
    assert problems == [
        "1:11: error P104 pipeline name 'nlx\\n' is not valid: use lower case letters, digits "
        "and -, starting with a letter, at most 63 characters",
        "3:3: error P104 unit instance name 'files\\n' is not valid: use lower case letters, "
        "digits, - and _, starting with a letter",
        "6:15: error P104 port name 'files\\n' is not valid: use lower case letters, digits and _",
        "6:26: error P104 stream name 'raw\\n' is not valid: use letters, digits, '.', '_' and "
        "'-', starting with a letter or digit",
    ]


# -- 5: empty sections mean their defaults --------------------------------------------------------
def test_empty_sections_mean_their_defaults(tmp_path: Path, catalog) -> None:
    text = (
        "pipeline: p\n"
        "streams:\n"
        "  plans:\n"
        "units:\n"
        "  files:\n"
        "    unit: core.files\n"
        '    params: {directory: ".", pattern: "*.txt"}\n'
        "    outputs: {files: plans}\n"
        "    retry:\n"
        "    batch:\n"
    )
    assert _report(tmp_path, catalog, text) == ""
    pipeline = load_pipeline(tmp_path / "p.pipeline.yaml", catalog)
    assert pipeline.units["files"].retry == Retry()
    assert pipeline.units["files"].batch == Batch()
    assert pipeline.streams["plans"] == StreamDecl()


# -- 6: the bad byte of a file that is not UTF-8 ---------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # the column counts characters, as every other problem's does: é is one, not two
        ('pipeline: p\ndescription: "ééé'.encode() + b'\xff"\n', "2:18: error P002"),
        # a BOM is not part of the line, and the byte shown is the bad one
        (b"\xef\xbb\xbfpipeline: \xff\n", "1:11: error P002"),
    ],
)
def test_the_byte_that_is_not_utf8_is_located(
    tmp_path: Path, catalog, raw: bytes, expected: str
) -> None:
    report = _report(tmp_path, catalog, raw)
    assert report == f"{expected} the file is not UTF-8 text (byte 0xff)\n"


# -- 7: two merge keys ----------------------------------------------------------------------------
def test_two_merge_keys_in_one_mapping_are_a_duplicate_key(tmp_path: Path, catalog) -> None:
    text = (
        "pipeline: p\n"
        "units:\n"
        "  files:\n"
        "    <<: {unit: core.files}\n"
        "    <<: {replicas: 2}\n"
        '    params: {directory: ".", pattern: "*.txt"}\n'
        "    outputs: {files: raw}\n"
        "streams: {raw: {}}\n"
    )
    assert _report(tmp_path, catalog, text) == (
        "5:5: error P003 duplicate key '<<' (first defined at line 4); the second one would "
        "silently replace the first\n"
    )


# -- 8: very deep nesting --------------------------------------------------------------------------
def test_very_deep_nesting_is_located_where_it_passes_the_limit(tmp_path: Path, catalog) -> None:
    # thousands of levels: deeper than Python's stack, which used to lose the position
    text = "pipeline: p\nx-deep: " + "[" * 5000 + "]" * 5000 + "\n"
    assert _report(tmp_path, catalog, text) == (
        "2:73: error P006 values are nested more than 64 levels deep\n"
    )
