"""Stats objects and the fixed-bucket histogram."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.metrics.stats import (
    LATENCY_BUCKETS,
    Histogram,
    HTTPStats,
    ImapStats,
    ListenerStats,
    MqttStats,
    SmsStats,
    SmtpStats,
    stats_class,
)


def test_an_observation_on_a_bound_counts_in_that_bucket() -> None:
    histogram = Histogram((0.1, 1.0))
    for seconds in (0.05, 0.1, 0.5, 1.0, 2.0):
        histogram.observe(seconds)
    assert histogram.counts == [2, 2, 1]
    assert histogram.cumulative() == [("0.1", 2), ("1.0", 4), ("+Inf", 5)]
    assert histogram.count == 5
    assert histogram.sum == pytest.approx(3.65)


@given(st.lists(st.floats(min_value=0, max_value=100, allow_nan=False), max_size=50))
def test_cumulative_buckets_match_a_direct_count(values: list[float]) -> None:
    histogram = Histogram()
    for value in values:
        histogram.observe(value)
    cumulative = dict(histogram.cumulative())
    for bound in LATENCY_BUCKETS:
        assert cumulative[repr(bound)] == sum(1 for v in values if v <= bound)
    assert cumulative["+Inf"] == len(values)


def test_stats_are_slotted_so_a_typo_cannot_count_silently() -> None:
    stats = HTTPStats()
    with pytest.raises(AttributeError):
        stats.request += 1  # type: ignore[attr-defined]


def test_each_protocol_has_its_class() -> None:
    assert stats_class("http") is HTTPStats and stats_class("admin") is HTTPStats
    assert stats_class("mqtt") is MqttStats and stats_class("smtp") is SmtpStats
    assert stats_class("imap") is ImapStats and stats_class("sms") is SmsStats
    assert stats_class("something-new") is ListenerStats


def test_http_samples_split_websockets_from_http() -> None:
    stats = HTTPStats()
    stats.requests, stats.responses, stats.ws_received, stats.ws_connections = 3, 2, 7, 1
    samples = {(key, labels): value for key, labels, value in stats.samples("http")}
    assert samples[("events_in", (("protocol", "http"), ("type", "http.request")))] == 3
    assert samples[("events_out", (("protocol", "http"), ("type", "http.response")))] == 2
    assert samples[("events_in", (("protocol", "websocket"), ("type", "websocket.receive")))] == 7
    assert samples[("connections_total", (("protocol", "websocket"),))] == 1
    assert stats.messages() == {"http": (3, 2), "websocket": (7, 0)}
    # An SMS listener is HTTP underneath but has no WebSocket series.
    assert not [labels for _, labels, _ in SmsStats().samples("sms") if ("protocol", "websocket") in labels]


def test_sms_counts_by_provider_and_outcome() -> None:
    stats = SmsStats()
    stats.webhook("twilio", "handled")
    stats.webhook("twilio", "handled")
    stats.webhook("twilio", "rejected")
    stats.status("twilio", "delivered")
    stats.send("twilio", True)
    stats.send("twilio", False)
    samples = {(key, labels): value for key, labels, value in stats.samples("sms")}
    assert samples[("sms_webhooks", (("provider", "twilio"), ("outcome", "handled")))] == 2
    assert samples[("sms_webhooks", (("provider", "twilio"), ("outcome", "rejected")))] == 1
    assert samples[("sms_statuses", (("provider", "twilio"), ("status", "delivered")))] == 1
    assert samples[("sms_sent", (("provider", "twilio"), ("result", "failed")))] == 1
    assert stats.messages() == {"sms": (2, 1)}


def test_smtp_and_imap_totals() -> None:
    smtp = SmtpStats()
    smtp.accepted, smtp.rejected, smtp.tempfailed = 4, 1, 2
    assert smtp.messages() == {"smtp": (7, 0)}
    imap = ImapStats()
    imap.taken, imap.retried = 2, 1
    samples = {(key, labels): value for key, labels, value in imap.samples("imap")}
    assert samples[("imap_messages", (("result", "taken"),))] == 2
    assert samples[("events_in", (("protocol", "imap"), ("type", "email.receive")))] == 3
