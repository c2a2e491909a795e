"""Redis addresses: ``redis://``, ``rediss://`` and ``unix://`` URLs, channels_redis host entries,
Sentinel-managed services and Redis Cluster seed nodes.

URL forms (the ones redis-py's ``from_url`` takes, so channels_redis settings carry over)::

    redis://[[user]:password@]host[:port][/db][?option=value...]
    rediss://...                              TLS; the server certificate is verified
    unix://[[user]:password@]/path/to/redis.sock[?db=N&password=...]
    redis+cluster://[[user]:password@]host[:port]   a Redis Cluster node to start from
    rediss+cluster://...                      the same over TLS

TLS options in the query string: ``ssl_ca_certs`` (PEM file of trusted CAs; default: the system's
trust store), ``ssl_certfile`` + ``ssl_keyfile`` (a client certificate), ``ssl_cert_reqs``
(``required``, the default, or ``none`` to skip verification — not recommended),
``ssl_check_hostname`` (``true`` by default; ``false`` checks the chain but not the name).

With Sentinel (``sentinels=[...]`` on the layer, or a channels_redis dict entry
``{"sentinels": [(host, port)], "master_name": name}``), the host part of each URL is the name of
the monitored service, e.g. ``redis://:secret@mymaster/0``.

With Redis Cluster, every URL is a ``redis+cluster://`` (or ``rediss+cluster://``) seed: any
reachable one tells where the others are, so the list names one cluster, not shards.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["RedisAddress", "decode_hosts", "parse_sentinel", "parse_url"]

_SCHEMES = {"redis": ("redis", False), "rediss": ("rediss", False), "unix": ("unix", False),
            "redis+cluster": ("redis", True), "rediss+cluster": ("rediss", True)}

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class RedisAddress:
    """Where one shard lives and how to log in to it."""

    scheme: str = "redis"  # redis | rediss | unix
    host: str = "localhost"
    port: int = 6379
    path: str | None = None
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ssl_ca_certs: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_verify: bool = True
    ssl_check_hostname: bool = True
    #: Sentinel: the monitored service name and the sentinels' (host, port) addresses.
    master_name: str | None = None
    sentinels: tuple[tuple[str, int], ...] = ()
    sentinel_password: str | None = field(default=None, repr=False)
    #: A Redis Cluster node (``redis+cluster://``): a seed to discover the cluster from.
    cluster: bool = False

    @property
    def tls(self) -> bool:
        return self.scheme == "rediss"

    def describe(self) -> str:
        """The address as a URL without its password (for logs and errors)."""
        user = f"{self.username}@" if self.username else ""
        if self.master_name:
            return f"sentinel:{self.master_name}/{self.db} (via {', '.join(f'{h}:{p}' for h, p in self.sentinels)})"
        if self.scheme == "unix":
            return f"unix://{user}{self.path}?db={self.db}"
        if self.cluster:
            return f"{self.scheme}+cluster://{user}{self.host}:{self.port}"
        return f"{self.scheme}://{user}{self.host}:{self.port}/{self.db}"


def _flag(name: str, value: str) -> bool:
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(f"{name}={value!r} is not a boolean")


def _redact(url: str) -> str:
    """``url`` with its password (before ``@``, or ``password=`` in the query) replaced by ***."""
    parts = urlsplit(url)
    text = url
    if parts.password:
        text = text.replace(f":{parts.password}@", ":***@", 1)
    return re.sub(r"(password=)[^&]*", r"\1***", text)


def parse_url(url: str, *, sentinels: Sequence[tuple[str, int]] = (), sentinel_password: str | None = None) -> RedisAddress:
    """Parse one Redis URL.

    Raises:
        ValueError: an unsupported scheme, a bad port or db, an unknown query option.
    """
    if not isinstance(url, str):
        raise ValueError(f"a Redis host must be a URL string, got {url!r}")
    parts = urlsplit(url)
    url = _redact(url)  # for error messages
    if parts.scheme.lower() not in _SCHEMES:
        raise ValueError(f"{url!r}: the scheme must be redis://, rediss://, unix://, redis+cluster:// or rediss+cluster://")
    scheme, cluster = _SCHEMES[parts.scheme.lower()]
    query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    username = query.pop("username", username) or None
    password = query.pop("password", password)
    db_text = query.pop("db", None)
    path = None
    host, port = "localhost", 6379
    if scheme == "unix":
        path = unquote(parts.path)
        if not path:
            raise ValueError(f"{url!r}: a unix:// URL needs a socket path")
    else:
        try:
            host = parts.hostname or "localhost"
            port = parts.port or 6379
        except ValueError as exc:
            raise ValueError(f"{url!r}: {exc}") from None
        if parts.path not in ("", "/") and db_text is None:
            db_text = parts.path.lstrip("/")
    try:
        db = int(db_text) if db_text not in (None, "") else 0
    except ValueError:
        raise ValueError(f"{url!r}: the database must be a number, got {db_text!r}") from None
    if db < 0:
        raise ValueError(f"{url!r}: the database must not be negative")
    if cluster and db:
        raise ValueError(f"{url!r}: Redis Cluster has only database 0")
    tls: dict[str, Any] = {}
    for name in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile"):
        if name in query:
            tls[name] = query.pop(name) or None
    if "ssl_cert_reqs" in query:
        reqs = query.pop("ssl_cert_reqs").lower()
        if reqs not in ("required", "none", "optional"):
            raise ValueError(f"{url!r}: ssl_cert_reqs must be required or none")
        tls["ssl_verify"] = reqs != "none"
    if "ssl_check_hostname" in query:
        tls["ssl_check_hostname"] = _flag("ssl_check_hostname", query.pop("ssl_check_hostname"))
    if query:
        raise ValueError(f"{url!r}: unknown option(s) {', '.join(sorted(query))}")
    if tls and scheme != "rediss":
        raise ValueError(f"{url!r}: ssl_* options need a rediss:// (or rediss+cluster://) URL")
    if bool(tls.get("ssl_certfile")) != bool(tls.get("ssl_keyfile")):
        raise ValueError(f"{url!r}: ssl_certfile and ssl_keyfile go together")
    master_name = None
    if sentinels:
        if cluster:
            raise ValueError(f"{url!r}: Sentinel and Redis Cluster do not go together")
        if scheme == "unix":
            raise ValueError(f"{url!r}: with sentinels, hosts name services (redis://[:password@]service/db)")
        master_name, host, port = host, "", 0
    return RedisAddress(
        scheme=scheme, host=host, port=port, path=path, db=db, username=username, password=password,
        master_name=master_name, sentinels=tuple(sentinels), sentinel_password=sentinel_password, cluster=cluster,
        **tls,
    )


def parse_sentinel(entry: Any) -> tuple[str, int]:
    """A sentinel address from ``"host:port"``, ``"redis://host:port"`` or ``(host, port)``."""
    if isinstance(entry, (tuple, list)) and len(entry) == 2:
        return str(entry[0]), int(entry[1])
    if isinstance(entry, str):
        text = entry if "//" in entry else f"redis://{entry}"
        parts = urlsplit(text)
        try:
            port = parts.port or 26379
        except ValueError:
            port = -1
        if parts.hostname and port > 0:
            return parts.hostname, port
    raise ValueError(f"a sentinel must be host:port, got {entry!r}")


def decode_hosts(
    hosts: Sequence[Any] | None,
    sentinels: Sequence[Any] = (),
    sentinel_password: str | None = None,
) -> list[RedisAddress]:
    """Turn the layer's ``hosts`` into addresses, one per shard.

    Entries are URL strings, ``(host, port)`` pairs, or channels_redis dicts: ``{"address": URL}``
    or ``{"sentinels": [...], "master_name": NAME, "db": 0, "password": ...}``.

    With Redis Cluster every entry is a ``redis+cluster://`` seed of the one cluster.

    Raises:
        ValueError: a bare string instead of a list, a bad entry, or cluster seeds mixed with
            other hosts.
    """
    if hosts is None or (not isinstance(hosts, (str, bytes)) and len(hosts) == 0):
        hosts = ["redis://localhost:6379"]
    if isinstance(hosts, (str, bytes)):
        raise ValueError("You must pass a list of Redis hosts, even if there is only one.")
    parsed_sentinels = tuple(parse_sentinel(s) for s in sentinels)
    result: list[RedisAddress] = []
    for entry in hosts:
        if isinstance(entry, str):
            result.append(parse_url(entry, sentinels=parsed_sentinels, sentinel_password=sentinel_password))
        elif isinstance(entry, (tuple, list)) and len(entry) == 2:
            result.append(RedisAddress(host=str(entry[0]), port=int(entry[1])))
        elif isinstance(entry, Mapping) and "address" in entry:
            extra = set(entry) - {"address"}
            if extra:
                raise ValueError(f"unsupported host option(s) {sorted(extra)}; put them in the URL")
            result.append(parse_url(str(entry["address"]), sentinels=parsed_sentinels, sentinel_password=sentinel_password))
        elif isinstance(entry, Mapping) and "master_name" in entry:
            kwargs = dict(entry.get("sentinel_kwargs") or {})
            result.append(RedisAddress(
                host="", port=0, master_name=str(entry["master_name"]),
                sentinels=tuple(parse_sentinel(s) for s in entry.get("sentinels", ())),
                db=int(entry.get("db", 0)), username=entry.get("username"), password=entry.get("password"),
                sentinel_password=kwargs.get("password"),
            ))
            if not result[-1].sentinels:
                raise ValueError(f"{entry!r}: a Sentinel entry needs sentinels")
        else:
            raise ValueError(f"cannot use {entry!r} as a Redis host (use a redis://, rediss:// or unix:// URL)")
    if any(a.cluster for a in result) and not all(a.cluster for a in result):
        raise ValueError("redis+cluster:// seeds name one Redis Cluster: do not mix them with other hosts")
    return result
