"""Bind a YAML node tree to frozen dataclasses, collecting every problem with its line.

The schema is ordinary frozen dataclasses with type hints. Supported field types: ``str``,
``int``, ``float``, ``bool``, :data:`~gateway.config.units.Size`,
:data:`~gateway.config.units.Duration`, ``Literal[...]``, ``X | None``, ``tuple[X, ...]``,
``Mapping[str, X]``, nested dataclasses, and *variant* dataclasses chosen by a discriminator key
(a base class with a ``variants()`` classmethod and a ``discriminator`` class attribute, as
listeners are chosen by ``protocol``).

Field metadata understood by the binder:

* ``doc``: one line for the configuration reference;
* ``parse``: a callable turning the raw YAML value into the field value (raises
  :class:`~gateway.config.errors.InvalidValue`);
* ``check``: a callable validating the bound value (raises ``InvalidValue``).

A dataclass may also define ``check(self) -> Iterable[tuple[str, str]]`` for rules that involve
several fields; it yields ``(field_name, message)`` pairs.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import yaml

from gateway.config.errors import ConfigProblem, InvalidValue
from gateway.config.units import Duration, Size, parse_duration, parse_size

#: A dataclass with a non-init field of this name gets, by field name, the environment
#: variables its values were read from (see :attr:`gateway.config.schema.ListenerConfig.environment`).
ENVIRONMENT_FIELD = "environment"

#: Returned by :meth:`Binder.bind` when the value was invalid (the problem is already recorded).
INVALID: Any = type("Invalid", (), {"__repr__": lambda self: "<invalid>"})()

_ENV_PATTERN = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_NULL_TAG = "tag:yaml.org,2002:null"
_STR_TAG = "tag:yaml.org,2002:str"


class Binder:
    """Converts YAML nodes into typed values and records problems instead of stopping.

    Args:
        file: the file name used in problem messages.
        environ: the environment used for ``${VAR}`` and ``${VAR:-default}`` interpolation.
    """

    def __init__(self, file: str | None, environ: Mapping[str, str] | None = None) -> None:
        self.file = file
        self.environ = os.environ if environ is None else environ
        self.problems: list[ConfigProblem] = []
        #: The environment variables each interpolated value read, by key path
        #: (``listeners[0].endpoint`` -> ``("GATEWAY_PORT",)``).
        self.variables: dict[str, tuple[str, ...]] = {}
        self._constructor = yaml.SafeLoader("")

    # -- problems ------------------------------------------------------------------------

    def problem(self, path: str, message: str, node: yaml.Node | None) -> None:
        """Record a problem at ``path``, located at ``node``'s line."""
        line = node.start_mark.line + 1 if node is not None else None
        self.problems.append(ConfigProblem(path, message, self.file, line))

    # -- scalars -------------------------------------------------------------------------

    def scalar(self, node: yaml.Node, path: str) -> Any:
        """Return the Python value of a scalar node after environment interpolation."""
        if not isinstance(node, yaml.ScalarNode):
            kind = "a list" if isinstance(node, yaml.SequenceNode) else "a mapping"
            raise InvalidValue(f"expected a single value, got {kind}")
        if "$" not in node.value:
            return self._constructor.construct_object(node, deep=True)
        text, names = self._interpolate(node.value)
        if names:
            self.variables[path] = names
        if node.style is None:
            # A plain scalar: resolve the interpolated text the way YAML would have (so that
            # ``port: ${PORT}`` becomes an int).
            tag = self._constructor.resolve(yaml.ScalarNode, text, (True, False))
            node = yaml.ScalarNode(tag, text, node.start_mark, node.end_mark)
        else:
            node = yaml.ScalarNode(_STR_TAG, text, node.start_mark, node.end_mark, node.style)
        return self._constructor.construct_object(node, deep=True)

    def _interpolate(self, text: str) -> tuple[str, tuple[str, ...]]:
        names: list[str] = []

        def replace(match: re.Match[str]) -> str:
            if match.group(0) == "$$":
                return "$"
            name, default = match.group(1), match.group(2)
            names.append(name)
            value = self.environ.get(name)
            if value is None or (value == "" and default is not None):
                if default is None:
                    raise InvalidValue(
                        f"environment variable {name} is not set (write ${{{name}:-default}} for a default)"
                    )
                return default
            return value

        return _ENV_PATTERN.sub(replace, text), tuple(names)

    # -- binding -------------------------------------------------------------------------

    def bind(self, tp: Any, node: yaml.Node, path: str) -> Any:
        """Bind ``node`` to type ``tp``; on failure record the problem and return ``INVALID``."""
        try:
            return self._bind(tp, node, path)
        except InvalidValue as exc:
            self.problem(path, str(exc), node)
            return INVALID

    def _bind(self, tp: Any, node: yaml.Node, path: str) -> Any:
        origin = get_origin(tp)
        if origin in (Union, types.UnionType):
            options = [a for a in get_args(tp) if a is not type(None)]
            if _is_null(node):
                if len(options) < len(get_args(tp)):
                    return None
                raise InvalidValue("a value is required here")
            if len(options) != 1:
                raise TypeError(f"unsupported union type {tp!r} at {path}")
            return self._bind(options[0], node, path)
        if dataclasses.is_dataclass(tp):
            return self.bind_dataclass(tp, node, path)
        if origin is tuple:
            return self._bind_sequence(get_args(tp)[0], node, path)
        if origin in (dict, Mapping, typing.Mapping):
            return self._bind_mapping(get_args(tp)[1], node, path)
        value = self.scalar(node, path)
        if tp is Size:
            return parse_size(value)
        if tp is Duration:
            return parse_duration(value)
        if origin is Literal:
            allowed = get_args(tp)
            if value in allowed:
                return value
            raise InvalidValue(_choice_message(value, allowed))
        if tp is bool:
            if isinstance(value, bool):
                return value
            raise InvalidValue(f"expected true or false, got {value!r}")
        if tp is int:
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            raise InvalidValue(f"expected an integer, got {value!r}")
        if tp is float:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
            raise InvalidValue(f"expected a number, got {value!r}")
        if tp is str:
            if value is None or isinstance(value, (bool, list, dict)):
                raise InvalidValue(f"expected a string, got {value!r}")
            return value if isinstance(value, str) else node.value
        if tp is Any:
            return value
        raise TypeError(f"unsupported configuration type {tp!r} at {path}")

    def _bind_sequence(self, item_type: Any, node: yaml.Node, path: str) -> tuple[Any, ...]:
        if _is_null(node):
            return ()
        if not isinstance(node, yaml.SequenceNode):
            raise InvalidValue("expected a list")
        items = [self.bind(item_type, item, f"{path}[{i}]") for i, item in enumerate(node.value)]
        if any(item is INVALID for item in items):
            return INVALID
        return tuple(items)

    def _bind_mapping(self, value_type: Any, node: yaml.Node, path: str) -> Mapping[str, Any]:
        if _is_null(node):
            return types.MappingProxyType({})
        if not isinstance(node, yaml.MappingNode):
            raise InvalidValue("expected a mapping of names to values")
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = self._key(key_node, path)
            if key is None:
                continue
            if key in result:
                self.problem(_join(path, key), "duplicate key", key_node)
                continue
            result[key] = self.bind(value_type, value_node, _join(path, key))
        if any(value is INVALID for value in result.values()):
            return INVALID
        return types.MappingProxyType(result)

    def _key(self, key_node: yaml.Node, path: str) -> str | None:
        if isinstance(key_node, yaml.ScalarNode):
            return str(key_node.value)
        self.problem(path, "keys must be plain names", key_node)
        return None

    def bind_dataclass(self, cls: Any, node: yaml.Node, path: str) -> Any:
        """Bind a mapping node to dataclass ``cls`` (or one of its variants)."""
        if _is_null(node):
            node = yaml.MappingNode("tag:yaml.org,2002:map", [], node.start_mark, node.end_mark)
        if not isinstance(node, yaml.MappingNode):
            raise InvalidValue("expected a mapping of keys to values")
        entries: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key_node, value_node in node.value:
            key = self._key(key_node, path)
            if key is None:
                continue
            if key in entries:
                self.problem(_join(path, key), "duplicate key", key_node)
                continue
            entries[key] = (key_node, value_node)
        cls = self._choose_variant(cls, entries, node, path)
        if cls is INVALID:
            return INVALID
        fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
        hints = get_type_hints(cls)
        values: dict[str, Any] = {}
        ok = True
        for key, (key_node, value_node) in entries.items():
            field = fields.get(key)
            if field is None:
                self.problem(_join(path, key), _unknown_key_message(key, fields), key_node)
                ok = False
                continue
            value = self._bind_field(field, hints[field.name], value_node, _join(path, key))
            if value is INVALID:
                ok = False
            else:
                values[key] = value
        for name, field in fields.items():
            if name in values or name in entries:
                continue
            if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
                self.problem(_join(path, name), "this key is required", node)
                ok = False
        if not ok:
            return INVALID
        instance = cls(**values)
        if ENVIRONMENT_FIELD in {f.name for f in dataclasses.fields(cls) if not f.init}:
            read = {key: self.variables[_join(path, key)] for key in values if _join(path, key) in self.variables}
            # A frozen dataclass: the field is not an init argument (nobody sets it in the YAML).
            object.__setattr__(instance, ENVIRONMENT_FIELD, types.MappingProxyType(read))
        check = getattr(instance, "check", None)
        if callable(check):
            for field_name, message in check():
                located = entries.get(field_name, (node, node))[0]
                self.problem(_join(path, field_name) if field_name else path, message, located)
                ok = False
        return instance if ok else INVALID

    def _bind_field(self, field: dataclasses.Field[Any], tp: Any, node: yaml.Node, path: str) -> Any:
        parse = field.metadata.get("parse")
        try:
            value = parse(self.scalar(node, path)) if parse else self._bind(tp, node, path)
            check = field.metadata.get("check")
            if check is not None and value is not INVALID and value is not None:
                check(value)
            return value
        except InvalidValue as exc:
            self.problem(path, str(exc), node)
            return INVALID

    def _choose_variant(
        self, cls: Any, entries: dict[str, tuple[yaml.Node, yaml.Node]], node: yaml.Node, path: str
    ) -> Any:
        variants = getattr(cls, "variants", None)
        key = getattr(cls, "discriminator", None)
        if variants is None or key is None:
            return cls
        options: dict[str, Any] = variants()
        if key not in entries:
            self.problem(_join(path, key), f"this key is required (one of: {', '.join(options)})", node)
            return INVALID
        value_node = entries[key][1]
        try:
            name = self.scalar(value_node, _join(path, key))
        except InvalidValue as exc:
            self.problem(_join(path, key), str(exc), value_node)
            return INVALID
        chosen = options.get(name) if isinstance(name, str) else None
        if chosen is None:
            self.problem(_join(path, key), _choice_message(name, tuple(options)), value_node)
            return INVALID
        return chosen


def _is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == _NULL_TAG


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _choice_message(value: Any, allowed: tuple[Any, ...]) -> str:
    text = ", ".join(repr(a) if not isinstance(a, str) else a for a in allowed)
    message = f"{value!r} is not one of: {text}"
    if isinstance(value, str):
        close = difflib.get_close_matches(value, [a for a in allowed if isinstance(a, str)], n=1)
        if close:
            message += f" (did you mean {close[0]!r}?)"
    return message


def _unknown_key_message(key: str, fields: Mapping[str, Any]) -> str:
    close = difflib.get_close_matches(key, list(fields), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown key{hint}; allowed keys: {', '.join(sorted(fields))}"
