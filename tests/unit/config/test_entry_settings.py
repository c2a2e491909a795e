"""What the entry points read from a configuration before anything else (the loop kind), the
environment variables values came from, the ssl: section, and YAML mistakes in plain words."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from gateway.config import ConfigError, load_config_text, read_loop_kind
from gateway.config.schema import SslEndpointConfig, TLSPolicy
from gateway.config.yamlerrors import explain


def problems(text: str, **kwargs: object) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config_text(text, "c.yaml", import_applications=False, **kwargs)  # type: ignore[arg-type]
    return [str(problem) for problem in info.value.problems]


def test_read_loop_kind(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    cases = {
        "loop: uvloop\n": "uvloop",
        "loop: asyncio\n": "asyncio",
        "application: x:y\n": "asyncio",
        "loop: ${LOOP:-uvloop}\n": "uvloop",
        "loop: tokio\n": "asyncio",  # load_config reports it
        "loop: [1\n": "asyncio",  # not YAML: load_config reports it
        "- a list\n": "asyncio",
        "": "asyncio",
    }
    for text, kind in cases.items():
        path.write_text(text)
        assert read_loop_kind(path, environ={}) == kind, text
    path.write_text("loop: ${LOOP}\n")
    assert read_loop_kind(path, environ={"LOOP": "uvloop"}) == "uvloop"
    assert read_loop_kind(path, environ={}) == "asyncio"
    assert read_loop_kind(tmp_path / "missing.yaml") == "asyncio"


def test_read_loop_kind_imports_nothing(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = tmp_path / "c.yaml"
    path.write_text("application: tests.reactor_apps:app\nloop: uvloop\nlisteners: [{name: a, protocol: smtp, endpoint: 'tcp:0'}]\n")
    code = ("import sys; from gateway.config import read_loop_kind; "
            f"print(read_loop_kind({str(path)!r}), sorted(m for m in sys.modules if m.startswith(('twisted.internet.reactor', "
            "'gateway.protocols', 'tests'))))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "uvloop []"


BASE = """\
application: tests.apps:app
listeners:
  - name: web
    protocol: http
    endpoint: {endpoint}
"""


def test_listeners_remember_the_environment_variables_of_their_endpoint() -> None:
    config = load_config_text(BASE.format(endpoint="tcp:${PORT:-8000}:interface=${HOST:-127.0.0.1}"),
                              environ={"HOST": "localhost"}, import_applications=False)
    listener = config.listeners[0]
    assert listener.endpoint == "tcp:8000:interface=localhost"
    assert listener.environment == {"endpoint": ("PORT", "HOST")}
    plain = load_config_text(BASE.format(endpoint="tcp:8000:interface=localhost"), import_applications=False)
    assert plain.listeners[0].environment == {}
    assert plain.listeners[0] == listener  # where a value came from is no part of the configuration (reload)
    assert problems(BASE.format(endpoint="tcp:0") + "    environment: {endpoint: [X]}\n")[0].startswith(
        "c.yaml:6: listeners[0].environment: unknown key")


def test_ssl_section() -> None:
    text = BASE.format(endpoint="ssl:0:privateKey=/nonexistent.pem") + "    ssl: {min_version: 1.3, max_handshakes: 10}\n"
    found = problems(text)
    assert not any("listeners[0].ssl" in problem for problem in found), found  # only the missing key file
    assert problems(BASE.format(endpoint="tcp:0") + "    ssl: {min_version: '1.3'}\n") == [
        "c.yaml:6: listeners[0].ssl: applies to ssl: endpoints only (like ssl:8443:privateKey=key.pem:certKey=cert.pem), "
        "and this endpoint is not one"]
    assert problems(BASE.format(endpoint="tcp:0") + "    ssl: {min_version: 1.1, ciphers: NOPE, max_handshakes: 0}\n") == [
        "c.yaml:6: listeners[0].ssl.ciphers: 'NOPE' selects no cipher suite this OpenSSL knows; use intermediate or an "
        "OpenSSL cipher string (openssl ciphers -v 'STRING' lists what a string selects)",
        "c.yaml:6: listeners[0].ssl.max_handshakes: must be greater than zero, got 0",
        "c.yaml:6: listeners[0].ssl.min_version: 1.1 is not a TLS version the gateway accepts: 1.2 or 1.3",
    ]
    defaults = SslEndpointConfig()
    assert (defaults.ciphers, defaults.min_version, float(defaults.handshake_timeout), defaults.max_handshakes) == (
        "intermediate", "1.2", 10.0, 1024)
    assert isinstance(defaults, TLSPolicy)


def test_the_tls_policy_applies_to_a_context() -> None:
    from OpenSSL import SSL

    from gateway.tls import INTERMEDIATE, apply_policy, cipher_string

    assert cipher_string("intermediate") == INTERMEDIATE
    context = SSL.Context(SSL.TLS_SERVER_METHOD)
    apply_policy(context, None)
    names = SSL.Connection(context).get_cipher_list()
    tls12 = [name for name in names if not name.startswith("TLS_")]
    assert tls12 and all(name.startswith(("ECDHE-", "DHE-")) and ("GCM" in name or "CHACHA20" in name) for name in tls12)
    assert "AES128-SHA" not in names and "ECDHE-RSA-AES128-SHA" not in names


# -- YAML syntax errors ---------------------------------------------------------------------

MISTAKES = {
    "a key indented less than its neighbours": (
        "listeners:\n  - name: web\n    protocol: http\n   endpoint: tcp:0\n", 4,
        "the indentation of this line does not match the lines above it"),
    "a key at the level of the list's dashes": (
        "listeners:\n  - name: a\n  name: b\n", 3, "the indentation of this line does not match the lines above it"),
    "a tab": ("listeners:\n\t- name: web\n", 2, "a tab character: YAML indents with spaces only"),
    "an unquoted ': ' in a value": ("title: hello: world\n", 1, "a ':' where no new key can start"),
    "an unclosed quote": ("application: 'a:b\nloop: asyncio\n", 3,
                          "a quoted value is never closed: add the closing quote to the value that starts on line 1"),
    "an unclosed flow mapping": ("listeners: [{name: web, protocol: http\nloop: asyncio\n", 2,
                                 "the {...} mapping opened on line 1 is not closed with '}'"),
    "a key without ':'": ("listeners:\n  - name: a\nloop asyncio\n  x: 1\n", 4, "a key without its ':'"),
    "a value starting with @": ("application: @app\n", 1, "a value cannot start with '@' unquoted: put the value in quotes"),
    "a backslash in double quotes": ('output: "C:\\logs"\n', 1, "a backslash in a double-quoted value starts an escape"),
    "a value starting with *": ("endpoint: *\n", 1, "a value starting with '*' is read as a reference"),
}


@pytest.mark.parametrize("name", sorted(MISTAKES))
def test_yaml_mistakes_are_explained_in_plain_words(name: str) -> None:
    text, line, advice = MISTAKES[name]
    (problem,) = problems(text)
    assert problem.startswith(f"c.yaml:{line}: not valid YAML: {advice}"), problem
    assert "the YAML parser says: " in problem  # PyYAML's own words stay, after the advice


@given(st.text(alphabet=" \t:-'\"{}[]#&*!|>%@`\nabc", max_size=40))
def test_every_yaml_error_gets_a_located_message(text: str) -> None:
    try:
        yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        line, message = explain(exc)
        assert line is None or line >= 1
        assert message and "the YAML parser says" in message
    except yaml.YAMLError:
        pass
