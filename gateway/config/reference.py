"""Generate the configuration reference (``docs/configuration.md``) from the schema itself.

    python -m gateway.config.reference > docs/configuration.md

A test compares the file with this output, so the reference cannot drift from the code.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterator, Mapping
from types import MappingProxyType, UnionType
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from gateway.config.schema import GatewayConfig, LayerConfig, ListenerConfig
from gateway.config.units import Duration, Size, format_duration, format_size

INTRO = """\
# Configuration reference

One YAML file describes the daemon (`gateway run -c FILE`, `twistd -n gateway -c FILE`,
`gateway check-config FILE`). Unknown keys are errors; every error names the file, the line and
the key path, and all of them are reported at once.

* Sizes: `1024`, `64KiB`, `10MiB`, `1GiB` (or decimal `kB`, `MB`, `GB`).
* Durations: `500ms`, `10s`, `5m`, `1h`, `1d`, or a number of seconds.
* `${VAR}` and `${VAR:-default}` are replaced from the environment; `$$` is a literal `$`.
* Endpoints are Twisted endpoint strings: `tcp:8000:interface=127.0.0.1`,
  `tcp6:8000:interface=\\:\\:1`, `ssl:8443:privateKey=key.pem:certKey=cert.pem`,
  `unix:/run/gateway/web.sock:mode=660`, `systemd:domain=INET:index=0` (socket activation).

This file is generated from the schema: `python -m gateway.config.reference > docs/configuration.md`.
"""


def type_name(tp: Any) -> str:
    """A short, readable name for a field type."""
    origin = get_origin(tp)
    if tp is Size:
        return "size"
    if tp is Duration:
        return "duration"
    if origin in (Union, UnionType):
        options = [a for a in get_args(tp) if a is not type(None)]
        return " or ".join(type_name(o) for o in options) + " or null"
    if origin is Literal:
        return " \\| ".join(f"`{a}`" for a in get_args(tp))
    if origin is tuple:
        return f"list of {type_name(get_args(tp)[0])}"
    if origin in (dict, Mapping):
        return f"mapping of {type_name(get_args(tp)[1])}"
    if dataclasses.is_dataclass(tp):
        return "mapping (below)"
    return getattr(tp, "__name__", str(tp))


def default_text(field: dataclasses.Field[Any], tp: Any) -> str:
    """The default value as it would be written in YAML."""
    if field.default is not dataclasses.MISSING:
        value = field.default
    elif field.default_factory is not dataclasses.MISSING:
        value = field.default_factory()
    else:
        return "required"
    if dataclasses.is_dataclass(value):
        return "see below"
    if value is None:
        return "`null`"
    if value == "":
        return '`""`'
    if tp is Size or get_args(tp) and Size in get_args(tp):
        return f"`{format_size(value)}`"
    if tp is Duration or get_args(tp) and Duration in get_args(tp):
        return f"`{format_duration(value)}`"
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, (tuple, list)):
        return "`[" + ", ".join(str(v) for v in value) + "]`"
    if isinstance(value, (dict, MappingProxyType)):
        return "`{}`" if not value else f"`{dict(value)}`"
    return f"`{value}`"


def section(title: str, cls: Any, prefix: str, level: int = 2) -> Iterator[str]:
    """Markdown for one dataclass and, recursively, its nested dataclasses."""
    yield f"{'#' * level} {title}"
    yield ""
    doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
    if doc:
        yield doc
        yield ""
    yield "| key | type | default | meaning |"
    yield "|---|---|---|---|"
    hints = get_type_hints(cls)
    nested = []
    for field in dataclasses.fields(cls):
        if not field.init:
            continue
        tp = hints[field.name]
        yield (f"| `{prefix}{field.name}` | {field.metadata.get('type') or type_name(tp)} | {default_text(field, tp)} | "
               f"{field.metadata.get('doc', '')} |")
        inner = tp
        if get_origin(tp) is tuple:
            inner = get_args(tp)[0]
        elif get_origin(tp) in (Union, UnionType):  # X | None: a section that may be null
            options = [arg for arg in get_args(tp) if arg is not type(None)]
            inner = options[0] if len(options) == 1 else tp
        if dataclasses.is_dataclass(inner) and not hasattr(inner, "variants"):
            nested.append((field.name, inner))
    yield ""
    for name, inner in nested:
        yield from section(f"`{prefix}{name}`", inner, f"{prefix}{name}.", level + 1)


def render() -> str:
    """The whole reference."""
    lines = [INTRO, ""]
    lines += list(section("Top level", GatewayConfig, ""))
    lines.append("## Listeners")
    lines.append("")
    lines.append("Each entry of `listeners` has the keys below plus those of its protocol.")
    lines.append("")
    lines += list(section("Keys of every listener", ListenerConfig, "", 3))
    base = {f.name for f in dataclasses.fields(ListenerConfig)}
    for name, cls in sorted(ListenerConfig.variants().items()):
        lines += list(_variant(f"`protocol: {name}`", cls, base, 3))
    lines.append("## Channel layers")
    lines.append("")
    lines.append("`layers` maps an alias (`default` is the one consumers use) to a layer.")
    lines.append("")
    lines.append("With a Django project (`django.settings`, or the `DJANGO_SETTINGS_MODULE` environment variable),")
    lines.append("the aliases of its `CHANNEL_LAYERS` setting are added, Channels' and channels_redis' `BACKEND`")
    lines.append("paths naming the gateway's layers. **When both name an alias, the YAML entry wins**: the")
    lines.append("file is the deployment's, the setting the project's (see [django.md](django.md)).")
    lines.append("")
    lines += list(section("Keys of every layer", LayerConfig, "", 3))
    base = {f.name for f in dataclasses.fields(LayerConfig)}
    for name, layer_class in sorted(LayerConfig.variants().items()):
        lines += list(_variant(f"`backend: {name}`", layer_class, base, 3))
    return "\n".join(lines).rstrip() + "\n"


def _variant(title: str, cls: Any, base: set[str], level: int) -> Iterator[str]:
    own = [f for f in dataclasses.fields(cls) if f.name not in base and f.init]
    if not own:
        yield f"{'#' * level} {title}"
        yield ""
        yield (cls.__doc__ or "").strip().splitlines()[0] + " No further keys."
        yield ""
        return

    # A view of the variant with only its own fields (the shared ones are listed once above).
    hints = get_type_hints(cls)
    view = dataclasses.make_dataclass(
        cls.__name__, [(f.name, hints[f.name], f) for f in own], namespace={"__doc__": cls.__doc__}, kw_only=True
    )
    yield from section(title, view, "", level)


if __name__ == "__main__":  # pragma: no cover
    sys.stdout.write(render())
