"""Speed-ups that rely on private internals of Twisted and asyncio, kept in one place.

Each module says which internals it reads or overrides. ``tests/unit/compat/`` checks every one
of those assumptions against the installed versions (the attribute or method exists and behaves
as assumed), so an upgrade that breaks one fails there by name, not somewhere downstream as a
slow or hung connection; ``setup.cfg`` bounds the versions these were checked with.

* :mod:`gateway._compat.tcp`: writing straight to a TCP/UNIX socket when Twisted's buffer is
  empty; the write buffer's pause threshold; whether output is still buffered.
* :mod:`gateway._compat.asyncio_reactor`: Twisted's asyncio reactor without the legacy log
  context per socket event, sweeping cancelled timers; the loop under a reactor.
"""
