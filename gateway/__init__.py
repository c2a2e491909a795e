"""gateway: a Twisted-based, multi-protocol ASGI gateway daemon."""

__version__ = "0.1.0"

__all__ = ["__version__"]
