"""`pipeline validate --online`: a valid file checked against the live services it names.

Each plugin whose units, transport or executor the file uses may implement the `check_online`
hook (the bluesky plugin asks the queue server whether it allows the plans named, the Slurm
plugin asks the cluster for the partition); findings are located at the value they are about,
like every other problem.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from asapo_pipelines.errors import PipelinesError
from asapo_pipelines.pipeline.problems import CODES, ONLINE, Problem, make

if TYPE_CHECKING:  # pragma: no cover
    from asapo_pipelines.catalog import Catalog
    from asapo_pipelines.pipeline.model import Pipeline


#: A finding that refuses a start (a service answered: it does not take this); the other online
#: code, P502, says the service could not be asked.
REFUSED = "P501"


class ServiceRefused(PipelinesError):
    """A live service the pipeline names refuses what the file says: the start is refused."""


def check_online(path: Path, catalog: Catalog) -> list[Problem]:
    """The online problems of a file that passed the offline stages (every executor its
    `deploy:` section names is asked about: the file is meant for each)."""
    from asapo_pipelines.pipeline.loader import read_document
    from asapo_pipelines.pipeline.validate import load_pipeline

    doc, _ = read_document(Path(path))
    findings, failures = online_findings(load_pipeline(path, catalog), catalog)
    file = str(path)
    problems = [
        make(file, doc.locate(where), code if code in ONLINE and code in CODES else "P501", text)
        for where, code, text in findings
    ]
    problems.extend(make(file, doc.locate(()), "P502", failure) for failure in failures)
    return problems


def online_findings(
    pipeline: Pipeline, catalog: Catalog, executor: str | None = None
) -> tuple[list[tuple[tuple[str, ...], str, str]], list[str]]:
    """Every online finding (YAML path, code, sentence) of the plugins the pipeline uses, and
    one sentence per plugin whose check failed. `pipeline run` asks this of the pipeline as it
    will run (its `--set` overrides applied) before it starts anything.

    Used: the plugins of its units and of its transport, and of `executor`, the one it starts
    on (None: every executor its `deploy:` section names, as `validate --online` asks). A run
    on this machine does not ask the cluster the file is also meant for."""
    from asapo_pipelines.catalog import installed_sources
    from asapo_pipelines.plugin_manager import PluginManager

    used = {catalog.get(config.unit).distribution for config in pipeline.units.values()}
    named = {
        catalog.transports.get(pipeline.transport.kind),
        *(catalog.executors.get(n) for n in ([executor] if executor else pipeline.deploy.named())),
    }
    used.update(descriptor.distribution for descriptor in named if descriptor is not None)
    manager = PluginManager()
    findings: list[tuple[tuple[str, ...], str, str]] = []
    failures: list[str] = []
    for source in installed_sources():
        if source.distribution not in used:
            continue
        try:
            manager.register(source.load(), source.name)
        except Exception:  # the catalog reports a broken plugin already
            continue
        found, errors = manager.check_online(source.name, pipeline, catalog)
        findings.extend(found)
        failures.extend(f"the online check of {source.distribution} failed: {e}" for e in errors)
    return findings, failures


def check_before_start(
    pipeline: Pipeline, catalog: Catalog, path: Path, shown: str | None = None, *, executor: str
) -> None:
    """Before `pipeline run`, `reprocess` or `deploy` starts anything: refuse (ServiceRefused)
    when a service the pipeline names refuses what the file says, in one sentence at the
    value's place; warn, and go on, when one cannot be asked (not running yet, a plan list not
    loaded): its units ask it again as they work. A plan name the queue server does not allow
    was otherwise found when the bridge's first suggestion was refused, at night. `shown`: the
    file as the user named it; `executor`: the one it starts on."""
    from asapo_pipelines.cli.output import warn

    findings, failures = online_findings(pipeline, catalog, executor)
    # the executor's own service not asked: its deploy asks it next, and fails in its own
    # sentence where it cannot; a warning before that error would say it twice
    own = ("deploy", executor)
    findings = [f for f in findings if f[1] == REFUSED or tuple(f[0][:2]) != own]
    # the same for the transport: the command opens it next and says in its own words what
    # an unreachable one means for it (`run` stops, `deploy` leaves the record to the workers)
    findings = [f for f in findings if f[1] == REFUSED or f[0][:1] != ("transport",)]
    if not findings and not failures:
        return
    file = shown or str(path)
    located = [(code, f"{place(file, path, where)}: {text}") for where, code, text in findings]
    refused = [text for code, text in located if code == REFUSED]
    if refused:
        more = len(refused) - 1
        rest = f" (and {more} more: `pipeline validate --online {file}` lists them)"
        raise ServiceRefused(refused[0] + (rest if more else ""))
    for text in [t for _code, t in located] + failures:
        warn(f"{text} (starting anyway)")


def place(shown: str, path: Path, where: Any) -> str:
    """`file:line:column` of the value at YAML path `where` in the file at `path` (named as
    `shown`; the name alone when the file cannot be read again)."""
    from asapo_pipelines.pipeline.loader import read_document

    try:
        doc, _problems = read_document(path)
        pos = doc.locate(where)
    except Exception:  # the place is a courtesy; the sentence names the value already
        return shown
    return f"{shown}:{pos.line}:{pos.column}"
