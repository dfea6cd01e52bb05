"""A YAML loader that remembers where every value came from.

ruamel.yaml composes the file into nodes (each with its start mark); this module turns the nodes
into plain Python values itself, so that it can

- record the line and column of every key and every value, by path (``("units", "scans",
  "params", "directory")``), for error messages that point at the exact spot;
- reject duplicate keys and keys that are not strings (``1:``, ``null:``, ``[a]:``), reporting
  each one and going on;
- bound the expansion of anchors and aliases, so that a "billion laughs" file fails at once
  instead of eating the machine's memory, and refuse aliases that refer to themselves;
- accept only YAML's core tags (no ``!!python/object`` or other custom tags).

Only a syntax error or an explosion stops loading; the other problems are collected.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from asapo_pipelines.pipeline.problems import Problem

Path_ = tuple[str | int, ...]

#: Values one file may expand to (after following aliases). A 500-unit pipeline is ~15,000.
MAX_NODES = 100_000
#: Deeper nesting than this is certainly a mistake (and would exhaust Python's stack).
MAX_DEPTH = 64
#: Larger files are refused before parsing (a pipeline file is a few hundred kB at most).
MAX_BYTES = 16 * 1024 * 1024

_TAG = "tag:yaml.org,2002:"
_SCALAR_TAGS = {f"{_TAG}{t}" for t in ("str", "int", "float", "bool", "null", "timestamp")}
_KIND_NAMES = {
    f"{_TAG}int": "integer",
    f"{_TAG}float": "number",
    f"{_TAG}bool": "boolean",
    f"{_TAG}null": "null",
    f"{_TAG}timestamp": "date",
    f"{_TAG}map": "mapping",
    f"{_TAG}seq": "list",
}


def _article(word: str) -> str:
    return "an" if word[:1] in ("a", "e", "i", "o", "u") else "a"


@dataclass(frozen=True)
class Pos:
    """1-based line and column."""

    line: int
    column: int


@dataclass
class Document:
    """A loaded file: its plain data and where each key and value starts."""

    path: Path
    data: Any
    values: dict[Path_, Pos] = field(default_factory=dict)
    keys: dict[Path_, Pos] = field(default_factory=dict)

    def locate(self, path: Path_, *, key: bool = False) -> Pos:
        """The position of a value (or of its key), or of the nearest enclosing one that exists.

        For a missing key the nearest existing parent is the right place to point at: its key
        (``scans:``) is where the missing field belongs.
        """
        path = tuple(path)
        table = self.keys if key else self.values
        if path in table:
            return table[path]
        while path:
            path = path[:-1]
            if path in self.keys:
                return self.keys[path]
            if path in self.values:
                return self.values[path]
        return self.values.get((), Pos(1, 1))


class LoadFailed(Exception):
    """Loading stopped: the problems found so far (at least one) are attached."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__(problems[0].message if problems else "could not load")
        self.problems = problems


