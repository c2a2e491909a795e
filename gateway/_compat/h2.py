"""The ``h2`` library's connection freed by reference counting.

``h2.connection.H2Connection`` keeps a dispatch table of its own bound methods
(``_frame_dispatch_table``, private), a reference cycle: every closed HTTP/2 connection would wait
for the cyclic garbage collector, whose full collections then walk thousands of dead connections
under churn (the pauses the HTTP/1.1 adapter avoids the same way). Once a connection is over, the
table is dropped and the connection goes with its last reference.
"""

from __future__ import annotations

from typing import Any

__all__ = ["release_connection"]


def release_connection(connection: Any) -> None:
    """Break the connection's reference cycle (it must not receive frames afterwards)."""
    connection._frame_dispatch_table = None
