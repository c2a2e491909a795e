"""Uses of private internals of Twisted, asyncio or autobahn, each in one place.

Every helper here depends on something its library does not promise; each has a test in
``tests/unit/compat/`` that fails loudly when the assumption breaks, so an upgrade shows at once
what to change.
"""
