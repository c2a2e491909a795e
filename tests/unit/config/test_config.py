"""Configuration loading: typed values, and every kind of error with its file, line and path."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import pytest

from gateway.config import ConfigError, load_config, load_config_text
from gateway.protocols.http.config import HttpListenerConfig

REPO = Path(__file__).resolve().parents[3]

GOOD = """\
application: gateway.demo:application
loop: asyncio
lifespan: "on"
timeouts:
  drain: 2m
  application_close: 500ms
listeners:
  - name: web
    protocol: http
    endpoint: tcp:0:interface=127.0.0.1
    limits:
      max_body_size: 1MiB
      max_headers: 50
    timeouts:
      keep_alive: 1.5
    proxy:
      trusted: [127.0.0.1, 10.0.0.0/8, unix]
layers:
  default: {backend: memory, capacity: 10}
  shared: {backend: redis, hosts: ["redis://127.0.0.1:6379/1"]}
logging: {level: debug, format: json}
"""


def problems(text: str, **kwargs: object) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config_text(textwrap.dedent(text), "gw.yaml", **kwargs)  # type: ignore[arg-type]
    return [str(p) for p in info.value.problems]


def test_good_file_loads_into_typed_immutable_objects() -> None:
    config = load_config_text(GOOD, "gw.yaml")
    assert config.application == "gateway.demo:application"
    assert config.lifespan == "on"
    assert config.timeouts.drain == 120.0
    assert config.timeouts.application_close == 0.5
    listener = config.listeners[0]
    assert isinstance(listener, HttpListenerConfig)
    assert listener.limits.max_body_size == 1024 * 1024
    assert listener.limits.max_headers == 50
    assert listener.timeouts.keep_alive == 1.5
    assert listener.timeouts.header == 10.0  # default
    assert listener.proxy.trusted == ("127.0.0.1", "10.0.0.0/8", "unix")
    assert config.layers["default"].capacity == 10
    assert config.layers["shared"].hosts == ("redis://127.0.0.1:6379/1",)  # type: ignore[attr-defined]
    assert config.logging.format == "json"
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.loop = "uvloop"  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.layers["x"] = config.layers["default"]  # type: ignore[index]


def test_bundled_example_config_is_valid() -> None:
    config = load_config(REPO / "conf/gateway.yaml", environ={})
    assert [listener.name for listener in config.listeners][0] == "web"


def test_unknown_key_names_line_path_and_suggestion() -> None:
    found = problems("""\
        application: gateway.demo:application
        listeners:
          - name: web
            protocol: http
            endpoint: tcp:0
            limits:
              max_body_sise: 1MiB
        """)
    assert found == [
        "gw.yaml:7: listeners[0].limits.max_body_sise: unknown key (did you mean 'max_body_size'?); allowed keys: "
        "lingering_size, max_body_size, max_connections, max_header_size, max_headers, max_pipelined_requests, max_request_line, "
        "read_high_water, write_high_water"
    ]


def test_all_errors_are_reported_at_once_in_file_order() -> None:
    found = problems("""\
        application: nocolon
        loop: uvlop
        listeners:
          - name: web
            protocol: http
            endpoint: tpc:8000
            timeouts: {header: soon}
          - name: web
            protocol: htp
        logging: {level: loud}
        """)
    assert found[0].startswith("gw.yaml:1: application: expected 'module:attribute'")
    assert found[1] == "gw.yaml:2: loop: 'uvlop' is not one of: asyncio, uvloop (did you mean 'uvloop'?)"
    assert found[2].startswith("gw.yaml:6: listeners[0].endpoint: unknown endpoint type 'tpc' (did you mean 'tcp'?)")
    assert found[3] == "gw.yaml:7: listeners[0].timeouts.header: expected a duration such as 10s or 500ms, got 'soon'"
    assert found[4].startswith("gw.yaml:9: listeners[1].protocol: 'htp' is not one of: http")
    assert found[5].startswith("gw.yaml:10: logging.level: 'loud' is not one of")
    assert len(found) == 6


def test_type_errors() -> None:
    found = problems("""\
        application: gateway.demo:application
        threads: many
        listeners:
          - name: web
            protocol: http
            endpoint: tcp:0
            limits: {max_headers: 0, max_body_size: 12 parsecs}
            proxy: {trusted: [not-an-ip]}
        """)
    assert found == [
        "gw.yaml:2: threads: expected an integer, got 'many'",
        "gw.yaml:7: listeners[0].limits.max_body_size: unknown size unit 'parsecs' in '12 parsecs' (use B, KiB, MiB, GiB, kB, MB or GB)",
        "gw.yaml:7: listeners[0].limits.max_headers: must be greater than zero, got 0",
        "gw.yaml:8: listeners[0].proxy.trusted: 'not-an-ip' is not an IP address or network (like 10.0.0.0/8), 'unix' or '*'",
    ]


def test_missing_and_cross_field_errors() -> None:
    found = problems("""\
        listeners:
          - name: web
            protocol: http
          - protocol: http
            endpoint: tcp:0
        """)
    assert "gw.yaml:2: listeners[0].endpoint: a http listener needs an endpoint such as tcp:8000:interface=127.0.0.1" in found
    assert "gw.yaml:4: listeners[1].name: this key is required" in found


def test_listener_without_any_application() -> None:
    found = problems("""\
        listeners:
          - {name: web, protocol: http, endpoint: "tcp:0"}
        """)
    assert found == [
        "gw.yaml:1: application: listener 'web' has no application; set the top-level application or the listener's own"
    ]


def test_duplicate_listener_names() -> None:
    found = problems("""\
        application: gateway.demo:application
        listeners:
          - {name: a, protocol: http, endpoint: "tcp:0"}
          - {name: a, protocol: http, endpoint: "tcp:0"}
        """)
    assert found == ["gw.yaml:2: listeners: two listeners are named 'a'; names must be unique"]


def test_environment_interpolation() -> None:
    text = """\
        application: ${APP}
        threads: ${THREADS:-4}
        listeners:
          - name: web
            protocol: http
            endpoint: tcp:${PORT}:interface=127.0.0.1
            root_path: "/a$$b"
        """
    config = load_config_text(textwrap.dedent(text), "gw.yaml", environ={"APP": "gateway.demo:application", "PORT": "9"})
    assert config.threads == 4 and isinstance(config.threads, int)
    assert config.listeners[0].endpoint == "tcp:9:interface=127.0.0.1"
    assert config.listeners[0].root_path == "/a$b"  # type: ignore[attr-defined]
    found = problems(text, environ={"APP": "gateway.demo:application"})
    assert found[0].startswith("gw.yaml:6: listeners[0].endpoint: environment variable PORT is not set")


def test_application_import_errors_are_located() -> None:
    found = problems("""\
        application: gateway.demo:nope
        listeners:
          - {name: a, protocol: http, endpoint: "tcp:0", application: "no_such_module_xyz:app"}
        """)
    assert found == [
        "gw.yaml:1: application: module 'gateway.demo' has no attribute 'nope'",
        "gw.yaml:3: listeners[0].application: cannot import module 'no_such_module_xyz': no module named 'no_such_module_xyz'",
    ]


def test_yaml_syntax_error_has_a_line() -> None:
    found = problems("application: a:b\nlisteners: [\n  - x: 1\n")
    assert len(found) == 1 and found[0].startswith("gw.yaml:3: not valid YAML")


def test_ssl_endpoint_with_missing_files_is_reported() -> None:
    found = problems("""\
        application: gateway.demo:application
        listeners:
          - {name: a, protocol: http, endpoint: "ssl:0:privateKey=/nonexistent.key:certKey=/nonexistent.pem"}
        """)
    assert len(found) == 1
    assert found[0].startswith("gw.yaml:3: listeners[0].endpoint: cannot use endpoint 'ssl:0:")


def test_systemd_endpoint_syntax_checked_without_systemd() -> None:
    ok = "application: gateway.demo:application\nlisteners:\n  - {name: a, protocol: http, endpoint: 'systemd:domain=INET:index=0'}\n"
    assert load_config_text(ok, "gw.yaml").listeners[0].endpoint == "systemd:domain=INET:index=0"
    found = problems(ok.replace("domain=INET:index=0", "domain=IPX:index=x"))
    assert found == ["gw.yaml:3: listeners[0].endpoint: systemd endpoints need domain=INET, domain=INET6 or domain=UNIX"]


def test_unreadable_file() -> None:
    with pytest.raises(ConfigError) as info:
        load_config("/nonexistent/gateway.yaml")
    assert str(info.value).startswith("/nonexistent/gateway.yaml: cannot read the configuration")


def test_configuration_reference_is_current() -> None:
    """docs/configuration.md is generated from the schema; regenerate it when this fails:
    python -m gateway.config.reference > docs/configuration.md"""
    from gateway.config.reference import render

    assert (REPO / "docs/configuration.md").read_text() == render()


def test_workers_is_a_number_or_auto() -> None:
    for value, wanted in (("3", 3), ("auto", "auto")):
        config = load_config_text(f"""\
