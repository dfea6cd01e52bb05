"""What a YAML syntax error (P002) means, said at the line the user got wrong.

The parser notices a mistake where it can no longer go on, often lines after it, and says so in
its own terms ("mapping values are not allowed here", "expected <block end>, but found
'<block mapping start>'"). For the common mistakes this module finds the line to fix and says
what is wrong with it: a key indented differently from the keys around it, a key not indented
under the `key:` above it, a tab used for indentation, a quote or a bracket not closed, a glob
pattern (`*.xdi`) not quoted, which YAML reads as a reference to an anchor, a key without its
colon. The parser's own words are kept at the end of the sentence, for whoever knows them.
Anything else is left as the parser says it (`explain` returns None).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from asapo_pipelines.pipeline.problems import Problem

#: a `key:` (plain or quoted key, optionally after `- `), and what follows its colon
_KEY = re.compile(
    r"""(?:-[ ]+)?("[^"]*"|'[^']*'|[^\s#'"{\[\]&*!|>%@`,?:-][^#]*?)[ ]*:(?:[ \t]+|$)"""
)
#: what after a `key:` still opens a block under it: nothing, an anchor, a tag, a comment
_OPENS = re.compile(r"(?:[&!]\S*\s*)*(?:#.*)?")
#: a block scalar (`|`, `>-`, `|2+`): the lines below it are its text, not YAML structure
_BLOCK_SCALAR = re.compile(r"(?:[&!]\S*\s+)*[|>][-+0-9]*\s*(?:#.*)?")
#: the parser problems that come of inconsistent indentation
_INDENTATION = ("mapping values are not allowed here", "expected <block end>")


@dataclass
class _Line:
    number: int
    index: int  # among the significant lines (`_significant`)
    indent: int
    key: str | None  # the key it starts with, None for an item or other text
    opens: bool  # a `key:` (or `-`) with nothing after it: a block follows, deeper
    item: bool
    #: an item starting with `key:` (`- name: a`): the column of its mapping's keys
    inner: int | None = None


@dataclass
class _Level:
    """The lines of one mapping (or list) at one indentation, and the line that opened it."""

    indent: int
    parent: _Line | None
    members: list[_Line] = field(default_factory=list)


def explain(exc: Any, text: str, file: str) -> Problem | None:
    """The P002 problem for the parser's error `exc` on `text`, at the line to fix; None when
    it is none of the mistakes this module knows (the caller says what the parser says)."""
    problem, mark = exc.problem or "", exc.problem_mark
    if mark is None:
        return None
    lines = text.splitlines()
    raw = f"(YAML parser: {problem}, at line {mark.line + 1}, column {mark.column + 1})"
    for found in (_tab(problem, mark, lines), _unclosed(exc, text), _alias(exc, lines)):
        if found is not None:
            line, column, sentence = found
            return Problem(file, line, column, "error", "P002", sentence)
    if problem.startswith(_INDENTATION):
        found = _indentation(_significant(lines), lines, mark.line + 1)
        if found is not None:
            line, column, sentence = found
            return Problem(file, line, column, "error", "P002", f"{sentence} {raw}")
    if problem == "mapping values are not allowed here":
        colon = _colon_in_value(lines, mark)
        if colon is not None:
            return Problem(file, mark.line + 1, mark.column + 1, "error", "P002", colon)
    found = _missing_colon(exc, lines)
    if found is not None:
        line, column, sentence = found
        return Problem(file, line, column, "error", "P002", f"{sentence} {raw}")
    return None


#: a line that could be a key written without its colon: plain text, no `: `, no flow
_NO_COLON = re.compile(r"""[^\s#'"{\[\]&*!|>%@`,?:-][^#:]*""")


def colon_fix(body: str) -> str | None:
    """`key: value` for a line `key value` that looks like a key written without its colon
    (`params`, `unit core.files`, `factor 5`); None when it does not."""
    if not _NO_COLON.fullmatch(body):
        return None
    key, _, value = body.partition(" ")
    return f"{key}: {value.strip()}" if value.strip() else f"{key}:"


def _missing_colon(exc: Any, lines: list[str]) -> tuple[int, int, str] | None:
    """`params` (or `unit core.files`) without its colon: YAML reads the line as plain text
    running on into the next lines, and says so at one of them ("could not find expected
    ':'", "mapping values are not allowed here")."""
    problem, mark = exc.problem or "", exc.problem_mark
    if exc.context == "while scanning a simple key" and problem.startswith(
        "could not find expected ':'"
    ):
        start = exc.context_mark.line if exc.context_mark is not None else None
    elif problem == "mapping values are not allowed here":
        # the text runs on from the nearest line above that is not blank or a comment
        above = range(min(mark.line, len(lines)) - 1, -1, -1)
        start = next((n for n in above if lines[n].strip() and lines[n].strip()[0] != "#"), None)
    else:
        return None
    if start is None or start >= len(lines):
        return None
    body = lines[start].split(" #")[0].strip()
    fix = colon_fix(body)
    if fix is None:
        return None
    indent = len(lines[start]) - len(lines[start].lstrip(" "))
    return (
        start + 1,
        indent + 1,
        f"line {start + 1} `{body}` has no `:`, so YAML reads it as text, not as a key; "
        f"write `{fix}`",
    )


def _alias(exc: Any, lines: list[str]) -> tuple[int, int, str] | None:
    """`pattern: *.xdi`: a value that starts with `*`, which YAML reads as a reference to an
    anchor (`&name`), so an unquoted glob pattern is an "undefined alias" to the parser."""
    if (exc.problem or "").startswith("found undefined alias"):
        mark = exc.problem_mark
    elif exc.context == "while scanning an alias":  # `*` alone, or before a space or a comma
        mark = exc.context_mark
    else:
        return None
    if mark is None or mark.line >= len(lines) or lines[mark.line][mark.column :][:1] != "*":
        return None
    # the value as written: up to a space, a comma, a bracket or a comment
    value = re.split(r"[\s,\[\]{}#]", lines[mark.line][mark.column :], maxsplit=1)[0]
    line, column = mark.line + 1, mark.column + 1
    anchor = f" (`&{value[1:]}`)" if len(value) > 1 else ""
    return (
        line,
        column,
        (
            f"YAML reads `{value}` on line {line}, which starts with `*`, as a reference to an "
            f"anchor{anchor} the file does not define; a text that starts with `*`, such as a "
            f'glob pattern, goes in quotes: "{value}"'
        ),
    )


def _colon_in_value(lines: list[str], mark: Any) -> str | None:
    """`key: text: more`: a value holding `: `, which YAML reads as a key of its own."""
    if mark.line >= len(lines):
        return None
    text = lines[mark.line]
    match = _KEY.match(text.lstrip(" "))
    if match is None or len(text) - len(text.lstrip(" ")) + match.end() > mark.column:
        return None
    key = match.group(1).strip("'\"")
    return (
        f"the value of `{key}` on line {mark.line + 1} holds `: ` (column {mark.column + 1}), "
        "which YAML reads as the start of a key; put the value in quotes"
    )


def _tab(problem: str, mark: Any, lines: list[str]) -> tuple[int, int, str] | None:
    """A tab where YAML wants a space: its indentation (the usual case) or between tokens."""
    if "'\\t'" not in problem or mark.line >= len(lines):
        return None
    line, column = mark.line + 1, mark.column + 1
    if not lines[mark.line][: mark.column].strip(" \t"):
        return (
            line,
            column,
            f"line {line} is indented with a tab character; YAML indents with spaces only",
        )
    return (
        line,
        column,
        f"line {line} has a tab character at column {column}; YAML separates with spaces, not tabs",
    )


def _unclosed(exc: Any, text: str) -> tuple[int, int, str] | None:
    """A quote or a bracket opened and not closed on its line, which the parser reads on past
    the end of the line (to the end of the file, or to the next quote or bracket)."""
    context, opened, mark = exc.context or "", exc.context_mark, exc.problem_mark
    if context == "while scanning a quoted scalar" and opened is not None:
        line, column = opened.line + 1, opened.column + 1
        quote = text.splitlines()[opened.line][opened.column]
        return (
            line,
            column,
            (
                f"the quoted value that starts on line {line}, column {column} is never closed "
                f"(no closing {quote})"
            ),
        )
    flow = re.fullmatch(r"while parsing a flow (mapping|sequence)", context)
    if flow and opened is not None and mark.line > opened.line:
        line, column = opened.line + 1, opened.column + 1
        bracket, close = ("{", "}") if flow.group(1) == "mapping" else ("[", "]")
        return (
            line,
            column,
            (
                f"the `{bracket}` on line {line}, column {column} is not closed on its line (no "
                f"`{close}`), so the file is read on to line {mark.line + 1}, column "
                f"{mark.column + 1}, where YAML {exc.problem}"
            ),
        )
    return _runaway_quote(text, mark)


def _runaway_quote(text: str, mark: Any) -> tuple[int, int, str] | None:
    """The last value before the error, when it is a quoted one spanning lines: its closing
    quote is missing, and the next quote in the file closed it instead."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError
    from ruamel.yaml.tokens import ScalarToken

    last = None
    try:
        for token in YAML(typ="safe", pure=True).scan(text):
            if (token.start_mark.line, token.start_mark.column) >= (mark.line, mark.column):
                break
            if isinstance(token, ScalarToken):
                last = token
    except YAMLError:
        pass
    if last is None or last.style not in ('"', "'") or last.end_mark.line == last.start_mark.line:
        return None
    line, column = last.start_mark.line + 1, last.start_mark.column + 1
    return (
        line,
        column,
        (
            f"the quoted value that starts on line {line}, column {column} is not closed on its "
            f"line (no closing {last.style}), so it runs on to line {last.end_mark.line + 1}"
        ),
    )


def _significant(lines: list[str]) -> list[_Line]:
    """The lines that give the file its structure: not blank, not comments, not the text of a
    block scalar (`|`), not the inside of a bracket spanning lines, not the continuation of a
    plain value spanning lines (those never start with `key:`)."""
    out: list[_Line] = []
    scalar_above: int | None = None  # the indentation of the `key: |` whose text this is
    depth = 0  # brackets left open by the lines above
    for number, text in enumerate(lines, start=1):
        body = text.lstrip(" ").rstrip()
        indent = len(text) - len(text.lstrip(" "))
        if depth > 0:
            depth = max(0, depth + _brackets(body))
            continue
        if not body or body.startswith("#") or body.startswith(("---", "...", "%")):
            continue
        if scalar_above is not None and indent > scalar_above:
            continue
        scalar_above = None
        match = _KEY.match(body)
        rest = body[match.end() :] if match else body.removeprefix("-").lstrip()
        item = body == "-" or body.startswith("- ")
        if match is None and not item and out and indent > out[-1].indent:
            continue  # the continuation of a plain value spanning lines
        opens = bool(_OPENS.fullmatch(rest)) and (match is not None or item)
        key = match.group(1) if match else None
        inner = indent + match.start(1) if match and item else None
        out.append(_Line(number, len(out), indent, key, opens, item, inner))
        if _BLOCK_SCALAR.fullmatch(rest):
            scalar_above = indent
        depth = max(0, _brackets(rest))
    return out


def _brackets(text: str) -> int:
    """How many brackets `text` leaves open (quoted text and a comment left out)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'[^\']*\'', "", text).split(" #")[0]
    return sum(text.count(c) for c in "[{") - sum(text.count(c) for c in "]}")


