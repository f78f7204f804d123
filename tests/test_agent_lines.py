"""The agent's line machinery without files or a broker: splitting, long lines, partial
lines, multi-line events, and the records built from them."""

import random
import re

import pytest

from logship.agent.lines import LineSplitter, new_splitter
from logship.agent.linerecords import RecordTemplate, encode
from logship.agent.multiline import MultilineJoiner
from logship.record_codec import encode_record
from logship.records import seal_batch, decode_records


def feed_all(splitter, data: bytes, chunk: int):
    """Feed `data` in chunks; (values, starts, truncated flags, last end)."""
    values, starts, flags, end = [], [], [], splitter.resume
    for i in range(0, len(data), chunk):
        out = splitter.feed(data[i:i + chunk])
        flags += [j in out.truncated for j in range(len(out.values))]
        values += out.values
        starts += out.starts
        end = out.end
    return values, starts, flags, end


@pytest.mark.parametrize("chunk", [1, 3, 7, 64, 4096])
def test_lines_and_offsets_are_the_same_whatever_the_chunking(chunk):
    rng = random.Random(chunk)
    lines = [bytes(rng.choice(b"abc\xff\x00 ") for _ in range(rng.randrange(0, 40))) for _ in range(300)]
    data = b"".join(line + b"\n" for line in lines)
    values, starts, flags, end = feed_all(LineSplitter(1000, 1 << 20), data, chunk)
    assert values == lines
    assert starts == [1000 + sum(len(x) + 1 for x in lines[:i]) for i in range(len(lines))]
    assert not any(flags)
    assert end == 1000 + len(data)


def test_a_line_without_newline_is_held_back_until_its_newline_arrives():
    s = LineSplitter(0, 100)
    out = s.feed(b"one\ntw")
    assert out.values == [b"one"] and out.end == 4
    assert s.partial == b"tw" and s.position == 6
    out = s.feed(b"o\nthr")
    assert out.values == [b"two"] and out.starts == [4] and out.end == 8


def test_flush_partial_ships_the_held_back_bytes_once():
    s = LineSplitter(10, 100)
    s.feed(b"abc")
    out = s.flush_partial()
    assert (out.values, out.starts, out.end) == ([b"abc"], [10], 13)
    assert s.flush_partial().values == []
    out = s.feed(b"def\n")  # the rest of the line becomes a line of its own
    assert (out.values, out.starts, out.end) == ([b"def"], [13], 17)


@pytest.mark.parametrize("chunk", [5, 100, 1 << 20])
def test_a_long_line_is_truncated_flagged_and_the_next_line_is_intact(chunk):
    long = b"x" * 10_000
    data = b"before\n" + long + b"\nafter\n"
    values, starts, flags, end = feed_all(LineSplitter(0, 64), data, chunk)
    assert values == [b"before", b"x" * 64, b"after"]
    assert flags == [False, True, False]
    assert starts == [0, 7, 10_008]
    assert end == len(data)


def test_memory_is_bounded_while_skipping_a_huge_line():
    s = LineSplitter(0, 1024)
    out = s.feed(b"y" * 5000)
    assert out.values == [b"y" * 1024] and out.truncated == [0]
    assert out.end == 0  # a crash now re-reads the long line: a duplicate, never a loss
    for _ in range(100):
        out = s.feed(b"y" * 100_000)
        assert out.values == [] and out.end == 0
        assert len(s.partial) == 0
    out = s.feed(b"yy\nnext\n")
    assert out.values == [b"next"] and out.starts == [10_005_003] and out.end == 10_005_008


def test_a_line_exactly_at_the_limit_is_not_truncated():
    out = LineSplitter(0, 8).feed(b"12345678\n123456789\n")
    assert out.values == [b"12345678", b"12345678"] and out.truncated == [1]


def joiner(max_bytes=1 << 20, max_lines=500):
    return MultilineJoiner(re.compile(rb"\d{4}-"), 1.0, max_lines, max_bytes)


JAVA = (b"2026-01-01 ERROR boom\n"
        b"java.lang.IllegalStateException: bad\n"
        b"\tat a.b.C.d(C.java:10)\n"
        b"\tat a.b.C.e(C.java:20)\n"
        b"2026-01-01 INFO next\n")


