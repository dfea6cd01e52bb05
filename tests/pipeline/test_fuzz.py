"""Generated malformed pipeline files: `pipeline validate` must reject every one with a located
message (exit 1, or 2 when the file cannot be read) and never crash with a traceback.

Runs the command's real entry point in-process (`asapo_pipelines.cli.main`), which is what the
console script calls, so that thousands of files take seconds.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import re
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asapo_pipelines.cli import main

LOCATED = re.compile(r"^(?P<file>.+):(\d+):(\d+): error (P\d{3}) \S", re.MULTILINE)

BASE: dict[str, Any] = {
    "pipeline": "fuzz",
    "transport": {"embedded": {"path": ".data"}},
    "streams": {"outside": {"external": True, "content_type": "*/*"}},
    "units": {
        "files": {
            "unit": "core.files",
            "params": {"directory": "data", "pattern": "*.h5", "recursive": True},
            "outputs": {"files": "raw"},
            "replicas": 1,
        },
        "copy": {
            "unit": "core.identity",
            "inputs": {"input": "raw"},
            "outputs": {"output": "copied"},
            "resources": {"cpu": 200, "memory": 64},
            "retry": {"attempts": 2, "delay": 0.5},
        },
        "sink": {
            "unit": "core.jsonl-sink",
            "params": {"path": "out.jsonl"},
            "inputs": {"messages": "copied"},
        },
        "side": {
            "unit": "core.jsonl-sink",
            "params": {"path": "side.jsonl", "payload": "text"},
            "inputs": {"messages": "outside"},
        },
    },
    "deploy": {"nomad": {"datacenters": ["dc1"], "driver": "raw_exec"}},
}


def _known_fields() -> set[str]:
    from asapo_pipelines.builtin import FilesParams, JsonLinesParams
    from asapo_pipelines.pipeline import model

    names: set[str] = set()
    for obj in [*vars(model).values(), FilesParams, JsonLinesParams]:
        if isinstance(obj, type) and issubclass(obj, model.BaseModel):
            for name, info in obj.model_fields.items():
                names |= {name, info.alias or name}
    return names


KNOWN_FIELDS = _known_fields()

# (path, values that are certainly wrong there)
WRONG: list[tuple[tuple[str, ...], st.SearchStrategy[Any]]] = [
    (("pipeline",), st.sampled_from(["Fuzz", "1abc", "", "has space", "a_b", 7, None, [1]])),
    (("units", "files", "unit"), st.sampled_from(["core.file", "files", "x.y", "", 3, None])),
    (("units", "files", "replicas"), st.sampled_from([0, -1, "two", 1.5, [1], {"a": 1}, True])),
    (("units", "files", "params", "recursive"), st.sampled_from(["maybe", [], {}, 2.5, None])),
    (("units", "files", "params", "directory"), st.sampled_from([None, [], {}, 1])),
    (("units", "copy", "inputs"), st.sampled_from([["raw"], "raw", 1, {"inp": "raw"}])),
    (("units", "copy", "inputs", "input"), st.sampled_from(["nowhere", "bad name", 5, None])),
    (("units", "copy", "resources", "cpu"), st.sampled_from([0, -5, "fast", [], 1.5])),
    (("units", "copy", "retry", "attempts"), st.sampled_from([-1, 1000, "x", None])),
    (("units", "sink", "params", "payload"), st.sampled_from(["json", 1, None, []])),
    (("units", "sink", "params"), st.sampled_from([[], "path", 1, {"pth": "x"}])),
    (("units",), st.sampled_from([{}, [], "units", 1, None])),
    (
        ("transport",),
        st.sampled_from(
            [
                {},
                "embedded",
                {"embedded": {}, "asapo": {}},
                {"asapo": {"endpoint": "h:1", "token": "secret"}},
            ]
        ),
    ),
    (("streams", "outside", "external"), st.sampled_from([False, "yes", None, 2])),
    (("deploy", "nomad", "driver"), st.sampled_from(["docker", "podman", "", 1])),
    (("deploy", "nomad", "python"), st.sampled_from([{}, {"venv": "rel"}, {"install": {}}])),
]
REQUIRED = [
    ("pipeline",),
    ("units",),
    ("units", "files", "unit"),
    ("units", "files", "params", "directory"),
    ("units", "sink", "params"),
    ("units", "copy", "inputs"),
    ("units", "sink", "inputs"),
]
MAPPINGS = [
    (),
    ("transport",),
    ("transport", "embedded"),
    ("units", "files"),
    ("units", "files", "params"),
    ("units", "copy", "params"),
    ("units", "copy", "retry"),
    ("deploy",),
    ("deploy", "nomad"),
]


def _set(data: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        if not isinstance(data.get(key), dict):
            data[key] = {}
        data = data[key]
    data[path[-1]] = value


def _delete(data: dict[str, Any], path: tuple[str, ...]) -> None:
    for key in path[:-1]:
        data = data[key]
    del data[path[-1]]


def _dump(data: Any) -> str:
    from ruamel.yaml import YAML

    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    out = io.StringIO()
    yaml.dump(data, out)
    return out.getvalue()


@st.composite
def structural(draw: st.DrawFn) -> str:
    """A well-formed YAML file with one to three certain mistakes in its content."""
    data = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["wrong", "missing", "unknown"]))
        if kind == "wrong":
            path, values = draw(st.sampled_from(WRONG))
            _set(data, path, draw(values))
        elif kind == "missing":
            path = draw(st.sampled_from(REQUIRED))
            with contextlib.suppress(KeyError, TypeError):
                _delete(data, path)
        else:
            where = draw(st.sampled_from(MAPPINGS))
            key = draw(
                st.text(
                    st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=12
                )
            )
            target: Any = data
            with contextlib.suppress(KeyError, TypeError):
                for part in where:
                    target = target[part]
            if key in KNOWN_FIELDS or key.startswith("x-"):
                key += "?"  # certainly not a field: the mutation must make the file invalid
            if isinstance(target, dict) and key not in target:
                target[key] = draw(st.one_of(st.integers(), st.text(max_size=5), st.none()))
            else:
                _set(data, ("units", "files", "unit"), "nope.nothing")
    return _dump(data)


@st.composite
def textual(draw: st.DrawFn) -> str:
    """Broken YAML text: cut short, duplicated keys, tabs, bombs, odd keys, garbage."""
    kind = draw(
        st.sampled_from(
            ["truncate", "duplicate", "tab", "bomb", "key", "garbage", "tag", "documents"]
        )
    )
    if kind == "truncate":
        text = json.dumps(BASE)  # JSON is YAML; cut before the final brace it never closes
        return text[: draw(st.integers(0, len(text) - 2))]
    text = _dump(BASE)
    lines = text.splitlines()
    if kind == "duplicate":
        keyed = [i for i, line in enumerate(lines) if re.match(r"^\s*[a-z_]+:", line)]
        i = draw(st.sampled_from(keyed))
        indent = len(lines[i]) - len(lines[i].lstrip())
        # insert the same key again right after the key's whole block
        j = i + 1
        while j < len(lines) and len(lines[j]) - len(lines[j].lstrip()) > indent:
            j += 1
        return (
            "\n".join(
                [
                    *lines[:j],
                    lines[i].rstrip(":") + (" x" if lines[i].endswith(":") else ""),
                    *lines[j:],
                ]
            )
            + "\n"
        )
    if kind == "tab":
        i = draw(st.integers(1, len(lines) - 1))
        return "\n".join([*lines[:i], "\t" + lines[i], *lines[i + 1 :]]) + "\n"
    if kind == "bomb":
        width, depth = draw(st.integers(6, 12)), draw(st.integers(7, 9))
        out = ["pipeline: bomb", f"x-0: &a0 [{', '.join(['lol'] * width)}]"]
        for d in range(1, depth):
            out.append(f"x-{d}: &a{d} [{', '.join([f'*a{d - 1}'] * width)}]")
        out.append(f"units: {{u: {{unit: core.identity, params: *a{depth - 1}}}}}")
        return "\n".join(out) + "\n"
    if kind == "key":
        bad = draw(st.sampled_from(["1", "2.5", "null", "true", "[a, b]", "{a: 1}", "~"]))
        i = draw(st.sampled_from([i for i, line in enumerate(lines) if line.endswith(":")]))
        indent = len(lines[i]) - len(lines[i].lstrip()) + 2
        return "\n".join([*lines[: i + 1], " " * indent + f"{bad}: x", *lines[i + 1 :]]) + "\n"
    if kind == "tag":
        i = draw(st.sampled_from([i for i, line in enumerate(lines) if ": " in line]))
        key, _, value = lines[i].partition(": ")
        tag = draw(st.sampled_from(["!!python/object:os.system", "!custom", "!!binary"]))
        return "\n".join([*lines[:i], f"{key}: {tag} {value}", *lines[i + 1 :]]) + "\n"
    if kind == "documents":
        return text + "---\n" + text
    return draw(st.text(max_size=300))


def _validate(text: str | bytes, directory: Path) -> tuple[int, str]:
    path = directory / "fuzz.pipeline.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    out, err = io.StringIO(), io.StringIO()
    code: Any = None
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(["validate", str(path)])
        except SystemExit as exc:
            code = exc.code
    return code, out.getvalue() + err.getvalue()


CHECKED = {"files": 0}


def _check(text: str | bytes, tmp: Path) -> None:
    CHECKED["files"] += 1
    code, output = _validate(text, tmp)
    assert code in (1, 2), (code, text, output)
    assert "Traceback" not in output, output
    assert "internal error" not in output, output
    located = LOCATED.findall(output)
    assert located, output
    assert all(file.endswith("fuzz.pipeline.yaml") for file, *_ in located), output


_TMP = Path(tempfile.mkdtemp(prefix="pipeline-fuzz-"))
FUZZ = settings(
    max_examples=600,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@FUZZ
@given(structural())
def test_structurally_malformed_files_are_rejected_with_a_location(text: str) -> None:
    _check(text, _TMP)


@FUZZ
@given(st.one_of(textual(), st.binary(max_size=200)))
def test_textually_malformed_files_are_rejected_with_a_location(text: str | bytes) -> None:
    _check(text, _TMP)


def test_the_unmutated_base_is_valid() -> None:
    """The mutations start from a valid file, so each rejection is the mutation's doing."""
    code, output = _validate(_dump(BASE), _TMP)
    assert code == 0, output


def test_at_least_a_thousand_malformed_files_were_checked() -> None:
    if CHECKED["files"] == 0:
        import pytest

        pytest.skip("the generated-file tests did not run in this session")
    assert CHECKED["files"] >= 1000
