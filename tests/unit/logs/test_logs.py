"""The daemon's log observer: Twisted's port chatter only at debug level, everything else as is."""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger, LogPublisher
from twisted.python import log as legacy

from gateway.logs import PortChatterFilter, make_observer, set_level


def emit_all(observer: Any) -> None:
    publisher = LogPublisher(observer)
    legacy_publisher = legacy.LogPublisher(observerPublisher=publisher, publishPublisher=publisher)
    legacy_publisher.msg("HTTPFactory starting on 8000")
    legacy_publisher.msg("(TCP Port 8000 Closed)")
    legacy_publisher.msg("Starting factory <gateway.protocols.http.adapter.HTTPFactory object at 0x7f>")
    legacy_publisher.msg("something else a library said")
    Logger(namespace="gateway", observer=publisher).info("Listening: web (http) on 127.0.0.1:8000")


def test_port_chatter_is_shown_only_at_debug(capsys: Any) -> None:
    observer = make_observer("info", output="stdout")
    emit_all(observer)
    text = capsys.readouterr().out
    assert "starting on 8000" not in text and "Closed)" not in text and "Starting factory" not in text
    assert "something else a library said" in text
    assert "Listening: web (http)" in text

    set_level("debug")
    try:
        emit_all(observer)
        text = capsys.readouterr().out
        assert "HTTPFactory starting on 8000" in text and "(TCP Port 8000 Closed)" in text
    finally:
        set_level("info")


def test_the_filter_judges_only_legacy_events() -> None:
    chatter = PortChatterFilter("info")
    assert chatter({"log_namespace": "gateway", "log_text": "X starting on 1"}).name == "maybe"
    assert chatter({"log_namespace": "log_legacy", "message": ("X starting on 1",)}).name == "no"
