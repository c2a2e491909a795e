"""Configuration: one YAML file into typed, immutable objects, with every error located.

    >>> config = load_config("conf/gateway.yaml")   # raises ConfigError listing all problems

See ``docs/configuration.md`` for every key.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from gateway.config.binder import INVALID, Binder
from gateway.config.errors import ConfigError, ConfigProblem, InvalidValue
from gateway.config.schema import (
    DJANGO_APPLICATION,
    DjangoConfig,
    GatewayConfig,
    LayerConfig,
    ListenerConfig,
    LoggingConfig,
    MemoryLayerConfig,
    RedisLayerConfig,
    TimeoutsConfig,
)
from gateway.config.units import Duration, Size
from gateway.config.yamlerrors import explain


def load_config(
    path: str | os.PathLike[str],
    *,
    environ: Mapping[str, str] | None = None,
    import_applications: bool = True,
) -> GatewayConfig:
    """Read and validate a configuration file.

    Args:
        path: the YAML file.
        environ: environment for ``${VAR}`` interpolation (default: ``os.environ``).
        import_applications: also import every ``module:attribute`` application reference, so
            a typo is reported now with its line rather than when the daemon starts.

    Raises:
        ConfigError: listing every problem found, each with file, line and key path.
    """
    name = os.fspath(path)
    try:
        text = Path(name).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([ConfigProblem("", f"cannot read the configuration: {exc.strerror or exc}", name)]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([ConfigProblem("", f"the configuration is not UTF-8 text: {exc}", name)]) from None
    return load_config_text(text, name, environ=environ, import_applications=import_applications)


def read_loop_kind(path: str | os.PathLike[str], *, environ: Mapping[str, str] | None = None) -> str:
    """The ``loop`` a configuration file asks for (``asyncio`` or ``uvloop``), read without
    validating the rest or importing anything, so that the entry points can install the reactor
    before anything imports an application. A file that cannot be read, or a value that is not a
    loop, gives ``asyncio``; :func:`load_config` reports the problem afterwards."""
    try:
        root = yaml.compose(Path(os.fspath(path)).read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
        node = _find_node(root, "loop") if root is not None else None
        if not isinstance(node, yaml.ScalarNode):
            return "asyncio"
        value = Binder(os.fspath(path), environ).scalar(node, "loop")
    except (OSError, UnicodeDecodeError, yaml.YAMLError, InvalidValue):
        return "asyncio"
    return "uvloop" if value == "uvloop" else "asyncio"


def load_config_text(
    text: str,
    filename: str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    import_applications: bool = True,
) -> GatewayConfig:
    """Validate configuration given as text (see :func:`load_config`)."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        line, message = explain(exc)
        raise ConfigError([ConfigProblem("", f"not valid YAML: {message}", filename, line)]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([ConfigProblem("", f"not valid YAML: {exc}", filename)]) from None
    if node is None:
        raise ConfigError([ConfigProblem("", "the configuration is empty", filename, 1)])
    binder = Binder(filename, environ)
    config = binder.bind(GatewayConfig, node, "")
    if config is not INVALID and import_applications:
        _check_applications(config, node, binder)
    if binder.problems or config is INVALID:
        raise ConfigError(binder.problems)
    return config


def _check_applications(config: GatewayConfig, root: yaml.Node, binder: Binder) -> None:
    from gateway.asgi.app import ApplicationLoadError, import_application

    references: list[tuple[str, str]] = []
    if config.application:
        references.append(("application", config.application))
    for index, listener in enumerate(config.listeners):
        if listener.application:
            references.append((f"listeners[{index}].application", listener.application))
        elif listener.protocol != "admin" and config.application_for(listener) == DJANGO_APPLICATION:
            entry = ("django" if config.django else "application", DJANGO_APPLICATION)
            if entry not in references:
                references.append(entry)
    if references:
        config.use_django_settings()
    for path, reference in references:
        try:
            import_application(reference)
        except ApplicationLoadError as exc:
            binder.problem(path, str(exc), _find_node(root, path))


def _find_node(root: yaml.Node, path: str) -> yaml.Node | None:
    """Find the value node at a dotted/indexed path such as ``listeners[2].application``."""
    node: Any = root
    for part in path.replace("[", ".[").split("."):
        if not part:
            continue
        if part.startswith("["):
            index = int(part[1:-1])
            if not isinstance(node, yaml.SequenceNode) or index >= len(node.value):
                return None
            node = node.value[index]
        else:
            if not isinstance(node, yaml.MappingNode):
                return None
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.value == part:
                    node = value
                    break
            else:
                return None
    return node


__all__ = [
    "ConfigError",
    "DjangoConfig",
    "ConfigProblem",
    "Duration",
    "GatewayConfig",
    "InvalidValue",
    "LayerConfig",
    "ListenerConfig",
    "LoggingConfig",
    "MemoryLayerConfig",
    "RedisLayerConfig",
    "Size",
    "TimeoutsConfig",
    "load_config",
    "load_config_text",
    "read_loop_kind",
]
