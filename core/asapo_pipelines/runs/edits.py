"""A pipeline file edited while its run goes on: the units keep the configuration they started
with, and a scientist who changed a parameter in the file expects the next scan to use it.

`pipeline status` warns of it under its table and the viewer shows it on its page: both ask
`edit_warning`, so they agree on what counts as an edit and say it in the same words.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from asapo_pipelines.runs.store import file_sha256

if TYPE_CHECKING:  # pragma: no cover - only for the annotations
    from asapo_pipelines.runs.store import Run


def edit_warning(run: Run, path: Path, transport: Mapping[str, Any]) -> str | None:
    """The warning that `path` holds another pipeline than the one `run`'s last session
    started with; None when it holds the same (or no text was recorded, or the file cannot be
    read now: there is nothing to compare). The caller knows whether the session goes on;
    `transport`: the file's transport spec, whose data directory is the one a start without
    `--data-dir` takes."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    if run.file_sha256 in (None, file_sha256(text)):
        return None
    if same_content(run.text, text):
        return None  # comments, spacing, quoting: nothing the units would do differently
    from asapo_pipelines.launchplan.rundir import logs_where, session_data_dir
    from asapo_pipelines.options_text import set_options

    # the session's --set and --data-dir repeated: without them the advised start ran the
    # file's own settings (a watching source became a batch one, silently) in another folder
    session = run.sessions[-1] if run.sessions else {}
    data_dir = session_data_dir(run.session.get("run_dir"), transport, path)
    where = logs_where(str(path), data_dir)
    sets = set_options(session.get("overrides") or {})
    return (
        f"{path} was edited after run {run.id}'s session started: its units go on with the "
        f"configuration they started with; `pipeline stop {where}` and `pipeline run --resume "
        f"{where}{sets}` apply the edit to what they have not processed yet"
    )


def same_content(before: str | None, now: str) -> bool:
    """Whether two texts of a pipeline file hold the same YAML document (an edit of comments
    or layout only). False when either does not parse: the edit is then worth a word."""
    from asapo_pipelines.pipeline.loader import LoadFailed, load_document

    if before is None:
        return False
    try:
        (old, old_problems), (new, new_problems) = load_document(before), load_document(now)
    except LoadFailed:
        return False
    return not old_problems and not new_problems and bool(old.data == new.data)
