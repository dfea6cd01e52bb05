"""Readers of XAS scan files: P65 (`#` header), XDI 1.0 and DESY FIO.

Each reader returns a `Scan`: the energy in eV (an XDI energy column in keV is converted, one in
another unit refused) and the detector channels under role names (`i0`, `it`,
`iref`, `if`, `mu`), sorted by energy with duplicate energies dropped (continuous scans at P65 go
back and forth), plus the header's metadata. A file that cannot be read raises `ScanFileError`
naming the reason, which the scan-files unit sends to the error stream (`too_short` when the
file holds too few rows yet: what a file still being written looks like, which the unit's watch
mode waits on).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from asapo_pipelines_xas.errors import ScanFileError

#: Usual column names of each role, lower case, in order of preference. The P65 VFC channels
#: come first: VFC01..VFC04 are I0, It, Iref and If there (see examples/data/SOURCES.md).
DEFAULT_COLUMNS: dict[str, tuple[str, ...]] = {
    "energy": ("enc_energy", "energy", "mono_energy", "energyc", "energy_enc", "e"),
    "i0": ("vfc01", "i0", "io", "monitor"),
    "it": ("vfc02", "it", "itrans", "i1"),
    "iref": ("vfc03", "iref", "irefer", "ir", "i2"),
    "if": ("vfc04", "if", "ifluor", "ifl", "fluo", "fluorescence"),
    "mu": ("mu", "mutrans", "mu_trans", "xmu", "mufluor"),
}

FORMATS = ("p65", "xdi", "fio")

#: Columns holding the counting time per point (P65: time_pp); their median becomes
#: `count_time` in the metadata (the NeXus monitor's preset in timer mode).
COUNT_TIME_COLUMNS = ("time_pp", "count_time", "counttime", "integration_time", "dwell")


@dataclass
class Scan:
    """One scan: energy (eV, increasing, unique), channels by role, and metadata."""

    energy: np.ndarray
    channels: dict[str, np.ndarray]
    metadata: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.energy)

    def channel(self, role: str) -> np.ndarray | None:
        return self.channels.get(role)

    def to_json(self) -> dict[str, Any]:
        """The `xas/scan` message body: plain JSON (non-finite numbers become null)."""
        return {
            "metadata": dict(self.metadata),
            "energy": _json_array(self.energy),
            "channels": {role: _json_array(values) for role, values in self.channels.items()},
        }

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Scan:
        try:
            energy = np.asarray(body["energy"], dtype=float)
            channels = {
                str(role): np.asarray(values, dtype=float)
                for role, values in dict(body.get("channels", {})).items()
            }
        except (KeyError, TypeError, ValueError) as exc:
            raise ScanFileError(
                str(dict(body.get("metadata", {})).get("file", "message")),
                f"not an xas/scan message ({exc})",
            ) from None
        return cls(energy, channels, dict(body.get("metadata", {})))


#: The largest scan file read. A P65 scan is well under 1 MB and even a long continuous scan a
#: few MB; a file past this is not a scan (a detector image, a log dumped into the folder),
#: and reading it whole took minutes and gigabytes. It goes to the error stream instead.
MAX_SCAN_BYTES = 64 * 1024 * 1024


def _json_array(values: np.ndarray) -> list[float | None]:
    return [float(v) if math.isfinite(v) else None for v in np.asarray(values, dtype=float)]


# -- entry points ----------------------------------------------------------------------------


def read_scan(
    path: str | Path,
    *,
    format: str = "auto",
    columns: Mapping[str, str | int | None] | None = None,
    sample: str | None = None,
    element: str | None = None,
    edge: str | None = None,
    min_points: int = 20,
    name: str | None = None,
) -> Scan:
    """Read one scan file; see `parse_scan` for the arguments. `name`: what the scan's `file`
    metadata and errors call it (default the file's name; `xas.scan-files` gives its path
    under the watched directory, so that `day1/x.xdi` and `day2/x.xdi` stay two scans)."""
    path = Path(path)
    name = name or path.name
    return parse_scan(
        scan_bytes(path, name),
        name=name,
        format=format,
        columns=columns,
        sample=sample,
        element=element,
        edge=edge,
        min_points=min_points,
    )


def scan_bytes(path: Path, name: str) -> bytes:
    """The bytes of the scan file `path` (`name` in errors), read once: whoever parses them
    and hashes them sees one content, whatever is written to the file meanwhile."""
    try:
        size = path.stat().st_size
        if size > MAX_SCAN_BYTES:
            raise ScanFileError(
                name,
                f"the file is {size:,} bytes, more than the {MAX_SCAN_BYTES:,} a scan file may "
                "have; it is not read",
            )
        return path.read_bytes()
    except OSError as exc:
        raise ScanFileError(name, exc.strerror or str(exc)) from None


def parse_scan(
    content: bytes | str,
    *,
    name: str,
    format: str = "auto",
    columns: Mapping[str, str | int | None] | None = None,
    sample: str | None = None,
    element: str | None = None,
    edge: str | None = None,
    min_points: int = 20,
) -> Scan:
    """Parse the content of a scan file.

    `columns` maps roles to a column name (case-insensitive) or 0-based index, or to None: the
    role is switched off (`iref: None`: no reference channel, whatever the columns are named);
    roles left out are looked up under their usual names (`DEFAULT_COLUMNS`). The metadata's
    `columns` names each role's column, a switched-off role as None. `sample`, `element` and
    `edge` override what the header or the file name say.
    """
    if isinstance(content, bytes):
        try:
            text = content.decode("utf-8")
        except UnicodeDecodeError:
            text = content.decode("latin-1")
    else:
        text = content
    lines = text.splitlines()
    if not any(line.strip() for line in lines):
        raise ScanFileError(name, "the file is empty")
    fmt = detect_format(lines) if format == "auto" else format
    if fmt not in FORMATS:
        raise ScanFileError(name, f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    parser = {"p65": _parse_p65, "xdi": _parse_xdi, "fio": _parse_fio}[fmt]
    names, rows, first_line, meta = parser(name, lines)
    table, line_numbers = _to_table(name, names, rows, first_line)
    mapping = _map_columns(name, names, columns or {})
    switched_off = {role: None for role, column in (columns or {}).items() if column is None}
    _check_energy(name, table[:, mapping["energy"]], line_numbers)
    converted = _energy_in_ev(name, table, mapping["energy"], names, meta.pop(_UNITS, {}))
    if converted:
        meta["energy_unit"] = converted
    meta = {
        **meta,
        "format": fmt,
        "file": name,
        "columns": {**{r: names[i] for r, i in mapping.items()}, **switched_off},
        "columns_all": names,
    }
    meta.update(_from_file_name(name))
    if not (element or edge):  # a label the params give decides: nothing to contradict
        _note_label_conflict(meta)
    _finish_metadata(meta)
    for key, value in (("sample", sample), ("element", element), ("edge", edge)):
        if value:
            meta[key] = value
    # params, header and file name may each write them in any case: one label downstream
    canonical_label(meta)
    if "label_conflict" in meta and "sample" not in meta:
        # the series' name is not this scan's: a group of its own, named by its whole file
        # name, rather than a sample of the series it does not belong to
        meta["file_name_not_used"]["sample"] = meta["file_base"]
        base = Path(name).name  # not the subdirectory of a `recursive` source's name
        meta["sample"] = base.rsplit(".", 1)[0] if "." in base else base
    meta.setdefault("sample", meta["file_base"])
    return _build_scan(name, table, mapping, meta, min_points)


def detect_format(lines: list[str]) -> str:
    """`xdi` when the first line says XDI, `fio` when it has %c/%p/%d blocks, else `p65`."""
    first = next((line.strip() for line in lines if line.strip()), "")
    if re.match(r"#\s*XDI/", first, re.IGNORECASE):
        return "xdi"
    if any(line.strip() in ("%c", "%p", "%d") for line in lines[:2000]):
        return "fio"
    return "p65"


# -- format parsers: each returns (column names, data lines, first data line number, meta) ----


def _split_header(lines: list[str], comment: str = "#") -> tuple[list[str], int]:
    header: list[str] = []
    for number, line in enumerate(lines):
        stripped = line.strip()
        if not stripped:
            continue
        if not stripped.startswith(comment):
            return header, number
        header.append(stripped[len(comment) :].strip())
    return header, len(lines)


def _parse_p65(name: str, lines: list[str]) -> tuple[list[str], list[str], int, dict[str, Any]]:
    header, start = _split_header(lines)
    rows = lines[start:]
    first = next((r for r in rows if r.strip()), None)
    if first is None:
        raise ScanFileError(name, "no data rows after the header", too_short=True)
    ncols = len(first.split())
    names = header[-1].split() if header else []
    if len(names) != ncols:
        if _names_columns(names):
            # a column line that lost or gained a name: indices would pair names with the
            # wrong values, and "no energy column" would hide why
            raise ScanFileError(
                name,
                f"the header's column line names {len(names)} columns but the rows hold "
                f"{ncols} values (line {start + rows.index(first) + 1})",
            )
        # no column line: name them col0, col1, ... so indices still work
        names = [f"col{i}" for i in range(ncols)]
    meta: dict[str, Any] = {"header": {}}
    for line in header:
        started = re.search(
            r"started at\s+(\d{1,2}-\d{1,2}-\d{4} \d{1,2}:\d{2}:\d{2})"
            r"(?:,\s*finished at\s+(\d{1,2}-\d{1,2}-\d{4} \d{1,2}:\d{2}:\d{2}))?",
            line,
        )
        if started:
            meta["start_time"] = _iso(started.group(1), "%d-%m-%Y %H:%M:%S")
            if started.group(2):
                meta["end_time"] = _iso(started.group(2), "%d-%m-%Y %H:%M:%S")
            continue
        beamline = re.match(r"(.*?)\s+(?:Extension\s+)?Beamline\s+(\S+)", line)
        if beamline and "facility" not in meta:
            meta["facility"], meta["beamline"] = beamline.group(1).strip(), beamline.group(2)
            continue
        key, sep, value = line.partition(" = ")
        if not sep:
            key, sep, value = line.partition(": ")
        if sep and key.strip():
            meta["header"][key.strip()] = value.strip()
    crystal = meta["header"].get("DCM Crystal")
    if crystal:
        meta["mono"] = crystal
    return names, rows, start, meta


def _names_columns(words: list[str]) -> bool:
    """Whether a header line is a column line: it names at least two of the usual columns."""
    known = {n for names in DEFAULT_COLUMNS.values() for n in names if len(n) > 1}
    return sum(w.lower() in known for w in words) >= 2


def _parse_xdi(name: str, lines: list[str]) -> tuple[list[str], list[str], int, dict[str, Any]]:
    """XDI 1.0: the version line, `# Namespace.tag: value` fields, then optionally `# ///` and
    user comments, the header-end line `#----` (three or more `-`) and the column label line
    (`# energy i0 itrans`), the last header line. The comment block is optional: without it the
    label line follows `#----` directly, and a file without `#----` either may end its header
    with the label line (xraylarch's `read_xdi` reads both). A free comment among the fields
    (no `# ///` before it) is skipped, as `read_xdi` skips it; a line that reads as a field
    which lost its colon is refused (`_check_not_a_field`)."""
    _, start = _split_header(lines)
    header = [(number, line.strip()[1:].strip()) for number, line in enumerate(lines[:start])]
    header = [(number, line) for number, line in header if line]
    rows = lines[start:]
    first = next((r for r in rows if r.strip()), None)
    if first is None:
        raise ScanFileError(name, "no data rows after the header", too_short=True)
    ncols = len(first.split())
    fields: dict[str, str] = {}
    labels: dict[int, str] = {}
    units: dict[int, str] = {}
    #: fields, then `comments` after `///`, then `labels` after the `#----` header-end line
    section = "fields"
    label_line = ""
    for index, (number, line) in enumerate(header[1:], start=1):
        if line.startswith("---"):
            section = "labels"
            continue
        if section == "fields" and line.startswith("///"):
            section = "comments"
            continue
        if section != "fields":
            label_line = line  # the last header line is the column labels
            continue
        key, sep, value = line.partition(":")
        if not sep:
            if index == len(header) - 1 and len(line.split()) == ncols:
                label_line = line  # the label line, without a `#----` line before it
                continue
            _check_not_a_field(name, number, line)
            # a free comment among the fields (its `# ///` line left out): xraylarch's
            # `read_xdi` skips it and reads the file, and so does this reader
            continue
        key, value = key.strip(), value.strip()
        fields[key] = value
        column = re.fullmatch(r"column\.(\d+)", key, re.IGNORECASE)
        if column:
            words = value.split()
            labels[int(column.group(1))] = words[0] if words else ""
            if len(words) > 1:  # `Column.1: energy eV`: the column's unit
                units[int(column.group(1))] = words[1]
    if labels:
        names = [labels.get(i + 1, f"col{i}") for i in range(ncols)]
    elif len(label_line.split()) == ncols:
        names = label_line.split()
    else:
        names = [f"col{i}" for i in range(ncols)]
    lower = {k.lower(): v for k, v in fields.items()}

    def pick(*keys: str) -> str | None:
        return next((lower[k] for k in keys if lower.get(k)), None)

    meta: dict[str, Any] = {"header": fields}
    if labels:
        # by column index (0-based); taken out of the metadata by `parse_scan`
        meta[_UNITS] = {i - 1: unit for i, unit in units.items()}
    for target, keys in (
        ("element", ("element.symbol", "scan.element")),
        ("edge", ("element.edge", "scan.edge")),
        ("sample", ("sample.name",)),
        # the merge's `group_by` may hold it: one sample measured at several temperatures
        ("temperature", ("sample.temperature",)),
        ("start_time", ("scan.start_time",)),
        ("end_time", ("scan.end_time",)),
        ("beamline", ("beamline.name",)),
        ("facility", ("facility.name",)),
        ("mono", ("mono.name",)),
    ):
        found = pick(*keys)
        if found:
            meta[target] = found
    edge_energy = pick("scan.edge_energy")
    if edge_energy:
        with contextlib.suppress(ValueError):
            meta["edge_energy"] = float(edge_energy.split()[0])
    return names, rows, start, meta


#: a header line that reads as an XDI field which lost its colon: `Sample.name Cu`
_FIELD_WITHOUT_COLON = re.compile(r"([A-Za-z][\w-]*\.[A-Za-z][\w.-]*)\s+(\S.*)")


def _check_not_a_field(name: str, number: int, line: str) -> None:
    """Refuse a header line that reads as a field without its colon. xraylarch's `read_xdi`
    skips it as it skips a free comment, but a lost `Sample.name` or `Element.symbol` silently
    changes how the scan is grouped and labelled; a comment is rarely `Word.word text`."""
    field = _FIELD_WITHOUT_COLON.fullmatch(line)
    if field:
        raise ScanFileError(
            name,
            f"XDI header line {number + 1} {line!r} reads as a field without its colon "
            f"(`Namespace.tag: value`), which xraylarch's read_xdi would drop unseen: write it "
            f"`{field.group(1)}: {field.group(2)}`",
        )


def _parse_fio(name: str, lines: list[str]) -> tuple[list[str], list[str], int, dict[str, Any]]:
    section = ""
    comments: list[str] = []
    parameters: dict[str, str] = {}
    names: list[str] = []
    rows: list[str] = []
    first_row = 0
    for number, raw in enumerate(lines):
        line = raw.strip()
        if not line or line.startswith("!"):
            continue
        if line in ("%c", "%p", "%d"):
            section = line[1]
            continue
        if section == "c":
            comments.append(line)
        elif section == "p":
            key, sep, value = line.partition("=")
            if not sep:
                raise ScanFileError(name, f"FIO parameter line {number + 1} has no `=`: {line!r}")
            parameters[key.strip()] = value.strip()
        elif section == "d":
            column = re.match(r"Col\s+(\d+)\s+(\S+)", line)
            if column and not rows:
                names.append(column.group(2))
                continue
            if not rows:
                first_row = number
            rows.append(raw)
        else:
            raise ScanFileError(name, f"line {number + 1} is outside any %c, %p or %d block")
    if not names:
        raise ScanFileError(name, "the FIO file has no %d block with `Col N name` lines")
    if not rows:
        # without this, the whole file was taken for its rows and "line 1 has 1 values" said
        raise ScanFileError(name, "no data rows after the header", too_short=True)
    # rows are kept contiguous from first_row so that error messages point at real lines
    data_lines = [line if not line.strip().startswith("!") else "" for line in lines[first_row:]]
    meta: dict[str, Any] = {"header": parameters, "comments": comments}
    for line in comments:
        started = re.search(r"started at\s+(.+)$", line)
        if started:
            text = started.group(1).strip()
            for fmt in ("%a %b %d %H:%M:%S %Y", "%d-%m-%Y %H:%M:%S", "%Y-%m-%d %H:%M:%S"):
                try:
                    meta["start_time"] = _iso(text, fmt)
                    break
                except ValueError:
                    continue
            else:
                meta["start_time"] = text
    lower = {k.lower(): v for k, v in parameters.items()}
    for target, keys in (
        ("sample", ("sample", "sample_name", "samplename")),
        ("element", ("element",)),
        ("edge", ("edge",)),
    ):
        found = next((lower[k] for k in keys if lower.get(k)), None)
        if found:
            meta[target] = found
    return names, data_lines, first_row, meta


# -- table building ----------------------------------------------------------------------------


def _to_table(
    name: str, names: list[str], rows: list[str], first_line: int
) -> tuple[np.ndarray, np.ndarray]:
    """The data as floats, and the file's line number (1-based) of each row."""
    ncols = len(names)
    values: list[list[float]] = []
    numbers: list[int] = []
    for offset, line in enumerate(rows):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.split()
        if len(parts) != ncols:
            raise ScanFileError(
                name,
                f"line {first_line + offset + 1} has {len(parts)} values where the columns "
                f"say {ncols}",
            )
        try:
            values.append([float(p) for p in parts])
            numbers.append(first_line + offset + 1)
        except ValueError:
            bad = next(p for p in parts if not _is_float(p))
            raise ScanFileError(
                name, f"line {first_line + offset + 1} holds {bad!r}, which is not a number"
            ) from None
    if not values:
        raise ScanFileError(name, "no data rows", too_short=True)
    return np.asarray(values, dtype=float), np.asarray(numbers)


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _map_columns(
    name: str, names: list[str], columns: Mapping[str, str | int | None]
) -> dict[str, int]:
    """Role -> column index: those `columns` names, then the usual names of the roles left
    out; a role mapped to None is switched off (not looked up)."""
    lower = [n.lower() for n in names]
    mapping: dict[str, int] = {}
    for role, column in columns.items():
        if role not in DEFAULT_COLUMNS:
            raise ScanFileError(
                name, f"unknown role {role!r}; roles are {', '.join(DEFAULT_COLUMNS)}"
            )
        if column is None:
            if role == "energy":
                raise ScanFileError(name, "the energy column cannot be switched off")
            continue
        if isinstance(column, int):
            if not 0 <= column < len(names):
                raise ScanFileError(
                    name, f"column {column} for {role} does not exist (the file has {len(names)})"
                )
            mapping[role] = column
        elif column.lower() in lower:
            mapping[role] = lower.index(column.lower())
        else:
            raise ScanFileError(
                name,
                f"column {column!r} for {role} is not in the file; columns: {', '.join(names)}",
            )
    taken = set(mapping.values())
    for role, candidates in DEFAULT_COLUMNS.items():
        if role in mapping or role in columns:
            continue
        for candidate in candidates:
            if candidate in lower and lower.index(candidate) not in taken:
                mapping[role] = lower.index(candidate)
                taken.add(mapping[role])
                break
    if "energy" not in mapping:
        raise ScanFileError(
            name,
            f"no energy column (looked for {', '.join(DEFAULT_COLUMNS['energy'])}); set "
            f"`columns: {{energy: ...}}`; columns: {', '.join(names)}",
        )
    return mapping


#: metadata key under which a parser hands `parse_scan` the columns' units (never sent)
_UNITS = "_column_units"

#: Energy units a file may name for its energy column (in any case), and their factor to eV.
ENERGY_UNITS = {"eV": 1.0, "keV": 1000.0}


def _energy_in_ev(
    name: str, table: np.ndarray, column: int, names: list[str], units: Mapping[int, str]
) -> dict[str, Any] | None:
    """Put the energy column in eV, in place, by the unit the file names for it (XDI
    `Column.N: energy keV`): keV is converted, and said in what this returns (for the scan's
    metadata); a unit that is not an energy unit refuses the file. No unit named: eV."""
    unit = units.get(column)
    if unit is None:
        return None
    factor = next((f for u, f in ENERGY_UNITS.items() if u.lower() == unit.lower()), None)
    if factor is None:
        raise ScanFileError(
            name,
            f"its energy column {names[column]} is in {unit!r}, which is not an energy unit this "
            f"reader converts (it reads {' and '.join(ENERGY_UNITS)})",
        )
    if factor == 1.0:
        return None
    table[:, column] *= factor
    return {"column": names[column], "unit_read": unit, "converted_to": "eV", "factor": factor}


def _check_energy(name: str, energy: np.ndarray, line_numbers: np.ndarray) -> None:
    """An energy of inf or nan is refused like text: it is no point of the scan, and a row
    dropped without a word would leave points_read and the points kept apart unexplained."""
    bad = np.flatnonzero(~np.isfinite(energy))
    if len(bad):
        first = bad[0]
        more = f" (and {len(bad) - 1} more lines)" if len(bad) > 1 else ""
        raise ScanFileError(
            name,
            f"line {line_numbers[first]}: energy {energy[first]} is not a finite number{more}",
        )


def _build_scan(
    name: str,
    table: np.ndarray,
    mapping: dict[str, int],
    meta: dict[str, Any],
    min_points: int,
) -> Scan:
    energy = table[:, mapping["energy"]]  # all finite (`_check_energy`)
    meta["points_read"] = len(energy)
    order = np.argsort(energy, kind="stable")
    table, energy = table[order], energy[order]
    keep = np.concatenate([[True], np.diff(energy) > 0]) if len(energy) else np.array([], bool)
    meta["duplicates_dropped"] = int(len(energy) - keep.sum())
    table, energy = table[keep], energy[keep]
    if len(energy) < min_points:
        raise ScanFileError(
            name,
            f"only {len(energy)} distinct energies, fewer than the {min_points} required",
            too_short=True,
        )
    channels = {role: table[:, i].copy() for role, i in mapping.items() if role != "energy"}
    names = [n.lower() for n in meta["columns_all"]]
    timer = next((names.index(c) for c in COUNT_TIME_COLUMNS if c in names), None)
    if timer is not None:
        meta["count_time"] = float(np.median(table[:, timer]))
    del meta["columns_all"]
    return Scan(energy.copy(), channels, meta)


#: A scan number at the end of a file name (its extension taken off): a zero-padded counter, a
#: leading 0 and at least 3 digits, after `_`, `.` or `-` (`_001`, `.00000`). Any other trailing
#: number is part of the sample name: `cu_T_100` and `cu_T_300` (100 K and 300 K) are two
#: samples, not two repeats of `cu_T` to be averaged; repeats numbered `_1`, `_2` are then two
#: groups, which is safe (set `sample` to merge them), where averaging two measurements is not.
SCAN_NUMBER = re.compile(r"(.+?)[._-](0\d{2,})")
#: A temperature in a file name, where beamline software puts it when the header has no
#: `Sample.temperature` (P65: `20K_GOE_Fe_K_240`, `300K_GOE_...`): a word of the name that is a
#: number and a capital K. Read only for the merge's `group_by: [..., temperature]`, so that a
#: sample named alike at 20 K and 300 K is not averaged as repeats. Not °C: `1C` or `0.5C` in a
#: name is as often a battery's charge rate as a temperature; nor a number alone.
TEMPERATURE_IN_NAME = re.compile(r"(?:^|[_\-\s])(\d+(?:\.\d+)?)K(?=$|[_.\-\s])")


def _from_file_name(name: str) -> dict[str, Any]:
    """Scan number, base name (repeats share it), element/edge and temperature hints from the
    file name.

    The scan number is a zero-padded counter at the end (`SCAN_NUMBER`): `20K_GOE_Fe_K_240.00001`
    is scan 1 of `20K_GOE_Fe_K_240`, while `cu_T_300` is the sample `cu_T_300`."""
    stem = Path(name).name
    for suffix in (".xdi", ".dat", ".fio", ".txt", ".csv", ".asc"):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    info: dict[str, Any] = {"file_base": stem}
    number = SCAN_NUMBER.fullmatch(stem)
    if number:
        info["file_base"], info["scan_number"] = number.group(1), int(number.group(2))
    tokens = re.split(r"[_.\-\s]+", info["file_base"])
    said = TEMPERATURE_IN_NAME.search(info["file_base"])
    if said is not None:
        info["temperature_from_name"] = f"{said.group(1)} K"
    for first, second in itertools.pairwise(tokens):
        # the symbol as the tables write it (Fe, not fe): in a name, lower-case words such as
        # "in", "as" or "be" are words, not elements; the edge may be written in any case
        edge = canonical_edge(second, first)
        if canonical_element(first) == first and edge in _edge_names(first):
            info["element_from_name"], info["edge_from_name"] = first, edge
            break
    return info


def load_tables() -> None:
    """Open xraydb's tables (1-2.5 s, once per process), which labels are written by.

    `xas.scan-files` calls this in `on_start`, while its worker says "loading": left to the
    first file, it delayed the first scan of every run by as much."""
    from xraydb import xray_edges

    xray_edges("Fe")


def canonical_element(symbol: Any) -> str:
    """An element symbol as xraylarch's tables (xraydb) write it: `fe` and `FE` are `Fe`, so
    that one element makes one merge group, NeXus entry and agent target. A symbol the tables
    do not know is kept as written: the edge-label check names it in its error."""
    return _canonical_element(str(symbol))


# cached: every token pair of every file name is looked up (`_from_file_name`), and each look
# is an SQL query of xraydb's tables (about 1 ms), per scan file in the file-to-decision path
@functools.lru_cache(maxsize=1024)
def _canonical_element(text: str) -> str:
    from xraydb import atomic_number, atomic_symbol

    try:
        return str(atomic_symbol(atomic_number(text.strip())))
    except Exception:  # xraydb raises ValueError, or worse for text that is no symbol
        return text


def canonical_edge(edge: Any, element: Any) -> str:
    """An edge name as xraylarch's tables write it for the element (`k` is `K`, `l3` is
    `L3`); kept as written when the element is unknown or has no such edge."""
    text = str(edge)
    names = {name.lower(): name for name in _edge_names(canonical_element(element))}
    return names.get(text.strip().lower(), text)


@functools.lru_cache(maxsize=1024)
def _edge_names(element: str) -> tuple[str, ...]:
    """The edges xraydb tabulates for an element (K, L1, ...); none for an unknown one."""
    from xraydb import xray_edges

    try:
        return tuple(xray_edges(element))
    except Exception:
        return ()


def canonical_label(meta: dict[str, Any]) -> None:
    """Write the metadata's element and edge as the tables do, wherever they came from."""
    if meta.get("element"):
        meta["element"] = canonical_element(meta["element"])
    if meta.get("edge") and meta.get("element"):
        meta["edge"] = canonical_edge(meta["edge"], meta["element"])


def _iso(text: str, fmt: str) -> str:
    return datetime.strptime(text, fmt).isoformat()


def _note_label_conflict(meta: dict[str, Any]) -> None:
    """`label_conflict` when the header and the file name name different elements or edges:
    the header wins (`_finish_metadata`), but a Cu foil saved under an Fe series' name
    (`20K_GOE_Fe_K_240.00002.xdi`) then became a Cu group the agent planned scans for, and
    nobody was told. `{"header": "Cu K", "file_name": "Fe K"}`, each as the tables write it;
    `xas.scan-files` warns of it, and downstream units find it in the scan's metadata."""
    said = {}
    for key in ("element", "edge"):
        header, name = meta.get(key), meta.get(f"{key}_from_name")
        if header and name:
            said[key] = (header, name)
    if not said:
        return
    element = canonical_element(said["element"][0]) if "element" in said else None
    header_el = element or meta.get("element_from_name")
    header_edge = meta["edge"] if "edge" in said else meta.get("edge_from_name")
    header = (header_el, canonical_edge(header_edge, header_el))
    name = (meta.get("element_from_name"), meta.get("edge_from_name"))
    if header != name:
        meta["label_conflict"] = {"header": " ".join(header), "file_name": " ".join(name)}


def _finish_metadata(meta: dict[str, Any]) -> None:
    """Fill element/edge and temperature from the file name where the header had none (kept
    separate so that a header value always wins). Not when the header contradicts the name
    (`label_conflict`): a name known not to describe the file (a Cu foil saved as
    `20K_GOE_Fe_K_240.00002.xdi`) gave it the series' 20 K. What the name would have given is
    kept in `file_name_not_used`, with why."""
    conflict = meta.get("label_conflict")
    if conflict:
        meta["file_name_not_used"] = {
            "reason": f"the header says {conflict['header']}, the file name "
            f"{conflict['file_name']}: the name is not this scan's, so nothing is taken from it"
        }
    for key in ("element", "edge", "temperature"):
        if key in meta or f"{key}_from_name" not in meta:
            continue
        if conflict:
            meta["file_name_not_used"][key] = meta[f"{key}_from_name"]
        else:
            meta[key] = meta[f"{key}_from_name"]
