"""Storage under the admin APIs: `Store.add_partitions` (grows only, durable, survives a reopen and
a crash part-way), `Partition.delete_before` (the log start moves durably, whole segments go) and
`Partition.max_timestamp` (the largest timestamp and where it is, from the segments' indexes)."""

from __future__ import annotations

import shutil

import pytest

from storage_batches import copy_unclean, make_batch

from logship.errors import InvalidPartitionsError, OffsetOutOfRangeError, UnknownTopicError
from logship.storage import LogConfig, Store


def test_add_partitions_grows_only(tmp_path):
    with Store(tmp_path / "d") as store:
        store.create_topic("t", 2)
        assert store.add_partitions("t", 4) == [2, 3]
        assert store.topics() == {"t": 4}
        for total in (4, 3, 0):
            with pytest.raises(InvalidPartitionsError, match="has 4 partitions"):
                store.add_partitions("t", total)
        with pytest.raises(UnknownTopicError):
            store.add_partitions("missing", 3)
        store.partition("t", 3).append_batches(make_batch(2))
    with Store(tmp_path / "d") as store:
        assert store.topics() == {"t": 4}
        assert store.partition("t", 3).log_end_offset == 2
        assert store.partition("t", 2).log_end_offset == 0


def test_a_crash_while_adding_leaves_all_or_nothing(tmp_path):
    """The highest directory is made first: if only it exists, a reopen makes the rest."""
    with Store(tmp_path / "d") as store:
        store.create_topic("t", 1)
        store.add_partitions("t", 4)
    shutil.rmtree(tmp_path / "d" / "t-1")  # as if the crash came before t-1 and t-2 were made
    shutil.rmtree(tmp_path / "d" / "t-2")
    with Store(tmp_path / "d") as store:
        assert store.topics() == {"t": 4}
        assert store.partition("t", 1).log_end_offset == 0


def test_delete_before_is_durable_and_drops_whole_segments(tmp_path):
    config = LogConfig(segment_bytes=300)
    with Store(tmp_path / "d", config) as store:
        store.create_topic("t", 1)
        partition = store.partition("t", 0)
        for _ in range(10):
            partition.append_batches(make_batch(2))  # ~ 2 batches per segment
        segments = len(partition.segments)
        partition.delete_before(9)
        assert partition.log_start_offset == 9
        assert len(partition.segments) < segments
        assert all(s.next_offset > 9 for s in partition.segments)
        with pytest.raises(OffsetOutOfRangeError):
            partition.read(8, 1 << 20)
        assert partition.read(9, 1 << 20) is not None
        with pytest.raises(OffsetOutOfRangeError):
            partition.delete_before(21)
        copy_unclean(tmp_path / "d", tmp_path / "crashed")  # the checkpoint was written when the start moved
    with Store(tmp_path / "crashed", config) as store:
        assert store.recovered and store.partition("t", 0).log_start_offset == 9
    with Store(tmp_path / "d", config) as store:
        assert store.partition("t", 0).log_start_offset == 9
        store.partition("t", 0).delete_before(20)  # everything: an empty active segment at 20 stays
        assert store.partition("t", 0).log_start_offset == 20
        assert store.partition("t", 0).log_end_offset == 20
    with Store(tmp_path / "d", config) as store:
        assert (store.partition("t", 0).log_start_offset, store.partition("t", 0).log_end_offset) == (20, 20)


def test_max_timestamp(tmp_path):
    config = LogConfig(segment_bytes=300)
    with Store(tmp_path / "d", config) as store:
        store.create_topic("t", 1)
        partition = store.partition("t", 0)
        assert partition.max_timestamp() is None
        for ts in (10, 90, 20, 90, 30):  # one record per batch, offsets 0-4
            partition.append_batches(make_batch(1, timestamp=ts))
        assert len(partition.segments) > 2
        assert partition.max_timestamp() == (90, 1)  # the first batch carrying it
        assert partition.max_timestamp(max_offset=1) == (10, 0)
        partition.delete_before(2)
        assert partition.max_timestamp() == (90, 3)
        partition.append_batches(make_batch(3, timestamp=95))  # offsets 5-7: last offset of the batch
        assert partition.max_timestamp() == (95, 7)
    with Store(tmp_path / "d", config) as store:
        assert store.partition("t", 0).max_timestamp() == (95, 7)


def _brute_max_timestamp(partition):
    """(offset, timestamp) of the first record with the largest timestamp in [log start, high
    watermark), by decoding every record; (-1, -1) when there are none."""
    from logship import records
    found, offset = [], partition.log_start_offset
    while offset < partition.high_watermark:
        piece = partition.read(offset, 1 << 30)
        if piece is None:
            break
        with piece:
            data = piece.read_bytes()
        for pos, header in records.iter_batches(data):
            for record in records.decode_records(data[pos:pos + header.size]):
                if partition.log_start_offset <= record.offset < partition.high_watermark:
                    found.append((record.timestamp, record.offset))
            offset = header.last_offset + 1
    if not found:
        return -1, -1
    top = max(t for t, _ in found)
    return min(o for t, o in found if t == top), top


def test_max_timestamp_matches_every_record_whatever_the_deletes_truncations_and_reopens():
    """ListOffsets MAX_TIMESTAMP against a brute force over the records, also when the log
    start falls inside a batch (DeleteRecords), whose maxTimestamp may be a deleted record's."""
    import tempfile

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from logship.broker.offsets import offset_of_max_timestamp
    from logship.storage import Partition

    ops = st.lists(st.one_of(
        st.tuples(st.just("append"), st.lists(st.integers(0, 50), min_size=1, max_size=4)),
        st.tuples(st.just("delete"), st.floats(0, 1)),
        st.tuples(st.just("truncate"), st.floats(0, 1)),
        st.tuples(st.just("reopen"), st.none())), min_size=1, max_size=25)

    @settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(ops, st.sampled_from([200, 400, 1000]), st.sampled_from([0, 100, 4096]))
    def check(steps, segment_bytes, index_interval_bytes):
        config = LogConfig(segment_bytes=segment_bytes, index_interval_bytes=index_interval_bytes)
        with tempfile.TemporaryDirectory() as d:
            p = Partition("t", 0, d, config)
            try:
                for op, arg in steps:
                    if op == "append":
                        p.append_batches(_batch_with_timestamps(arg))
                    elif op == "delete":
                        p.delete_before(p.log_start_offset + round(arg * (p.high_watermark - p.log_start_offset)))
                    elif op == "truncate":
                        p.truncate_to(p.log_start_offset + round(arg * (p.log_end_offset - p.log_start_offset)))
                    else:
                        start = p.log_start_offset
                        p.close()
                        p = Partition("t", 0, d, config, log_start_offset=start)
                    assert p.log_start_offset <= p.high_watermark <= p.log_end_offset
                    assert offset_of_max_timestamp(p) == _brute_max_timestamp(p), steps
            finally:
                p.close()

    check()


def _batch_with_timestamps(timestamps):
    from logship import records
    return records.build_batch([(ts, None, b"x", ()) for ts in timestamps])