class _Builder:
    def __init__(self, file: str) -> None:
        from ruamel.yaml import YAML

        self.file = file
        self.constructor = YAML(typ="safe", pure=True).constructor
        self.values: dict[Path_, Pos] = {}
        self.keys: dict[Path_, Pos] = {}
        self.problems: list[Problem] = []
        self.active: set[int] = set()

    def problem(self, mark: Any, code: str, message: str) -> Problem:
        found = Problem(self.file, mark.line + 1, mark.column + 1, "error", code, message)
        self.problems.append(found)
        return found

    def fatal(self, mark: Any, code: str, message: str) -> LoadFailed:
        self.problem(mark, code, message)
        return LoadFailed(self.problems)

    def measure(self, node: Any, sizes: dict[int, int], depth: int = 0) -> int:
        """How many values `node` expands to with every alias followed, without building them.

        Memoized per node, so a "billion laughs" file is measured in microseconds; a cycle
        (an alias inside its own anchor) and too deep nesting are reported here too.
        """
        from ruamel.yaml.nodes import MappingNode, SequenceNode

        known = sizes.get(id(node))
        if known is not None:
            if known < 0:
                raise self.fatal(
                    node.start_mark, "P005", "an alias refers to the anchor that contains it"
                )
            return known
        if depth > MAX_DEPTH:
            raise self.fatal(
                node.start_mark, "P006", f"values are nested more than {MAX_DEPTH} levels deep"
            )
        if isinstance(node, SequenceNode):
            children = list(node.value)
        elif isinstance(node, MappingNode):
            children = [n for pair in node.value for n in pair]
        else:
            sizes[id(node)] = 1
            return 1
        sizes[id(node)] = -1  # in progress
        total = 1
        for child in children:
            total += self.measure(child, sizes, depth + 1)
            if total > MAX_NODES:
                raise self.fatal(
                    node.start_mark,
                    "P005",
                    f"the file expands to more than {MAX_NODES:,} values through anchors and "
                    "aliases; refusing to load it",
                )
        sizes[id(node)] = total
        return total

    def build(self, node: Any, path: Path_, depth: int) -> Any:
        from ruamel.yaml.nodes import MappingNode, SequenceNode

        if depth > MAX_DEPTH:
            raise self.fatal(
                node.start_mark, "P006", f"values are nested more than {MAX_DEPTH} levels deep"
            )
        self.values.setdefault(path, Pos(node.start_mark.line + 1, node.start_mark.column + 1))
        if isinstance(node, MappingNode | SequenceNode):
            if id(node) in self.active:
                raise self.fatal(
                    node.start_mark, "P005", "an alias refers to the anchor that contains it"
                )
            self.active.add(id(node))
            try:
                if isinstance(node, SequenceNode):
                    self.check_tag(node, f"{_TAG}seq")
                    return [
                        self.build(item, (*path, i), depth + 1) for i, item in enumerate(node.value)
                    ]
                self.check_tag(node, f"{_TAG}map")
                return self.mapping(node, path, depth)
            finally:
                self.active.discard(id(node))
        return self.scalar(node)

    def check_tag(self, node: Any, expected: str) -> None:
        if node.tag != expected:
            self.problem(
                node.start_mark,
                "P007",
                f"unsupported YAML tag {node.tag}; pipeline files use plain YAML values only",
            )

    def scalar(self, node: Any) -> Any:
        tag = node.tag
        if tag == f"{_TAG}str" or tag == f"{_TAG}timestamp":
            # a date stays the text it was written as: no field of a pipeline file is a date
            return str(node.value)
        if tag not in _SCALAR_TAGS:
            self.check_tag(node, f"{_TAG}str")
            return str(node.value)
        value = self.constructor.construct_object(node, deep=True)
        if isinstance(value, float) and math.isnan(value):
            return value
        return value

    def mapping(self, node: Any, path: Path_, depth: int) -> dict[str, Any]:
        from ruamel.yaml.nodes import ScalarNode

        result: dict[str, Any] = {}
        explicit: dict[str, Pos] = {}
        merges: list[Any] = []
        merge_key: Pos | None = None
        for key_node, value_node in node.value:
            if isinstance(key_node, ScalarNode) and key_node.tag == f"{_TAG}merge":
                here = _pos(key_node.start_mark)
                if merge_key is not None:
                    self.duplicate(key_node.start_mark, "<<", merge_key)
                    continue
                merge_key = here
                merges.append(value_node)
                continue
            key = self.key(key_node)
            if key is None:
                continue
            here = _pos(key_node.start_mark)
            if key in explicit:
                self.duplicate(key_node.start_mark, key, explicit[key])
                continue
            explicit[key] = here
            self.keys[(*path, key)] = here
            if _is_empty(value_node):
                # ruamel puts an empty value at the next token (the next key's line, or past the
                # end of the file): the key is where the user sees the missing value
                self.values[(*path, key)] = here
            result[key] = self.build(value_node, (*path, key), depth + 1)
        # merged keys come after the mapping's own, which win (YAML 1.1 merge key `<<`)
        for value_node in merges:
            for key, value in self.merge(value_node, path, depth, explicit).items():
                result.setdefault(key, value)
        return result

    def key(self, key_node: Any) -> str | None:
        """The key as text, or None (reported) when it is not a string."""
        from ruamel.yaml.nodes import ScalarNode

        if isinstance(key_node, ScalarNode) and key_node.tag in (f"{_TAG}str", f"{_TAG}timestamp"):
            return str(key_node.value)
        mark = key_node.start_mark
        kind = _KIND_NAMES.get(key_node.tag, "non-string value")
        if kind == "null":
            self.problem(
                mark, "P004", "keys must be strings, not null; quote the key if it is meant as text"
            )
            return None
        shown = f" {key_node.value}" if isinstance(key_node, ScalarNode) and key_node.value else ""
        self.problem(
            mark,
            "P004",
            f"keys must be strings, not {_article(kind)} {kind}{shown}; quote the key if "
            "it is meant as text",
        )
        return None

    def duplicate(self, mark: Any, key: str, first: Pos) -> None:
        where = f"line {first.line}"
        if first.line == mark.line + 1:
            where += f", column {first.column}"
        self.problem(
            mark,
            "P003",
            f"duplicate key {key!r} (first defined at {where}); "
            "the second one would silently replace the first",
        )

    def merge(
        self, value_node: Any, path: Path_, depth: int, explicit: dict[str, Pos]
    ) -> dict[str, Any]:
        """The values `<<: value_node` merges into the mapping at `path`, earlier sources first.

        Each source is built with positions of its own, then only those of keys the mapping
        does not give itself are kept: an overriding value is located where it is written, and
        no position is left for a value that was overridden.
        """
        from ruamel.yaml.nodes import MappingNode, SequenceNode

        merged: dict[str, Any] = {}
        sources = value_node.value if isinstance(value_node, SequenceNode) else [value_node]
        for source in sources:
            if not isinstance(source, MappingNode):
                self.problem(
                    source.start_mark,
                    "P002",
                    "a merge key (<<) needs a mapping or a list of mappings",
                )
                continue
            outer = self.values, self.keys
            self.values, self.keys = {}, {}
            try:
                built = self.build(source, path, depth + 1)
                inner = self.values, self.keys
            finally:
                self.values, self.keys = outer
            for table, found in zip(outer, inner, strict=True):
                for where, pos in found.items():
                    if len(where) == len(path) or where[len(path)] not in explicit:
                        table.setdefault(where, pos)
            for key, value in built.items():
                merged.setdefault(key, value)
        return merged


