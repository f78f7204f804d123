"""A log that already holds a damaged batch (written before the broker checked batches, or damaged on
disk with a CRC that still matches): `logship consume` prints every good record before it, then one
line on stderr naming the batch and how to skip it, and exits 1; the suggested -p/-o reads on.

The damaged batch is appended to a segment file with the broker stopped (CRC fixed up), followed by
good batches, and the broker restarted on the same data directory.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from lying_batches import LYING
from logship import records
from logship.broker_process import child_env

TOPIC = "damaged"
BEFORE = 3000  # records before the damaged batch: ~330 KB, so the decode workers get pieces of it
AFTER = 3


def _logship(broker, *args: str, workers: str = "0") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "logship", *args, "-b", broker.address], capture_output=True,
                          timeout=120, env=child_env({"LOGSHIP_DECODE_WORKERS": workers}))


def _log_end(data: bytes) -> int:
    pos = end = 0
    while pos < len(data):
        header = records.parse_header(data, pos)
        end, pos = header.next_offset, pos + header.size
    return end


def _damage(start_broker, tmp_path, damaged: bytes):
    """A broker whose log holds BEFORE good records, `damaged` (its offsets as its header says),
    then AFTER good records; returns (broker, the damaged batch's offset, the next batch's)."""
    data_dir = tmp_path / "data"
    broker = start_broker(data_dir=data_dir)
    lines = b"".join(b"good record %05d %s\n" % (i, b"x" * 80) for i in range(BEFORE))
    produced = subprocess.run([sys.executable, "-m", "logship", "produce", TOPIC, "-b", broker.address],
                              input=lines, capture_output=True, timeout=120, env=child_env())
    assert produced.returncode == 0, produced.stderr
    broker.stop()
    log = data_dir / f"{TOPIC}-0" / f"{0:020d}.log"
    offset = _log_end(log.read_bytes())
    assert offset == BEFORE
    damaged = bytearray(damaged)
    records.set_base_offset(damaged, 0, offset)
    following = offset + records.parse_header(damaged).last_offset_delta + 1
    after = records.build_batch([(1_764_000_000_000, None, b"after %d" % i, ()) for i in range(AFTER)],
                                base_offset=following)
    with open(log, "ab") as f:
        f.write(bytes(damaged) + after)
    return start_broker(data_dir=data_dir), offset, following


CASES = {
    "count": LYING["record count 1000 over one record"][0],
    "codec": LYING["unknown codec 5"][0],
    "plain data flagged gzip": LYING["gzip flag on plain data"][0],
    "value overrun": LYING["value length past its record"][0],
    "offset deltas": LYING["offset deltas with a gap"][0],
}


def _check_stderr(stderr: bytes, offset: int, following: int) -> None:
    lines = stderr.decode().splitlines()
    assert len(lines) == 1, stderr
    assert re.fullmatch(rf"logship: {TOPIC} partition 0: the batch at offset {offset} is damaged \(.+\); the next "
                        rf"batch starts at offset {following}; skip it with: logship consume {TOPIC} -p 0 "
                        rf"-o {following}", lines[0]), lines[0]


@pytest.mark.parametrize("case", sorted(CASES))
def test_consume_prints_the_good_records_then_names_the_damaged_batch(start_broker, tmp_path, case):
    broker, offset, following = _damage(start_broker, tmp_path, CASES[case]())
    for workers in ("0", "2"):
        run = _logship(broker, "consume", TOPIC, "-e", workers=workers)
        assert run.returncode == 1, (workers, run.stderr)
        out = run.stdout.splitlines()
        assert len(out) == BEFORE and out[0].startswith(b"good record 00000") and out[-1].startswith(
            b"good record %05d" % (BEFORE - 1)), workers
        _check_stderr(run.stderr, offset, following)
    skipped = _logship(broker, "consume", TOPIC, "-e", "-p", "0", "-o", str(following))
    assert skipped.returncode == 0 and skipped.stdout.splitlines() == [b"after %d" % i for i in range(AFTER)]
    assert "Traceback" not in broker.log()


def test_count_json_tail_and_replay_stop_at_the_damaged_batch_too(start_broker, tmp_path):
    broker, offset, following = _damage(start_broker, tmp_path, CASES["count"]())
    counted = _logship(broker, "consume", TOPIC, "-c", str(BEFORE + 10))
    assert counted.returncode == 1 and len(counted.stdout.splitlines()) == BEFORE
    _check_stderr(counted.stderr, offset, following)
    enough = _logship(broker, "consume", TOPIC, "-c", "5")  # the limit comes first: no error
    assert enough.returncode == 0 and len(enough.stdout.splitlines()) == 5
    as_json = _logship(broker, "consume", TOPIC, "-e", "--json")
    assert as_json.returncode == 1 and len(as_json.stdout.splitlines()) == BEFORE
    from_inside = _logship(broker, "consume", TOPIC, "-e", "-o", str(BEFORE - 2))
    assert from_inside.returncode == 1 and len(from_inside.stdout.splitlines()) == 2
    tail = _logship(broker, "tail", TOPIC, "-n", str(AFTER + 1000 + 7))  # from 7 records before the damage
    assert tail.returncode == 1 and len(tail.stdout.splitlines()) == 7, tail.stderr
    _check_stderr(tail.stderr, offset, following)
    for workers in ("0", "2"):
        replay = _logship(broker, "replay", TOPIC, "--from", "beginning", workers=workers)
        assert replay.returncode == 1 and len(replay.stdout.splitlines()) == BEFORE, replay.stderr
        _check_stderr(replay.stderr, offset, following)


def test_kafka_python_reads_up_to_the_damaged_batch(start_broker, tmp_path):
    """What other clients see of the same log (for comparison; they are not logship's to fix)."""
    broker, offset, _ = _damage(start_broker, tmp_path, CASES["count"]())
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=broker.address, group_id=None, auto_offset_reset="earliest",
                             consumer_timeout_ms=3000)
    consumer.assign([TopicPartition(TOPIC, 0)])
    got = []
    try:
        for message in consumer:
            got.append(message.offset)
    except Exception:  # noqa: BLE001 - kafka-python raises at the damaged batch
        pass
    finally:
        consumer.close()
    assert got[:BEFORE] == list(range(BEFORE))



def test_a_group_member_stops_there_and_commits_the_damaged_batch_not_past_it(start_broker, tmp_path):
    broker, offset, following = _damage(start_broker, tmp_path, CASES["count"]())
    run = _logship(broker, "consume", TOPIC, "-e", "-g", "readers")
    assert run.returncode == 1 and len(run.stdout.splitlines()) == BEFORE
    assert run.stderr.decode().splitlines()[-1].startswith(f"logship: {TOPIC} partition 0: the batch at offset "
                                                          f"{offset} is damaged")
    described = _logship(broker, "groups", "describe", "readers")  # its lag is read despite the damage
    assert described.returncode == 0, described.stderr
    row = [line.split() for line in described.stdout.decode().splitlines() if line.startswith(TOPIC)]
    assert row and row[0][3] == str(offset)  # committed: the damaged batch, so a restart stops there again
    again = _logship(broker, "consume", TOPIC, "-e", "-g", "readers")
    assert again.returncode == 1 and again.stdout == b""
    assert following == offset + 1000
