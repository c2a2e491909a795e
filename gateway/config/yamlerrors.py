"""YAML syntax errors in plain words: what to fix, at which line.

PyYAML reports what its parser expected (``expected <block end>, but found '?'``), which names
the parser's state rather than the mistake. :func:`explain` maps the common mistakes in a
hand-written configuration file (indentation, a tab, an unquoted ``: `` or a value starting with
a reserved character, an unclosed quote or bracket, a missing ``:``) to a sentence saying what to
change; PyYAML's own wording follows in brackets for anything it does not recognise.
"""

from __future__ import annotations

import re

import yaml

__all__ = ["explain"]

_RESERVED = re.compile(r"found character '(\\t|.)' that cannot start any token")
_FLOW = re.compile(r"expected ',' or '([\]}])', but got")


def explain(exc: yaml.MarkedYAMLError) -> tuple[int | None, str]:
    """The line (1-based) to look at and a message saying what to fix there."""
    problem = str(exc.problem or "")
    context = str(exc.context or "")
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark is not None else None
    column = mark.column + 1 if mark is not None else None
    opened = exc.context_mark.line + 1 if exc.context_mark is not None else None
    advice = _advice(problem, context, opened, line)
    detail = problem if not context else f"{context}: {problem}"
    where = f"column {column}, " if column is not None else ""
    return line, f"{advice} ({where}the YAML parser says: {detail})"


def _advice(problem: str, context: str, opened: int | None, line: int | None) -> str:
    reserved = _RESERVED.search(problem)
    if reserved:
        char = reserved.group(1)
        if char in ("\t", "\\t"):
            return "a tab character: YAML indents with spaces only; replace the tab with spaces"
        return f"a value cannot start with {char!r} unquoted: put the value in quotes, like key: \"{char}...\""
    if problem.startswith("expected <block end>"):
        if "'<scalar>'" in problem or "'<flow" in problem:
            return "unexpected text after the value: something follows a closing quote, ']' or '}' on this line"
        started = f" (the block starts on line {opened})" if opened is not None and opened != line else ""
        return ("the indentation of this line does not match the lines above it: a key must line up exactly with "
                "the other keys of its mapping, and a list item ('- ') with the other items of its list" + started)
    if problem == "mapping values are not allowed here":
        return ("a ':' where no new key can start: this line is indented deeper than the key above it, the line "
                "above lacks its ':', or a value contains ': ' and needs quotes (key: \"a: b\")")
    if problem == "could not find expected ':'":
        return "a key without its ':': write key: value (or put a value that goes on over several lines in quotes)"
    if "quoted scalar" in context and "end of stream" in problem:
        at = f" on line {opened}" if opened is not None else ""
        return f"a quoted value is never closed: add the closing quote to the value that starts{at}"
    flow = _FLOW.search(problem)
    if flow:
        kind = "{...} mapping" if flow.group(1) == "}" else "[...] list"
        at = f" opened on line {opened}" if opened is not None else ""
        return f"the {kind}{at} is not closed with '{flow.group(1)}', or its items are not separated by ','"
    if problem.startswith("found unknown escape character"):
        return ("a backslash in a double-quoted value starts an escape: use single quotes ('C:\\path') or write "
                "the backslash twice")
    if problem.startswith("found undefined alias") or "while scanning an alias" in context:
        return "a value starting with '*' is read as a reference to an '&' anchor: put the value in quotes"
    if "anchor" in context or "while scanning an anchor" in context:
        return "a value starting with '&' is read as an anchor: put the value in quotes"
    return "not valid YAML here; check the quotes, the ':' after each key and the indentation (spaces only)"
