"""The one generic encoder/decoder: compiles a schema, per version, into bound field codecs.

``compile_struct(fields, version, flexible)`` walks the schema once and binds one codec per field
(consecutive fixed-width fields fused into a single ``struct.Struct``; arrays, strings, records and
nested structs as reader/writer functions). It then emits a straight-line ``decode(buf, pos) ->
(dict, pos)`` and ``encode(out, dict)`` that call those bound codecs in wire order, so nothing
interprets the schema per value. Encoding errors are located on a separate slow path
(``_diagnose``) and reported with the field's path.

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


# --- struct codecs -------------------------------------------------------------------------------

_ENCODE_ERRORS = (EncodeError, struct.error, TypeError, ValueError, AttributeError, OverflowError)


def _tags_codec(tagged: list):
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


def _diagnose(steps, exc, out, d) -> EncodeError:
    """Error path only: find which field of `d` failed and return an EncodeError naming it."""
    if not isinstance(d, dict):
        return EncodeError(f"expected a dict, got {type(d).__name__}")
    scratch = Writer(splices=None if out.splices is None else [])
    for step in steps:
        label = ", ".join(step[1]) if step[0] == "fixed" else step[1]
        try:
            if step[0] == "fixed":
                scratch += step[4].pack(*map(d.get, step[1], step[2]))
            else:
                step[3](scratch, d.get(step[1], step[4]))
        except _ENCODE_ERRORS as inner:
            exc = inner
            if step[0] == "fixed":  # which of the fused fields?
                for name, default, char in zip(step[1], step[2], step[3][1:]):
                    try:
                        struct.pack(">" + char, d.get(name, default))
                    except _ENCODE_ERRORS:
                        label = name
                        break
            break
    else:
        label = "tagged fields"
    if isinstance(exc, EncodeError):
        exc.field_path = f"{label}.{exc.field_path}" if exc.field_path else label
        return exc
    error = EncodeError(str(exc))
    error.field_path = label
    return error


def _generate(steps, read_tags, write_tags):
    """Straight-line decode/encode functions calling the bound field codecs in order."""
    ns = {"read_tags": read_tags, "write_tags": write_tags, "ERRORS": _ENCODE_ERRORS,
          "diagnose": lambda exc, out, d: _diagnose(steps, exc, out, d)}
    dec = ["def decode(buf, pos):", "    d = {}"]
    enc = ["def encode(out, d):", "    try:", "        get = d.get"]
    for i, step in enumerate(steps):
        if step[0] == "fixed":
            _, names, defaults, fmt, s = step
            ns[f"u{i}"], ns[f"p{i}"] = s.unpack_from, s.pack
            targets = ", ".join(f"d[{name!r}]" for name in names)
            dec.append(f"    {targets}, = u{i}(buf, pos)")
            dec.append(f"    pos += {s.size}")
            args = []
            for j, (name, default) in enumerate(zip(names, defaults)):
                ns[f"d{i}_{j}"] = default
                args.append(f"get({name!r}, d{i}_{j})")
            enc.append(f"        out += p{i}({', '.join(args)})")
        else:
            _, name, read, write, default = step
            ns[f"r{i}"], ns[f"w{i}"], ns[f"d{i}"] = read, write, default
            dec.append(f"    d[{name!r}], pos = r{i}(buf, pos)")
            enc.append(f"        w{i}(out, get({name!r}, d{i}))")
    if read_tags is not None:
        dec.append("    pos = read_tags(buf, pos, d)")
        enc.append("        write_tags(out, d)")
    dec.append("    return d, pos")
    enc += ["    except ERRORS as exc:", "        raise diagnose(exc, out, d) from None"]
    exec(compile("\n".join(dec + enc), "<logship.protocol.codec>", "exec"), ns)
    return ns["decode"], ns["encode"]


def compile_struct(fields: tuple[Field, ...], version: int, flexible: bool) -> StructCodec:
    """Compile `fields` at `version` into a StructCodec.

    Steps are ("fixed", names, defaults, format, Struct) for a run of fixed-width fields, or
    ("var", name, reader, writer, default) for one other field; they become straight-line
    functions (see _generate) that call these bound codecs in wire order."""
    steps = []
    tagged = []  # (tag, name, read, write, default)
    defaults = {}
    min_size = 1 if flexible else 0
    group: list[tuple[str, str, object]] = []

    def flush():
        nonlocal min_size
        if group:
            fmt = ">" + "".join(f for _, f, _ in group)
            s = struct.Struct(fmt)
            steps.append(("fixed", tuple(n for n, _, _ in group), tuple(d for _, _, d in group), fmt, s))
            min_size += s.size
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
        steps.append(("var", field.name, read, write, () if isinstance(default, list) else default))
        min_size += size
    flush()

    read_tags, write_tags = _tags_codec(tagged) if flexible else (None, None)
    decode, encode = _generate(steps, read_tags, write_tags)
    return StructCodec(decode, encode, min_size, defaults)
