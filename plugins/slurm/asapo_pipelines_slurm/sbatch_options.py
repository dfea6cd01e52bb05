"""sbatch's command line as sbatch itself reads it, so that `extra_options` can be checked.

sbatch parses its options with getopt_long: a short option's value may be attached (``-o/x``,
``-Jname``), short options without a value may be grouped (``-vHo/x``), and a long option may
be given by any unique prefix of its name (``--out=/x`` is ``--output=/x``). Comparing the
item's text with the option names would let all of those through, so an item is resolved to
the option sbatch would take it for, by the same rules and sbatch's own option table.

Light on purpose (the standard library only): `config` imports it to validate a pipeline file.
"""

from __future__ import annotations

from dataclasses import dataclass

REQUIRED, OPTIONAL, NONE = "required", "optional", "none"

#: sbatch's options: long name -> (short letter or "", its value). Those `man sbatch` of Slurm
#: 22.05 lists, and the four it accepts without listing them (`cluster`, `context`,
#: `ntasks-per-tres`, `tasks-per-node`): the possibilities sbatch names for an ambiguous
#: prefix (`sbatch --e=1`) are exactly these. Newer Slurm releases add options; a long name
#: that is not here is passed to sbatch unchecked.
SBATCH_OPTIONS: dict[str, tuple[str, str]] = {
    "account": ("A", REQUIRED),
    "acctg-freq": ("", REQUIRED),
    "array": ("a", REQUIRED),
    "batch": ("", REQUIRED),
    "bb": ("", REQUIRED),
    "bbf": ("", REQUIRED),
    "begin": ("b", REQUIRED),
    "chdir": ("D", REQUIRED),
    "cluster-constraint": ("", REQUIRED),
    "cluster": ("", REQUIRED),
    "clusters": ("M", REQUIRED),
    "comment": ("", REQUIRED),
    "constraint": ("C", REQUIRED),
    "container": ("", REQUIRED),
    "context": ("", REQUIRED),
    "contiguous": ("", NONE),
    "core-spec": ("S", REQUIRED),
    "cores-per-socket": ("", REQUIRED),
    "cpu-freq": ("", REQUIRED),
    "cpus-per-gpu": ("", REQUIRED),
    "cpus-per-task": ("c", REQUIRED),
    "deadline": ("", REQUIRED),
    "delay-boot": ("", REQUIRED),
    "dependency": ("d", REQUIRED),
    "distribution": ("m", REQUIRED),
    "error": ("e", REQUIRED),
    "exclude": ("x", REQUIRED),
    "exclusive": ("", OPTIONAL),
    "export": ("", OPTIONAL),
    "export-file": ("", REQUIRED),
    "extra-node-info": ("B", REQUIRED),
    "get-user-env": ("", OPTIONAL),
    "gid": ("", REQUIRED),
    "gpu-bind": ("", REQUIRED),
    "gpu-freq": ("", REQUIRED),
    "gpus": ("G", REQUIRED),
    "gpus-per-node": ("", REQUIRED),
    "gpus-per-socket": ("", REQUIRED),
    "gpus-per-task": ("", REQUIRED),
    "gres": ("", REQUIRED),
    "gres-flags": ("", REQUIRED),
    "help": ("h", NONE),
    "hint": ("", REQUIRED),
    "hold": ("H", NONE),
    "ignore-pbs": ("", NONE),
    "input": ("i", REQUIRED),
    "job-name": ("J", REQUIRED),
    "kill-on-invalid-dep": ("", REQUIRED),
    "licenses": ("L", REQUIRED),
    "mail-type": ("", REQUIRED),
    "mail-user": ("", REQUIRED),
    "mcs-label": ("", REQUIRED),
    "mem": ("", REQUIRED),
    "mem-bind": ("", REQUIRED),
    "mem-per-cpu": ("", REQUIRED),
    "mem-per-gpu": ("", REQUIRED),
    "mincpus": ("", REQUIRED),
    "network": ("", REQUIRED),
    "nice": ("", OPTIONAL),
    "no-kill": ("k", OPTIONAL),
    "no-requeue": ("", NONE),
    "nodefile": ("F", REQUIRED),
    "nodelist": ("w", REQUIRED),
    "nodes": ("N", REQUIRED),
    "ntasks": ("n", REQUIRED),
    "ntasks-per-core": ("", REQUIRED),
    "ntasks-per-gpu": ("", REQUIRED),
    "ntasks-per-node": ("", REQUIRED),
    "ntasks-per-socket": ("", REQUIRED),
    "ntasks-per-tres": ("", REQUIRED),
    "open-mode": ("", REQUIRED),
    "output": ("o", REQUIRED),
    "overcommit": ("O", NONE),
    "oversubscribe": ("s", NONE),
    "parsable": ("", NONE),
    "partition": ("p", REQUIRED),
    "power": ("", REQUIRED),
    "prefer": ("", REQUIRED),
    "priority": ("", REQUIRED),
    "profile": ("", REQUIRED),
    "propagate": ("", OPTIONAL),
    "qos": ("q", REQUIRED),
    "quiet": ("Q", NONE),
    "reboot": ("", NONE),
    "requeue": ("", NONE),
    "reservation": ("", REQUIRED),
    "signal": ("", REQUIRED),
    "sockets-per-node": ("", REQUIRED),
    "spread-job": ("", NONE),
    "switches": ("", REQUIRED),
    "tasks-per-node": ("", REQUIRED),
    "test-only": ("", NONE),
    "thread-spec": ("", REQUIRED),
    "threads-per-core": ("", REQUIRED),
    "time": ("t", REQUIRED),
    "time-min": ("", REQUIRED),
    "tmp": ("", REQUIRED),
    "uid": ("", REQUIRED),
    "usage": ("", NONE),
    "use-min-nodes": ("", NONE),
    "verbose": ("v", NONE),
    "version": ("V", NONE),
    "wait": ("W", NONE),
    "wait-all-nodes": ("", REQUIRED),
    "wckey": ("", REQUIRED),
    "wrap": ("", REQUIRED),
}
SHORT = {short: name for name, (short, _) in SBATCH_OPTIONS.items() if short}


