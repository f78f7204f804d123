"""`logship produce` from a pipe: workers/pipe_blocks.py reads whole records into shared slots,
and FileProducer.produce_stream sends them through the workers (or from here when few), in
input order; a slow pipe's records are not held back, and neither are the workers' batches
while the pipe waits."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time

import pytest

from conftest import ROOT, wait_until
from logship.workers.pipe_blocks import PipeBlocks
from logship.workers.file_producer import SMALLEST_BLOCK, FileProducer
from logship.compression import NONE
from produce_helpers import Counting, MixedProducer, records_of


def feed(data: bytes | list[bytes], pieces: int = 1, pause: float = 0.0,
         keep_open: threading.Event | None = None) -> int:
    """A pipe's read end, written `data` by a thread: in `pieces` chunks of random sizes, or
    chunk by chunk if it is a list; `pause` seconds after each."""
    read, write = os.pipe()
    if isinstance(data, list):
        chunks = data
    else:
        rng = random.Random(len(data))
        cuts = sorted(rng.sample(range(1, len(data)), min(pieces - 1, len(data) - 1))) if len(data) > 1 else []
        chunks = [data[start:end] for start, end in zip([0, *cuts], [*cuts, len(data)])]

    def writer():
        for chunk in chunks:
            os.write(write, chunk)
            time.sleep(pause)
        if keep_open is not None:
            keep_open.wait(30)
        os.close(write)

    threading.Thread(target=writer, daemon=True).start()
    return read


def lines(rng: random.Random, count: int, separator: bytes = b"\n", long_every: int = 0) -> bytes:
    out = [bytes(rng.choice(b"abc ") for _ in range(rng.choice((0, 3, 90, 700)))) for _ in range(count)]
    if long_every:
        for i in range(0, count, long_every):
            out[i] = b"L" * 300_000  # longer than a slot
    return separator.join(out) + (separator if rng.random() < 0.5 else b"")


@pytest.mark.parametrize("seed", range(6))
def test_blocks_are_whole_records_in_order_and_stay_intact_until_their_slot_comes_round(seed):
    rng = random.Random(seed)
    separator = b"\0" if seed % 2 else b"\n"
    data = lines(rng, 3000, separator, long_every=900 if seed % 3 == 0 else 0)
    blocks = PipeBlocks(4, 100_000, separator)
    fd = feed(data, pieces=rng.choice((1, 7, 300)))
    got, kept = [], []  # kept: the last two blocks still in the region, with their bytes when read
    try:
        while True:
            where, length, ended = blocks.read(fd, rng.choice((1000, 50_000, 200_000)), 0.001)
            block = blocks.data(where, length) if isinstance(where, int) else where
            assert length == len(block)
            if not ended:
                assert block == b"" or block.endswith(separator)
            got.append(block)
            for offset, size, copy in kept:
                assert blocks.data(offset, size) == copy  # slots - 2 blocks back: untouched
            if isinstance(where, int):
                kept = (kept + [(where, length, block)])[-2:]
            else:
                kept = []
            if ended:
                break
    finally:
        os.close(fd)
        blocks.close()
    assert b"".join(got) == data


def produce_stream(data: bytes, workers: int, producer=None, pieces=1, pause=0.0, keep_open=None, linger=0.005):
    producer = producer or MixedProducer()
    files = FileProducer([0], b"\n", NONE, 4 * SMALLEST_BLOCK, workers, pipes=True)
    fd = feed(data, pieces, pause, keep_open)
    try:
        progress = Counting()
        sent = files.produce_stream(producer, "t", None, fd, linger, progress)
        return producer, sent, progress
    finally:
        os.close(fd)
        files.close()


@pytest.mark.parametrize("workers", [0, 2])
def test_a_fast_pipe_is_sent_whole_and_in_order(workers):
    data = lines(random.Random(workers), 20_000, long_every=7000)
    producer, sent, progress = produce_stream(data, workers, MixedProducer(), pieces=50)
    assert producer.values() == records_of(data, b"\n")
    assert producer.small < len(producer.batches) / 2 or not workers  # mostly the workers' batches
    assert sent == progress.records == len(records_of(data, b"\n")) and progress.bytes == len(data)


def test_a_slow_pipes_few_records_go_from_here_among_the_workers_blocks_in_order():
    rng = random.Random(5)
    data = lines(rng, 4000) + b"".join(b"slow %d\n" % i for i in range(20)) + lines(rng, 4000)
    producer = MixedProducer()
    produce_stream(data, 2, producer, pieces=60, pause=0.01)
    assert producer.values() == records_of(data, b"\n")
    assert 0 < producer.small < len(producer.batches)  # some blocks went to the workers, some not
    assert len(data) > 8 * SMALLEST_BLOCK


def test_the_workers_batches_are_sent_while_the_pipe_waits():
    rng = random.Random(9)
    chunks = [b"".join(b"%d %s\n" % (i, b"w" * rng.randrange(200)) for i in range(1500)) for _ in range(5)]
    assert all(3 * SMALLEST_BLOCK > len(chunk) > SMALLEST_BLOCK for chunk in chunks)  # a block each
    expected = records_of(b"".join(chunks), b"\n")
    go_on = threading.Event()
    producer = MixedProducer()
    done = threading.Thread(target=produce_stream, args=(chunks, 2, producer),
                            kwargs={"keep_open": go_on, "pause": 0.05})
    done.start()
    try:
        delivered_while_open = wait_until(lambda: len(producer.values()) == len(expected), timeout=20)
    finally:
        go_on.set()
        done.join(30)
    assert delivered_while_open
    assert producer.values() == expected
    assert producer.small == 0  # every block went by a worker


def start_producing(producer, workers=2):
    """A pipe, and produce_stream reading it on a thread: (write end, thread)."""
    files = FileProducer([0], b"\n", NONE, 4 * SMALLEST_BLOCK, workers, pipes=True)
    read, write = os.pipe()  # after the fork: the workers must not hold its write end open

    def run():
        try:
            files.produce_stream(producer, "t", None, read, 0.005, Counting())
        finally:
            os.close(read)
            files.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return write, thread


def test_a_steady_trickle_goes_out_within_the_linger_not_when_a_block_fills():
    producer = MixedProducer()
    write, thread = start_producing(producer)
    try:
        for i in range(300):  # a line every 2 ms: the pipe never stays idle for the 5 ms linger
            os.write(write, b"line %d\n" % i)
            time.sleep(0.002)
            if i == 150:
                assert len(producer.values()) > 100  # the first lines went while the writer goes on
    finally:
        os.close(write)
        thread.join(30)
    assert not thread.is_alive()
    assert producer.values() == [b"line %d" % i for i in range(300)]


def test_records_before_a_record_longer_than_a_slot_go_while_its_writer_stalls():
    lines = b"".join(b"%d %s\n" % (i, b"s" * 100) for i in range(3000))
    long_record = b"L" * (16 * SMALLEST_BLOCK)  # three slots long
    producer = MixedProducer()
    write, thread = start_producing(producer)
    try:
        os.write(write, lines + long_record[:-SMALLEST_BLOCK])  # more than a slot of it, then a stall
        delivered = wait_until(lambda: len(producer.values()) == 3000, timeout=10)
        os.write(write, long_record[-SMALLEST_BLOCK:] + b"\nafter\n")
    finally:
        os.close(write)
        thread.join(30)
    assert not thread.is_alive() and delivered
    assert producer.values() == records_of(lines, b"\n") + [long_record, b"after"]


@pytest.mark.integration
def test_the_command_from_a_pipe_gives_what_the_serial_path_gives(broker):
    data = b"".join(b"%07d %s\n" % (i, b"p" * (i % 180)) for i in range(60_000)) + b"no newline at the end"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for topic, workers in (("piped", "2"), ("piped-serial", "0")):
        cat = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        producer = subprocess.Popen([sys.executable, "-m", "logship", "produce", topic, "-b", broker.address],
                                    stdin=cat.stdout, env=dict(env, LOGSHIP_ENCODE_WORKERS=workers))
        cat.stdout.close()
        cat.stdin.write(data)
        cat.stdin.close()
        assert producer.wait(timeout=120) == 0 and cat.wait(timeout=10) == 0
        out = subprocess.run([sys.executable, "-m", "logship", "consume", topic, "-b", broker.address, "-e"],
                             capture_output=True, env=env, timeout=120, check=True).stdout
        assert out == data + b"\n", topic
