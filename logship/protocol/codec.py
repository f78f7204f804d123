"""The one generic encoder/decoder: compiles a schema, per version, into bound field codecs.

``compile_struct(fields, version, flexible)`` walks the schema once and returns a
:class:`StructCodec` whose ``decode(buf, pos) -> (dict, pos)`` and ``encode(out, dict)`` run a flat
list of small closures, one per field (consecutive fixed-width fields are fused into a single
``struct`` call). No schema tree is interpreted per value.

Decoded structs are plain dicts holding exactly the fields of that version (tagged fields of the
version always present, with their default when absent on the wire; unknown tags kept as bytes
under ``"_tagged_fields"``). Encoding reads fields with ``dict.get(name, default)``: missing fields
take the schema default; keys the version does not have are ignored.
"""

from __future__ import annotations

import copy
import struct

from logship.errors import ProtocolError

from . import primitives as p
from .primitives import EncodeError, Writer
from .schema import Field

__all__ = ["StructCodec", "compile_struct", "TAGGED_FIELDS_KEY"]

TAGGED_FIELDS_KEY = "_tagged_fields"
_MISSING = object()

# type -> ((reader, writer, min size) non-compact, (...) compact), per nullability
_VARIABLE = {
    ("string", False): ((p.read_string, p.write_string, 2),
                        (p.read_compact_string, p.write_compact_string, 1)),
    ("string", True): ((p.read_nullable_string, p.write_nullable_string, 2),
                       (p.read_compact_nullable_string, p.write_compact_nullable_string, 1)),
    ("bytes", False): ((p.read_bytes, p.write_bytes, 4),
                       (p.read_compact_bytes, p.write_compact_bytes, 1)),
    ("bytes", True): ((p.read_nullable_bytes, p.write_nullable_bytes, 4),
                      (p.read_compact_nullable_bytes, p.write_compact_nullable_bytes, 1)),
    ("records", False): ((p.read_records, p.write_records, 4),
                         (p.read_compact_records, p.write_compact_records, 1)),
}
_VARIABLE[("records", True)] = _VARIABLE[("records", False)]
_VARIABLE[("uuid", False)] = _VARIABLE[("uuid", True)] = ((p.read_uuid, p.write_uuid, 16),) * 2


class StructCodec:
    __slots__ = ("decode", "encode", "min_size", "default")

    def __init__(self, decode, encode, min_size: int, default: dict):
        self.decode = decode
        self.encode = encode
        self.min_size = min_size
        self.default = default  # a dict of defaults; copy before handing out


def _fresh(value):
    return copy.deepcopy(value) if isinstance(value, (list, dict)) else value


# --- leaf codecs: (reader, writer, min_size) for one value of a field ----------------------------

def _fixed_codec(fmt: str):
    s = struct.Struct(">" + fmt)
    unpack, pack, size = s.unpack_from, s.pack, s.size

    def read(buf, pos):
        return unpack(buf, pos)[0], pos + size

    def write(out, value):
        out += pack(value)

    return read, write, size


def _array_codec(item, nullable: bool, compact: bool, fixed_fmt: str | None):
    read_item, write_item, item_size = item
    read_len = p.read_compact_array_length if compact else p.read_array_length
    pack_i = p.INT32.pack
    null = b"\x00" if compact else pack_i(-1)

    def read(buf, pos):
        n, pos = read_len(buf, pos, item_size)
        if n < 0:
            if nullable:
                return None, pos
            raise ProtocolError("null where a non-nullable array is required")
        if fixed_fmt is not None:
            return list(struct.unpack_from(f">{n}{fixed_fmt}", buf, pos)), pos + n * item_size
        items = []
        append = items.append
        for _ in range(n):
            value, pos = read_item(buf, pos)
            append(value)
        return items, pos

    def write(out, items):
        if items is None:
            if not nullable:
                raise EncodeError("null where a non-nullable array is required")
            out += null
            return
        n = len(items)
        if compact:
            p.write_uvarint(out, n + 1)
        else:
            out += pack_i(n)
        if fixed_fmt is not None:
            out += struct.pack(f">{n}{fixed_fmt}", *items)
        else:
            for value in items:
                write_item(out, value)

    return read, write, (1 if compact else 4)


def _leaf_codec(field: Field, version: int, flexible: bool):
    """(reader, writer, min_size, default) for one field at one version."""
    nullable = field.nullable_in(version)
    if field.is_struct:
        sub = compile_struct(field.fields, version, flexible)
        item = (sub.decode, sub.encode, max(sub.min_size, 1))
        default = sub.default
    elif field.item_type in p.FIXED:
        item = _fixed_codec(p.FIXED[field.item_type])
        default = field.default
    else:
        pair = _VARIABLE[(field.item_type, nullable or field.item_type == "records")]
        item = pair[1] if flexible else pair[0]
        default = field.default
    if not field.is_array:
        return item[0], item[1], item[2], default
    fixed_fmt = p.FIXED.get(field.item_type) if not field.is_struct else None
    read, write, size = _array_codec(item, nullable, flexible, fixed_fmt)
    return read, write, size, (None if field.default is None else [])


# --- field steps ---------------------------------------------------------------------------------

