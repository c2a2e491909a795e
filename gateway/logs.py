"""Logging through twisted.logger: level, text or JSON lines, and stdlib ``logging`` routed in.

Applications that log with the standard library end up in the same stream, format and level.
Rejected input (a bad request, a webhook with a wrong signature, a WebSocket protocol error) is
logged through a :class:`RejectionLog`: a few lines per listener and reason, then one summary, so
that a client cannot flood the log.
"""

from __future__ import annotations

import io
import json
import logging
import re
import sys
import time
from dataclasses import dataclass
from typing import IO, Any, cast

from twisted.logger import (
    FilteringLogObserver,
    ILogFilterPredicate,
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


#: The worker this process is (``workers`` above 1), shown on each line; None otherwise.
_worker: int | None = None


def set_worker(index: int | None) -> None:
    """Tag every line this process logs with its worker number (a worker of a supervisor)."""
    global _worker
    _worker = index


def text_observer(stream: IO[str]) -> ILogObserver:
    """One line per event: time, level, namespace and message (plus a traceback)."""

    @provider(ILogObserver)
    def observe(event: dict[str, Any]) -> None:
        level = event.get("log_level", LogLevel.info)
        when = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(event.get("log_time", time.time())))
        message = formatEvent(event)
        tag = "" if _worker is None else f"[worker {_worker}] "
        text = f"{when} [{event.get('log_namespace', '-')}#{level.name}] {tag}{message}\n"
        failure = _failure_text(event)
        if failure:
            text += failure + "\n"
        try:
            stream.write(text)
            stream.flush()
        except (OSError, ValueError):
            pass

    return cast(ILogObserver, observe)


def json_observer(stream: IO[str]) -> ILogObserver:
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
        if _worker is not None:
            record["worker"] = _worker
        failure = _failure_text(event)
        if failure:
            record["traceback"] = failure
        try:
            stream.write(json.dumps(record, default=repr) + "\n")
            stream.flush()
        except (OSError, ValueError):
            pass

    return cast(ILogObserver, observe)


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


class _Level:
    """Whether debug lines are written (:class:`AutobahnLog` drops autobahn's debug chatter
    before formatting anything otherwise)."""

    debug = False


_level = _Level()


def make_observer(level: str = "info", format: str = "text", output: str = "stderr") -> Any:
    """A filtering observer for the ``logging`` section of the configuration."""
    stream = _open(output)
    base = json_observer(stream) if format == "json" else text_observer(stream)
    predicate = LogLevelFilterPredicate(defaultLogLevel=_LEVELS[level])
    chatter = PortChatterFilter(level)
    _predicates.append(predicate)
    _chatter_filters.append(chatter)
    _level.debug = _LEVELS[level] == LogLevel.debug
    return FilteringLogObserver(base, [cast(ILogFilterPredicate, chatter), cast(ILogFilterPredicate, predicate)])


def set_level(level: str) -> None:
    """Change the lowest level logged, for twisted.logger and stdlib logging (on reload)."""
    for predicate in _predicates:
        predicate.defaultLogLevel = _LEVELS[level]
        predicate.setLogLevelForNamespace("", _LEVELS[level])
    for chatter in _chatter_filters:
        chatter.debug = _LEVELS[level] == LogLevel.debug
    _level.debug = _LEVELS[level] == LogLevel.debug
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


# -- rejected input ------------------------------------------------------------------------------


@dataclass
class RejectionLimits:
    """How much rejected input is logged (the ``logging.rejections`` settings).

    Attributes:
        lines: lines logged per listener and reason in each period.
        period: seconds; at its end one summary line counts what was not logged.
    """

    lines: int = 5
    period: float = 10.0


#: The daemon's limits, read when a listener's window for a reason opens (so a reload applies).
REJECTION_LIMITS = RejectionLimits()


def configure_rejections(lines: int, period: float) -> None:
    """Set :data:`REJECTION_LIMITS` (from the configuration, at start-up and on reload)."""
    REJECTION_LIMITS.lines = int(lines)
    REJECTION_LIMITS.period = float(period)


#: The reason every further one is counted under once a listener has this many.
_MAX_REASONS = 32
_OTHER = "other"


