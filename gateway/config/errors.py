"""Configuration errors that name the file, the line and the path of the offending key.

Every problem found while loading a file is collected into one :class:`ConfigError`, so a user
sees all of them at once::

    conf/gateway.yaml:14: listeners[2].endpoint: unknown endpoint type 'tpc' (did you mean 'tcp'?)
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ConfigProblem:
    """One problem in a configuration file.

    Attributes:
        path: where in the document, e.g. ``listeners[2].endpoint`` (empty for the whole file).
        message: what is wrong and, where possible, how to fix it.
        file: the file name, or ``None`` for configuration that did not come from a file.
        line: the 1-based line number, or ``None`` when unknown.
    """

    path: str
    message: str
    file: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        where = self.file or "<config>"
        if self.line is not None:
            where = f"{where}:{self.line}"
        if self.path:
            return f"{where}: {self.path}: {self.message}"
        return f"{where}: {self.message}"


class ConfigError(Exception):
    """The configuration is invalid; ``problems`` lists every problem found, in file order."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = sorted(problems, key=lambda p: (p.line or 0, p.path))
        super().__init__("\n".join(str(p) for p in self.problems))


class InvalidValue(ValueError):
    """Raised by field parsers and checks: the value is wrong, the message says why.

    The binder turns it into a :class:`ConfigProblem` with the right path and line.
    """