def _fixed_group_steps(group: list[tuple[str, str, object]]):
    names = tuple(name for name, _, _ in group)
    defaults = tuple(default for _, _, default in group)
    s = struct.Struct(">" + "".join(fmt for _, fmt, _ in group))
    unpack, pack, size = s.unpack_from, s.pack, s.size
    if len(names) == 1:
        name, default = names[0], defaults[0]

        def dec(buf, pos, d):
            d[name] = unpack(buf, pos)[0]
            return pos + size

        def enc(out, d):
            out += pack(d.get(name, default))
    else:
        def dec(buf, pos, d):
            d.update(zip(names, unpack(buf, pos)))
            return pos + size

        def enc(out, d):
            out += pack(*map(d.get, names, defaults))

    return ", ".join(names), dec, enc, size


def _variable_steps(name: str, read, write, encode_default):
    def dec(buf, pos, d):
        d[name], pos = read(buf, pos)
        return pos

    def enc(out, d):
        write(out, d.get(name, encode_default))

    return dec, enc


def _tags_codec(tagged: list, flexible: bool):
    """Reader/writer of the tagged-field section that ends every flexible struct."""
    by_tag = {tag: (name, read, default) for tag, name, read, _, default in tagged}
    names = [(name, default) for _, name, _, _, default in tagged]
    writers = sorted((tag, name, write, default) for tag, name, _, write, default in tagged)

    def read_tags(buf, pos, d):
        n, pos = p.read_uvarint(buf, pos)
        unknown = None
        if n:
            if 2 * n > len(buf) - pos:
                raise ProtocolError(f"{n} tagged fields cannot fit in the frame")
            for _ in range(n):
                tag, pos = p.read_uvarint(buf, pos)
                size, pos = p.read_uvarint(buf, pos)
                end = pos + size
                if end > len(buf):
                    raise ProtocolError(f"tagged field {tag} of {size} bytes overruns the frame")
                known = by_tag.get(tag)
                if known is None:
                    if unknown is None:
                        unknown = {}
                    unknown[tag] = bytes(buf[pos:end])
                else:
                    value, stop = known[1](buf[:end], pos)
                    if stop != end:
                        raise ProtocolError(f"tagged field {tag} is {size} bytes, decoded {stop - pos}")
                    d[known[0]] = value
                pos = end
        for name, default in names:
            if name not in d:
                d[name] = _fresh(default)
        if unknown is not None:
            d[TAGGED_FIELDS_KEY] = unknown
        return pos

    def write_tags(out, d):
        extra = d.get(TAGGED_FIELDS_KEY)
        if not writers and not extra:
            out.append(0)
            return
        entries = []
        for tag, name, write, default in writers:
            value = d.get(name, _MISSING)
            if value is _MISSING or value == default:
                continue
            tmp = Writer()
            write(tmp, value)
            entries.append((tag, tmp))
        if extra:
            entries.extend((t, v) for t, v in extra.items() if t not in by_tag)
            entries.sort(key=lambda entry: entry[0])
        p.write_uvarint(out, len(entries))
        for tag, data in entries:
            p.write_uvarint(out, tag)
            p.write_uvarint(out, len(data))
            out += data

    return read_tags, write_tags


def compile_struct(fields: tuple[Field, ...], version: int, flexible: bool) -> StructCodec:
    """Compile `fields` at `version` into a StructCodec."""
    steps = []  # (label, dec, enc)
    tagged = []  # (tag, name, read, write, default)
    defaults = {}
    min_size = 1 if flexible else 0
    group: list[tuple[str, str, object]] = []

    def flush():
        nonlocal min_size
        if group:
            label, dec, enc, size = _fixed_group_steps(group)
            steps.append((label, dec, enc))
            min_size += size
            group.clear()

    for field in fields:
        if not field.exists_in(version):
            continue
        read, write, size, default = _leaf_codec(field, version, flexible)
        defaults[field.name] = default
        if flexible and field.tagged_in(version):
            tagged.append((field.tag, field.name, read, write, default))
            continue
        if not field.is_array and not field.is_struct and field.type in p.FIXED:
            group.append((field.name, p.FIXED[field.type], default))
            continue
        flush()
        encode_default = () if isinstance(default, list) else default
        dec, enc = _variable_steps(field.name, read, write, encode_default)
        steps.append((field.name, dec, enc))
        min_size += size
    flush()

    decoders = tuple(dec for _, dec, _ in steps)
    encoders = tuple((label, enc) for label, _, enc in steps)
    read_tags, write_tags = _tags_codec(tagged, flexible) if flexible else (None, None)

    def decode(buf, pos):
        d = {}
        for dec in decoders:
            pos = dec(buf, pos, d)
        if read_tags is not None:
            pos = read_tags(buf, pos, d)
        return d, pos

    def encode(out, d):
        label = "tagged fields"
        try:
            for label, enc in encoders:
                enc(out, d)
            if write_tags is not None:
                label = "tagged fields"
                write_tags(out, d)
        except EncodeError as exc:
            exc.field_path = f"{label}.{exc.field_path}" if exc.field_path else label
            raise
        except (struct.error, TypeError, ValueError, AttributeError, OverflowError) as exc:
            if not isinstance(d, dict):
                raise EncodeError(f"expected a dict, got {type(d).__name__}") from None
            error = EncodeError(str(exc))
            error.field_path = label
            raise error from None

    return StructCodec(decode, encode, min_size, defaults)
