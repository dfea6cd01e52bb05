"""Problems found in a pipeline file, their stable codes, and how they are printed.

Codes never change meaning once released: tools and documentation refer to them. A code no
longer given moves to `RETIRED`, so its number is never given again with another meaning. The first
digit is the stage that finds them: 0 reading the YAML, 1 the file's shape, 2 the units and their
parameters, 3 the graph, 4 the deploy section.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

Severity = Literal["error", "warning"]

#: code -> (severity, what it means). docs/pipeline-files.md lists the same table.
CODES: dict[str, tuple[Severity, str]] = {
    "P001": ("error", "The file cannot be read (missing, a directory, unreadable, too large)."),
    "P002": ("error", "The file is not valid YAML (syntax, encoding, several documents)."),
    "P003": ("error", "A key appears twice in the same mapping."),
    "P004": ("error", "A key is not a string (`1:`, `null:`, `[a, b]:`)."),
    "P005": ("error", "Anchors and aliases expand too far, or an alias refers to itself."),
    "P006": ("error", "Values are nested too deeply."),
    "P007": ("error", "A YAML tag other than the core ones (`!!python/...`, `!custom`)."),
    "P101": ("error", "A required field is missing."),
    "P102": ("error", "A field that does not exist here (typo?)."),
    "P103": ("error", "A value has the wrong type or is out of range."),
    "P104": ("error", "A name (pipeline, unit instance, stream, port) is not well formed."),
    "P105": (
        "error",
        "`transport` must name exactly one of the registered transports (`embedded`, `asapo` or "
        "a plugin's).",
    ),
    "P106": (
        "error",
        "A secret (ASAP::O token, a password in a Redis URL, index credentials) is written in "
        "the file.",
    ),
    "P107": (
        "error",
        "`asapo` transport needs exactly one of beamtime/beamline and one of token_file/token_env.",
    ),
    "P108": ("error", "The file is empty or its top level is not a mapping."),
    "P109": (
        "error",
        "The transport's client libraries are not installed here, where the pipeline runs "
        "(no `deploy:`, or `deploy: {local: ...}`); `pipeline run` would refuse to start.",
    ),
    "P110": (
        "warning",
        "The transport's client libraries are not installed here; the pipeline deploys to "
        "another executor's machines, which need them.",
    ),
    "P111": (
        "error",
        "A file the transport section names (a password file, a TLS certificate) does not "
        "exist where the pipeline's workers read it (relative: in the pipeline file's folder).",
    ),
    "P201": ("error", "Unknown unit (not in the installed catalog)."),
    "P202": ("error", "A unit parameter has the wrong type or an invalid value."),
    "P203": ("error", "A required unit parameter is missing."),
    "P204": ("error", "A unit parameter that the unit does not have."),
    "P205": ("warning", "The unit is deprecated (see `pipeline show-unit` for its successor)."),
    "P206": (
        "error",
        'A required unit parameter is empty (`""`, the placeholder `pipeline new` writes for a '
        "value only you know).",
    ),
    "P207": (
        "error",
        "The runtime module of the unit (or of the transport, or of an executor `deploy:` "
        "names) is not installed (its plugin names a module that cannot be found; `pipeline "
        "validate` and `pipeline run` check this, without importing it).",
    ),
    "P208": (
        "warning",
        "A directory a unit parameter names for the unit to read does not exist here "
        "(relative: in the pipeline file's folder); `pipeline run` refuses to start (exit 78). "
        "A warning: on a cluster the directory may exist only on the nodes. `--strict` "
        "refuses it as every warning: `validate --strict --ignore P208` checks the rest "
        "strictly where the directory does not exist, or run it where it does (on a node).",
    ),
    "P301": ("error", "An input port the unit does not have."),
    "P302": ("error", "An output port the unit does not have."),
    "P303": (
        "error",
        "An input reads a stream no unit produces and that is not declared external.",
    ),
    "P304": ("error", "The content types of a stream's producer and consumer are incompatible."),
    "P305": ("error", "A stream has more than one producer."),
    "P306": ("error", "A required input port is not connected."),
    "P307": ("warning", "A unit's output stream is not read by any unit."),
    "P308": ("warning", "A unit's output port is not connected: its messages are dropped."),
    "P309": ("error", "A stream declared external is also produced by a unit."),
    "P310": ("warning", "A stream declared under `streams:` is not used by any unit."),
    "P311": (
        "error",
        "A stream name inside the pipeline's own namespace (`<pipeline>.`), where its runs, "
        "errors and status live.",
    ),
    "P312": (
        "error",
        "A stream name too long for its data source name in the pipeline's namespace "
        "(`<pipeline>.<run>.<stream>`, at most 128 characters).",
    ),
    "P313": (
        "error",
        "Units' streams form a cycle that nothing outside it feeds, or any cycle in a batch "
        "pipeline (it would never end).",
    ),
    "P314": (
        "error",
        "Parameters of units wired together contradict each other (a plugin's `check_pipeline`: "
        "e.g. `calibrate: true` on scans whose source switches the reference channel off).",
    ),
    "P315": (
        "warning",
        "A plugin's `check_pipeline` failed (a bug of the plugin); the file was not checked by it.",
    ),
    "P401": ("error", "The task driver is not one of raw_exec, exec, docker."),
    "P402": ("error", "The docker driver needs an `image`."),
    "P403": ("warning", "`image` is set but the driver is not docker: it is ignored."),
    "P404": ("error", "`python` must name exactly one of `venv` or `install`."),
    "P405": ("error", "A wheel URL under `python.install` lacks its `#sha256=` checksum."),
    "P406": ("error", "A path on the cluster's nodes must be absolute."),
    "P407": (
        "error",
        "A requirement under `python.install.packages` is not pinned as `name==version`.",
    ),
    "P408": (
        "error",
        "A Nomad namespace, region or datacenter holds a variable (`${VAR}`, `$VAR`): the file is "
        "not interpolated.",
    ),
    "P501": ("error", "A live service the file names refuses a value (`validate --online`)."),
    "P502": ("warning", "A live service the file names could not be asked (`validate --online`)."),
    "P900": ("error", "Validation could not run (the unit catalog could not be loaded)."),
}

#: Codes no longer given -> what they meant and why they went; docs/pipeline-files.md lists
#: them too. Their numbers are not given again.
RETIRED: dict[str, str] = {
    "P112": (
        "A transport read a secret from an environment variable (`password_env`) that Nomad "
        "tasks did not get. A job on Nomad now renders every such variable (a `*_env` setting) "
        "from its Nomad variable `nomad/jobs/<pipeline>`."
    ),
}

#: Codes only `pipeline validate --online` gives: they depend on services, not on the file.
ONLINE = frozenset({"P501", "P502"})

#: Problems that mean "could not run" (exit 2) rather than "invalid" (exit 1).
UNRUNNABLE = frozenset({"P001", "P900"})

#: The codes `pipeline validate --ignore` takes: warnings only, as an error means the file
#: does not run (a P208 folder may exist only on the cluster's nodes; a P201 unit exists nowhere)
WARNING_CODES = tuple(code for code, (severity, _) in CODES.items() if severity == "warning")


def ignorable(codes: tuple[str, ...]) -> frozenset[str]:
    """The warning codes given to `--ignore` (`p208` as `P208`), or a sentence naming the
    ones it takes: an unknown code (a typo, a retired one) or an error's."""
    from asapo_pipelines.errors import UsageError

    taken = ", ".join(WARNING_CODES)
    wanted = {code.strip().upper() for code in codes}
    for code in sorted(wanted):
        if code in WARNING_CODES:
            continue
        if code in CODES:
            raise UsageError(
                f"--ignore {code}: {code} is an error (the file would not run), and --ignore "
                f"takes only the warning codes {taken}"
            )
        raise UsageError(
            f"--ignore {code}: no problem has that code; --ignore takes only the warning codes "
            f"{taken}"
        )
    return frozenset(wanted)


