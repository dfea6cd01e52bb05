"""Meta-tests of the plugin API (datasette's `test_plugin_hooks_have_tests` is the model): every
hook in hookspecs.py is documented on the generated page docs/hooks.md, the page is current,
and every hook is exercised by a `test_hook_<name>` below (in process, with real catalogs; the
installed-distribution versions are in test_backend_plugins.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any

import click
import pytest
from click.testing import CliRunner
from pydantic import BaseModel, ConfigDict, Field

from asapo_pipelines.descriptor import (
    CommandDescriptor,
    ExecutorDescriptor,
    FormatDescriptor,
    TransportDescriptor,
    UnitDescriptor,
)
from asapo_pipelines.errors import PluginError, UsageError
from asapo_pipelines.executor import Executor, choose_executor, open_executor
from asapo_pipelines.plugin_manager import PluginManager
from asapo_pipelines.sdk import Params, hookimpl
from asapo_pipelines.testing import catalog_from_plugins

ROOT = Path(__file__).parents[1]
HOOKS = PluginManager().hook_names()
PAGE = ROOT / "docs" / "hooks.md"


def test_the_hooks_page_is_current():
    done = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "gen_hooks.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_a_docstring_on_the_page(hook):
    from asapo_pipelines import hookspecs

    doc = getattr(hookspecs, hook).__doc__
    assert (doc or "").strip(), f"hook {hook} has no docstring"
    text = PAGE.read_text()
    assert f"## `{hook}`" in text
    assert doc.strip().splitlines()[0] in text


def test_every_field_of_a_descriptor_on_the_page_says_what_it_means():
    """A plugin author reads the descriptors' tables on the page: a field with a blank meaning
    (most of `UnitDescriptor`'s were) or a bare `Literal` sends them to the source."""
    rows = [line for line in PAGE.read_text().splitlines() if line.startswith("| `")]
    assert rows
    blank = [row.split("|")[1].strip() for row in rows if not row.split("|")[4].strip()]
    assert not blank, f"fields without a meaning on docs/hooks.md: {blank}"
    assert not [row for row in rows if "`Literal`" in row]


@pytest.mark.parametrize("hook", HOOKS)
def test_plugin_hooks_have_tests(hook):
    """Every hook is exercised by a test of this module named after it."""
    assert f"test_hook_{hook}" in globals(), f"hook {hook} is exercised by no test_hook_{hook}"


# -- each hook, exercised ------------------------------------------------------------------------
class Units:
    @hookimpl
    def register_units(self, register):
        register(
            UnitDescriptor(
                name="memo.sink",
                kind="connector",
                summary="A sink.",
                inputs=({"name": "messages"},),
                runtime="memo.rt:Sink",
            )
        )
        register({"name": "Bad", "kind": "agent", "summary": "x", "runtime": "a:b"})


def test_hook_register_units():
    catalog = catalog_from_plugins(Units(), strict=False)
    assert catalog.get("memo.sink").distribution == "test-plugins"
    (record,) = [p for p in catalog.plugins if p.units == ["memo.sink"]]
    # the name's pattern in words, not the regular expression
    assert record.errors == [
        "invalid descriptor for Bad: name: must be lower case <namespace>.<name> (letters, "
        "digits, - and _; the namespace usually your package's), not 'Bad'"
    ]


class Online:
    @hookimpl
    def check_online(self, pipeline, catalog, report):
        report(("units", "q", "params", "plan"), "P501", f"{pipeline} refuses the plan")


def test_hook_check_online():
    manager = PluginManager()
    manager.register(Online(), "online")
    findings, errors = manager.check_online("online", "queue", None)
    assert findings == [(("units", "q", "params", "plan"), "P501", "queue refuses the plan")]
    assert errors == []


class Checked:
    """A unit whose `limit` must not exceed the `limit` of the unit that feeds it: each unit's
    params model sees its own alone."""

    @hookimpl
    def register_units(self, register):
        register(
            UnitDescriptor(
                name="memo.pass",
                kind="processor",
                summary="Passes messages on.",
                inputs=({"name": "input"},),
                outputs=({"name": "output"},),
                params=LimitParams,
                runtime="memo.rt:Pass",
            )
        )

    @hookimpl
    def check_pipeline(self, pipeline, catalog, report):
        if pipeline.name == "broken-check":
            raise KeyError("limit")
        for name, config in pipeline.units.items():
            for source, fed in pipeline.units.items():
                if set(fed.outputs.values()) & set(config.inputs.values()):
                    mine = pipeline.params_for(name, catalog).limit
                    theirs = pipeline.params_for(source, catalog).limit
                    if mine > theirs:
                        report(("units", name, "params", "limit"), "P314", f"above {theirs}")


class LimitParams(Params):
    limit: int = 1


def _chain(name: str, first: int, second: int) -> str:
    return (
        f"pipeline: {name}\nunits:\n"
        f"  a: {{unit: memo.pass, params: {{limit: {first}}}, inputs: {{input: raw}},"
        " outputs: {output: mid}}\n"
        f"  b: {{unit: memo.pass, params: {{limit: {second}}}, inputs: {{input: mid}},"
        " outputs: {output: out}}\n"
        "streams: {raw: {external: true}, out: {}}\n"
    )


def test_hook_check_pipeline():
    from asapo_pipelines.pipeline import validate_text

    catalog = catalog_from_plugins(Checked())
    report = validate_text(_chain("memo", 2, 3), catalog, "memo.pipeline.yaml")
    # at the value to change, in `pipeline validate`'s form
    assert report.text() == "memo.pipeline.yaml:4:40: error P314 above 2\n"
    assert validate_text(_chain("memo", 3, 2), catalog).problems == []
    # a check that raises is the plugin's bug: a warning, the file stays valid
    report = validate_text(_chain("broken-check", 2, 3), catalog, "memo.pipeline.yaml")
    (problem,) = report.problems
    assert (problem.code, problem.severity) == ("P315", "warning")
    assert problem.message.startswith("the check of test-plugins failed: check_pipeline raised")
    assert report.ok


class MemoConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    folder: Annotated[str, Field(min_length=1)]

    def open_options(self, base_dir: Path) -> dict[str, Any]:
        return {"path": str((Path(base_dir) / self.folder).resolve())}


def open_memo(options: dict[str, Any]) -> Any:
    from asapo_pipelines.transport import open_transport

    return open_transport({"embedded": options})


class Transports:
    @hookimpl
    def register_transports(self, register):
        register(
            TransportDescriptor(
                name="memo", summary="Memo.", config=MemoConfig, runtime="test_hooks:open_memo"
            )
        )


def _pipeline(catalog, tmp_path: Path, **sections: Any) -> Any:
    from asapo_pipelines.pipeline.model import pipeline_model

    data = {
        "pipeline": "memo",
        "units": {"ident": {"unit": "core.identity", "inputs": {"input": "raw"}}},
        **sections,
    }
    return pipeline_model(catalog).model_validate(data).bind(tmp_path / "memo.pipeline.yaml")


def test_hook_register_transports(tmp_path):
    from asapo_pipelines.transport import open_transport

    catalog = catalog_from_plugins(Transports())
    assert list(catalog.transports) == ["embedded", "asapo", "memo"]
    pipeline = _pipeline(catalog, tmp_path, transport={"memo": {"folder": "store"}})
    spec = pipeline.transport.spec()
    assert spec == {"memo": {"path": str((tmp_path / "store").resolve())}}
    with open_transport(spec, catalog) as transport:
        with transport.producer("source") as producer:
            producer.send("raw", b"payload", {})
        with transport.consumer("source", "g") as consumer:
            assert bytes(consumer.get_last("raw").payload) == b"payload"
    assert (tmp_path / "store" / "store.json").is_file()


class InlineConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: str = ""


class InlineExecutor(Executor):
    name = "inline"

    def plan(self):
        return {"units": sorted(self.pipeline.units), "note": self.config.note}

    def deploy(self, *, wait):
        return {}

    start = deploy

    def stop(self, *, purge=False):
        return {}

    def status(self):
        raise NotImplementedError

    def logs(self, unit, *, replica=None, follow=False, stderr=False):
        return iter(())


class Executors:
    @hookimpl
    def register_executors(self, register):
        register(
            ExecutorDescriptor(
                name="inline",
                summary="Inline.",
                config=InlineConfig,
                runtime="test_hooks:InlineExecutor",
            )
        )
        register(
            ExecutorDescriptor(name="wrong", summary="Not an Executor.", runtime="test_hooks:Units")
        )


def test_hook_register_executors(tmp_path):
    catalog = catalog_from_plugins(Executors())
    assert list(catalog.executors) == ["local", "nomad", "inline", "wrong"]
    pipeline = _pipeline(catalog, tmp_path, deploy={"inline": {"note": "hi"}})
    descriptor = choose_executor(pipeline, catalog)
    assert descriptor is not None
    assert descriptor.name == "inline"
    executor = open_executor(descriptor, pipeline, catalog, tmp_path / "memo.pipeline.yaml")
    assert executor.plan() == {"units": ["ident"], "note": "hi"}
    with pytest.raises(PluginError, match="runtime test_hooks:Units is not an Executor subclass"):
        open_executor(catalog.executors["wrong"], pipeline, catalog, tmp_path / "x.yaml")
    with pytest.raises(UsageError, match="unknown executor 'inlne' \\(did you mean inline\\?\\)"):
        choose_executor(pipeline, catalog, "inlne")


class Formats:
    @hookimpl
    def register_formats(self, register):
        register(FormatDescriptor(name="npy", summary="numpy's .npy.", runtime="numpy:save"))
        register({"name": "NPY", "summary": "Bad name.", "runtime": "numpy:save"})


def test_hook_register_formats():
    catalog = catalog_from_plugins(Formats(), strict=False)
    assert catalog.formats["npy"].distribution == "test-plugins"
    (record,) = [p for p in catalog.plugins if p.formats == ["npy"]]
    assert record.errors[0].startswith("invalid format descriptor for NPY: name:")


@click.command("memo-hello")
def memo_hello():
    """Say hello from memo."""
    click.echo("hello from memo")


class Commands:
    @hookimpl
    def register_commands(self, register):
        register(
            CommandDescriptor(
                name="memo-hello",
                summary="Say hello from memo.",
                runtime=f"{__name__}:memo_hello",
            )
        )
        register({"name": "Memo Hello", "summary": "Bad name.", "runtime": "memo:x"})


def test_hook_register_commands():
    catalog = catalog_from_plugins(Commands(), strict=False)
    descriptor = catalog.commands["memo-hello"]
    assert descriptor.distribution == "test-plugins"
    (record,) = [p for p in catalog.plugins if p.commands == ["memo-hello"]]
    assert record.errors[0].startswith("invalid command descriptor for Memo Hello: name:")
    # the runtime, imported only now, is the click command the CLI runs
    result = CliRunner().invoke(descriptor.load_runtime(), [])
    assert result.output == "hello from memo\n"
    # the core's default plugin registers its `run`, `reprocess` and `view` the same way
    core = catalog_from_plugins(strict=False)
    assert {"run", "reprocess", "view"} <= set(core.commands)
