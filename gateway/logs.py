"""Logging through twisted.logger: level, text or JSON lines, and stdlib ``logging`` routed in.

Applications that log with the standard library end up in the same stream, format and level.
"""

from __future__ import annotations

import io
import json
import logging
import re
import sys
import time
from collections.abc import Callable
from typing import IO, Any

from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    Logger,
    LogLevel,
    LogLevelFilterPredicate,
    PredicateResult,
    formatEvent,
    globalLogBeginner,
    globalLogPublisher,
)
from zope.interface import provider

_LEVELS = {
    "debug": LogLevel.debug,
    "info": LogLevel.info,
    "warn": LogLevel.warn,
    "warning": LogLevel.warn,
    "error": LogLevel.error,
    "critical": LogLevel.critical,
}
_STDLIB_LEVELS = {
    LogLevel.debug: logging.DEBUG,
    LogLevel.info: logging.INFO,
    LogLevel.warn: logging.WARNING,
    LogLevel.error: logging.ERROR,
    LogLevel.critical: logging.CRITICAL,
}


def _open(output: str) -> IO[str]:
    if output == "stdout":
        return sys.stdout
    if output == "stderr":
        return sys.stderr
    return open(output, "a", buffering=1, encoding="utf-8")


def _failure_text(event: dict[str, Any]) -> str | None:
    failure = event.get("log_failure")
    if failure is None:
        return None
    out = io.StringIO()
    try:
        failure.printTraceback(file=out)
    except Exception:  # pragma: no cover
        return repr(failure)
    return out.getvalue().rstrip()


def text_observer(stream: IO[str]) -> Callable[[dict[str, Any]], None]:
    """One line per event: time, level, namespace and message (plus a traceback)."""

    @provider(ILogObserver)
    def observe(event: dict[str, Any]) -> None:
        level = event.get("log_level", LogLevel.info)
        when = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(event.get("log_time", time.time())))
        message = formatEvent(event)
        text = f"{when} [{event.get('log_namespace', '-')}#{level.name}] {message}\n"
        failure = _failure_text(event)
        if failure:
            text += failure + "\n"
        try:
            stream.write(text)
            stream.flush()
        except (OSError, ValueError):
            pass

    return observe


def json_observer(stream: IO[str]) -> Callable[[dict[str, Any]], None]:
    """One JSON object per line: ``time``, ``level``, ``namespace``, ``message``, ``traceback``."""

    @provider(ILogObserver)
    def observe(event: dict[str, Any]) -> None:
        level = event.get("log_level", LogLevel.info)
        record = {
            "time": event.get("log_time", time.time()),
            "level": level.name,
            "namespace": event.get("log_namespace", "-"),
            "message": formatEvent(event),
        }
        failure = _failure_text(event)
        if failure:
            record["traceback"] = failure
        try:
            stream.write(json.dumps(record, default=repr) + "\n")
            stream.flush()
        except (OSError, ValueError):
            pass

    return observe


#: Twisted's own lines about ports and factories ("HTTPFactory starting on 8000", "(TCP Port
#: 8000 Closed)", "Starting factory ..."): they repeat the gateway's "Listening: ..." lines.
_PORT_CHATTER = re.compile(r"^(?:\S+ starting on \S+|\(\S+ Port \S+ Closed\)|(?:Starting|Stopping) factory .*)$")


class PortChatterFilter:
    """Shows Twisted's port and factory chatter (:data:`_PORT_CHATTER`) only at debug level."""

    def __init__(self, level: str) -> None:
        self.debug = _LEVELS[level] == LogLevel.debug

    def __call__(self, event: dict[str, Any]) -> PredicateResult:
        if self.debug or event.get("log_namespace") != "log_legacy":
            return PredicateResult.maybe
        text = event.get("log_text")
        if text is None:
            text = " ".join(map(str, event.get("message", ())))
        return PredicateResult.no if _PORT_CHATTER.match(text) else PredicateResult.maybe


#: The level filters of the observers we made, so a reload can change the level.
_predicates: list[LogLevelFilterPredicate] = []
_chatter_filters: list[PortChatterFilter] = []


def make_observer(level: str = "info", format: str = "text", output: str = "stderr") -> Any:
    """A filtering observer for the ``logging`` section of the configuration."""
    stream = _open(output)
    base = json_observer(stream) if format == "json" else text_observer(stream)
    predicate = LogLevelFilterPredicate(defaultLogLevel=_LEVELS[level])
    chatter = PortChatterFilter(level)
    _predicates.append(predicate)
    _chatter_filters.append(chatter)
    return FilteringLogObserver(base, [chatter, predicate])


def set_level(level: str) -> None:
    """Change the lowest level logged, for twisted.logger and stdlib logging (on reload)."""
    for predicate in _predicates:
        predicate.defaultLogLevel = _LEVELS[level]
        predicate.setLogLevelForNamespace(None, _LEVELS[level])
    for chatter in _chatter_filters:
        chatter.debug = _LEVELS[level] == LogLevel.debug
    logging.getLogger().setLevel(_STDLIB_LEVELS[_LEVELS[level]])


class _ToTwisted(logging.Handler):
    """Routes stdlib ``logging`` records into twisted.logger."""

    _levels = {
        logging.DEBUG: LogLevel.debug,
        logging.INFO: LogLevel.info,
        logging.WARNING: LogLevel.warn,
        logging.ERROR: LogLevel.error,
        logging.CRITICAL: LogLevel.critical,
    }

    def emit(self, record: logging.LogRecord) -> None:
        level = self._levels.get(record.levelno - record.levelno % 10, LogLevel.info)
        logger = Logger(namespace=record.name)
        message = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            from twisted.python.failure import Failure

            exc = record.exc_info[1]
            logger.failure("{message}", failure=Failure(exc, type(exc), exc.__traceback__), message=message, level=level)
        else:
            logger.emit(level, "{message}", message=message)


def route_stdlib_logging(level: str) -> None:
    """Send the standard library's log records (at ``level`` and above) to twisted.logger."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _ToTwisted):
            root.removeHandler(handler)
    root.addHandler(_ToTwisted())
    root.setLevel(_STDLIB_LEVELS[_LEVELS[level]])


def start_logging(level: str = "info", format: str = "text", output: str = "stderr") -> Any:
    """Begin global logging (for ``gateway run``); returns the observer."""
    observer = make_observer(level, format, output)
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)
    route_stdlib_logging(level)
    return observer


def add_observer(observer: Any) -> None:
    """Add an observer to the already started global log (under twistd)."""
    globalLogPublisher.addObserver(observer)