def ignored_line(ignored: list[Problem]) -> str:
    """What `validate --ignore` says of the problems it left out, in one line:
    `2 problems ignored (P208, P307)`."""
    codes = ", ".join(sorted({p.code for p in ignored}))
    return f"{len(ignored)} problem{'s' if len(ignored) != 1 else ''} ignored ({codes})"


@dataclass(frozen=True, order=True)
class Problem:
    file: str
    line: int
    column: int
    severity: Severity
    code: str
    message: str

    def text(self) -> str:
        if not self.line:  # at no place in the file: at the option that made it (`--set`)
            return f"{self.file}: {self.severity} {self.code} {self.message}"
        return f"{self.file}:{self.line}:{self.column}: {self.severity} {self.code} {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "severity": self.severity,
            "code": self.code,
            "message": self.message,
        }


def make(file: str, pos: Any, code: str, message: str) -> Problem:
    """A problem at a loader position, with the code's own severity."""
    severity = CODES[code][0]
    return Problem(file, pos.line, pos.column, severity, code, message)


@dataclass
class Report:
    """Everything validation found in one file."""

    file: str
    problems: list[Problem] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def exit_code(self) -> int:
        if any(p.code in UNRUNNABLE for p in self.problems):
            return 2
        return 0 if self.ok else 1

    def leave_out(self, codes: frozenset[str]) -> list[Problem]:
        """Remove the warnings with these codes (`validate --ignore`); the ones removed, each
        once. Errors stay: `ignorable` takes no error's code."""
        out = [
            p for p in dict.fromkeys(self.problems) if p.severity == "warning" and p.code in codes
        ]
        self.problems = [p for p in self.problems if p not in out]
        return out

    def sorted(self) -> list[Problem]:
        unique = dict.fromkeys(self.problems)
        return sorted(unique, key=lambda p: (p.line, p.column, p.code, p.message))

    def text(self) -> str:
        return "".join(p.text() + "\n" for p in self.sorted())

    def summary(self, *, strict: bool = False) -> str:
        """One line for the file; `strict`: warnings refuse it (`validate --strict`), so a
        file with only warnings is not called valid while the command exits 1."""
        e, w = len(self.errors), len(self.warnings)
        if self.exit_code == 2:
            return f"{self.file}: could not be checked"
        if not e and not w:
            return f"{self.file}: valid"
        parts = [f"{e} error{'s' if e != 1 else ''}"] if e else []
        if w:
            parts.append(f"{w} warning{'s' if w != 1 else ''}")
        state = "invalid" if e else "invalid under --strict" if strict else "valid"
        return f"{self.file}: {state} ({', '.join(parts)})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "valid": self.ok,
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "problems": [p.to_dict() for p in self.sorted()],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)
