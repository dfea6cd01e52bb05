"""The live table of a local run (rich), and the same table for `pipeline status`.

Counters (processed, rate, errors; redelivered when any) come from a status reader, a function
returning per-unit counters keyed `group[index]` (or `group`); without one, or when it fails,
they show `-`. From a run's second session on, a line under the table says they are that
session's (`worker.status.session_note`).
The workers' warnings and errors are printed below the table as they come (`local.relay`).
"""

from __future__ import annotations

import contextlib
import select
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from asapo_pipelines.cli.output import silence_stdout
from asapo_pipelines.local.relay import LogRelay

if TYPE_CHECKING:  # pragma: no cover
    from rich.console import Console
    from rich.live import Live
    from rich.table import Table

Counters = Mapping[str, Mapping[str, Any]]
STATE_STYLE = {
    "running": "green",
    "loading": "yellow",
    "busy": "yellow",
    "complete": "cyan",
    "restarting": "yellow",
    "stopping": "yellow",
    "failed": "bold red",
    "stopped": "dim",
    "pending": "dim",
    "exited": "dim",  # its supervisor is gone, and so is its process (`control.run_status`)
}
#: the workers' counters the table shows, after the supervisor's columns
COUNTED = ("processed", "rate", "errors")
#: the task states in which a worker's rate is shown (`rate_text`)
RATED = frozenset({"running", "loading", "restarting", "stopping"})
LEVEL_STYLE = {"WARNING": "yellow", "ERROR": "red", "CRITICAL": "bold red"}


def _exit_text(codes: list[int]) -> str:
    if not codes:
        return "-"
    shown = [str(c) if c >= 0 else f"sig{-c}" for c in codes[-3:]]
    return ("…," if len(codes) > 3 else "") + ",".join(shown)


def _counter(counters: Counters, unit: Mapping[str, Any], key: str) -> str:
    row = counters.get(unit["unit"]) or counters.get(unit["group"])
    if not row or key not in row or unit["lifecycle"] != "main":
        return "-"
    if key == "rate":  # while the task works: a finished one's last interval says nothing
        from asapo_pipelines.worker.status import rate_text

        return rate_text(row) if unit["state"] in RATED else "-"
    return str(row[key])


def _state(counters: Counters, unit: Mapping[str, Any]) -> str:
    """The supervisor's state, except that a running worker still importing its unit (its own
    latest record, from this very process, says so) is "loading", and one whose unit has been
    in one call for a while (also a `restore` while loading) is `busy 25s (raw/default#3)`
    (`busy_text`)."""
    from asapo_pipelines.worker.status import busy_text

    row = counters.get(unit["unit"]) or counters.get(unit["group"])
    if (
        unit["state"] == "running"
        and unit["lifecycle"] == "main"
        and row
        and row.get("pid") == unit.get("pid")
    ):
        if busy := busy_text(row):
            return busy
        if row.get("state") == "loading":
            return "loading"
    return str(unit["state"])


def status_table(
    state: Mapping[str, Any], counters: Counters | None = None, *, named: str = ""
) -> Table:
    """The job's table; `named` (`cli.tail.run_named`) ends its title: which run it shows."""
    from rich.markup import escape
    from rich.table import Table

    from asapo_pipelines.worker.status import session_note

    counters = counters or {}
    elapsed = (state.get("finished") or time.time()) - (state.get("started") or time.time())
    table = Table(
        title=f"job {state.get('job')} ({state.get('type')}): {state.get('status')}, "
        f"{elapsed:.0f}s" + (f" — {named}" if named else ""),
        title_justify="left",
        caption=session_note(counters.values()) or None,
        caption_justify="left",
    )
    # messages delivered again after a worker was killed: a column only when there are any,
    # which keeps the table narrow
    again = any(row.get("redelivered") for row in counters.values())
    counted = ("processed", "redelivered", "rate", "errors") if again else COUNTED
    for column in ("unit", "task", "state", "pid", "restarts", "exit", *counted):
        right = column in ("pid", "restarts", *counted)
        table.add_column(column, justify="right" if right else "left", no_wrap=not right)
    for unit in state.get("units", []):
        task = (
            unit["task"] if unit["lifecycle"] == "main" else f"{unit['task']} ({unit['lifecycle']})"
        )
        shown = _state(counters, unit)
        style = STATE_STYLE.get(shown.partition(" ")[0], "")
        table.add_row(
            unit["unit"],
            task,
            f"[{style}]{escape(shown)}[/]" if style else escape(shown),
            str(unit["pid"] or "-"),
            str(unit["restarts"]),
            _exit_text(unit["exit_codes"]),
            *(_counter(counters, unit, key) for key in counted),
        )
    return table


