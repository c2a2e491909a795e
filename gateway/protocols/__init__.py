"""Protocol implementations: one package per protocol, each split into a sans-IO wire core,
an ASGI core and a thin Twisted adapter (see ``docs/architecture.md``)."""