@pytest.mark.parametrize("chunk", [1, 10, 1000])
def test_a_stack_trace_is_one_event_whatever_the_chunking(chunk):
    s, j = LineSplitter(0, 1 << 20), joiner()
    values, starts, ends = [], [], []
    for i in range(0, len(JAVA), chunk):
        out = j.feed(s.feed(JAVA[i:i + chunk]), now=0.0)
        values += out.values
        starts += out.starts
        ends.append(out.end)
    assert values == [JAVA.split(b"\n2026-01-01 INFO")[0]]
    assert starts == [0]
    # the checkpoint never lands inside an event: it stays at 0, then moves to the next event
    assert set(ends) <= {0, JAVA.index(b"2026-01-01 INFO")}
    assert j.flush().values == [b"2026-01-01 INFO next"]


def test_the_multiline_timeout_flushes_the_last_event():
    s, j = LineSplitter(0, 1 << 20), joiner()
    j.feed(s.feed(JAVA), now=100.0)
    assert not j.due(100.5) and j.due(101.0)
    out = j.flush()
    assert out.values == [b"2026-01-01 INFO next"] and out.end == len(JAVA)


def test_an_event_is_bounded_in_bytes_and_lines():
    s, j = LineSplitter(0, 1 << 20), joiner(max_bytes=30, max_lines=3)
    out = j.feed(s.feed(b"2026-a\n" + b"cont\n" * 20 + b"2026-b\n"), now=0.0)
    assert out.values == [b"2026-a\ncont\ncont"] and out.truncated == [0]
    s, j = LineSplitter(0, 1 << 20), joiner(max_bytes=10)
    out = j.feed(s.feed(b"2026-a long line\n2026-b\n"), now=0.0)
    assert out.values == [b"2026-a lon"] and out.truncated == [0]


def test_continuation_lines_at_the_top_of_a_file_make_their_own_event():
    s, j = LineSplitter(0, 1 << 20), joiner()
    out = j.feed(s.feed(b"\tat x\n\tat y\n2026-z\n"), now=0.0)
    assert out.values == [b"\tat x\n\tat y"]


TEMPLATE = RecordTemplate(b"key-1", [("host", b"h"), ("path", b"/var/log/a.log"), ("env", b"prod")])


def reference(values, starts, truncated, first, template_headers, key):
    parts = []
    for i, (value, start) in enumerate(zip(values, starts)):
        headers = list(template_headers) + ([("truncated", b"true")] if i in truncated else [])
        headers.append(("offset", b"%d" % start))
        encode_record(parts, first + i, 0, key, value, headers)
    return b"".join(parts)


@pytest.mark.parametrize("lengths", [[0, 1, 5], [100] * 300, [20_000, 3, 70_000], [63, 64, 8191, 8192]])
def test_encoded_records_are_byte_for_byte_what_the_general_encoder_writes(lengths):
    values = [bytes([65 + i % 26]) * n for i, n in enumerate(lengths)]
    starts, pos = [], 9_999_990
    for v in values:  # offsets cross a power of ten in the middle
        starts.append(pos)
        pos += len(v) + 1
    truncated = [1] if len(values) > 1 else []
    body = encode(values, starts, truncated, 7, TEMPLATE)
    assert body == reference(values, starts, truncated, 7, TEMPLATE.headers, b"key-1")


def test_encoded_records_decode_as_lines_with_their_headers():
    values = [b"first", b"\xff\xfe invalid utf-8", b""]
    body = encode(values, [0, 6, 30], [], 0, RecordTemplate(None, [("host", b"h")]))
    records = decode_records(seal_batch(body, 3, 1, 1, compression=4, base_offset=0, producer_id=-1, producer_epoch=-1,
                                   base_sequence=-1, partition_leader_epoch=-1, attributes=0))
    assert [r.value for r in records] == values
    assert [dict(r.headers)["offset"] for r in records] == [b"0", b"6", b"30"]
    assert all(r.key is None for r in records)


# --- line endings ------------------------------------------------------------------------------


CRLF = b"one\r\ntwo\r\n\r\nmid\rdle\r\nlf only\ndouble\r\r\n"


