"""The `pipeline` command's entry point (the console script's `main`).

Nothing but modules the interpreter has loaded already before the SIGINT guard
(`asapo_pipelines.interrupts`) is installed: a Ctrl-C from the first line of `main` on says
`aborted.` and exits 130, also while the command's shell (`cli.app`: click, the lazy command
group, the catalog's listing) is still being imported, which takes a good part of a second on
a busy machine.
"""

import sys

from asapo_pipelines import interrupts


def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script: maps every failure to one sentence and an exit code.

    With `argv` (a caller in the same process, such as a test) the caller's own SIGINT
    handler is put back when the command ends; without it this is the process's end, and the
    guard stays through the interpreter's shutdown."""
    previous = interrupts.install()
    try:
        from asapo_pipelines.cli.app import run

        code = run(argv)
    except KeyboardInterrupt:
        # raised while the command's handlers of it were being left
        code = interrupts.say_aborted()
    finally:
        if argv is not None:
            interrupts.restore(previous)
    sys.exit(code)