def _indentation(lines: list[_Line], text: list[str], stop: int) -> tuple[int, int, str] | None:
    """The first line, up to line `stop` (where the parser stopped), whose indentation fits
    no mapping above it, and the line to fix for it: of the ways to re-indent one line that
    would line it up (`_fixes`), the one after which the parser reads furthest (`_best`)."""
    levels: list[_Level] = []
    for index, line in enumerate(lines):
        if line.number > stop:
            return None
        before = lines[index - 1] if index else None
        if before is not None and before.opens and line.indent > levels[-1].indent:
            levels.append(_Level(line.indent, before))
        popped = None
        while levels and levels[-1].indent > line.indent:
            popped = levels.pop()
        if not levels:
            levels.append(_Level(line.indent, None))
        if levels[-1].indent != line.indent:
            fixes = _fixes(lines, index, levels[-1], popped)
            return _best(fixes, line, lines, text, stop) if fixes else None
        levels[-1].members.append(line)
        if line.inner is not None:  # `- name: a`: the keys of its mapping line up with `name`
            levels.append(_Level(line.inner, line, [line]))
    return None


#: a way to fix the file: the line to re-indent, to how many spaces, and the empty `key:` it
#: then goes under (None when it then lines up with the keys of a mapping)
_Fix = tuple[_Line, int, "_Line | None"]


