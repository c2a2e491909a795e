"""Channel layer configuration: backends by name, layers by alias.

The YAML section ::

    layers:
      default: {backend: memory, capacity: 100, expiry: 60, group_expiry: 86400,
                channel_capacity: {"http.request": 200}}
      events:  {backend: redis, hosts: ["redis://127.0.0.1:6379/0"]}

is handed, as a plain mapping, to :func:`configure_layers` (or :meth:`LayerRegistry.configure`).
Each alias names a ``backend`` (a registered name such as ``memory``, or an import path
``pkg.module:Class`` / ``pkg.module.Class``) and that backend's options. Channels-style entries
(``{"BACKEND": "...", "CONFIG": {...}}``) are accepted too, to ease porting.

Each :class:`LayerRegistry` builds its layers when configured. A ``GatewayService`` owns the
registry it builds from its configuration: its applications see that registry (two services in
one process do not share layers), and it closes the layers when it stops.

:func:`get_channel_layer` (Channels' function, for user code) returns the layer of the *current*
registry, which is, in order: the one bound to the running context (every application instance a
service starts runs bound to the service's registry; :meth:`LayerRegistry.using` binds one in
tests and scripts), the registry of the most recently started service that is still running,
else a process-wide registry that :func:`configure_layers` configures (``gateway worker`` and
``gateway send`` use that one). Until it is configured, its alias ``default`` is an in-memory
layer with default options; ``configure_layers({})`` leaves no layer configured, and consumers
then run without one.
"""

from __future__ import annotations

import dataclasses
import importlib
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from gateway.exceptions import InvalidChannelLayerError
from gateway.layers.base import BaseChannelLayer

__all__ = [
    "BACKENDS",
    "DEFAULT_CHANNEL_LAYER",
    "LayerRegistry",
    "backend_options",
    "channel_layers",
    "configure_layers",
    "current_registry",
    "get_channel_layer",
    "import_backend",
    "register_backend",
]

DEFAULT_CHANNEL_LAYER = "default"

#: Backend names and the import paths of their classes. Another module (the Redis layer) adds
#: itself with :func:`register_backend`, or is listed here by path so it loads only when used.
BACKENDS: dict[str, str] = {
    "memory": "gateway.layers.memory:InMemoryChannelLayer",
    "redis": "gateway.layers.redis:RedisChannelLayer",
    # Channels' and channels_redis' BACKEND paths, so a CHANNEL_LAYERS setting ports unchanged
    # (the pub/sub layer's options are a subset of the Redis layer's).
    "channels.layers.InMemoryChannelLayer": "gateway.layers.memory:InMemoryChannelLayer",
    "channels_redis.core.RedisChannelLayer": "gateway.layers.redis:RedisChannelLayer",
    "channels_redis.pubsub.RedisPubSubChannelLayer": "gateway.layers.redis:RedisChannelLayer",
}

_DEFAULT_CONFIG: dict[str, dict[str, Any]] = {DEFAULT_CHANNEL_LAYER: {"backend": "memory"}}


def register_backend(name: str, import_path: str) -> None:
    """Make ``backend: <name>`` load the class at ``import_path`` (``pkg.mod:Class``)."""
    BACKENDS[name] = import_path


def import_backend(backend: str) -> type:
    """The class for a backend name or import path.

    Raises:
        InvalidChannelLayerError: unknown name, or the path does not import.
    """
    path = BACKENDS.get(backend, backend)
    if ":" in path:
        module_name, _, attr = path.partition(":")
    elif "." in path:
        module_name, _, attr = path.rpartition(".")
    else:
        known = ", ".join(sorted(BACKENDS))
        raise InvalidChannelLayerError(
            f"unknown channel layer backend {backend!r}; use one of {known} or an import path"
        )
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise InvalidChannelLayerError(
            f"cannot import channel layer backend {backend!r} ({path}): {exc}"
        ) from None
    return obj


def backend_options(backend: str) -> type | None:
    """The options dataclass a backend declares (``options_class``), or ``None``.

    The config loader can use it to validate types and list the accepted keys.
    """
    cls = import_backend(backend)
    options = getattr(cls, "options_class", None)
    return options if isinstance(options, type) and dataclasses.is_dataclass(options) else None


def _normalise(alias: str, entry: Any) -> tuple[str, dict[str, Any]]:
    """Split one alias's entry into (backend, options); raise on shape errors."""
    if not isinstance(alias, str) or not alias:
        raise InvalidChannelLayerError(f"layer alias must be a non-empty string, got {alias!r}")
    if not isinstance(entry, Mapping):
        raise InvalidChannelLayerError(f"layers.{alias}: expected a mapping, got {entry!r}")
    if "BACKEND" in entry:  # Channels' CHANNEL_LAYERS shape
        extra = set(entry) - {"BACKEND", "CONFIG", "TEST_CONFIG"}
        if extra:
            raise InvalidChannelLayerError(f"layers.{alias}: unknown keys {sorted(extra)}")
        config = entry.get("CONFIG") or {}
        if not isinstance(config, Mapping):
            raise InvalidChannelLayerError(f"layers.{alias}.CONFIG: expected a mapping")
        return str(entry["BACKEND"]), dict(config)
    if "backend" not in entry:
        raise InvalidChannelLayerError(f"layers.{alias}: missing 'backend' (e.g. backend: memory)")
    options = {k: v for k, v in entry.items() if k != "backend"}
    return str(entry["backend"]), options


