"""``protocol: sms`` listener configuration: variants per provider, checks, start-up warnings."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import globalLogPublisher

from gateway.config import ConfigError, load_config
from gateway.listener import ListenerContext
from gateway.protocols.sms.config import SmsListenerConfig, TwilioAccountConfig
from gateway.protocols.sms.listener import SmsListener, build_listener


def load(tmp_path: Path, listener: str) -> Any:
    path = tmp_path / "gateway.yaml"
    path.write_text("application: tests.sms_apps:app\nlisteners:\n" + textwrap.indent(textwrap.dedent(listener), "  "))
    return load_config(str(path))


GOOD = """\
- name: sms
  protocol: sms
  endpoint: "tcp:0:interface=127.0.0.1"
  public_url: https://sms.example.com/hooks
  accounts:
    - {name: uk, provider: twilio, path: /twilio, auth_token: t, account_sid: AC1}
    - {name: eu, provider: vonage, path: /vonage, signature_secret: s, signature_method: sha256}
    - {name: pl, provider: plivo, path: /plivo, auth_token: t}
    - {name: tx, provider: telnyx, path: /telnyx, public_key: "A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg="}
    - {name: gen, provider: generic, path: /generic, verify_signatures: false, base_url: "http://10.0.0.5/send"}
"""


def test_a_full_configuration_binds_to_variants_with_defaults(tmp_path: Path) -> None:
    config = load(tmp_path, GOOD)
    [listener] = config.listeners
    assert isinstance(listener, SmsListenerConfig)
    assert listener.consumer_timeout == 10.0 and listener.dedup_window == 86400.0
    assert listener.dedup_max_entries == 100_000 and listener.max_webhook_size == 64 * 1024
    assert listener.unrouted == "drop" and listener.send_timeout == 30.0
    twilio = listener.accounts[0]
    assert isinstance(twilio, TwilioAccountConfig) and twilio.provider_settings() == {
        "verify_signatures": True, "timestamp_tolerance": 300.0, "auth_token": "t", "account_sid": "AC1"}
    assert [a.provider for a in listener.accounts] == ["twilio", "vonage", "plivo", "telnyx", "generic"]


@pytest.mark.parametrize(("listener", "message"), [
    ("""\
- name: sms
  protocol: sms
  endpoint: "tcp:0"
  accounts: [{name: a, provider: generic, path: /g, secret: s}]
""", "public_url"),
    ("""\
- name: sms
  protocol: sms
  endpoint: "tcp:0"
  public_url: https://x
  accounts: [{name: a, provider: twilio, path: /g}]
""", "auth_token is required"),
    ("""\
- name: sms
  protocol: sms
  endpoint: "tcp:0"
  public_url: https://x
  accounts: [{name: a, provider: twilio, path: /g, auth_token: t, secret: s}]
""", "unknown key"),
    ("""\
- name: sms
  protocol: sms
  endpoint: "tcp:0"
  public_url: https://x
  accounts: [{name: a, provider: sinch, path: /g}]
""", "'sinch' is not one of"),
    ("""\
- name: sms
  protocol: sms
  endpoint: "tcp:0"
  public_url: "https://x?y=1"
  accounts: [{name: a, provider: generic, path: g, secret: s}]
""", "a webhook path starts with /"),
    ("""\
- name: sms
  protocol: sms
  endpoint: "tcp:0"
  public_url: https://x
  accounts: [{name: a, provider: generic, path: /g, secret: s}, {name: a, provider: generic, path: /g/, secret: s}]
""", "two accounts"),
    ("""\
- name: sms
  protocol: sms
  endpoint: "tcp:0"
  public_url: https://x
""", "at least one account"),
    ("""\
- name: sms
  protocol: sms
  endpoint: "tcp:0"
  public_url: https://x
  websocket: {enabled: false}
  accounts: [{name: a, provider: generic, path: /g, secret: s}]
""", "websocket"),
])
def test_configuration_errors_are_reported_with_the_key(tmp_path: Path, listener: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load(tmp_path, listener)


def test_trusted_proxies_stand_in_for_public_url(tmp_path: Path) -> None:
    config = load(tmp_path, """\
- name: sms
  protocol: sms
  endpoint: "tcp:0"
  proxy: {trusted: [127.0.0.1]}
  accounts: [{name: a, provider: generic, path: /g, secret: s}]
""")
    assert config.listeners[0].public_url is None


def test_build_listener_warns_about_weakened_accounts(tmp_path: Path) -> None:
    config = load(tmp_path, GOOD)
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    loop = asyncio.new_event_loop()
    try:
        context = ListenerContext(reactor=MemoryReactorClock(), loop=loop, app=lambda *a: None, state={},
                                  daemon=config)
        listener = build_listener(config.listeners[0], context)
    finally:
        globalLogPublisher.removeObserver(events.append)
        loop.close()
    assert isinstance(listener, SmsListener)
    assert listener.factory.settings.app is listener.bridge
    assert listener.factory.settings.proxies is None
    from twisted.logger import formatEvent

    warnings = [formatEvent(e) for e in events if e.get("log_namespace") == "gateway.sms"]
    assert any("signature verification is OFF for account gen" in w for w in warnings)
    assert any("plain HTTP to http://10.0.0.5/send" in w for w in warnings)
    assert any("tx: applications have 1.5s" in w for w in warnings)
    assert not any("account uk" in w and "OFF" in w for w in warnings)
