"""What a foreground run shows of its workers' logs: each WARNING and ERROR line once, below
the live table, prefixed with the unit replica, at most `LINES` lines per unit in a window of
`WINDOW` seconds. The lines past that are counted and summarised, with the command that shows
them, when the window ends. A unit still warning then gets windows of `FLOOD_WINDOW` seconds,
so that a warning on every message costs the terminal a few lines every few seconds, not one
per message; its full log is with `pipeline logs`.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

LINES = 3
WINDOW = 1.0
FLOOD_WINDOW = 10.0


@dataclass
class _Window:
    start: float
    length: float
    shown: int = 0
    hidden: int = 0


class LogRelay:
    """Decides which of the lines the tasks log are shown; `where` is what `pipeline logs`
    needs before the unit to find the run (the file, and `--data-dir DIR` when given)."""

    def __init__(
        self,
        where: str | None,
        *,
        lines: int = LINES,
        window: float = WINDOW,
        flood_window: float = FLOOD_WINDOW,
    ) -> None:
        self.where = where
        self.lines = lines
        self.window = window
        self.flood_window = flood_window
        self._windows: dict[str, _Window] = {}

    def offer(self, label: str, text: str, now: float) -> list[str]:
        """What to print for `text`, a line task `label` logged at `now`: the line prefixed
        with the label, unless the label's window has shown its lines already, and first the
        summary of its last window when that is over."""
        out = self._close(label, now)
        window = self._windows.setdefault(label, _Window(now, self.window))
        if window.shown < self.lines:
            window.shown += 1
            out.append(f"{label} {text}")
        else:
            window.hidden += 1
        return out

    def due(self, now: float) -> list[str]:
        """The summaries of the windows over by `now`."""
        return [line for label in list(self._windows) for line in self._close(label, now)]

    def rest(self) -> list[str]:
        """The summaries of every window (the run ended)."""
        out = [self._summary(label, w.hidden) for label, w in self._windows.items() if w.hidden]
        self._windows.clear()
        return out

    def _close(self, label: str, now: float) -> list[str]:
        window = self._windows.get(label)
        if window is None or now - window.start < window.length:
            return []
        if not window.hidden:
            del self._windows[label]
            return []
        # the unit is still at it: its next lines come in a longer window
        self._windows[label] = _Window(now, self.flood_window)
        return [self._summary(label, window.hidden)]

    def _summary(self, label: str, hidden: int) -> str:
        lines = "line" if hidden == 1 else "lines"
        told = f"{label}: {hidden} more warning or error {lines} not shown"
        if not self.where:
            return told
        return f"{told}; see `pipeline logs {self.where} {logs_args(label)}`"


def logs_args(label: str) -> str:
    """The arguments of `pipeline logs` after FILE for task `label` (`group[index]` or
    `group[index]/task`): `[index]` would be a glob pattern to some shells."""
    unit, _, task = label.partition("/")
    group, _, rest = unit.partition("[")
    index = rest.rstrip("]")
    args = [shlex.quote(group)]
    if index not in ("", "0"):
        args.append(f"--replica {index}")
    if task:
        args.append(f"--task {shlex.quote(task)}")
    return " ".join(args)
