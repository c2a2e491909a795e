"""gateway._compat.h2: a released h2 connection is freed by reference counting."""

from __future__ import annotations

import gc
import weakref

import h2.config
import h2.connection

from gateway._compat.h2 import release_connection


def test_a_released_connection_is_freed_without_the_garbage_collector() -> None:
    connection = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    connection.initiate_connection()
    assert isinstance(connection._frame_dispatch_table, dict)  # the private attribute this relies on
    ref = weakref.ref(connection)
    enabled = gc.isenabled()
    gc.disable()
    try:
        release_connection(connection)
        del connection
        assert ref() is None
    finally:
        if enabled:
            gc.enable()
