"""Refused webhooks: a declared body type the provider never sends is 415; the log lines about
refused webhooks are rate-limited per listener and reason."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from twisted.internet.task import Clock
from twisted.logger import Logger, formatEvent, globalLogPublisher

from gateway.logs import RejectionLimits, RejectionLog

from .bridge_harness import PROVIDERS, SUCCESS, Harness, Recorder, hook

#: A declared type each provider never sends (Twilio and Vonage send form or JSON).
WRONG = {"twilio": "text/plain", "vonage": "text/xml", "plivo": "application/json",
         "telnyx": "application/x-www-form-urlencoded", "generic": "text/plain; charset=utf-8"}


def with_content_type(headers: Any, value: str) -> list[tuple[str, str]]:
    return [(k, v) for k, v in headers if k != "content-type"] + [("content-type", value)]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_validly_signed_webhook_with_a_wrong_content_type_is_415(harness: Harness, recorder: Recorder,
                                                                   provider: str) -> None:
    good = hook(harness, provider, message_id="ct-1")
    status, _, body = harness.request("POST", good.url, with_content_type(good.headers, WRONG[provider]), good.body)
    assert status == 415
    assert b"is not application/" in body
    assert recorder.deliveries == []
    # The same request with the provider's own type (parameters allowed) is handled.
    own = dict(good.headers)["content-type"] + "; charset=UTF-8"
    assert harness.request("POST", good.url, with_content_type(good.headers, own), good.body)[0] == SUCCESS[provider]
    assert len(recorder.deliveries) == 1


@pytest.fixture
def captured() -> Iterator[list[dict[str, Any]]]:
    events: list[dict[str, Any]] = []

    def observe(event: dict[str, Any]) -> None:
        if event.get("log_namespace") == "gateway.sms":
            events.append(event)

    globalLogPublisher.addObserver(observe)
    yield events
    globalLogPublisher.removeObserver(observe)


def test_a_flood_of_refused_webhooks_is_logged_a_few_times_then_summarised(
        harness: Harness, recorder: Recorder, captured: list[dict[str, Any]]) -> None:
    clock = Clock()
    harness.bridge.rejections = RejectionLog("texts", clock, Logger(namespace="gateway.sms"),
                                             RejectionLimits(lines=3, period=10.0))
    good = hook(harness, "generic")
    unsigned = [(k, v) for k, v in good.headers if k == "content-type"]
    for _ in range(200):
        assert harness.request("POST", good.url, unsigned, good.body)[0] == 403
    for _ in range(20):
        assert harness.request("POST", good.url, with_content_type(good.headers, "text/plain"), good.body)[0] == 415
    lines = [formatEvent(event) for event in captured]
    assert len(lines) == 6
    assert all("rejected (403)" in line for line in lines[:3]) and all("rejected (415)" in line for line in lines[3:])
    clock.advance(10.0)
    summaries = sorted(formatEvent(event) for event in captured[6:])
    assert summaries == ["texts: 17 more rejected (generic webhook 415) in the last 10 s",
                         "texts: 197 more rejected (generic webhook 403) in the last 10 s"]
    assert recorder.deliveries == []
