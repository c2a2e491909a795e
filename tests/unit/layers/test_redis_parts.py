"""Redis layer parts that need no server: host URLs, the serializer, the RESP parser, options."""

from __future__ import annotations

import subprocess
import sys

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.exceptions import InvalidChannelLayerError
from gateway.layers import LayerRegistry, backend_options
from gateway.layers.redis import RedisChannelLayer, Serializer, consistent_hash, decode_hosts
from gateway.layers.redis.hosts import parse_sentinel, parse_url
from gateway.layers.redis.serializer import split_map
from tests.unit.layers.redis_server import RedisServer

# -- hosts ------------------------------------------------------------------------------------


def test_redis_url_with_acl_user_password_and_db() -> None:
    address = parse_url("redis://app:s%40cret@cache.internal:6380/3")
    assert (address.host, address.port, address.db) == ("cache.internal", 6380, 3)
    assert (address.username, address.password) == ("app", "s@cret")
    assert not address.tls
    assert "s@cret" not in address.describe() and "s@cret" not in repr(address)


def test_password_only_url_and_defaults() -> None:
    address = parse_url("redis://:pw@localhost")
    assert (address.username, address.password, address.port, address.db) == (None, "pw", 6379, 0)


def test_rediss_url_with_tls_options() -> None:
    address = parse_url("rediss://redis.example:6390/0?ssl_ca_certs=/ca.pem&ssl_certfile=/c.pem&ssl_keyfile=/k.pem")
    assert address.tls and address.ssl_verify and address.ssl_check_hostname
    assert (address.ssl_ca_certs, address.ssl_certfile, address.ssl_keyfile) == ("/ca.pem", "/c.pem", "/k.pem")
    assert not parse_url("rediss://h?ssl_cert_reqs=none").ssl_verify
    assert not parse_url("rediss://h?ssl_check_hostname=false").ssl_check_hostname


def test_unix_url() -> None:
    address = parse_url("unix:///run/redis/redis.sock?db=2&password=pw")
    assert (address.scheme, address.path, address.db, address.password) == ("unix", "/run/redis/redis.sock", 2, "pw")