def _fixes(lines: list[_Line], index: int, level: _Level, popped: _Level | None) -> list[_Fix]:
    """The ways to line up `lines[index]`, which fits no level, most likely first: the line
    after an empty `key:` indented under it; the odd one of two indentations a block mixes
    (the one fewer of its lines use); the line itself to either level around it."""
    line = lines[index]
    out: list[_Fix] = []
    first = level.members[-1] if level.members else None
    if first is not None and first.index > 0:
        opener = lines[first.index - 1]
        if opener.opens and opener.key is not None and opener.indent >= first.indent:
            out.append((first, line.indent, opener))
    for group in (popped, level):
        if group is None or not group.members:
            continue
        end = group.parent.indent if group.parent is not None else -1
        block = _until(lines[index:], end)
        ours = sum(b.indent == line.indent for b in block)
        theirs = len(group.members) + sum(b.indent == group.indent for b in block)
        odd: _Fix = (group.members[0], line.indent, None)
        lined_up: _Fix = (line, group.indent, None)
        out += [odd, lined_up] if ours > theirs else [lined_up, odd]
    before = lines[index - 1] if index else None
    if before is not None and not before.opens and before.indent < line.indent:
        # the key above it moved left (`params: {...}` out of its unit's block): the line
        # that fits no level is where the parser stops, but the one to fix is above it
        out.append((before, line.indent, None))
    return out