application: gateway.demo:application
workers: {value}
layers: {{default: {{backend: redis, hosts: ["redis://127.0.0.1:6379/0"]}}}}
listeners:
  - {{name: web, protocol: http, endpoint: "tcp:0"}}
""", "gw.yaml", import_applications=False)
        assert config.workers == wanted
        assert config.worker_count() >= 1
    for value, message in (("0", "must be at least 1"), ("many", "expected a number of processes or auto"),
                           ("true", "expected a number")):
        found = problems(f"""\
            application: gateway.demo:application
            workers: {value}
            listeners:
              - {{name: web, protocol: http, endpoint: "tcp:0"}}
            """)
        assert any(line.startswith("gw.yaml:2: workers: " + message) for line in found), found


def test_several_workers_refuse_process_local_state() -> None:
    found = problems("""\
        application: gateway.demo:application
        workers: 2
        layers: {chat: {backend: memory}}
        listeners:
          - {name: web, protocol: http, endpoint: "tcp:0"}
          - {name: mqtt, protocol: mqtt, endpoint: "tcp:0"}
        """)
    assert any("layers.chat" in line and "Redis layer" in line for line in found), found
    assert any("broker.store: redis" in line for line in found), found
    found = problems("""\
        application: gateway.demo:application
        workers: 2
        listeners:
          - {name: web, protocol: http, endpoint: "tcp:0"}
        """)
    assert len(found) == 1 and "default channel layer is the in-memory one" in found[0]
