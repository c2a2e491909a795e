"""Email counters: the IMAP reader's outcomes and application failures (the SMTP listener's are
covered over real sockets in tests/integration/test_admin.py)."""

from __future__ import annotations

from typing import Any

from gateway.metrics.stats import ImapStats
from gateway.routing import EmailToRouter, regex
from tests.unit.imap.test_reader import App, message, setup  # noqa: F401 - setup is a fixture


def test_imap_outcomes_are_counted(setup: Any) -> None:
    s = setup({1: message("a@fail.test"), 2: message("b@later.test"), 3: message("c@accept.test"),
               4: message("d@reject.test")}, retry_interval="30s")
    s.process()
    stats: ImapStats = s.reader.stats
    assert (stats.taken, stats.retried, stats.rejected) == (1, 2, 1)
    assert stats.instances.errors == 1  # the consumer for @fail.test raised
    samples = {(key, labels): value for key, labels, value in stats.samples("imap")}
    assert samples[("imap_messages", (("result", "retried"),))] == 2


def test_unrouted_imap_messages_count_as_rejected(setup: Any) -> None:
    s = setup({1: message("b@nowhere.test")}, app=EmailToRouter([regex(r"@accept\.test$", App())]))
    s.process()
    assert (s.reader.stats.taken, s.reader.stats.rejected) == (0, 1)
