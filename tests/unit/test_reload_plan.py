"""The reload plan: a pure comparison of the running and the new configuration."""

from __future__ import annotations

import textwrap

from gateway.config import GatewayConfig, load_config_text
from gateway.reload import ListenerStep, plan_reload


def config(text: str) -> GatewayConfig:
    return load_config_text(textwrap.dedent(text), import_applications=False)


BASE = """
application: tests.apps:app
listeners:
  - {name: web, protocol: http, endpoint: "tcp:8000"}
  - {name: mqtt, protocol: mqtt, endpoint: "tcp:1884"}
"""


def test_the_same_configuration_plans_nothing() -> None:
    plan = plan_reload(config(BASE), config(BASE))
    assert plan.describe() == []
    assert plan.config == config(BASE)


def test_added_removed_and_changed_listeners_in_order() -> None:
    new = config("""
        application: tests.apps:app
        listeners:
          - {name: admin, protocol: admin, endpoint: "tcp:9000"}
          - {name: web, protocol: http, endpoint: "tcp:8000", limits: {max_body_size: 1KiB}}
    """)
    plan = plan_reload(config(BASE), new)
    assert plan.describe() == ["remove mqtt", "add admin", "update web"]
    assert plan.listeners[1] == ListenerStep("add", "admin", new.listeners[0], 0)
    assert plan.listeners[2] == ListenerStep("update", "web", new.listeners[1], 1)
    assert plan.config.listeners == new.listeners


def test_another_protocol_or_application_replaces_the_listener() -> None:
    other_protocol = config(BASE.replace('{name: mqtt, protocol: mqtt, endpoint: "tcp:1884"}',
                                         '{name: mqtt, protocol: http, endpoint: "tcp:1884"}'))
    assert plan_reload(config(BASE), other_protocol).describe() == ["replace mqtt"]
    own_application = config(BASE.replace('endpoint: "tcp:8000"}', 'endpoint: "tcp:8000", application: "tests.ws_apps:app"}'))
    assert plan_reload(config(BASE), own_application).describe() == ["replace web"]
    # A new top-level application changes what every listener without its own serves.
    top = config(BASE.replace("application: tests.apps:app", "application: tests.ws_apps:app"))
    assert plan_reload(config(BASE), top).describe() == ["replace web", "replace mqtt"]


def test_restart_only_settings_keep_their_running_value() -> None:
    old = config(BASE)
    new = config(BASE + """
loop: uvloop
lifespan: "off"
threads: 4
layers: {default: {backend: memory, capacity: 5}}
logging: {level: debug, format: json, output: stdout}
""")
    plan = plan_reload(old, new)
    assert plan.kept == ("loop", "layers", "lifespan", "logging")
    assert (plan.log_level, plan.threads) == ("debug", 4)
    assert plan.describe() == ["kept loop", "kept layers", "kept lifespan", "kept logging", "log level debug", "threads 4"]
    applied = plan.config
    assert (applied.loop, applied.lifespan, dict(applied.layers)) == (old.loop, old.lifespan, dict(old.layers))
    assert (applied.logging.level, applied.logging.format, applied.logging.output) == ("debug", "text", "stderr")
    assert applied.threads == 4


def test_a_value_from_the_environment_is_no_change() -> None:
    old = config(BASE)
    new = load_config_text(textwrap.dedent(BASE.replace("tcp:8000", "tcp:${PORT:-8000}")), environ={},
                           import_applications=False)
    assert plan_reload(old, new).describe() == []


def test_the_rejection_log_limits_change_at_once() -> None:
    plan = plan_reload(config(BASE), config(BASE + "logging: {rejections: {lines: 1, period: 30s}}\n"))
    assert plan.describe() == ["rejections 1 per 30s"]
    assert plan.rejections is not None and (plan.rejections.lines, float(plan.rejections.period)) == (1, 30.0)
    assert plan.kept == ()