@pytest.mark.parametrize("url, message", [
    ("http://h", "scheme"),
    ("redis://h/x", "database"),
    ("redis://h?foo=1", "unknown option"),
    ("redis://h?ssl_ca_certs=/x", "rediss"),
    ("rediss://h?ssl_certfile=/c", "go together"),
    ("rediss://h?ssl_cert_reqs=maybe", "ssl_cert_reqs"),
    ("unix://", "socket path"),
    ("redis://h:99999", "Port"),
])
def test_bad_urls(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_url(url)


def test_errors_do_not_show_passwords() -> None:
    with pytest.raises(ValueError) as info:
        parse_url("http://user:hunter2@h/0")
    assert "hunter2" not in str(info.value) and ":***@" in str(info.value)
    with pytest.raises(ValueError) as info:
        parse_url("unix:///s.sock?password=hunter2&db=x")
    assert "hunter2" not in str(info.value)


def test_channels_redis_host_entries() -> None:
    hosts = decode_hosts([("10.0.0.1", 6379), {"address": "redis://10.0.0.2:6379/1"},
                          {"sentinels": [("s1", 26379)], "master_name": "mymaster", "db": 2, "password": "x"}])
    assert [(h.host, h.port, h.db) for h in hosts[:2]] == [("10.0.0.1", 6379, 0), ("10.0.0.2", 6379, 1)]
    assert (hosts[2].master_name, hosts[2].sentinels, hosts[2].db) == ("mymaster", (("s1", 26379),), 2)
    with pytest.raises(ValueError, match="list of Redis hosts"):
        decode_hosts("redis://localhost")  # type: ignore[arg-type]
    assert decode_hosts(None)[0].port == 6379


def test_sentinel_services() -> None:
    (address,) = decode_hosts(["redis://:pw@mymaster/1"], sentinels=["10.0.0.5:26379", "redis://10.0.0.6"])
    assert address.master_name == "mymaster" and address.password == "pw" and address.db == 1
    assert address.sentinels == (("10.0.0.5", 26379), ("10.0.0.6", 26379))
    with pytest.raises(ValueError):
        parse_sentinel("no port here:x")


# -- consistent hashing -----------------------------------------------------------------------


def test_consistent_hash_is_channels_redis_one() -> None:
    _consistent_hash = pytest.importorskip("channels_redis.utils")._consistent_hash

    for ring in (1, 2, 3, 7):
        for name in ("room", "specific.abc!", "a" * 99, "grüße"):
            assert consistent_hash(name, ring) == _consistent_hash(name, ring)


# -- serializer -------------------------------------------------------------------------------

_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.floats(allow_nan=False) | st.text() | st.binary(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=12,
)
_messages = st.dictionaries(st.text(max_size=20), _values, max_size=20).map(lambda d: {"type": "t.m", **d})


def _map_header(count: int) -> bytes:
    if count < 16:
        return bytes([0x80 + count])
    return b"\xde" + count.to_bytes(2, "big") if count < 65536 else b"\xdf" + count.to_bytes(4, "big")


@given(_messages)
def test_split_map_gives_the_entries_after_the_header(message: dict) -> None:
    packed = msgpack.packb(message)
    count, entries = split_map(packed)
    assert count == len(message)
    assert _map_header(count) + entries == packed
    # what the group_send script does: one more entry after the caller's entries
    extended = _map_header(count + 1) + entries + msgpack.packb("__asgi_channel__") + msgpack.packb(["a!b"])
    assert msgpack.unpackb(extended) == {**message, "__asgi_channel__": ["a!b"]}


@given(_messages)
@settings(max_examples=30)
def test_serializer_matches_channels_redis_both_ways(message: dict) -> None:
    registry = pytest.importorskip("channels_redis.serializers").registry
    theirs = registry.get_serializer("msgpack", random_prefix_length=12, expiry=60, symmetric_encryption_keys=["k", "old"])
    ours = Serializer(["k", "old"], expiry=60)
    assert theirs.deserialize(ours.encode(message)) == message
    assert ours.decode(theirs.serialize(message)) == message


def test_serializer_rejects_garbage_and_wrong_keys() -> None:
    member = Serializer(["right"]).encode({"type": "m"})
    with pytest.raises(ValueError, match="undecodable"):
        Serializer(["wrong"]).decode(member)
    with pytest.raises(ValueError, match="undecodable"):
        Serializer().decode(b"x" * 12 + b"\xc1")
    with pytest.raises(ValueError, match="list of possible keys"):
        Serializer("one-string")  # type: ignore[arg-type]


def test_random_prefix_keeps_equal_messages_distinct() -> None:
    serializer = Serializer()
    assert serializer.encode({"type": "m"}) != serializer.encode({"type": "m"})
    assert serializer.encode({"type": "m"})[12:] == msgpack.packb({"type": "m"})


# -- RESP parser ------------------------------------------------------------------------------

def _resp(value: object) -> bytes:
    if value is None:
        return b"$-1\r\n"
    if isinstance(value, bytes):
        return b"$%d\r\n%s\r\n" % (len(value), value)
    if isinstance(value, int):
        return b":%d\r\n" % value
    assert isinstance(value, list)
    return b"*%d\r\n" % len(value) + b"".join(_resp(v) for v in value)


_replies = st.recursive(st.none() | st.binary(max_size=40) | st.integers(-2**40, 2**40),
                        lambda inner: st.lists(inner, max_size=6), max_leaves=30)


@given(st.lists(_replies, min_size=1, max_size=5), st.data())
def test_resp_parser_any_chunking(replies: list, data: st.DataObject) -> None:
    pytest.importorskip("txredisapi")
    from gateway.layers.redis.protocol import INCOMPLETE, RespParser

    wire = b"".join(_resp(r) for r in replies)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=6)))
    parser, got, last = RespParser(), [], 0
    for cut in [*cuts, len(wire)]:
        parser.feed(wire[last:cut])
        last = cut
        while (reply := parser.gets()) is not INCOMPLETE:
            got.append(reply)
    assert got == replies


def test_resp_parser_status_and_errors() -> None:
    import txredisapi

    from gateway.layers.redis.protocol import INCOMPLETE, RespParser

    parser = RespParser()
    parser.feed(b"+OK\r\n-ERR wrong\r\n-NOSCRIPT No matching script\r\n*-1\r\n")
    assert parser.gets() == "OK"
    error = parser.gets()
    assert isinstance(error, txredisapi.ResponseError) and str(error) == "wrong"
    assert str(parser.gets()).startswith("NOSCRIPT")
    assert parser.gets() is None
    assert parser.gets() is INCOMPLETE


# -- options and configuration ----------------------------------------------------------------


