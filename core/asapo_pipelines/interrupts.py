"""Ctrl-C at any moment of a `pipeline` command: one line, `aborted.`, and exit 130.

Python turns SIGINT into KeyboardInterrupt wherever the main thread happens to be. A command
catches it once its click group runs (`cli.app`), but before that the process spends a good
part of a second importing click, the command shell and the catalog's listing, and a
KeyboardInterrupt there ended in Python's traceback. So the entry point (`cli.main`) installs
`on_interrupt` first: until a command arms it (`Raised`), a Ctrl-C writes the sentence and ends
the process at once (nothing was started that needs cleaning up); while armed it raises
KeyboardInterrupt once, for the command to unwind (end its run record, stop what it started),
and a second Ctrl-C during that unwinding, or one after the command, ends the process at once.

Only modules the interpreter has loaded before any of ours runs (`os`, and `_signal`, the C
half of `signal`: the `signal` module itself imports enum, functools and collections, 5 to 30 ms
on a busy machine, during which a Ctrl-C would still end in a traceback), so the guard is in
place as soon as the console script has found this package.
"""

import _signal  # the C half of `signal`, loaded at start-up: `signal.signal` is its function
import os

#: What the command says when it is interrupted (click's `Abort` path says the same), after a
#: line break: on a terminal the line holds the `^C` it echoed.
ABORTED = "aborted."
#: The exit code of a command ended by Ctrl-C, as shells report one killed by SIGINT.
EXIT_CODE = 130

_armed = False
_raised = False
#: the unraisable hook `install` replaced (`_quiet_unraisable`)
_hooks: list = []


def on_interrupt(signum: int, frame: object) -> None:
    """The SIGINT handler of the `pipeline` process (see the module's docstring)."""
    global _armed, _raised
    if _armed:
        _armed = False
        _raised = True
        raise KeyboardInterrupt
    abort_now()


def raised_once() -> bool:
    """Whether a Ctrl-C was raised in the command: an error it ends on after that is the
    interruption's doing (a library that wraps whatever its callback raised, as pydantic-core
    does while it builds a validator, turns the KeyboardInterrupt into its own error)."""
    return _raised


def reraise_if_interrupted(exc: BaseException) -> None:
    """Raise KeyboardInterrupt from `exc` when a Ctrl-C was raised in the command: for code
    that catches every Exception of a plugin (its import, its hooks) and goes on. A library
    that wraps what its callback raised (pydantic-core building a validator) turns the
    KeyboardInterrupt into its own error, which such code took for a broken plugin: the
    command then went on as if no Ctrl-C had come, and a watching run never ended."""
    if _raised:
        raise KeyboardInterrupt from exc


def raise_if_lost() -> None:
    """Raise KeyboardInterrupt again when a Ctrl-C was raised in the command and the command
    goes on all the same: asked before something runs until Ctrl-C (the supervisor of
    `pipeline run`). Python drops an exception raised where it cannot travel (a finalizer,
    a C callback: "Exception ignored in ..."), a library may swallow it, and the Ctrl-C,
    raised only once, was then lost: a watching run started and never ended."""
    if _raised:
        raise KeyboardInterrupt


def say_aborted() -> int:
    """Write `aborted.` on its own line to stderr (its file descriptor: no Python stream that
    could be half-way through a write); EXIT_CODE."""
    try:  # noqa: SIM105 (contextlib is not loaded yet: see the module's docstring)
        os.write(2, f"\n{ABORTED}\n".encode())
    except OSError:
        pass  # stderr closed: the exit code still says it
    return EXIT_CODE


def abort_now() -> None:
    """Say `aborted.` and end the process with EXIT_CODE, from wherever it is: no exception
    travels, so no traceback can be printed, and no Python code runs after this."""
    os._exit(say_aborted())


def install() -> object:
    """Make `on_interrupt` the SIGINT handler, no Ctrl-C raised yet (a caller in one process
    may run several commands); returns the one it replaced (None when this is not the main
    thread, where Python runs no signal handler and none can be installed)."""
    global _armed, _raised
    import sys  # loaded at start-up, as `os` is

    _armed = _raised = False
    if sys.unraisablehook is not _quiet_unraisable:
        _hooks.append(sys.unraisablehook)
        sys.unraisablehook = _quiet_unraisable
    return _set(on_interrupt)


def _quiet_unraisable(unraisable: object) -> None:
    """Python's report of an exception raised where it cannot travel, less our Ctrl-C's: one
    raised while a finalizer ran (a file or a connection closed by the garbage collector) was
    printed as "Exception ignored in: ... KeyboardInterrupt:" under the command's `aborted.`,
    a traceback after all. The command still learns of it (`raise_if_lost`)."""
    if _raised and isinstance(getattr(unraisable, "exc_value", None), KeyboardInterrupt):
        return
    _hooks[-1](unraisable)


def restore(handler: object) -> None:
    """Put back the SIGINT handler `install` replaced (nothing for None); the command's
    Ctrl-C is over with it (a supervisor its caller runs next must not take it for its own:
    `raise_if_lost`, `LocalExecutor.run`)."""
    global _raised
    _raised = False
    if handler is not None:
        _set(handler)


def _set(handler: object) -> object:
    try:
        return _signal.signal(_signal.SIGINT, handler)
    except ValueError:
        return None


class Raised:
    """While the `with` block runs, the first Ctrl-C raises KeyboardInterrupt in it (for the
    command's own handling: click's `Abort`, a run ending its record); before and after, a
    Ctrl-C ends the process at once (`abort_now`). A class, not `contextlib`: see the module's
    docstring."""

    def __enter__(self) -> None:
        global _armed
        _armed = True

    def __exit__(self, *_exc: object) -> None:
        global _armed
        _armed = False
