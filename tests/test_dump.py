"""`logship dump` on segments written by another implementation (kafka-python's batch builder)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from kafka.record.default_records import DefaultRecordBatchBuilder

ROOT = Path(__file__).resolve().parent.parent

# (base offset, codec id, [(timestamp, key, value, headers)]): offsets as a broker with a
# compacted or transactional log may leave them, with gaps between batches.
BATCHES = [
    (0, 0, [(1_700_000_000_000, None, b"plain one", []), (1_700_000_000_005, b"k", b"plain two", [("h", b"v")])]),
    (5, 1, [(1_700_000_001_000, b"gz", b"gzip \xff bytes " + b"a" * 100, []) for _ in range(5)]),
    (20, 3, [(1_700_000_002_000, None, b"lz4 %d " % i + b"b" * 200, []) for i in range(3)]),
    (40, 4, [(1_700_000_003_000 + i, b"z", b"zstd %d" % i, [("n", str(i).encode())]) for i in range(100)]),
]


def kafka_python_batch(base_offset: int, codec: int, items) -> bytes:
    builder = DefaultRecordBatchBuilder(magic=2, compression_type=codec, is_transactional=0, producer_id=-1,
                                        producer_epoch=-1, base_sequence=-1, batch_size=1 << 30)
    for delta, (timestamp, key, value, headers) in enumerate(items):
        builder.append(delta, timestamp=timestamp, key=key, value=value, headers=headers)
    buf = builder.build()
    buf[0:8] = base_offset.to_bytes(8, "big")
    return bytes(buf)


@pytest.fixture
def segment(tmp_path) -> Path:
    path = tmp_path / "00000000000000000000.log"
    path.write_bytes(b"".join(kafka_python_batch(*batch) for batch in BATCHES))
    return path


def dump(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "logship", "dump", *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT)


def test_batches_show_offsets_counts_codecs_and_valid_crcs(segment):
    result = dump(segment, "--json")
    assert result.returncode == 0, result.stderr
    batches = [json.loads(line)["batch"] for line in result.stdout.splitlines()]
    assert [(b["base_offset"], b["last_offset"], b["count"], b["compression"], b["crc_valid"]) for b in batches] == [
        (0, 1, 2, "none", True), (5, 9, 5, "gzip", True), (20, 22, 3, "lz4", True), (40, 139, 100, "zstd", True)]
    assert batches[3]["base_timestamp"] == 1_700_000_003_000 and batches[3]["max_timestamp"] == 1_700_000_003_099


def test_records_show_every_field(segment):
    lines = [json.loads(line) for line in dump(segment, "--json", "--records").stdout.splitlines()]
    records = [line["record"] for line in lines if "record" in line]
    expected = [(base + delta, ts, key, value, headers)
                for base, _, items in BATCHES for delta, (ts, key, value, headers) in enumerate(items)]
    assert len(records) == len(expected) == 110
    for got, (offset, ts, key, value, headers) in zip(records, expected):
        assert (got["offset"], got["timestamp"]) == (offset, ts)
        assert got["key"] == (None if key is None else key.decode())
        assert [h[:2] for h in got["headers"]] == [[k, v.decode()] for k, v in headers]
    gzip_record = records[2]
    assert gzip_record["value_encoding"] == "base64"


def test_text_output_like_kafka_dump_log(segment):
    out = dump(segment, "--records").stdout.splitlines()
    assert out[0].startswith("baseOffset: 0 lastOffset: 1 count: 2 ")
    assert out[1] == "| offset: 0 timestamp: 1700000000000 key: null headers: [] value: plain one"
    assert out[2] == "| offset: 1 timestamp: 1700000000005 key: k headers: [h=v] value: plain two"


@pytest.mark.parametrize("damage", ["cut", "garbage", "crc"])
def test_damage_is_reported_and_exits_1(segment, damage):
    data = bytearray(segment.read_bytes())
    if damage == "cut":
        data = data[:-7]
    elif damage == "garbage":
        data += b"\x00\x01garbage" * 3
    else:
        data[-1] ^= 0xFF
    segment.write_bytes(bytes(data))
    result = dump(segment)
    assert result.returncode == 1
    assert result.stdout.count("baseOffset:") == (3 if damage == "cut" else 4)
    if damage == "crc":
        assert result.stdout.splitlines()[-1].endswith("crcValid: false")
    else:
        assert "unreadable tail at position" in result.stdout
