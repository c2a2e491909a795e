"""One auto-reconnecting connection to one Redis server, on the Twisted reactor.

:class:`RedisConnection` keeps one txredisapi protocol connected: it connects (TCP, TLS or a unix
socket; for Sentinel it asks the sentinels for the master first and checks its ``ROLE``), logs in
(AUTH with an ACL user, SELECT), loads the layer's scripts, and reconnects with exponential backoff
(:class:`Backoff`: 0.1 s doubling up to ``reconnect_max_delay``, with jitter) whenever the
connection drops.

While it is down, :meth:`RedisConnection.call` raises :class:`RedisLayerUnavailable` at once (it
waits only for an attempt already in progress that has not failed yet: the first connection, or
the first retry after a drop), so callers are never stuck behind an outage.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import txredisapi
from twisted.internet import defer, protocol
from twisted.internet.error import ConnectionDone
from twisted.internet.abstract import isIPAddress, isIPv6Address

from gateway.layers.redis.errors import RedisLayerError, RedisLayerUnavailable, RedisRedirect
from gateway.layers.redis.hosts import RedisAddress
from gateway.layers.redis.protocol import LayerProtocol
from gateway.layers.redis.scripts import Script

__all__ = ["Backoff", "ConnectionSettings", "RedisConnection", "make_endpoint"]

logger = logging.getLogger("gateway.layers.redis")


class Backoff:
    """Delays between reconnection attempts: exponential from ``initial`` (doubling per failure)
    up to ``max_delay``, each with ``±jitter`` so that many clients do not retry in step.

    The jitter comes from a private random generator (never the ``random`` module's shared
    one), so a connection retrying in the background does not disturb code that seeds or
    watches ``random`` (hypothesis does).

    Args:
        max_delay: the longest delay (the layer's ``reconnect_max_delay``).
        initial: the delay after the first failure is ``2 * initial``.
        jitter: relative spread of each delay (0.2: ±20 %).
    """

    __slots__ = ("max_delay", "initial", "jitter", "_random")

    def __init__(self, max_delay: float = 5.0, initial: float = 0.05, jitter: float = 0.2) -> None:
        if max_delay <= 0 or initial <= 0 or not 0 <= jitter < 1:
            raise ValueError("Backoff needs positive delays and a jitter in [0, 1)")
        self.max_delay = max_delay
        self.initial = initial
        self.jitter = jitter
        self._random = random.Random()

    def delay(self, failures: int) -> float:
        """Seconds to wait after ``failures`` consecutive failures (``failures >= 1``)."""
        base = min(self.max_delay, self.initial * (2 ** min(max(failures, 0), 30)))
        return base * self._random.uniform(1 - self.jitter, 1 + self.jitter)


class ConnectionSettings:
    """Timeouts and the reconnection backoff shared by a client's connections (seconds)."""

    def __init__(self, connect_timeout: float = 5.0, command_timeout: float = 10.0,
                 reconnect_max_delay: float = 5.0) -> None:
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self.reconnect_max_delay = reconnect_max_delay
        self.backoff = Backoff(reconnect_max_delay)


def _tls_creator(address: RedisAddress, hostname: str) -> Any:
    from twisted.internet import ssl

    trust: Any = None
    if address.ssl_ca_certs:
        with open(address.ssl_ca_certs, "rb") as f:
            pem = f.read()
        chunks = [c for c in pem.split(b"-----END CERTIFICATE-----") if b"-----BEGIN CERTIFICATE-----" in c]
        certs = [ssl.Certificate.loadPEM(c + b"-----END CERTIFICATE-----\n") for c in chunks]
        trust = ssl.trustRootFromCertificates(certs)
    client = None
    if address.ssl_certfile and address.ssl_keyfile:
        with open(address.ssl_certfile, "rb") as f:
            cert_pem = f.read()
        with open(address.ssl_keyfile, "rb") as f:
            key_pem = f.read()
        client = ssl.PrivateCertificate.loadPEM(cert_pem + b"\n" + key_pem)
    if address.ssl_verify and address.ssl_check_hostname:
        return ssl.optionsForClientTLS(hostname, trustRoot=trust, clientCertificate=client)
    logger.warning("Redis %s: TLS %s", address.describe(),
                   "server certificate NOT verified (ssl_cert_reqs=none)" if not address.ssl_verify
                   else "host name not checked (ssl_check_hostname=false)")
    extra: dict[str, Any] = {}
    if client is not None:
        extra = {"privateKey": client.privateKey.original, "certificate": client.original}
    if address.ssl_verify:
        from gateway._compat.twisted_tls import ca_certificates

        cas = ca_certificates(trust)
        if cas is None:
            return ssl.CertificateOptions(verify=True, trustRoot=ssl.platformTrust(), **extra)
        return ssl.CertificateOptions(verify=True, caCerts=cas, **extra)
    return ssl.CertificateOptions(verify=False, **extra)


def make_endpoint(reactor: Any, address: RedisAddress, host: str, port: int, timeout: float) -> Any:
    """A client endpoint for ``host:port`` (TLS when the address says ``rediss``)."""
    from twisted.internet import endpoints

    if address.scheme == "unix":
        return endpoints.UNIXClientEndpoint(reactor, address.path, timeout=timeout)
    if isIPAddress(host):
        endpoint: Any = endpoints.TCP4ClientEndpoint(reactor, host, port, timeout=timeout)
    elif isIPv6Address(host):
        endpoint = endpoints.TCP6ClientEndpoint(reactor, host, port, timeout=timeout)
    else:
        endpoint = endpoints.HostnameEndpoint(reactor, host, port, timeout=timeout)
    if address.tls:
        endpoint = endpoints.wrapClientTLS(_tls_creator(address, host), endpoint)
    return endpoint


class _Factory(protocol.Factory):
    """Builds :class:`LayerProtocol` instances; receives txredisapi's connect-time callbacks."""

    noisy = False
    isLazy = False

    def __init__(self, owner: RedisConnection, reply_timeout: float) -> None:
        self.owner = owner
        self.reply_timeout = reply_timeout

    def buildProtocol(self, addr: Any) -> LayerProtocol:
        address = self.owner.address
        proto = LayerProtocol(replyTimeout=self.reply_timeout, password=address.password,
                              dbid=address.db or None, username=address.username, loop=self.owner.loop)
        proto.factory = self
        return proto

    def stopTrying(self) -> None:
        """txredisapi calls this when AUTH or SELECT fails; we keep retrying with backoff."""

    def connectionError(self, why: str) -> None:
        self.owner.last_error = why


class RedisConnection:
    """One connection (command or blocking role) to one server, kept up in the background.

    Args:
        address: the server (or Sentinel service); credentials and TLS settings.
        role: ``command`` or ``... reader`` (for logs); readers get a longer reply timeout.
        reactor, loop: the Twisted asyncio reactor and its loop.
        settings: timeouts and backoff.
        scripts: Lua scripts to load on every (re)connection.
        reply_timeout: seconds a reply may take before the connection is considered dead.
        on_ready: ``await on_ready(commands, first)`` after each (re)connection, before callers
            get it (they wait meanwhile); ``commands`` run on the new connection.
        locate: ``await locate()`` -> ``(host, port)`` to connect to, asked before every
            attempt (a Redis Cluster reader follows its slot's owner this way); default: the
            address (or the Sentinel master).
        on_down: called when the connection is lost or an attempt fails (a cluster client
            refreshes its slot map).
    """

    def __init__(self, address: RedisAddress, role: str, reactor: Any, loop: asyncio.AbstractEventLoop,
                 settings: ConnectionSettings, scripts: Sequence[Script] = (), reply_timeout: float | None = None,
                 on_ready: Callable[[_Direct, bool], Awaitable[None]] | None = None,
                 locate: Callable[[], Awaitable[tuple[str, int]]] | None = None,
                 on_down: Callable[[RedisConnection], None] | None = None) -> None:
        self.address = address
        self.role = role
        self.reactor = reactor
        self.loop = loop
        self.settings = settings
        self.scripts = tuple(scripts)
        self.on_ready = on_ready
        self.locate = locate
        self.on_down = on_down
        self.reply_timeout = reply_timeout or settings.command_timeout
        self.factory = _Factory(self, self.reply_timeout)
        self.protocol: LayerProtocol | None = None
        self.closed = False
        self.failures = 0
        self.total_failures = 0
        self.last_error: str | None = None
        self.connects = 0
        self.disconnects = 0
        self.down_since: float | None = None
        #: Where the current (or last) connection went: ``host:port``.
        self.peer: str | None = None
        self._attempting = False
        self._waiters: list[asyncio.Future[None]] = []
        self._task: asyncio.Task[None] | None = None
        self._sentinel: Any = None
        self._nudge: asyncio.Future[None] | None = None

    def __repr__(self) -> str:
        return f"<RedisConnection {self.role} {self.describe()} {'up' if self.up else 'down'}>"

    def describe(self) -> str:
        """The server, for messages: the address, and where it resolved to when that differs."""
        text = self.address.describe()
        if self.peer is not None and (self.locate is not None or self.address.master_name):
            text += f" ({self.peer})"
        return text

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None and not self.closed:
            self._task = self.loop.create_task(self._run())

    async def close(self) -> None:
        """Close the connection and stop reconnecting; returns once the background task ended."""
        self.closed = True
        self._abort(self.protocol)
        self.protocol = None
        task = self._task
        while task is not None and not task.done():
            task.cancel()
            # A cancellation can be swallowed when the awaited step completes in the same loop
            # pass; the task then sees ``closed`` at its next check and ends by itself.
            await asyncio.wait([task], timeout=1.0)
        if self._sentinel is not None:
            sentinel, self._sentinel = self._sentinel, None
            try:
                await asyncio.wait_for(sentinel.disconnect().asFuture(self.loop), self.settings.connect_timeout)
            except Exception:  # noqa: BLE001 - closing: nothing left to do about it
                pass
        self._wake(RedisLayerUnavailable(f"Redis {self.describe()}: the connection was closed"))

    @property
    def up(self) -> bool:
        return self.protocol is not None

    def _abort(self, proto: LayerProtocol | None) -> None:
        if proto is not None and proto.transport is not None:
            try:
                proto.transport.abortConnection()
            except Exception:  # noqa: BLE001 - already half-closed (TLS): nothing left to abort
                pass

    def _wake(self, error: BaseException | None = None) -> None:
        waiters, self._waiters = self._waiters, []
        for future in waiters:
            if not future.done():
                if error is None:
                    future.set_result(None)
                else:
                    future.set_exception(error)

    def _down(self) -> None:
        if self.on_down is not None and not self.closed:
            try:
                self.on_down(self)
            except Exception:  # noqa: BLE001 - a listener's bug must not stop reconnecting
                logger.exception("Redis %s (%s): on_down failed", self.describe(), self.role)

    async def _run(self) -> None:
        while not self.closed:
            self._attempting = True
            try:
                async with asyncio.timeout(self.settings.connect_timeout):
                    proto = await self._connect()
            except asyncio.CancelledError:
                raise
            except BaseException as exc:  # noqa: BLE001 - every failure is retried
                self._attempting = False
                if self.closed:
                    return
                self.failures += 1
                self.total_failures += 1
                self.last_error = _describe(exc) if not isinstance(exc, TimeoutError) else "connection timed out"
                level = logging.WARNING if self.failures == 1 or self.failures % 50 == 0 else logging.DEBUG
                logger.log(level, "Redis %s (%s): cannot connect (attempt %d): %s", self.describe(),
                           self.role, self.failures, self.last_error)
                self._wake(self.unavailable())
                self._down()
                await self._pause(self.settings.backoff.delay(self.failures))
                continue
            if self.closed:  # closed while the last step of connecting completed
                self._abort(proto)
                return
            first = self.connects == 0
            self.connects += 1
            if self.down_since is not None:
                logger.warning("Redis %s (%s): reconnected after %.1f s", self.describe(), self.role,
                               time.monotonic() - self.down_since)
            self.failures = 0
            self.last_error = None
            self.down_since = None
            lost = proto.whenDisconnected().asFuture(self.loop)
            if not proto.connected:
                continue
            proto.on_lost = self._lost
            if self.on_ready is not None:  # callers keep waiting (still "attempting") meanwhile
                try:
                    await self.on_ready(_Direct(self, proto), first)
                except Exception as exc:  # noqa: BLE001 - logged; the connection stays usable
                    logger.warning("Redis %s (%s): after connecting: %s", self.describe(), self.role, exc)
            self._attempting = False
            if self.closed:
                self._abort(proto)
                return
            if not proto.connected:  # lost during on_ready
                continue
            self.protocol = proto
            self._wake()
            up_since = time.monotonic()
            await lost
            self._lost(proto)
            self.disconnects += 1
            self.down_since = time.monotonic()
            self.last_error = self.last_error or "connection lost"
            if not self.closed:
                logger.warning("Redis %s (%s): connection lost; reconnecting", self.describe(), self.role)
                self._down()
                if self.down_since - up_since < 1.0:  # dropped right away (maxclients, a proxy): back off
                    self.failures += 1
                    await self._pause(self.settings.backoff.delay(self.failures))

    async def _pause(self, delay: float) -> None:
        """The backoff wait before the next attempt (cut short by :meth:`retry_now`)."""
        nudge = self._nudge = self.loop.create_future()
        try:
            await asyncio.wait([nudge], timeout=delay)
        finally:
            self._nudge = None

    def retry_now(self) -> None:
        """Skip the rest of the backoff wait: try to connect now (the topology changed)."""
        nudge = self._nudge
        if nudge is not None and not nudge.done():
            nudge.set_result(None)

    async def _connect(self) -> LayerProtocol:
        host, port = self.address.host, self.address.port
        if self.locate is not None:
            host, port = await self.locate()
        elif self.address.master_name:
            host, port = await self._discover_master()
        self.peer = f"{host}:{port}" if self.address.scheme != "unix" else self.address.path
        endpoint = make_endpoint(self.reactor, self.address, host, port, self.settings.connect_timeout)
        proto: LayerProtocol = await endpoint.connect(self.factory).asFuture(self.loop)
        self.last_error = None
        try:
            ready = proto.whenConnected()
            gone = proto.whenDisconnected()
            result, index = await defer.DeferredList([ready, gone], fireOnOneCallback=True,
                                                     consumeErrors=True).asFuture(self.loop)
            if index != 0:
                why = self.last_error or _describe(getattr(proto, "lost_reason", None) or ConnectionError("closed"))
                raise RedisLayerUnavailable(f"connection closed while logging in: {why}")
            if self.address.master_name:
                role = await proto.execute_command("ROLE").asFuture(self.loop)
                if not role or role[0] not in (b"master", "master"):
                    raise RedisLayerUnavailable(f"{host}:{port} is not the master of {self.address.master_name}")
            if self.scripts:
                loads = [proto.execute_command("SCRIPT", "LOAD", s.source) for s in self.scripts]
                await defer.gatherResults(loads, consumeErrors=True).asFuture(self.loop)
        except BaseException:
            self._abort(proto)
            reason = proto.lost_reason
            if reason is not None and not reason.check(ConnectionDone):  # the real cause (TLS, reset)
                raise RedisLayerUnavailable(_describe(reason)) from None
            raise
        return proto

    async def _discover_master(self) -> tuple[str, int]:
        if self._sentinel is None:
            kwargs: dict[str, Any] = {}
            if self.address.sentinel_password:
                kwargs["password"] = self.address.sentinel_password
            self._sentinel = txredisapi.Sentinel(list(self.address.sentinels), **kwargs)
            self._sentinel.discovery_timeout = self.settings.connect_timeout
        host, port = await self._sentinel.discover_master(self.address.master_name).asFuture(self.loop)
        return str(host), int(port)

    def _lost(self, proto: LayerProtocol) -> None:
        """The protocol's connection closed: stop handing it out at once."""
        if self.protocol is proto:
            self.protocol = None
            self.last_error = self.last_error or "connection lost"

    def drop(self, reason: str) -> None:
        """Close the current connection (it reconnects, asking ``locate`` again)."""
        proto = self.protocol
        if proto is not None:
            self.last_error = reason
            self._lost(proto)
            self._abort(proto)

    # -- using it -------------------------------------------------------------------------

    def unavailable(self) -> RedisLayerUnavailable:
        reason = self.last_error or "not connected"
        return RedisLayerUnavailable(f"Redis {self.describe()} is unavailable ({reason}); reconnecting in the background")

    async def get(self) -> LayerProtocol:
        """The connected protocol; wait only for an attempt that has not failed yet.

        Raises:
            RedisLayerUnavailable: the server is down (or the connection is closed).
        """
        proto = self.protocol
        if proto is not None:
            return proto
        if self.closed:
            raise self.unavailable()
        self.start()
        if self.failures or not (self._attempting or self.connects == 0):
            raise self.unavailable()
        await self.wait_ready(self.settings.connect_timeout)
        if self.protocol is None:
            raise self.unavailable()
        return self.protocol

    async def wait_ready(self, timeout: float | None = None) -> None:
        """Wait until connected (readers wait through outages: ``timeout=None``).

        Raises:
            RedisLayerUnavailable: closed; or, with a ``timeout``, not connected in time or the
                attempt failed.
        """
        while self.protocol is None:
            if self.closed:
                raise self.unavailable()
            self.start()
            future = self.loop.create_future()
            self._waiters.append(future)
            try:
                async with asyncio.timeout(timeout):
                    await asyncio.shield(future)
            except TimeoutError:
                raise self.unavailable() from None
            except RedisLayerUnavailable:
                if timeout is not None or self.closed:
                    raise

    def _error(self, proto: LayerProtocol, exc: txredisapi.ResponseError) -> RedisLayerError:
        text = str(exc)
        redirect = RedisRedirect.parse(text)
        if redirect is not None:
            return redirect
        if text.startswith(("READONLY", "MASTERDOWN", "LOADING", "CLUSTERDOWN", "UNBLOCKED")):
            # A replica now (failover), not ready, or the cluster lost this slot: reconnect (a
            # Sentinel or cluster client then finds the new master).
            self.drop(text)
            self._down()
            return self.unavailable()
        return RedisLayerError(f"Redis {self.describe()}: {exc}")

    async def call(self, *args: Any) -> Any:
        """Run one command.

        Raises:
            RedisLayerUnavailable: the server is down.
            RedisRedirect: a cluster node sent the key elsewhere (``MOVED``/``ASK``).
            RedisLayerError: Redis answered with another error.
        """
        return await self.call_on(self.protocol or await self.get(), args)

    async def call_on(self, proto: LayerProtocol, args: tuple[Any, ...]) -> Any:
        """Run one command on ``proto`` (this connection's current or new protocol)."""
        try:
            return await proto.call(args, self.reply_timeout)
        except txredisapi.ResponseError as exc:
            raise self._error(proto, exc) from None
        except txredisapi.ConnectionError as exc:
            self.last_error = _describe(exc)
            raise self.unavailable() from None

    def queue(self, commands: Sequence[tuple[tuple[Any, ...], float]], fn: Callable[[Any], None]) -> LayerProtocol:
        """Queue several commands now (one write at the end of this loop pass), each with its
        own reply timeout; ``fn(reply)`` is called with each reply as it is parsed, or with the
        error (as :meth:`call` raises it) when it is an error reply or the connection is lost.
        ``fn`` must not raise.

        Raises:
            RedisLayerUnavailable: not connected.
        """
        proto = self.protocol
        if proto is None:
            raise self.unavailable()

        def reply(value: Any) -> None:
            if isinstance(value, Exception):
                value = self.convert(proto, value)
            fn(value)

        try:
            for args, timeout in commands:
                proto.call_back(args, timeout, reply)
        except txredisapi.ConnectionError as exc:
            self.last_error = _describe(exc)
            raise self.unavailable() from None
        return proto

    def convert(self, proto: LayerProtocol, exc: Exception) -> Exception:
        """The layer's error for a reply error or a lost connection on ``proto``."""
        if isinstance(exc, txredisapi.ResponseError):
            return self._error(proto, exc)
        if isinstance(exc, txredisapi.ConnectionError):
            self.last_error = _describe(exc)
            return self.unavailable()
        return exc

    async def call_asking(self, *args: Any) -> Any:
        """``ASKING`` then the command, back to back on this connection (a cluster's ``ASK``)."""
        proto = self.protocol or await self.get()
        try:
            asking = proto.call(("ASKING",), self.reply_timeout)
            reply = proto.call(args, self.reply_timeout)
            await asking
            return await reply
        except txredisapi.ResponseError as exc:
            raise self._error(proto, exc) from None
        except txredisapi.ConnectionError as exc:
            self.last_error = _describe(exc)
            raise self.unavailable() from None

    async def evalsha(self, script: Script, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """Run a script by SHA (falling back to EVAL once if the server forgot it)."""
        proto = self.protocol or await self.get()
        try:  # (call_on() inlined: this is every send's path)
            return await proto.call(("EVALSHA", script.sha, len(keys), *keys, *args), self.reply_timeout)
        except txredisapi.ResponseError as exc:
            error = self._error(proto, exc)
            if isinstance(error, (RedisLayerUnavailable, RedisRedirect)) or "NOSCRIPT" not in str(error):
                raise error from None
        except txredisapi.ConnectionError as exc:
            self.last_error = _describe(exc)
            raise self.unavailable() from None
        return await self.call("EVAL", script.source, len(keys), *keys, *args)

    def evalsha_nowait(self, proto: LayerProtocol, script: Script, keys: Sequence[Any], args: Sequence[Any],
                       fn: Callable[[Any], None]) -> None:
        """Queue ``script`` on ``proto`` (connected) without waiting: ``fn(reply)`` gets its reply,
        or the error (as :meth:`call` raises it) when it fails or the connection is lost. A
        ``NOSCRIPT`` is retried once with ``EVAL``. ``fn`` must not raise.

        Raises:
            RedisLayerUnavailable: ``proto`` is no longer connected (nothing was queued).
        """
        command = ("EVALSHA", script.sha, len(keys), *keys, *args)

        def reply(value: Any) -> None:
            if isinstance(value, Exception):
                if isinstance(value, txredisapi.ResponseError) and "NOSCRIPT" in str(value) and proto.connected:
                    proto.call_back(("EVAL", script.source, *command[2:]), self.reply_timeout, converted)
                    return
                value = self.convert(proto, value)
            fn(value)

        def converted(value: Any) -> None:
            fn(self.convert(proto, value) if isinstance(value, Exception) else value)

        try:
            proto.call_back(command, self.reply_timeout, reply)
        except txredisapi.ConnectionError as exc:
            self.last_error = _describe(exc)
            raise self.unavailable() from None


class _Direct:
    """Commands on a connection's new protocol before callers get it (for ``on_ready``)."""

    __slots__ = ("connection", "proto")

    def __init__(self, connection: RedisConnection, proto: LayerProtocol) -> None:
        self.connection = connection
        self.proto = proto

    async def call(self, *args: Any) -> Any:
        return await self.connection.call_on(self.proto, args)

    async def evalsha(self, script: Script, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        try:
            return await self.call("EVALSHA", script.sha, len(keys), *keys, *args)
        except RedisLayerError as exc:
            if isinstance(exc, (RedisLayerUnavailable, RedisRedirect)) or "NOSCRIPT" not in str(exc):
                raise
        return await self.call("EVAL", script.source, len(keys), *keys, *args)


def _describe(exc: BaseException) -> str:
    sub = getattr(exc, "subFailure", None)  # defer.FirstError from gatherResults
    if sub is not None:
        exc = sub.value
    if hasattr(exc, "getErrorMessage"):
        return str(exc.getErrorMessage()).strip()
    return (str(exc) or type(exc).__name__).strip()
