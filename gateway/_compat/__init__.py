"""Uses of private internals of Twisted, asyncio, autobahn or h2/hpack/hyperframe, each in one place.

Every helper here depends on something its library does not promise, and each module says which
internals it reads or overrides. ``tests/unit/compat/`` checks every one of those assumptions
against the installed versions (the attribute or method exists and behaves as assumed), so an
upgrade that breaks one fails there by name, not somewhere downstream as a slow or hung
connection; ``setup.cfg`` bounds the versions these were checked with.

* :mod:`gateway._compat.tcp`: writing straight to a TCP/UNIX socket when Twisted's buffer is
  empty; the write buffer's pause threshold; whether output is still buffered.
* :mod:`gateway._compat.asyncio_reactor`: Twisted's asyncio reactor without the legacy log
  context per socket event, sweeping cancelled timers; the loop under a reactor.
* :mod:`gateway._compat.h2`: an ``h2`` connection's reference cycle broken when it is over;
  cheaper HPACK coders, a one-pass (and remembered) inbound header validation in front of
  ``h2``'s, no copy of a plain response header list, and ``hyperframe``'s frame serialisation
  with fewer Python calls.
* :mod:`gateway._compat.twisted_ports`: listening ports and TLS (an ``ssl:`` endpoint's context
  factory, whether a TLS handshake finished, a port's logger).
"""
