"""Loading ASGI applications from ``module:attribute`` references.

ASGI 3 single callables are used as they are; ASGI 2 double callables (a class or function that
takes the scope and returns a coroutine function of ``receive, send``) are wrapped with asgiref's
``guarantee_single_callable``, as Daphne and Uvicorn do.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from asgiref.compatibility import guarantee_single_callable

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class ApplicationLoadError(Exception):
    """An application reference cannot be imported; the message says why."""


def import_application(reference: str) -> Any:
    """Import the object named by ``module:attribute`` (the attribute may be dotted).

    Raises:
        ApplicationLoadError: the module or attribute does not exist, or importing failed.
    """
    module_name, sep, attribute = reference.partition(":")
    if not sep or not module_name or not attribute:
        raise ApplicationLoadError(f"expected 'module:attribute', got {reference!r}")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise ApplicationLoadError(f"cannot import module {module_name!r}: no module named {exc.name!r}") from None
        raise ApplicationLoadError(f"importing {module_name!r} failed: {exc}") from exc
    except Exception as exc:
        raise ApplicationLoadError(f"importing {module_name!r} failed: {type(exc).__name__}: {exc}") from exc
    target: Any = module
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ApplicationLoadError(f"module {module_name!r} has no attribute {attribute!r}") from None
    if not callable(target):
        raise ApplicationLoadError(f"{reference!r} is not callable, so it is not an ASGI application")
    return target


def load_application(reference: str) -> ASGIApp:
    """Import an application and return it as an ASGI 3 single callable."""
    return guarantee_single_callable(import_application(reference))
