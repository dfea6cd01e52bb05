"""`pipeline validate --online`: a valid file checked against the live services it names.

Each plugin whose units the file uses may implement the `check_online` hook (the bluesky plugin
asks the queue server whether it allows the plans named); findings are located at the value
they are about, like every other problem.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from asapo_pipelines.pipeline.problems import CODES, ONLINE, Problem, make

if TYPE_CHECKING:  # pragma: no cover
    from asapo_pipelines.catalog import Catalog


def check_online(path: Path, catalog: Catalog) -> list[Problem]:
    """The online problems of a file that passed the offline stages."""
    from asapo_pipelines.catalog import installed_sources
    from asapo_pipelines.pipeline.loader import read_document
    from asapo_pipelines.pipeline.validate import load_pipeline
    from asapo_pipelines.plugin_manager import PluginManager

    doc, _ = read_document(Path(path))
    pipeline = load_pipeline(path, catalog)
    file = str(path)
    used = {catalog.get(config.unit).distribution for config in pipeline.units.values()}
    manager = PluginManager()
    problems: list[Problem] = []
    for source in installed_sources():
        if source.distribution not in used:
            continue
        try:
            manager.register(source.load(), source.name)
        except Exception:  # the catalog reports a broken plugin already
            continue
        findings, errors = manager.check_online(source.name, pipeline, catalog)
        for where, code, message in findings:
            code = code if code in ONLINE and code in CODES else "P501"
            problems.append(make(file, doc.locate(where), code, message))
        for error in errors:
            problems.append(
                make(
                    file,
                    doc.locate(()),
                    "P502",
                    f"the online check of {source.distribution} failed: {error}",
                )
            )
    return problems
