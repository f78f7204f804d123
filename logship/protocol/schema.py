"""Declarative message schemas: fields with a type, the versions they exist in, nullability,
defaults and tags — transcribed from Apache Kafka's message JSON schemas, with names in snake_case.

A schema is data only; :mod:`logship.protocol.codec` compiles it, per version, into encoders and
decoders.

Types (as in Kafka's JSON): ``int8 int16 int32 int64 uint16 uint32 float64 bool string bytes
records uuid``, ``[]T`` for an array of a primitive T, and any capitalised name (``TopicData``) with
``fields=`` for a struct, ``[]TopicData`` with ``fields=`` for an array of structs.

Versions are Kafka's strings: ``"3+"``, ``"0-12"``, ``"7"``; nullability and tagging the same.

Defaults follow Kafka's generated code: the schema's ``default`` if it has one (``"null"`` meaning
None), else 0 / False / ``""`` / ``b""`` / ``[]`` by type, None for records, and a struct of
defaults for a struct.
"""

from __future__ import annotations

from dataclasses import dataclass

from .primitives import FIXED

__all__ = ["Field", "Api", "parse_versions", "in_versions"]

_OPEN = 0x7FFF
_SCALARS = set(FIXED) | {"string", "bytes", "records", "uuid"}
_INTS = {"int8", "int16", "int32", "int64", "uint16", "uint32"}


def parse_versions(spec: str | None) -> tuple[int, int] | None:
    """Kafka version-range syntax -> (low, high); None for no range."""
    if spec is None or spec == "none":
        return None
    if spec.endswith("+"):
        return int(spec[:-1]), _OPEN
    low, _, high = spec.partition("-")
    return int(low), int(high or low)


def in_versions(rng: tuple[int, int] | None, version: int) -> bool:
    return rng is not None and rng[0] <= version <= rng[1]


class Field:
    """One field of a struct. `fields` (for struct types) is a tuple of Field."""

    __slots__ = ("name", "type", "versions", "nullable", "tag", "tagged", "fields", "default",
                 "is_array", "item_type")

    def __init__(self, name: str, type: str, versions: str = "0+", *, nullable: str | None = None,
                 default=None, tag: int | None = None, tagged: str | None = None, fields=None):
        self.name = name
        self.type = type
        self.versions = parse_versions(versions)
        self.nullable = parse_versions(nullable)
        self.tag = tag
        self.tagged = parse_versions(tagged)
        self.fields = tuple(fields) if fields is not None else None
        self.is_array = type.startswith("[]")
        self.item_type = type[2:] if self.is_array else type
        if self.fields is None and self.item_type not in _SCALARS:
            raise ValueError(f"{name}: unknown type {type!r} (struct types need fields=)")
        if (tag is None) != (self.tagged is None):
            raise ValueError(f"{name}: tag and tagged= go together")
        self.default = self._parse_default(default)

    @property
    def is_struct(self) -> bool:
        return self.fields is not None

    def _parse_default(self, default):
        if default == "null":
            return None
        if self.is_array:
            if default not in (None, ""):
                raise ValueError(f"{self.name}: arrays default to empty or null only")
            return []
        if self.fields is not None:
            return None  # a struct's default is built per version by the codec
        t = self.type
        if t in _INTS:
            return int(default, 0) if isinstance(default, str) else int(default or 0)
        if t == "bool":
            return default in (True, "true")
        if t == "float64":
            return float(default or 0)
        if t == "string":
            return default or ""
        if t == "bytes":
            return b""
        return None  # records, uuid

    def exists_in(self, version: int) -> bool:
        return self.versions[0] <= version <= self.versions[1]

    def nullable_in(self, version: int) -> bool:
        return in_versions(self.nullable, version)

    def tagged_in(self, version: int) -> bool:
        return in_versions(self.tagged, version)

    def __repr__(self) -> str:
        return f"Field({self.name!r}, {self.type!r})"


@dataclass(frozen=True)
class Api:
    """One API: its key, the versions this codec encodes and decodes, the first flexible
    version (KIP-482; None if none is implemented), and request/response fields."""

    key: int
    name: str
    versions: tuple[int, int]
    flexible_from: int | None
    request: tuple[Field, ...]
    response: tuple[Field, ...]

    def is_flexible(self, version: int) -> bool:
        return self.flexible_from is not None and version >= self.flexible_from

    def has_version(self, version: int) -> bool:
        return self.versions[0] <= version <= self.versions[1]
