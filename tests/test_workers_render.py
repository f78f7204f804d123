"""workers/render.py: chunks decoded and rendered in forked worker processes come out
exactly as the serial path writes them, in the order they were put, and every failure
(a corrupt chunk, a killed worker) ends as the serial path would."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys

import pytest

from conftest import ROOT
from logship.cli.output import RecordSink
from logship.workers.render import RenderWorkers, default_workers, pieces
from logship.client.undecoded import Undecoded
from logship.compression import ZSTD
from logship.errors import CorruptRecordError
from logship.records import build_batch, build_batch_values


def chunks(count: int = 12, per_chunk: int = 3000):
    """Undecoded chunks of two partitions, alternating, of plain and keyed records."""
    out = []
    offsets = {0: 0, 1: 0}
    for i in range(count):
        partition = i % 2
        base = offsets[partition]
        if i % 3 == 2:
            data = build_batch([(1_800_000_000_000 + n, f"k{n}".encode(), f"keyed {partition}/{base + n}".encode(), ())
                                for n in range(per_chunk)], base_offset=base, compression=ZSTD)
        else:
            data = build_batch_values([f"line {partition}/{base + n} {'x' * (n % 300)}".encode()
                                       for n in range(per_chunk)], 1_800_000_000_000, ZSTD, base_offset=base)
        offsets[partition] = base + per_chunk
        out.append(Undecoded("t", partition, data, base, None, base + per_chunk))
    return out


def serial_output(pieces, fmt="%v\\n", grep=None) -> bytes:
    stream = io.BytesIO()
    sink = RecordSink(stream, fmt, grep=grep)
    for chunk in pieces:
        sink.write_chunk(chunk.decode())
    return stream.getvalue()


@pytest.mark.parametrize("fmt, grep, piece", [("%v\\n", None, 1 << 20), ("%p:%o %k=%v\\n", None, 1 << 20),
                                              ("%v\\n", r"/1\d5 ", 1 << 20), ("%p:%o %v\\n", None, 1)])
def test_workers_write_what_the_serial_path_writes_in_the_same_order(fmt, grep, piece):
    pieces = chunks()
    stream = io.BytesIO()
    sink = RecordSink(stream, fmt, grep=grep)
    with RenderWorkers(sink, 2, direct_below=0, piece_bytes=piece) as pool:
        for chunk in pieces:
            pool.put(chunk)
        assert len(pool.workers.pids) == 2
        pool.drain()
    assert stream.getvalue() == serial_output(pieces, fmt, grep)
    assert sink.written == serial_output(pieces, fmt, grep).count(b"\n")


def test_a_big_chunk_is_cut_into_pieces_of_whole_batches_unless_it_has_aborted_transactions():
    batches = [build_batch_values([b"r%d-%d" % (b, n) for n in range(50)], 1_800_000_000_000, base_offset=50 * b)
               for b in range(10)]
    data = b"".join(batches) + batches[0][:30]  # and the start of a batch the fetch cut short
    chunk = Undecoded("t", 0, data, 0, None, 500)
    size = len(batches[0])
    got = list(pieces(chunk, 2 * size))
    assert b"".join(bytes(p.data) for p in got) == data
    assert [len(p.data) for p in got] == [2 * size] * 4 + [2 * size + 30]
    assert all(p._replace(data=b"") == chunk._replace(data=b"") for p in got)
    assert list(pieces(chunk, 6 * size)) == [chunk]  # not worth cutting
    aborted = chunk._replace(aborted=[(7, 0)])
    assert list(pieces(aborted, 2 * size)) == [aborted]
    damaged = bytearray(data)
    damaged[3 * size + 8:3 * size + 12] = (-12).to_bytes(4, "big", signed=True)  # a batch "of 0 bytes"
    cut = list(pieces(chunk._replace(data=bytes(damaged)), 2 * size))
    assert b"".join(p.data for p in cut) == damaged  # no endless loop: the rest is one piece


def test_small_chunks_are_decoded_here_after_the_results_before_them():
    pieces = chunks(count=9, per_chunk=500)
    stream = io.BytesIO()
    sink = RecordSink(stream)
    big_enough = sorted(len(c.data) for c in pieces)[4]
    with RenderWorkers(sink, 2, direct_below=big_enough) as pool:
        for chunk in pieces:
            pool.put(chunk)
        pool.drain()
    assert stream.getvalue() == serial_output(pieces)


def test_a_corrupt_chunk_raises_the_serial_error_after_everything_before_it_is_written():
    pieces = chunks(count=6)
    damaged = bytearray(pieces[3].data)
    damaged[-5] ^= 0xFF  # inside the records: the CRC no longer matches
    pieces[3] = pieces[3]._replace(data=bytes(damaged))
    stream = io.BytesIO()
    with RenderWorkers(RecordSink(stream), 2, direct_below=0) as pool:
        with pytest.raises(CorruptRecordError, match="CRC"):
            for chunk in pieces:
                pool.put(chunk)
            pool.drain()
    assert stream.getvalue() == serial_output(pieces[:3])


def test_a_killed_worker_leaves_the_rest_to_this_process_and_nothing_is_lost():
    pieces = chunks(count=10)
    stream = io.BytesIO()
    with RenderWorkers(RecordSink(stream), 2, direct_below=0) as pool:
        pool.put(pieces[0])
        pids = pool.workers.pids
        os.kill(pids[1], signal.SIGKILL)
        for chunk in pieces[1:]:
            pool.put(chunk)
        pool.drain()
        assert not pool.workers.pids
    assert stream.getvalue() == serial_output(pieces)
    for pid in pids:
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reaped: no zombie left behind


def test_closing_stops_and_reaps_the_workers():
    pool = RenderWorkers(RecordSink(io.BytesIO()), 3, direct_below=0)
    pool.put(chunks(count=1)[0])
    pids = pool.workers.pids
    assert len(pids) == 3
    pool.close()
    for pid in pids:
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def test_the_worker_count_comes_from_the_environment_or_the_cpus(monkeypatch):
    monkeypatch.setenv("LOGSHIP_DECODE_WORKERS", "3")
    assert default_workers() == 3
    monkeypatch.setenv("LOGSHIP_DECODE_WORKERS", "0")
    assert default_workers() == 0
    monkeypatch.setenv("LOGSHIP_DECODE_WORKERS", "many")
    with pytest.raises(ValueError, match="LOGSHIP_DECODE_WORKERS"):
        default_workers()
    monkeypatch.delenv("LOGSHIP_DECODE_WORKERS")
    cpus = len(os.sched_getaffinity(0))
    assert default_workers() == (0 if cpus < 2 else min(cpus, 4))


def test_consume_with_and_without_workers_prints_the_same(start_broker, tmp_path):
    """A real broker, three partitions, 60,000 records: `logship consume -e` with two
    workers prints each partition's records exactly as with none."""
    broker = start_broker()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    run = [sys.executable, "-m", "logship"]
    subprocess.run([*run, "topics", "create", "w", "-p", "3", "-b", broker.address], check=True, env=env,
                   capture_output=True)
    lines = b"".join(b"record %d %s\n" % (n, b"y" * (n % 250)) for n in range(60_000))
    subprocess.run([*run, "produce", "w", "-b", broker.address], input=lines, check=True, env=env,
                   capture_output=True)
    outputs = {}
    for workers in ("0", "2"):
        done = subprocess.run([*run, "consume", "w", "-b", broker.address, "-e", "-f", "%p %o %v\\n"],
                              capture_output=True, check=True, timeout=120,
                              env=dict(env, LOGSHIP_DECODE_WORKERS=workers))
        per_partition: dict[bytes, list[bytes]] = {}
        for line in done.stdout.splitlines():
            per_partition.setdefault(line.split(b" ", 1)[0], []).append(line)
        outputs[workers] = per_partition
    assert outputs["0"] == outputs["2"]
    assert sum(map(len, outputs["2"].values())) == 60_000