class RejectionLog:
    """Rate-limits the log lines about one listener's rejected input, per reason.

    The first rejection of a reason opens a window of ``period`` seconds (a reactor timer); in it
    ``lines`` rejections are logged and the rest only counted; when it closes, one summary line
    ("``web: 412 more rejected (bad request) in the last 10 s``") is written at the level of the
    lines it stands for, and the next rejection opens a new window. Log lines are built only
    when they are written::

        if rejections.allow("bad signature"):
            log.warn("...", ...)

    A throttled rejection costs one dict lookup and one store. ``reason`` must come from the
    code's own small vocabulary, never from the client (after 32 reasons, the rest count as
    ``other``).

    Args:
        listener: the listener's name (in the summary lines).
        reactor: for ``callLater`` (tests pass a fake clock).
        logger: where summaries go (the namespace of the lines they summarise).
        limits: lines and period (default: :data:`REJECTION_LIMITS`, the daemon's settings).
    """

    __slots__ = ("listener", "reactor", "logger", "limits", "_counts", "_windows")

    def __init__(self, listener: str, reactor: Any, logger: Logger | None = None,
                 limits: RejectionLimits | None = None) -> None:
        self.listener = listener
        self.reactor = reactor
        self.logger = logger if logger is not None else Logger(namespace="gateway")
        self.limits = limits if limits is not None else REJECTION_LIMITS
        #: reason -> (rejections in the open window) minus the lines allowed in it.
        self._counts: dict[str, int] = {}
        #: reason -> (level, period, timer) of its open window.
        self._windows: dict[str, tuple[LogLevel, float, Any]] = {}

    def allow(self, reason: str, level: LogLevel = LogLevel.warn) -> bool:
        """Count one rejection; whether to log it now.

        ``level``: the level the caller logs it at (the window's summary uses the first one).
        """
        count = self._counts.get(reason)
        if count is None:
            return self._open(reason, level)
        self._counts[reason] = count + 1
        return count < 0

    def summaries_pending(self) -> int:
        """Rejections counted but not logged yet (their summaries are still to come)."""
        return sum(max(0, count) for count in self._counts.values())

    def flush(self) -> None:
        """Close every open window now (writing its summary), say when the listener stops."""
        for reason in list(self._windows):
            _, _, timer = self._windows[reason]
            if timer.active():
                timer.cancel()
            self._close(reason)

    def _open(self, reason: str, level: LogLevel) -> bool:
        if len(self._counts) >= _MAX_REASONS and reason != _OTHER:
            return self.allow(_OTHER, level)
        limits = self.limits
        # Counts from -lines up: negative while lines may still be written.
        self._counts[reason] = 1 - limits.lines
        timer = self.reactor.callLater(limits.period, self._close, reason)
        self._windows[reason] = (level, limits.period, timer)
        return limits.lines > 0

    def _close(self, reason: str) -> None:
        count = self._counts.pop(reason, 0)
        level, period, _ = self._windows.pop(reason)
        if count > 0:
            self.logger.emit(level, "{listener}: {count} more rejected ({reason}) in the last {period:g} s",
                             listener=self.listener, count=count, reason=reason, period=period)


# -- autobahn's own log lines --------------------------------------------------------------------

#: autobahn's lines (by format string) about a client's bad input: the reason they count under.
_AUTOBAHN_REJECTIONS = {
    'failing WebSocket connection (code={code}): "{reason}"': "WebSocket protocol error",
    "failing WebSocket opening handshake ('{reason}')": "WebSocket handshake refused",
}
#: autobahn's warnings that say nothing an operator can act on: logged at debug.
_AUTOBAHN_DEBUG = frozenset({
    "dropping connection to peer {peer} with abort={abort}: {reason}",
})


class AutobahnLog:
    """Stands in for autobahn's txaio logger (the ``log`` class attribute of a WebSocket protocol
    class) so that autobahn's per-connection lines follow the daemon's rules:

    * ``failing WebSocket connection (code=…)`` (a client's protocol error) and ``failing
      WebSocket opening handshake`` go through the listener's :class:`RejectionLog`, at info;
    * ``dropping connection to peer … with abort=…`` (written on every refused handshake) and
      autobahn's debug chatter are written only when the daemon logs at debug;
    * anything else (errors, failures) is written as autobahn wrote it.

    The methods are those autobahn calls (txaio's logger interface).
    """

    def __init__(self, rejections: RejectionLog, logger: Logger | None = None) -> None:
        self.rejections = rejections
        self.logger = logger if logger is not None else Logger(namespace="gateway.websocket")

    def emit(self, level: LogLevel, format: str | None = None, *args: Any, **kwargs: Any) -> None:
        """Write (or count, or drop) one of autobahn's lines."""
        if level is LogLevel.debug or format in _AUTOBAHN_DEBUG:
            if _level.debug:
                self.logger.emit(LogLevel.debug, format, **kwargs)
            return
        reason = _AUTOBAHN_REJECTIONS.get(format or "")
        if reason is None:
            self.logger.emit(level, format, **kwargs)
        elif self.rejections.allow(reason, LogLevel.info):
            self.logger.emit(LogLevel.info, "{listener}: " + (format or ""), listener=self.rejections.listener,
                             **kwargs)

    def debug(self, format: str | None = None, *args: Any, **kwargs: Any) -> None:
        if _level.debug:
            self.logger.emit(LogLevel.debug, format, **kwargs)

    def trace(self, format: str | None = None, *args: Any, **kwargs: Any) -> None:
        pass

    def info(self, format: str | None = None, *args: Any, **kwargs: Any) -> None:
        self.emit(LogLevel.info, format, **kwargs)

    def warn(self, format: str | None = None, *args: Any, **kwargs: Any) -> None:
        self.emit(LogLevel.warn, format, **kwargs)

    def error(self, format: str | None = None, *args: Any, **kwargs: Any) -> None:
        self.emit(LogLevel.error, format, **kwargs)

    def critical(self, format: str | None = None, *args: Any, **kwargs: Any) -> None:
        self.emit(LogLevel.critical, format, **kwargs)

    def failure(self, format: str | None = None, *args: Any, **kwargs: Any) -> None:
        self.logger.failure(format or "", **kwargs)

    def set_log_level(self, level: str, keep: bool = True) -> None:
        """txaio's interface; the daemon's ``logging.level`` decides instead."""


def autobahn_log(rejections: RejectionLog) -> AutobahnLog:
    """The ``log`` class attribute for a listener's autobahn protocol class (see
    :class:`AutobahnLog`): ``type(name, bases, {..., "log": autobahn_log(rejections)})``."""
    return AutobahnLog(rejections)