@pytest.mark.parametrize("chunk", [1, 2, 3, 4096])
def test_auto_strips_one_cr_before_each_newline_and_offsets_stay_in_file_bytes(chunk):
    values, starts, flags, end = feed_all(LineSplitter(0, 100), CRLF, chunk)
    assert values == [b"one", b"two", b"", b"mid\rdle", b"lf only", b"double\r"]
    assert starts == [0, 5, 10, 12, 21, 29]
    assert not any(flags) and end == len(CRLF)


@pytest.mark.parametrize("chunk", [1, 4096])
def test_lf_keeps_the_cr(chunk):
    values, starts, _, end = feed_all(LineSplitter(0, 100, "lf"), CRLF, chunk)
    assert values == CRLF.split(b"\n")[:-1]
    assert starts == [0, 5, 10, 12, 21, 29] and end == len(CRLF)


def test_a_line_at_the_limit_ending_in_crlf_is_not_truncated_even_when_a_read_ends_after_its_cr():
    data = b"12345678\r\n1234567\r\n123456789\r\nnext\r\n"
    for cut in range(len(data) + 1):
        s = LineSplitter(0, 8)
        a, b = s.feed(data[:cut]), s.feed(data[cut:])
        assert a.values + b.values == [b"12345678", b"1234567", b"12345678", b"next"], cut
        assert a.truncated + [i + len(a.values) for i in b.truncated] == [2], cut
    s = LineSplitter(0, 8, "lf")  # with "lf" the "\r" counts
    assert s.feed(b"12345678\r\n").values == [b"12345678"] and s.skipping is False


def test_a_flushed_partial_line_loses_a_final_cr_only_with_auto():
    s = LineSplitter(0, 100)
    s.feed(b"abc\r")
    assert s.flush_partial().values == [b"abc"] and s.position == 4
    s = LineSplitter(0, 100, "lf")
    s.feed(b"abc\r")
    assert s.flush_partial().values == [b"abc\r"]


def test_line_terminator_is_checked():
    with pytest.raises(ValueError, match="line_terminator"):
        LineSplitter(0, 100, "crlf")


# --- UTF-16 --------------------------------------------------------------------------------------

# Lines that trip a careless splitter: surrogate pairs, "\n\0" / "\0\n" at odd positions
# (U+0A00 before U+0100 in LE, U+0100 before U+0A05 in BE), CR in the middle, empty lines.
TEXT_LINES = ["plain ascii", "héllo wörld", "emoji 😀 and 𝄞 (surrogate pairs)", "", "\u0a00\u0100 odd LE newline",
              "\u0100\u0a05 odd BE newline", "mid\rline", "日本語のログ", "x" * 50]


def encoded(lines: list[str], codec: str, newline: str = "\n", bom: bytes = b"") -> bytes:
    return bom + "".join(line + newline for line in lines).encode(codec)


def source_starts(lines: list[str], codec: str, newline: str, first: int) -> list[int]:
    starts, pos = [], first
    for line in lines:
        starts.append(pos)
        pos += len((line + newline).encode(codec))
    return starts


@pytest.mark.parametrize("encoding,codec,bom", [("utf-16le", "utf-16-le", b""), ("utf-16be", "utf-16-be", b""),
                                                ("utf-16le", "utf-16-le", b"\xff\xfe"),
                                                ("utf-16be", "utf-16-be", b"\xfe\xff"),
                                                ("utf-16", "utf-16-le", b"\xff\xfe"),
                                                ("utf-16", "utf-16-be", b"\xfe\xff"),
                                                ("utf-16", "utf-16-le", b"")])
@pytest.mark.parametrize("newline", ["\n", "\r\n"])
@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 7, 4096])
def test_utf16_lines_are_decoded_whatever_the_chunking(encoding, codec, bom, newline, chunk):
    data = encoded(TEXT_LINES, codec, newline, bom)
    values, starts, flags, end = feed_all(new_splitter(0, 1000, encoding), data, chunk)
    assert values == [line.encode("utf-8") for line in TEXT_LINES]
    assert starts == source_starts(TEXT_LINES, codec, newline, len(bom))
    assert not any(flags) and end == len(data)
    if newline == "\r\n":  # "lf" keeps the "\r", decoded
        values, *_ = feed_all(new_splitter(0, 1000, encoding, "lf"), data, chunk)
        assert values == [(line + "\r").encode("utf-8") for line in TEXT_LINES]