def _pos(mark: Any) -> Pos:
    return Pos(mark.line + 1, mark.column + 1)


def _is_empty(node: Any) -> bool:
    """`key:` with nothing after it (not `key: null` or `key: ~`, which have a place)."""
    from ruamel.yaml.nodes import ScalarNode

    return isinstance(node, ScalarNode) and node.value == "" and node.tag == f"{_TAG}null"


class _TooManyNodes(Exception):
    def __init__(self, mark: Any) -> None:
        super().__init__("too many nodes")
        self.mark = mark


class _TooDeep(Exception):
    def __init__(self, mark: Any) -> None:
        super().__init__("too deep")
        self.mark = mark


def _counting_composer() -> Any:
    """ruamel's composer counting the nodes as it builds them: a huge file is refused after
    MAX_NODES nodes, in a fraction of a second, instead of after building all of them (a
    14 MB list took a minute and more than a gigabyte). Aliases add no node here; what they
    expand to is measured afterwards (`_Builder.measure`).

    It also counts how deep it is: the composer recurses once per level, so thousands of
    levels would exhaust Python's stack, and a RecursionError carries no position."""
    from ruamel.yaml.composer import Composer

    class CountingComposer(Composer):
        nodes = 0
        # not `depth`: ruamel's Composer counts its own under that name
        levels = -1  # the top-level value is at level 0, as in `_Builder.build`

        def compose_node(self, parent: Any, index: Any) -> Any:
            self.nodes += 1
            if self.nodes > MAX_NODES:
                raise _TooManyNodes(self.parser.peek_event().start_mark)
            self.levels += 1
            try:
                if self.levels > MAX_DEPTH:
                    raise _TooDeep(self.parser.peek_event().start_mark)
                return super().compose_node(parent, index)
            finally:
                self.levels -= 1

    return CountingComposer


def load_text(text: str, file: str | Path = "<string>") -> Document:
    """Load YAML text. Raises LoadFailed when nothing usable could be read; otherwise the
    returned document may still come with problems (see `load_document`)."""
    doc, problems = load_document(text, file)
    if problems:
        raise LoadFailed(problems)
    return doc


def load_document(text: str, file: str | Path = "<string>") -> tuple[Document, list[Problem]]:
    """Load YAML text into a Document plus the problems found while loading.

    Raises LoadFailed (with located problems) when the text is not YAML or explodes.
    """
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    name = str(file)
    builder = _Builder(name)
    try:
        from ruamel.yaml import YAML

        yaml = YAML(typ="safe", pure=True)
        yaml.Composer = _counting_composer()
        node = yaml.compose(text)
    except _TooManyNodes as exc:
        raise LoadFailed(
            [
                Problem(
                    name,
                    exc.mark.line + 1,
                    exc.mark.column + 1,
                    "error",
                    "P005",
                    f"the file holds more than {MAX_NODES:,} values (counted while reading "
                    "it); a pipeline file is far smaller, so this is not read any further",
                )
            ]
        ) from None
    except _TooDeep as exc:
        raise LoadFailed(
            [_at(name, exc.mark, "P006", f"values are nested more than {MAX_DEPTH} levels deep")]
        ) from None
    except MarkedYAMLError as exc:
        from asapo_pipelines.pipeline.syntax import explain

        # the line to fix and what is wrong with it, where the parser's words would not say
        explained = explain(exc, text, name)
        if explained is not None:
            raise LoadFailed([explained]) from None
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        what = exc.problem or exc.context or "invalid YAML"
        if "expected a single document" in str(exc):
            what = "the file holds more than one YAML document (a second `---`); keep one"
        raise LoadFailed(
            [Problem(name, line, column, "error", "P002", f"YAML syntax error: {what}")]
        ) from None
    except RecursionError:
        raise LoadFailed(
            [
                Problem(
                    name,
                    1,
                    1,
                    "error",
                    "P006",
                    f"values are nested more than {MAX_DEPTH} levels deep",
                )
            ]
        ) from None
    except (YAMLError, ValueError, UnicodeError) as exc:
        raise LoadFailed(
            [Problem(name, 1, 1, "error", "P002", f"YAML syntax error: {exc}".splitlines()[0])]
        ) from None
    if node is None:
        return Document(Path(name), None, {(): Pos(1, 1)}, {}), []
    try:
        builder.measure(node, {})
        data = builder.build(node, (), 0)
    except RecursionError:
        raise builder.fatal(
            node.start_mark, "P006", f"values are nested more than {MAX_DEPTH} levels deep"
        ) from None
    except (YAMLError, ValueError, TypeError, OverflowError) as exc:
        mark = getattr(exc, "problem_mark", None) or node.start_mark
        raise builder.fatal(mark, "P002", f"invalid value: {exc}".splitlines()[0]) from None
    return Document(Path(name), data, builder.values, builder.keys), builder.problems