def _check_options(alias: str, backend: str, options: dict[str, Any]) -> None:
    fields_ = backend_options(backend)
    if fields_ is None:
        return
    accepted = {f.name for f in dataclasses.fields(fields_)}
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise InvalidChannelLayerError(
            f"layers.{alias}: unknown option(s) {', '.join(unknown)} for backend {backend!r}; "
            f"accepted: {', '.join(sorted(accepted))}"
        )


class LayerRegistry:
    """Channel layers by alias, built lazily from a configuration mapping (thread-safe)."""

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        self._lock = threading.Lock()
        self._config: dict[str, tuple[str, dict[str, Any]]] = {}
        self._layers: dict[str, BaseChannelLayer] = {}
        #: Raw entries by alias (for Channels' TEST_CONFIG); with ``lazy=True``, the aliases not
        #: parsed yet are also in ``_pending``.
        self._entries: dict[str, Any] = {}
        self._pending: dict[str, Any] = {}
        self.configure(_DEFAULT_CONFIG if config is None else config)
        #: False while the registry holds its built-in default (``gateway.django`` then applies
        #: Django's ``CHANNEL_LAYERS``); True once something configured it.
        self.configured = config is not None

    def configure(self, config: Mapping[str, Any], *, lazy: bool = False) -> None:
        """Replace the configuration with ``config`` (``{alias: {backend: ..., **options}}``).

        Every alias is checked (backend importable, option names known) and its layer built
        (constructors validate values; none may do I/O) before anything is replaced, so a bad
        configuration leaves the old one in place. Layers of the old configuration are dropped,
        not closed: call :meth:`close_all` first if they hold connections.

        With ``lazy=True`` (Django's ``CHANNEL_LAYERS``, as Channels reads it) nothing is checked
        or built now: each alias is built on first use, which raises its problem then.

        Raises:
            InvalidChannelLayerError: listing every problem found, one per line.
        """
        if not isinstance(config, Mapping):
            raise InvalidChannelLayerError(f"layers: expected a mapping, got {config!r}")
        if lazy:
            self.configured = True
            with self._lock:
                self._config = {}
                self._layers = {}
                self._entries = dict(config)
                self._pending = dict(config)
            return
        parsed: dict[str, tuple[str, dict[str, Any]]] = {}
        built: dict[str, BaseChannelLayer] = {}
        errors: list[str] = []
        for alias, entry in config.items():
            try:
                backend, options = _normalise(alias, entry)
                _check_options(alias, backend, options)
                built[alias] = import_backend(backend)(**options)  # constructor validates
            except InvalidChannelLayerError as exc:
                errors.append(str(exc))
                continue
            except (TypeError, ValueError) as exc:
                errors.append(f"layers.{alias}: {exc}")
                continue
            parsed[alias] = (backend, options)
        if errors:
            raise InvalidChannelLayerError("\n".join(errors))
        with self._lock:
            self._config = parsed
            self._layers = built
            self._entries = dict(config)
            self._pending = {}
        self.configured = True

    @property
    def aliases(self) -> list[str]:
        """The configured aliases."""
        return list(dict.fromkeys([*self._config, *self._pending]))

    @property
    def backends(self) -> dict[str, BaseChannelLayer]:
        """The layers built so far, by alias (Channels' ``channel_layers.backends``)."""
        return dict(self._layers)

    def __contains__(self, alias: object) -> bool:
        return alias in self._config or alias in self._pending

    def _parsed(self, alias: str) -> tuple[str, dict[str, Any]]:
        found = self._config.get(alias)
        if found is not None:
            return found
        if alias not in self._pending:
            raise InvalidChannelLayerError(f"no channel layer configured for alias {alias!r}")
        backend, options = _normalise(alias, self._pending[alias])
        _check_options(alias, backend, options)
        return backend, options

    def make_backend(self, alias: str) -> BaseChannelLayer:
        """Build a new layer for ``alias`` (not cached)."""
        backend, options = self._parsed(alias)
        return import_backend(backend)(**options)

    def make_test_backend(self, alias: str) -> BaseChannelLayer:
        """Build a layer for ``alias`` from its Channels-style ``TEST_CONFIG`` options.

        Raises:
            InvalidChannelLayerError: the alias has no ``TEST_CONFIG``.
        """
        backend, _ = self._parsed(alias)
        entry = self._entries.get(alias)
        if not isinstance(entry, Mapping) or not isinstance(entry.get("TEST_CONFIG"), Mapping):
            raise InvalidChannelLayerError(f"No TEST_CONFIG specified for {alias}")
        return import_backend(backend)(**entry["TEST_CONFIG"])

    def __getitem__(self, alias: str) -> BaseChannelLayer:
        layer = self._layers.get(alias)
        if layer is None:
            with self._lock:
                layer = self._layers.get(alias)
                if layer is None:
                    layer = self._layers[alias] = self.make_backend(alias)
        return layer

    def get(self, alias: str = DEFAULT_CHANNEL_LAYER) -> BaseChannelLayer | None:
        """The layer for ``alias``, or ``None`` when that alias is not configured."""
        if alias not in self:
            return None
        return self[alias]

    def set(self, alias: str, layer: BaseChannelLayer | None) -> BaseChannelLayer | None:
        """Install ``layer`` under ``alias`` (tests swap layers this way); return the old one.

        ``None`` removes the alias.
        """
        with self._lock:
            old = self._layers.pop(alias, None)
            if layer is None:
                self._config.pop(alias, None)
                self._pending.pop(alias, None)
            else:
                self._config.setdefault(alias, (type(layer).__module__ + ":" + type(layer).__qualname__, {}))
                self._layers[alias] = layer
        return old

    async def close_all(self) -> None:
        """Close every built layer (``close()``), e.g. at daemon shutdown."""
        for layer in list(self._layers.values()):
            await layer.close()

    # -- which registry get_channel_layer() sees --------------------------------------------

    def activate(self) -> None:
        """Make this registry the process's current one until :meth:`deactivate` (a service
        does this while it runs). The most recently activated registry wins; a registry bound
        to the running context (:meth:`using`, :meth:`bind_application`) wins over all."""
        with _active_lock:
            if self not in _active:
                _active.append(self)

    def deactivate(self) -> None:
        """Undo :meth:`activate` (a no-op if it is not active)."""
        with _active_lock:
            if self in _active:
                _active.remove(self)

    @contextmanager
    def active(self) -> Iterator[LayerRegistry]:
        """:meth:`activate` for the ``with`` block (tests: a registry of the test's own that
        application communicators, which run applications in an empty context, see)."""
        self.activate()
        try:
            yield self
        finally:
            self.deactivate()

    @contextmanager
    def using(self) -> Iterator[LayerRegistry]:
        """Bind this registry to the running context for the ``with`` block: code in it, and
        asyncio tasks (``asyncio.run``) started from it, see this registry's layers."""
        token = _bound.set(self)
        try:
            yield self
        finally:
            _bound.reset(token)

    def bind_application(self, application: Any) -> Any:
        """``application`` wrapped so that each call runs with this registry bound."""
        return _BoundApplication(application, self)