def test_the_byte_order_mark_is_skipped_even_when_it_arrives_a_byte_at_a_time():
    s = new_splitter(0, 100, "utf-16")
    assert s.feed(b"\xfe").values == [] and s.position == 1 and s.resume == 0
    assert s.feed(b"\xff").values == [] and s.resume == 2
    out = s.feed("hi\n".encode("utf-16-be"))
    assert out.values == [b"hi"] and out.starts == [2] and out.end == 8
    # U+FEFF later in the file is text, not a mark
    assert new_splitter(0, 100, "utf-16le").feed(b"a\x00\xff\xfe\n\x00").values == ["a\ufeff".encode()]


def test_utf16_without_a_mark_is_little_endian():
    out = new_splitter(0, 100, "utf-16").feed("no mark\n".encode("utf-16-le"))
    assert out.values == [b"no mark"] and out.starts == [0]


@pytest.mark.parametrize("encoding,codec,bom", [("utf-16", "utf-16-be", b"\xfe\xff"),
                                                ("utf-16", "utf-16-le", b"\xff\xfe"),
                                                ("utf-16le", "utf-16-le", b"\xff\xfe")])
def test_resuming_at_any_checkpoint_decodes_the_rest_correctly(encoding, codec, bom):
    """Every `end` a splitter reports is a place to start again from (a restart after a
    checkpoint): with the file's first two bytes as `head`, a new splitter there ships
    exactly the lines not yet shipped, decoded with the byte order of the mark."""
    data = encoded(TEXT_LINES * 3, codec, "\r\n", bom)
    expected = [line.encode() for line in TEXT_LINES * 3]
    s = new_splitter(0, 1000, encoding)
    shipped, ends = [], set()
    for i in range(0, len(data), 5):
        out = s.feed(data[i:i + 5])
        shipped += out.values
        ends.add((out.end, len(shipped)))
    assert shipped == expected and len(ends) > 20
    for end, count in sorted(ends):
        assert end % 2 == 0
        again = new_splitter(end, 1000, encoding, head=data[:2])
        rest, *_ = feed_all(again, data[end:], 7)
        assert expected[:count] + rest == expected, end
    if encoding == "utf-16":  # without the head, the mark cannot be known: little-endian
        mid = source_starts(TEXT_LINES, codec, "\r\n", len(bom))[2]
        out = new_splitter(mid, 1000, "utf-16").feed(data[mid:])
        assert (out.values[0] == expected[2]) == (codec == "utf-16-le")


def test_a_code_unit_or_surrogate_pair_cut_by_a_read_is_held_back():
    data = "a😀\n".encode("utf-16-le")  # 61 00 | 3d d8 00 de | 0a 00
    s = new_splitter(0, 100, "utf-16le")
    assert s.feed(data[:3]).values == [] and s.position == 3 and s.partial == data[:3]
    assert s.flush_partial().values == [b"a"]  # the odd byte stays for the rest of its unit
    assert s.position == 3 and s.resume == 2
    s.feed(data[3:5])  # the high surrogate arrived: a partial flush keeps it for its pair
    assert s.flush_partial().values == [] and s.partial == data[2:4] + data[4:5]
    out = s.feed(data[5:])
    assert out.values == ["😀".encode()] and out.starts == [2] and out.end == len(data)


def test_a_final_flush_ships_even_a_dangling_half_unit_as_replacement():
    s = new_splitter(0, 100, "utf-16le")
    s.feed("ab".encode("utf-16-le") + b"\x3d\xd8" + b"c")
    out = s.flush_partial(final=True)
    assert out.values == ["ab\ufffd".encode()] and out.end == 7  # one U+FFFD for the truncated pair


def test_malformed_utf16_becomes_replacement_characters_not_errors():
    lone_high, lone_low = b"\x3d\xd8", b"\x00\xde"
    data = b"a\x00" + lone_high + b"\n\x00" + lone_low + b"b\x00\n\x00" + lone_low + lone_high + b"\n\x00"
    out = new_splitter(0, 100, "utf-16le").feed(data)
    assert out.values == ["a\ufffd".encode(), "\ufffdb".encode(), "\ufffd\ufffd".encode()]
    assert out.starts == [0, 6, 12]