def _at(file: str, mark: Any, code: str, message: str) -> Problem:
    return Problem(file, mark.line + 1, mark.column + 1, "error", code, message)


def _too_large(file: str, size: int | None) -> LoadFailed:
    if size is None:  # a device or a pipe: only what was read is known
        message = f"the file holds more than the {MAX_BYTES:,} bytes a pipeline file may have"
    else:
        message = (
            f"the file is {size:,} bytes, more than the {MAX_BYTES:,} a pipeline file may have"
        )
    return LoadFailed([Problem(file, 1, 1, "error", "P001", message)])


def read_limited(stream: BinaryIO, file: str) -> bytes:
    """At most MAX_BYTES of `stream`; raises LoadFailed (P001) when it holds more.

    The size a file reports is not enough: a device (/dev/zero) or a pipe reports none and
    would be read until memory runs out.
    """
    raw = stream.read(MAX_BYTES + 1)
    if len(raw) > MAX_BYTES:
        raise _too_large(file, None)
    return raw


def decode(raw: bytes, file: str) -> str:
    """The UTF-8 text of `raw` (a leading BOM dropped); raises LoadFailed (P002) at the first
    byte that is not UTF-8, its column counted in characters like every other problem's."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        # exc.start counts in exc.object, which is `raw` without its BOM
        data, bad = exc.object, exc.start
        line_start = data.rfind(b"\n", 0, bad) + 1
        line = data.count(b"\n", 0, bad) + 1
        column = len(data[line_start:bad].decode("utf-8")) + 1
        message = f"the file is not UTF-8 text (byte 0x{data[bad]:02x})"
        raise LoadFailed([Problem(file, line, column, "error", "P002", message)]) from None


def read_document(path: Path) -> tuple[Document, list[Problem]]:
    """Read and load a file; raises LoadFailed with P001 when it cannot be read."""
    name = str(path)
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise _too_large(name, size)
        with path.open("rb") as stream:
            raw = read_limited(stream, name)
    except LoadFailed:
        raise
    except IsADirectoryError:
        message = f"is a directory, not a file{pipeline_file_meant(path)}"
        raise LoadFailed([Problem(name, 1, 1, "error", "P001", message)]) from None
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        if isinstance(exc, FileNotFoundError):
            reason += pipeline_file_meant(path)
        raise LoadFailed(
            [Problem(name, 1, 1, "error", "P001", f"cannot read the file: {reason}")]
        ) from None
    return load_document(decode(raw, name), name)


def pipeline_file_meant(path: Path) -> str:
    """`; did you mean DIR/NAME.pipeline.yaml?` for a FILE that is not there or is a folder:
    the pipeline's name without the suffix (`pipeline run p65`), another suffix (`.yml`), a
    typo, or the folder holding the one file; empty when no pipeline file is near."""
    import difflib

    if path.is_dir():
        found = sorted(path.glob("*.pipeline.yaml"))
        return f"; did you mean {found[0]}?" if len(found) == 1 else ""
    folder = path.parent
    try:
        names = sorted(p.name for p in folder.glob("*.pipeline.y*ml"))
    except OSError:
        return ""
    # by the name before the first dot: the suffixes are alike, and would match any file
    stems = {n.split(".", 1)[0]: n for n in names}
    close = difflib.get_close_matches(path.name.split(".", 1)[0], list(stems), n=1, cutoff=0.75)
    return f"; did you mean {folder / stems[close[0]]}?" if close else ""
