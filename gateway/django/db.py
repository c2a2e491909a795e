"""Django's database from async code: ``database_sync_to_async`` (Channels' ``channels.db``).

A thread that served one request may hold a database connection that is too old
(``CONN_MAX_AGE``) or broken by then; Django closes such connections at the start and end of
each request. Consumer code has no requests, so :func:`database_sync_to_async` does it around
every call, as Channels does, and :class:`~gateway.consumers.SyncConsumer` handlers do it around
each handler once this module is imported (``gateway.django`` in ``INSTALLED_APPS``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from asgiref.sync import SyncToAsync, sync_to_async

from gateway.consumers.threads import sync_handler_hooks

__all__ = [
    "DatabaseSyncToAsync",
    "aclose_old_connections",
    "close_old_connections",
    "connections_kept",
    "database_sync_to_async",
]

_kept = 0
_kept_lock = threading.Lock()


def close_old_connections() -> None:
    """Close this thread's database connections that are unusable or past ``CONN_MAX_AGE``.

    Does nothing while :func:`connections_kept` is active (the test communicators keep the
    connections of a ``TestCase`` transaction open, as Channels' do).
    """
    if _kept:
        return
    from django.conf import settings

    if not settings.configured:  # gateway.django imported in a process without a Django project
        return
    from django.db import close_old_connections as django_close_old_connections

    django_close_old_connections()


@contextmanager
def connections_kept() -> Iterator[None]:
    """While active, :func:`close_old_connections` closes nothing (nestable, thread-safe)."""
    global _kept
    with _kept_lock:
        _kept += 1
    try:
        yield
    finally:
        with _kept_lock:
            _kept -= 1


class DatabaseSyncToAsync(SyncToAsync):
    """``sync_to_async`` that closes stale database connections before and after the call."""

    def thread_handler(self, loop: Any, *args: Any, **kwargs: Any) -> Any:
        close_old_connections()
        try:
            return super().thread_handler(loop, *args, **kwargs)
        finally:
            close_old_connections()


#: The decorator / wrapper Channels users know (thread-sensitive by default, as asgiref's).
database_sync_to_async = DatabaseSyncToAsync


async def aclose_old_connections() -> None:
    """:func:`close_old_connections` from async code."""
    await sync_to_async(close_old_connections)()


if close_old_connections not in sync_handler_hooks:
    sync_handler_hooks.append(close_old_connections)