class OptionError(ValueError):
    """An item sbatch would not read as one option with its value; the message says why."""


@dataclass(frozen=True)
class Option:
    """One option as sbatch reads it: its long name (as given, when sbatch's table here does
    not know it) and how the item wrote it."""

    name: str
    written: str

    def __str__(self) -> str:
        spelled = f"--{self.name}"
        return spelled if self.written == spelled else f"{self.written} (--{self.name})"


def parse(item: str) -> list[Option]:
    """The options one `extra_options` item gives sbatch (several for grouped short options).
    Raises `OptionError` for an item that is no option, a long prefix that fits several
    options, or an option whose value is missing (sbatch would take the next argument, the
    job's script, as its value)."""
    if item.startswith("--"):
        return [_long(item)]
    if item.startswith("-") and len(item) > 1 and item[1].isalpha():
        return _shorts(item)
    raise OptionError(f"sbatch option {item!r} must start with - or --")


def _long(item: str) -> Option:
    given, has_value, _ = item[2:].partition("=")
    name = resolve(given)
    if name is None:  # not in the table: a newer Slurm's option, sbatch judges it
        return Option(given, f"--{given}")
    if SBATCH_OPTIONS[name][1] == REQUIRED and not has_value:
        raise OptionError(
            f"sbatch option --{name} needs its value in the same item: --{name}=VALUE"
        )
    return Option(name, f"--{given}")


def resolve(given: str) -> str | None:
    """The long option a name stands for, as getopt_long resolves it: the exact name, else the
    one option it is a prefix of; None when it fits none."""
    if given in SBATCH_OPTIONS:
        return given
    fits = [name for name in SBATCH_OPTIONS if name.startswith(given)]
    if len(fits) > 1:
        raise OptionError(
            f"sbatch option --{given} is ambiguous (it could be "
            + ", ".join(f"--{n}" for n in fits)
            + "); write the option's whole name"
        )
    return fits[0] if fits else None


def _shorts(item: str) -> list[Option]:
    """``-vHo/x``: letters without a value one after the other, until one that takes the rest of
    the item as its value (getopt's rule)."""
    found = []
    rest = item[1:]
    while rest:
        letter, rest = rest[0], rest[1:]
        name = SHORT.get(letter)
        if name is None:
            raise OptionError(f"sbatch has no option -{letter} (in {item!r})")
        found.append(Option(name, f"-{letter}"))
        takes = SBATCH_OPTIONS[name][1]
        if takes == REQUIRED and not rest:
            raise OptionError(
                f"sbatch option -{letter} needs its value in the same item: -{letter}VALUE"
            )
        if takes != NONE:
            break  # the rest of the item, if any, is the value
    return found