class _BoundApplication:
    """An ASGI application run with a layer registry bound to its instance's context."""

    __slots__ = ("application", "registry")

    def __init__(self, application: Any, registry: LayerRegistry) -> None:
        self.application = application
        self.registry = registry

    async def __call__(self, scope: Any, receive: Any, send: Any) -> Any:
        token = _bound.set(self.registry)  # this task's context (and tasks the instance starts)
        try:
            return await self.application(scope, receive, send)
        finally:
            _bound.reset(token)

    def __getattr__(self, name: str) -> Any:  # matches(), lifespan attributes...
        return getattr(self.application, name)

    def __repr__(self) -> str:
        return f"<{self.application!r} with its service's channel layers>"


_bound: ContextVar[LayerRegistry | None] = ContextVar("gateway_layer_registry", default=None)
_active: list[LayerRegistry] = []
_active_lock = threading.Lock()
_process_lock = threading.Lock()
_process: LayerRegistry | None = None


def _process_registry() -> LayerRegistry:
    global _process
    if _process is None:
        with _process_lock:
            if _process is None:
                _process = LayerRegistry()
    return _process


def current_registry() -> LayerRegistry:
    """The registry :func:`get_channel_layer` uses here (see the module documentation)."""
    bound = _bound.get()
    if bound is not None:
        return bound
    if _active:
        return _active[-1]
    return _process_registry()


class _CurrentRegistry:
    """``channel_layers``: Channels' name for the layers, forwarding to :func:`current_registry`."""

    def __getattr__(self, name: str) -> Any:
        return getattr(current_registry(), name)

    def __getitem__(self, alias: str) -> BaseChannelLayer:
        return current_registry()[alias]

    def __contains__(self, alias: object) -> bool:
        return alias in current_registry()

    def __repr__(self) -> str:
        return f"<channel_layers: {current_registry()!r}>"


#: The current registry (Channels' ``channel_layers``), whichever it is at the time of use.
channel_layers: Any = _CurrentRegistry()


def configure_layers(config: Mapping[str, Any]) -> LayerRegistry:
    """Configure the current registry from the YAML ``layers`` mapping; return it.

    Outside a service that is the process-wide registry (``gateway worker``, ``gateway send``,
    scripts).
    """
    registry = current_registry()
    registry.configure(config)
    return registry


def get_channel_layer(alias: str = DEFAULT_CHANNEL_LAYER) -> BaseChannelLayer | None:
    """The current registry's layer for ``alias``, or ``None`` if it is not configured (as
    Channels)."""
    return current_registry().get(alias)