def _best(
    fixes: list[_Fix], odd: _Line, lines: list[_Line], text: list[str], stop: int
) -> tuple[int, int, str]:
    """The sentence for the fix after which the parser reads furthest (to the end, best), then
    the one to the file's usual indentation step, then the likeliest (`_fixes`' order)."""
    step = _usual_step(lines)

    def rank(fix: _Fix) -> tuple[int, bool]:
        return _reads_to(text, fix[0], fix[1]), fix[1] % step == 0

    ranks = [rank(f) for f in fixes]
    best = max(ranks)
    if best[0] <= stop:  # no one line's indentation explains it: the likeliest is said
        return _say(*fixes[0], odd, [])
    chosen = fixes[ranks.index(best)]
    also = [f for f, r in zip(fixes, ranks, strict=True) if r == best and f is not chosen]
    return _say(*chosen, odd, also)


def _usual_step(lines: list[_Line]) -> int:
    """How many spaces the file usually indents a block under its `key:` (2 when unsure)."""
    from collections import Counter
    from itertools import pairwise

    steps = Counter(
        b.indent - a.indent for a, b in pairwise(lines) if a.opens and b.indent > a.indent
    )
    return steps.most_common(1)[0][0] if steps else 2


def _reads_to(text: list[str], line: _Line, indent: int) -> int:
    """How far the parser reads the file with `line` re-indented to `indent`: the line of its
    error, or past the end when there is none."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError

    fixed = list(text)
    fixed[line.number - 1] = " " * indent + text[line.number - 1].lstrip(" ")
    try:
        YAML(typ="safe", pure=True).compose("\n".join(fixed))
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        return mark.line + 1 if mark is not None else 0
    except Exception:  # another kind of error (too deep, say): no better than none
        return 0
    return len(text) + 1


def _say(
    line: _Line, indent: int, opener: _Line | None, odd: _Line, also: list[_Fix]
) -> tuple[int, int, str]:
    """The sentence for re-indenting `line` to `indent` (`odd` is the line that fit no level)."""
    where = line.number, line.indent + 1
    if opener is not None:
        key = opener.key.strip("'\"") if opener.key else ""
        return *where, (
            f"line {line.number} is not indented under `{key}:` on line {opener.number} "
            f"({_spaces(line.indent)}, where line {odd.number} below it uses {odd.indent}), so "
            f"`{key}` is left empty; YAML nests by indentation"
        )
    what = "items" if line.item else "keys"
    sentence = f"line {line.number} is indented {_spaces(line.indent)}"
    others = sorted({i for fixed, i, o in also if fixed is line and o is None and i != indent})
    if others:  # it lines up with the keys of either level around it: either may be meant
        low, high = sorted((indent, others[0]))
        return *where, (
            f"{sentence}, more than the {what} above it at {low} and less than those at {high}, "
            "so it lines up with neither; YAML nests by indentation"
        )
    return *where, f"{sentence} where the {what} around it use {indent}; YAML nests by indentation"


def _until(after: list[_Line], end: int) -> list[_Line]:
    """The lines of `after` up to the first one back at indentation `end` or less."""
    out = []
    for line in after:
        if line.indent <= end:
            break
        out.append(line)
    return out


def _spaces(count: int) -> str:
    return "1 space" if count == 1 else f"{count} spaces"