class LiveView:
    """The table redrawn in place on a terminal; elsewhere, events as plain lines. Either way
    the workers' warnings and errors are printed as they come (`log`), rate-limited per unit,
    with `pipeline logs <logs_where> UNIT` for the rest."""

    def __init__(
        self,
        console: Console,
        reader: Callable[[], Counters] | None = None,
        *,
        interval: float = 1.0,
        logs_where: str | None = None,
        on_closed: Callable[[], None] | None = None,
    ) -> None:
        self.console = console
        #: called once when the output is closed (`pipeline run | head`): the run stops then
        self.on_closed = on_closed
        self.closed = False
        self.reader = reader
        self.interval = interval
        self.relay = LogRelay(logs_where)
        self.counters: Counters = {}
        self._last_read = 0.0
        self._live: Live | None = None
        self._state: Mapping[str, Any] | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def __enter__(self) -> LiveView:
        if self.console.is_terminal:
            from rich.live import Live

            self._live = Live(console=self.console, auto_refresh=False, transient=True)
            self._live.__enter__()
            if self.reader is not None:
                # a slow status source must never hold up the supervisor's loop
                self._stop = threading.Event()
                self._thread = threading.Thread(target=self._poll, name="counters", daemon=True)
                self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=self.interval + 5)
            self._thread = None
        if self._live is not None:
            with self._guarded():
                self._live.__exit__(None, None, None)
            self._live = None
        self._say(self.relay.rest(), "dim")

    @contextlib.contextmanager
    def _guarded(self) -> Iterator[None]:
        """Printing whose closed output (a reader gone: `| head`, `grep -m1`) stops the run
        through `on_closed` instead of ending the supervisor's loop on an exception, which
        would kill the tasks and leave the run failed for a reason no one can act on."""
        try:
            yield
        except BrokenPipeError:
            self._output_closed()

    def _output_closed(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.console.quiet = True  # the rest of the run's output goes nowhere
        silence_stdout(self.console.file)
        if self.on_closed is not None:
            self.on_closed()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._read_now()
            self._stop.wait(self.interval)

    def _read_now(self) -> None:
        assert self.reader is not None
        try:
            self.counters = self.reader() or {}
        except Exception:  # a reader failing must not take the run down
            self.counters = {}

    def read_counters(self, *, force: bool = False) -> Counters:
        """The latest counters: refreshed in the background while live, else read at most once
        per interval (or now, with `force`)."""
        if self.reader is None:
            return self.counters
        now = time.monotonic()
        if force or (self._thread is None and now - self._last_read >= self.interval):
            self._last_read = now
            self._read_now()
        return self.counters

    def event(self, message: str) -> None:
        with self._guarded():
            self.console.print(message, markup=False, highlight=False)

    def log(self, label: str, text: str) -> None:
        """A line task `label` logged, "LEVEL message" (`ExecOptions.on_log`)."""
        now = time.monotonic()
        self._say(self.relay.due(now), "dim")
        self._say(self.relay.offer(label, text, now), LEVEL_STYLE.get(text.partition(" ")[0], ""))

    def _say(self, lines: list[str], style: str) -> None:
        with self._guarded():
            for line in lines:
                self.console.print(line, markup=False, highlight=False, style=style or None)

    def update(self, state: Mapping[str, Any]) -> None:
        if not self.closed and _reader_gone(self.console.file):
            # a run that prints nothing for a while (a service between files) stops as soon
            # as its reader is gone, as `tail -f` does, not at its next line
            self._output_closed()
        self._say(self.relay.due(time.monotonic()), "dim")
        self._state = state
        if self._live is not None:
            with self._guarded():
                self._live.update(status_table(state, self.read_counters()), refresh=True)


def _reader_gone(stream: Any) -> bool:
    """Whether `stream` is a pipe whose reading end is closed (poll reports an error on it)."""
    try:
        poller = select.poll()
        poller.register(stream.fileno(), 0)  # errors and hang-ups are reported unasked
        return any(events & select.POLLERR for _fd, events in poller.poll(0))
    except (OSError, ValueError, AttributeError):  # no file (a test's StringIO)
        return False
