"""The agent's line machinery without files or a broker: splitting, long lines, partial
lines, multi-line events, and the records built from them."""

import random
import re

import pytest

from logship.agent.lines import LineSplitter
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
