"""Declarative field specs for the reproducer JSON: each key's type and bounds, declared once per step type.

A step type lists its JSON keys as ``Key``\\ s (a ``Spec`` and a default);
``parse_object`` checks an op against them -- the type of every value, its
range, required keys, and (strict, format version 2) no unknown keys -- and
``dump_object`` writes the values back.  Bounds are the widths of the real
fields they end up in: a descriptor's ``addr`` is a 64-bit bus address, its
``length`` the 16-bit field of the e1000 legacy TX descriptor, ``cmd``,
``cso`` and ``css`` are bytes; a register value is a 32-bit store.  A bad
value raises ``ReproducerError`` with where it is and what is wrong
(``ops[3] (tx).descs[2].length must be in 0..65535, got 70000``): one
line, never a traceback.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

U8 = (0, 0xFF)
U16 = (0, 0xFFFF)
U32 = (0, 0xFFFF_FFFF)
U64 = (0, 0xFFFF_FFFF_FFFF_FFFF)


class ReproducerError(ValueError):
    """A reproducer (case file or op) that is not valid; the message names the key or step and the problem."""


class Spec(Protocol):
    """How one JSON value is checked (``parse``, raising ``ReproducerError``) and written back (``dump``)."""

    def parse(self, value: object, where: str, strict: bool) -> Any: ...

    def dump(self, value: Any) -> Any: ...


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


@dataclass(frozen=True)
class Int:
    """An integer in ``low..high``: a JSON number or a string in any base Python reads (``"0x7000"``).

    ``fmt`` is how it is written back (``"#x"``: a hex string a person reads
    against the memory map; empty: a JSON number).
    """

    low: int
    high: int
    fmt: str = ""

    def parse(self, value: object, where: str, strict: bool) -> int:
        number: int | None = None
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif isinstance(value, str):
            try:
                number = int(value, 0)
            except ValueError:
                number = None
        if number is None:
            raise ReproducerError(f"{where} must be an integer, got {_show(value)}")
        if not self.low <= number <= self.high:
            span = f"{self.low:#x}..{self.high:#x}" if self.high > 0xFFFF else f"{self.low}..{self.high}"
            raise ReproducerError(f"{where} must be in {span}, got {_show(value)}")
        return number

    def dump(self, value: int) -> int | str:
        return format(value, self.fmt) if self.fmt else int(value)


def u(bounds: tuple[int, int], fmt: str = "") -> Int:
    """An ``Int`` over a field width (``U8``, ``U16``, ``U32``, ``U64``)."""
    return Int(bounds[0], bounds[1], fmt)


@dataclass(frozen=True)
class Flag:
    """A JSON boolean."""

    def parse(self, value: object, where: str, strict: bool) -> bool:
        if not isinstance(value, bool):
            raise ReproducerError(f"{where} must be true or false, got {_show(value)}")
        return value

    def dump(self, value: bool) -> bool:
        return value


@dataclass(frozen=True)
class Text:
    """A JSON string of at most ``most`` printable characters (a label, not a payload); with ``options``, one of
    them."""

    options: tuple[str, ...] = ()
    most: int = 256

    def parse(self, value: object, where: str, strict: bool) -> str:
        if not isinstance(value, str) or (self.options and value not in self.options):
            shown = ", ".join(o or '""' for o in self.options)  # the empty option (a default) shown as ""
            want = f"one of {shown}" if self.options else "a string"
            raise ReproducerError(f"{where} must be {want}, got {_show(value)}")
        if len(value) > self.most or not value.isprintable():
            raise ReproducerError(f"{where} must be at most {self.most} printable characters, got {_show(value)}")
        return value

    def dump(self, value: str) -> str:
        return value


@dataclass(frozen=True)
class ListOf:
    """A JSON list of at most ``most`` items, each checked by ``item``; ``build`` turns the checked list into the
    step's value (a numpy array), ``unbuild`` back into a list of Python values."""

    item: Spec
    most: int
    build: Callable[[list[Any]], Any] = list
    unbuild: Callable[[Any], list[Any]] = list

    def parse(self, value: object, where: str, strict: bool) -> Any:
        if not isinstance(value, list):
            raise ReproducerError(f"{where} must be a list, got {_show(value)}")
        if len(value) > self.most:
            raise ReproducerError(f"{where} may hold at most {self.most} items, got {len(value)}")
        return self.build([self.item.parse(v, f"{where}[{i}]", strict) for i, v in enumerate(value)])

    def dump(self, value: Any) -> list[Any]:
        return [self.item.dump(v) for v in self.unbuild(value)]


MISSING: Any = object()  # a required key: no default


@dataclass(frozen=True)
class Key:
    """One key of a JSON object: its spec and default (``MISSING``: required; ``None``: optional, absent).

    ``always``: written even when the value equals the default (a reader sees
    every argument); else a default value is left out of the file.
    """

    spec: Spec
    default: Any = MISSING
    always: bool = True


Fields = Mapping[str, Key]


@dataclass(frozen=True)
class Record:
    """A JSON object with the keys of ``fields`` (a descriptor, a race rewrite): parsed into a dict."""

    fields: Fields

    def parse(self, value: object, where: str, strict: bool) -> dict[str, Any]:
        return parse_object(value, self.fields, where, strict)

    def dump(self, value: Mapping[str, Any]) -> dict[str, Any]:
        return dump_object(value, self.fields)


def parse_object(
    value: object, fields: Fields, where: str, strict: bool, ignore: tuple[str, ...] = ()
) -> dict[str, Any]:
    """The checked values of ``fields`` in the JSON object ``value`` (defaults filled in).

    ``strict``: a key not in ``fields`` (nor ``ignore``) is an error; else it is ignored (format version 1).
    """
    if not isinstance(value, dict):
        raise ReproducerError(f"{where} must be an object, got {_show(value)}")
    if strict:
        unknown = [k for k in value if k not in fields and k not in ignore]
        if unknown:
            raise ReproducerError(f"{where}: unknown key {_show(unknown[0])} (known: {', '.join(fields)})")
    out: dict[str, Any] = {}
    for name, key in fields.items():
        if name not in value or (value[name] is None and key.default is None):
            if key.default is MISSING:
                raise ReproducerError(f"{where}: lacks {name!r}")
            out[name] = key.default
        else:
            out[name] = key.spec.parse(value[name], f"{where}.{name}", strict)
    return out


def dump_object(values: Mapping[str, Any], fields: Fields) -> dict[str, Any]:
    """The JSON object of ``values``, keys in ``fields`` order; None and (unless ``always``) defaults left out."""
    out: dict[str, Any] = {}
    for name, key in fields.items():
        value = values.get(name)
        if value is None or (not key.always and value == key.default):
            continue
        out[name] = key.spec.dump(value)
    return out
