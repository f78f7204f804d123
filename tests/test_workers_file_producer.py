"""workers/file_producer.py: a regular file's records framed by forked workers, range by range.

Every record of the file is sent once, in file order, however the file is cut into ranges;
a range a worker cannot do is done in the producing process; a file that grows while it is
produced is read to its end; the command does this for big regular files (also on standard
input) and gives what the serial path gives."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys

import pytest

from conftest import ROOT
from logship.workers.file_producer import PARALLEL_FROM, FileProducer, lines_starting_in, parallel_kind
from logship.client.batches import RECORD_OVERHEAD, runs_that_fit
from logship.compression import NONE, ZSTD
from logship.records import decode_records
from produce_helpers import CollectingProducer, Counting, records_of


def random_file(tmp_path, rng: random.Random, separator: bytes = b"\n", count: int = 400) -> tuple:
    lines = [bytes(rng.choice(b"abcxyz ") for _ in range(rng.choice((0, 1, 5, 80, 300, 3000))))
             for _ in range(count)]
    data = separator.join(lines) + (separator if rng.random() < 0.5 else b"")
    path = tmp_path / "input.log"
    path.write_bytes(data)
    return path, data


@pytest.mark.parametrize("seed", range(12))
def test_ranges_cut_anywhere_hold_every_record_once_in_order(tmp_path, seed):
    rng = random.Random(seed)
    separator = b"\n" if seed % 3 else b"\0"
    path, data = random_file(tmp_path, rng, separator)
    cuts = sorted({0, len(data), *(rng.randrange(len(data) + 1) for _ in range(rng.choice((1, 5, 40, 300))))})
    fd = os.open(path, os.O_RDONLY)
    try:
        pieces = [lines_starting_in(fd, start, end, separator) for start, end in zip(cuts, cuts[1:])]
    finally:
        os.close(fd)
    assert [record for values, _ in pieces for record in values] == records_of(data, separator)
    for values, value_bytes in pieces:
        assert value_bytes == sum(map(len, values))


def test_a_range_inside_one_long_record_holds_nothing_and_its_first_range_reads_past_the_end(tmp_path):
    path = tmp_path / "long.log"
    path.write_bytes(b"short\n" + b"L" * 200_000 + b"\nafter")
    fd = os.open(path, os.O_RDONLY)
    try:
        assert lines_starting_in(fd, 0, 10, b"\n") == ([b"short", b"L" * 200_000], 200_005)
        assert lines_starting_in(fd, 10, 100_000, b"\n") == ([], 0)
        assert lines_starting_in(fd, 100_000, 200_010, b"\n") == ([b"after"], 5)
        assert lines_starting_in(fd, 6, 7, b"\n") == ([b"L" * 200_000], 200_000)  # starts at the range's start
        assert lines_starting_in(fd, 300_000, 400_000, b"\n") == ([], 0)  # past the end: the file shrank
    finally:
        os.close(fd)


def test_runs_fit_the_limit_keep_order_and_give_an_oversized_value_its_own_run():
    rng = random.Random(7)
    values = [bytes(rng.randrange(0, 500)) for _ in range(3000)] + [bytes(5000)] + [b"x"] * 10
    runs = runs_that_fit(values, 4096)
    assert [v for run in runs for v in run] == values
    for run in runs:
        estimate = sum(map(len, run)) + RECORD_OVERHEAD * len(run)
        assert estimate <= 4096 or len(run) == 1
    assert runs_that_fit(values, 4096, sum(map(len, values))) == runs
    assert runs_that_fit(values[:5], 1 << 20) == [values[:5]]
    assert runs_that_fit([], 100) == []


def produce_file(path, workers: int, producer=None, compression=ZSTD, limit=64 << 10, separator=b"\n"):
    producer = producer or CollectingProducer()
    files = FileProducer([str(path)], separator, compression, limit, workers)
    try:
        progress = Counting()
        sent = files.produce(producer, "t", None, 0, progress)
        return producer, sent, progress
    finally:
        files.close()


@pytest.mark.parametrize("workers", [0, 1, 3])
def test_every_record_is_sent_once_in_order_in_batches_that_fit(tmp_path, workers):
    path, data = random_file(tmp_path, random.Random(workers), count=3000)
    producer, sent, progress = produce_file(path, workers)
    assert producer.values() == records_of(data, b"\n")
    assert sent == progress.records == len(records_of(data, b"\n"))
    assert progress.bytes == len(data)
    assert len(producer.batches) > 10
    for _, batch, _, partition in producer.batches:
        assert partition is None
        values = [r.value for r in decode_records(batch)]
        assert sum(map(len, values)) + RECORD_OVERHEAD * len(values) <= 64 << 10 or len(values) == 1


def test_a_killed_worker_leaves_its_ranges_and_the_rest_to_this_process(tmp_path):
    path, data = random_file(tmp_path, random.Random(1), count=4000)
    files = FileProducer([str(path)], b"\n", NONE, 32 << 10, 2)

    def kill_a_worker(sent):
        if sent == 3:
            os.kill(files.pool.pids[1], signal.SIGKILL)

    producer = CollectingProducer(kill_a_worker)
    pids = files.pool.pids
    try:
        files.produce(producer, "t", None, 0, Counting())
    finally:
        files.close()
    assert producer.values() == records_of(data, b"\n")
    assert not files.pool.usable
    for pid in pids:
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reaped


@pytest.mark.parametrize("workers", [0, 2])
def test_a_line_cut_where_the_writer_paused_is_sent_whole_once_the_file_stops_growing(tmp_path, workers):
    path = tmp_path / "paused.log"
    first = b"".join(b"line %d %s\n" % (i, b"x" * 100) for i in range(20_000)) + b"partial-"
    path.write_bytes(first)

    def finish_the_line_once(_):
        if sum(count for *_, count, _ in producer.batches) >= 20_000 and not appended:
            appended.append(True)  # every whole line is sent: only then the writer goes on
            with open(path, "ab") as stream:
                stream.write(b"rest\nnext line\nlast, no newline")

    appended: list = []
    producer = CollectingProducer(finish_the_line_once)
    producer, sent, progress = produce_file(path, workers, producer)
    assert appended
    whole = first + b"rest\nnext line\nlast, no newline"
    assert producer.values() == records_of(whole, b"\n")  # "partial-rest", not "partial-" and a lost "rest"
    assert sent == progress.records == len(records_of(whole, b"\n")) and progress.bytes == len(whole)


def test_standard_input_read_from_the_middle_of_a_line_starts_with_the_rest_of_it(tmp_path):
    path, data = random_file(tmp_path, random.Random(8), count=3000)
    fd = os.open(path, os.O_RDONLY)
    try:
        skipped = data.index(b"\n") // 2 or 1  # as after `head -c N` on the same input
        os.lseek(fd, skipped, os.SEEK_SET)
        files = FileProducer([fd], b"\n", NONE, 32 << 10, 2)
        try:
            producer = CollectingProducer()
            files.produce(producer, "t", None, 0, Counting())
        finally:
            files.close()
        assert producer.values() == records_of(data[skipped:], b"\n")
        assert os.lseek(fd, 0, os.SEEK_CUR) == len(data)
    finally:
        os.close(fd)


def test_a_file_that_grows_while_it_is_produced_is_read_to_its_end(tmp_path):
    path = tmp_path / "growing.log"
    first = b"".join(b"first %d %s\n" % (i, b"x" * 100) for i in range(3000))
    later = b"".join(b"later %d\n" % i for i in range(500)) + b"last without newline"
    path.write_bytes(first)

    def append_once(sent):
        if sent == 1:
            with open(path, "ab") as stream:
                stream.write(later)

    producer, sent, _ = produce_file(path, 2, CollectingProducer(append_once))
    assert producer.values() == records_of(first + later, b"\n")


def test_ranges_the_workers_fail_are_done_here_and_a_source_that_cannot_be_read_raises(tmp_path, monkeypatch):
    from logship.workers import file_producer

    path, data = random_file(tmp_path, random.Random(2), count=2000)
    here, read = os.getpid(), file_producer.lines_starting_in

    def fails_in_workers(*args):
        if os.getpid() != here:
            raise OSError("a worker cannot read")
        return read(*args)

    monkeypatch.setattr(file_producer, "lines_starting_in", fails_in_workers)
    files = FileProducer([str(path), str(tmp_path / "missing.log")], b"\n", NONE, 32 << 10, 2)
    try:
        producer = CollectingProducer()
        assert files.produce(producer, "t", None, 0, Counting()) == 2000
        assert producer.values() == records_of(data, b"\n") and len(producer.batches) > 5
        assert files.pool.usable  # the workers answered -1, and are still there
        with pytest.raises(FileNotFoundError):
            files.produce(CollectingProducer(), "t", None, 1, Counting())
    finally:
        files.close()


def test_big_regular_files_go_by_ranges_pipes_as_streams_and_the_rest_serially(tmp_path):
    small, big = tmp_path / "small", tmp_path / "big"
    small.write_bytes(b"x\n" * 10)
    big.write_bytes(b"y" * PARALLEL_FROM)
    assert parallel_kind(str(small)) is None and parallel_kind(str(big)) == "range"
    assert parallel_kind(str(tmp_path / "missing")) is None and parallel_kind("/dev/null") is None
    os.mkfifo(tmp_path / "fifo")
    assert parallel_kind(str(tmp_path / "fifo")) == "stream"
    read, write = os.pipe()
    try:
        assert parallel_kind(read) == "stream"
    finally:
        os.close(read)
        os.close(write)
    fd = os.open(big, os.O_RDONLY)
    try:
        assert parallel_kind(fd) == "range"
        os.lseek(fd, 10, os.SEEK_SET)  # fewer bytes left than PARALLEL_FROM
        assert parallel_kind(fd) is None
    finally:
        os.close(fd)


def logship(*args, stdin=None, env=None, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "logship", *map(str, args)], stdin=stdin, capture_output=True,
                          timeout=timeout, env=dict(os.environ, PYTHONPATH=str(ROOT), **(env or {})))


@pytest.mark.integration
def test_the_command_sends_a_big_file_and_redirected_stdin_as_the_serial_path_does(broker, tmp_path):
    path = tmp_path / "big.log"
    lines = [b"%07d %s" % (i, b"z" * (i % 150)) for i in range(80_000)]
    path.write_bytes(b"\n".join(lines))  # > PARALLEL_FROM, last line without a newline
    assert path.stat().st_size >= PARALLEL_FROM
    create = logship("topics", "create", "spread", "-p", "3", "-b", broker.address)
    assert create.returncode == 0, create.stderr
    runs = {"file": logship("produce", "spread", "-b", broker.address, path),
            "serial": logship("produce", "serial", "-b", broker.address, path, env={"LOGSHIP_ENCODE_WORKERS": "0"})}
    with open(path, "rb") as stdin:
        runs["stdin"] = logship("produce", "stdin", "-b", broker.address, stdin=stdin)
    for name, run in runs.items():
        assert run.returncode == 0, (name, run.stderr)
    for topic in ("serial", "stdin"):
        out = logship("consume", topic, "-b", broker.address, "-e")
        assert out.stdout.split(b"\n")[:-1] == lines, topic
    spread = logship("consume", "spread", "-b", broker.address, "-e", "-f", "%p %v\\n").stdout.split(b"\n")[:-1]
    by_partition: dict[bytes, list[bytes]] = {}
    for line in spread:
        partition, value = line.split(b" ", 1)
        by_partition.setdefault(partition, []).append(value)
    assert len(by_partition) == 3  # batch by batch, the sticky partition moves on
    assert sorted(v for values in by_partition.values() for v in values) == lines
    for values in by_partition.values():
        assert values == sorted(values)  # each partition in file order


@pytest.mark.integration
def test_a_bad_worker_count_is_a_usage_error(broker, tmp_path):
    path = tmp_path / "big.log"
    path.write_bytes(b"line\n" * (PARALLEL_FROM // 5 + 1))
    run = logship("produce", "t", "-b", broker.address, path, env={"LOGSHIP_ENCODE_WORKERS": "lots"})
    assert run.returncode == 2
    assert b"LOGSHIP_ENCODE_WORKERS" in run.stderr