@pytest.mark.parametrize("seed", range(20))
def test_random_bytes_as_utf16_never_crash_and_keep_offsets_whole_units(seed):
    rng = random.Random(seed)
    data = bytes(rng.choice(b"\n\x00\r\xd8\xdc\xff\xfea") for _ in range(3000))
    encoding = ("utf-16le", "utf-16be", "utf-16")[seed % 3]
    s = new_splitter(0, 64, encoding)
    values, starts, end = [], [], 0
    for i in range(0, len(data), rng.randrange(1, 50)):
        out = s.feed(data[i:i + 50])
        values += out.values
        starts += out.starts
        end = out.end
    values += s.flush_partial(final=True).values
    for value in values:
        value.decode("utf-8")  # valid UTF-8, always
        assert len(value) <= 64
    assert all(start % 2 == 0 for start in starts) and starts == sorted(starts) and end % 2 == 0


def test_utf16_max_line_bytes_counts_shipped_utf8_bytes_and_cuts_on_a_character():
    ascii_line = "a" * 8  # 16 source bytes, 8 shipped: not too long
    wide = "é" * 5        # 10 source bytes, 10 shipped: cut to 4 é (8 bytes)
    out = new_splitter(0, 9, "utf-16le").feed(encoded([ascii_line, wide, "ok"], "utf-16-le"))
    assert out.values == [b"a" * 8, "é".encode() * 4, b"ok"] and out.truncated == [1]
    assert out.starts == [0, 18, 30]


@pytest.mark.parametrize("chunk", [3, 100, 1 << 20])
def test_a_long_utf16_line_is_truncated_with_bounded_memory_and_the_next_line_is_intact(chunk):
    data = encoded(["before", "日" * 50_000, "after"], "utf-16-le", "\r\n", b"\xff\xfe")
    s = new_splitter(0, 64, "utf-16")
    values, flags, starts, biggest = [], [], [], 0
    for i in range(0, len(data), chunk):
        out = s.feed(data[i:i + chunk])
        flags += [j in out.truncated for j in range(len(out.values))]
        values += out.values
        starts += out.starts
        biggest = max(biggest, len(s.partial))
    assert values == [b"before", "日".encode() * 21, b"after"] and flags == [False, True, False]
    assert starts == [2, 18, 18 + 100_004] and s.resume == len(data)
    assert biggest <= max(2 * 64 + 4, chunk + 1)


def test_a_long_utf16_line_keeps_the_checkpoint_at_its_start_while_it_is_skipped():
    s = new_splitter(0, 16, "utf-16le")
    out = s.feed(b"y\x00" * 1000 + b"z")
    assert out.values == [b"y" * 16] and out.truncated == [0] and out.end == 0
    assert s.feed(b"\x00" + b"y\x00" * 10).end == 0 and len(s.partial) <= 1
    out = s.feed(b"\n\x00" + "next\n".encode("utf-16-le"))
    assert out.values == [b"next"] and out.starts == [2024] and out.end == 2034


def test_a_utf16_reader_started_at_an_odd_offset_drops_one_byte_to_realign():
    data = "one\ntwo\n".encode("utf-16-le")
    s = new_splitter(7, 100, "utf-16le")  # a UTF-8 checkpoint lands after "\n", before "\0"
    assert s.position == 7
    out = s.feed(data[7:])
    assert out.values == [b"two"] and out.starts == [8] and out.end == len(data)


def test_multiline_events_from_utf16_are_joined_and_cut_on_a_character():
    data = encoded(["2026-01-01 ERROR ünïcödé", "\tat frame", "2026-01-01 INFO next"], "utf-16-be", "\r\n")
    s = new_splitter(0, 1 << 20, "utf-16be")
    j = joiner()
    out = j.feed(s.feed(data), now=0.0)
    assert out.values == ["2026-01-01 ERROR ünïcödé\n\tat frame".encode()] and out.starts == [0]
    j = MultilineJoiner(re.compile(rb"\d{4}-"), 1.0, 500, 18, text=True)  # "ü" would end at byte 19
    out = j.feed(new_splitter(0, 1 << 20, "utf-16be").feed(data), now=0.0)
    assert out.values == [b"2026-01-01 ERROR "] and out.truncated == [0]