def test_registry_builds_the_layer_and_checks_options() -> None:
    registry = LayerRegistry({"default": {"backend": "redis", "hosts": ["redis://127.0.0.1:1/0"], "capacity": 5,
                                          "channel_capacity": {"http.*": 9}, "prefix": "gw"}})
    layer = registry["default"]
    assert isinstance(layer, RedisChannelLayer)
    assert (layer.capacity, layer.get_capacity("http.request"), layer.prefix) == (5, 9, "gw")
    with pytest.raises(InvalidChannelLayerError, match="unknown option"):
        LayerRegistry({"default": {"backend": "redis", "hots": []}})
    with pytest.raises(InvalidChannelLayerError, match="batch"):
        LayerRegistry({"default": {"backend": "redis", "batch": 0}})
    with pytest.raises(InvalidChannelLayerError, match="scheme"):
        LayerRegistry({"default": {"backend": "redis", "hosts": ["http://x"]}})


def test_yaml_redis_section_maps_onto_the_layer_options() -> None:
    from gateway.config.schema import RedisLayerConfig

    options = RedisLayerConfig(backend="redis", hosts=("redis://127.0.0.1:1/0",), sentinels=(),
                               options={"batch": 50}).layer_options()
    accepted = {f for f in backend_options("redis").__dataclass_fields__}  # type: ignore[union-attr]
    assert set(options) - {"backend"} <= accepted
    layer = LayerRegistry({"default": options})["default"]
    assert layer.batch == 50


def test_importing_installs_no_reactor_and_first_use_starts_one_in_a_thread(server: RedisServer) -> None:
    """A Django process (no gateway, no reactor) uses the layer by changing imports only."""
    code = (
        "import asyncio, sys, threading\n"
        "from gateway.layers.redis import RedisChannelLayer\n"
        f"layer = RedisChannelLayer(hosts=[{server.url!r}])\n"
        "assert 'twisted.internet.reactor' not in sys.modules and 'txredisapi' not in sys.modules\n"
        "async def main():\n"
        "    await layer.send('x', {'type': 'm', 'n': 1})\n"
        "    got = await layer.receive('x')\n"
        "    await layer.close()\n"
        "    return got\n"
        "print('GOT', asyncio.run(main()), [t.name for t in threading.enumerate() if t.name == 'gateway-reactor'])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "GOT {'type': 'm', 'n': 1} ['gateway-reactor']" in out.stdout


def test_another_installed_reactor_is_a_clear_error() -> None:
    code = (
        "import asyncio\n"
        "from twisted.internet import selectreactor\n"
        "selectreactor.install()\n"
        "from gateway.layers.redis import RedisChannelLayer\n"
        "try:\n"
        "    asyncio.run(RedisChannelLayer().send('x', {'type': 'm'}))\n"
        "except RuntimeError as exc:\n"
        "    print('ERROR', exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "ERROR RedisChannelLayer runs on Twisted's asyncio reactor" in out.stdout
    assert "(installed: SelectReactor)" in out.stdout


def test_cluster_seed_urls() -> None:
    seeds = decode_hosts(["redis+cluster://app:pw@10.0.0.5:7000", "rediss+cluster://10.0.0.6?ssl_cert_reqs=none"])
    assert [(a.cluster, a.scheme, a.host, a.port) for a in seeds] == [(True, "redis", "10.0.0.5", 7000),
                                                                      (True, "rediss", "10.0.0.6", 6379)]
    assert (seeds[0].username, seeds[0].password, seeds[1].ssl_verify) == ("app", "pw", False)
    assert seeds[0].describe() == "redis+cluster://app@10.0.0.5:7000"
    with pytest.raises(ValueError, match="only database 0"):
        parse_url("redis+cluster://10.0.0.5:7000/3")
    with pytest.raises(ValueError, match="do not mix them"):
        decode_hosts(["redis+cluster://10.0.0.5:7000", "redis://10.0.0.6"])
    with pytest.raises(ValueError, match="Sentinel and Redis Cluster"):
        decode_hosts(["redis+cluster://mymaster"], sentinels=["10.0.0.7:26379"])
    layer = RedisChannelLayer(hosts=["redis+cluster://10.0.0.5:7000"])
    assert layer.cluster and layer.ring_size == 1 and layer.group_key("room") == b"asgi:group:{room}"


def test_yaml_accepts_cluster_seeds_and_refuses_a_mix() -> None:
    from gateway.config.schema import RedisLayerConfig

    ok = RedisLayerConfig(backend="redis", hosts=("redis+cluster://10.0.0.5:7000", "redis+cluster://10.0.0.6:7000"))
    assert list(ok.check()) == []
    mixed = RedisLayerConfig(backend="redis", hosts=("redis+cluster://10.0.0.5:7000", "redis://10.0.0.6"))
    assert [field for field, _ in mixed.check()] == ["hosts"]
