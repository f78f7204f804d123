"""Committed offsets as a compacted log: record format, rebuild on start, bounded size."""

from __future__ import annotations

import time

from logship import records
from logship.broker.config import BrokerConfig
from logship.broker.groups import OFFSETS_TOPIC, CommittedOffset, GroupCoordinator, OffsetStore
from logship.broker.groups.offsets import decode_key, decode_value, encode_key, encode_value
from logship.storage import Store


def test_records_use_kafkas_offset_commit_key_v1_and_value_v3():
    key = encode_key("grp", "tpc", 7)
    assert key == b"\x00\x01" + b"\x00\x03grp" + b"\x00\x03tpc" + b"\x00\x00\x00\x07"
    value = encode_value(CommittedOffset(42, 5, "md", 1_700_000_000_000))
    assert value == (b"\x00\x03" + (42).to_bytes(8, "big") + (5).to_bytes(4, "big") + b"\x00\x02md"
                     + (1_700_000_000_000).to_bytes(8, "big"))
    assert decode_key(key) == ("grp", "tpc", 7)
    assert decode_value(value) == CommittedOffset(42, 5, "md", 1_700_000_000_000)
    v1 = b"\x00\x01" + (9).to_bytes(8, "big") + b"\x00\x00" + (11).to_bytes(8, "big") + (12).to_bytes(8, "big")
    assert decode_value(v1) == CommittedOffset(9, -1, "", 11)  # Kafka's older layout is read too
    assert decode_key(b"\x00\x02\x00\x03grp") is None  # a group-metadata key: not an offset


def test_each_commit_is_one_batch_and_a_tombstone_removes_an_offset(tmp_path):
    config = BrokerConfig()
    with Store(tmp_path / "d") as store:
        offsets = OffsetStore(store, config.offsets_log_config(), clock=lambda: 1234.5)
        result = offsets.commit("g", [("t", 0, CommittedOffset(1)), ("t", 1, CommittedOffset(2))])
        assert (result.base_offset, result.record_count) == (0, 2)
        with offsets.partition.read(0, 1 << 20) as piece:
            batches = list(records.iter_batches(piece.read_bytes()))
        assert len(batches) == 1 and batches[0][1].base_timestamp == 1_234_500
        offsets.partition.append_batches(bytearray(records.build_batch([(0, encode_key("g", "t", 0), None, ())])))
    with Store(tmp_path / "d") as store:
        offsets = OffsetStore(store, config.offsets_log_config())
        assert offsets.committed("g") == {("t", 1): CommittedOffset(2)}
        assert store.topic_config(OFFSETS_TOPIC).cleanup_policy == "compact"
        assert store.partition(OFFSETS_TOPIC, 0).config.retention_ms == -1


def test_a_million_commits_leave_the_offsets_topic_bounded_and_the_latest_offsets_survive(tmp_path):
    """1,000 partitions committed 1,000 times each, as one busy consumer would; compaction
    runs every 100 rounds as the broker's maintenance would."""
    partitions, rounds = 1000, 1000
    config = BrokerConfig()  # offsets segments of 1 MiB
    started = time.monotonic()
    written = largest = 0
    with Store(tmp_path / "d") as store:
        coordinator = GroupCoordinator(OffsetStore(store, config.offsets_log_config()), config)
        log = coordinator.offsets.partition
        for r in range(rounds):
            batch = [("busy", p, CommittedOffset(r * partitions + p, -1, "", 0)) for p in range(partitions)]
            errors, appended = coordinator.commit("busy-group", -1, "", batch)
            assert not any(errors.values())
            written += appended.size
            if r % 100 == 99:
                store.compact()
                largest = max(largest, log.size_bytes)
        coordinator.commit("other", -1, "", [("busy", 0, CommittedOffset(5))])
        store.compact()
        assert log.log_end_offset == partitions * rounds + 1
        final_size = log.size_bytes
    assert written > 40 << 20
    assert largest < 3 * config.offsets_segment_bytes, largest
    assert final_size < 2 * config.offsets_segment_bytes, final_size
    with Store(tmp_path / "d") as store:
        offsets = OffsetStore(store, config.offsets_log_config())
        committed = offsets.committed("busy-group")
        assert len(committed) == partitions
        assert all(committed[("busy", p)].offset == (rounds - 1) * partitions + p for p in range(partitions))
        assert offsets.committed("other")[("busy", 0)].offset == 5
        assert offsets.loaded_records < 3 * partitions + config.offsets_segment_bytes // 40
    assert time.monotonic() - started < 60


def test_the_server_compacts_the_offsets_topic_on_its_maintenance_interval(tmp_path):
    import asyncio

    from logship.broker.broker import Broker
    from logship.broker.server import run

    config = BrokerConfig(listen_port=0, offsets_segment_bytes=32 << 10, compaction_check_interval_s=0.05)

    async def main() -> tuple[int, int]:
        with Store(tmp_path / "d") as store:
            broker = Broker(store, config)
            log = broker.group_offsets.partition
            for r in range(200):
                broker.groups.commit("g", -1, "", [("t", p, CommittedOffset(r)) for p in range(20)])
            before = log.size_bytes
            server = asyncio.create_task(run(broker, lambda host, port: None))
            try:
                deadline = time.monotonic() + 10
                while log.size_bytes > before // 4 and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
            finally:
                server.cancel()
                await asyncio.gather(server, return_exceptions=True)
            return before, log.size_bytes

    before, after = asyncio.run(main())
    assert after < before // 4, (before, after)


def test_many_offsets_are_committed_and_deleted_in_batches_under_the_limits(tmp_path):
    # 6,000 offsets of a long topic name: ~1.4 MB of records, more than one batch may hold
    # (max.message.bytes) and more than a segment of __consumer_offsets (offsets_segment_bytes)
    config = BrokerConfig()
    topic = "t" * 200
    wanted = {(topic, p): CommittedOffset(p) for p in range(6000)}
    with Store(tmp_path / "d") as store:
        offsets = OffsetStore(store, config.offsets_log_config())
        limits = offsets.partition.config
        result = offsets.commit("g", [(t, p, c) for (t, p), c in wanted.items()])
        assert result.log_end_offset == 6000 and offsets.committed("g") == wanted
        offsets.commit("h", [(topic, 0, CommittedOffset(7))])
        result = offsets.delete("g", list(wanted), whole_group=True)
        assert result.log_end_offset == 6001 + 6001 and offsets.committed("g") == {} and "g" not in offsets.groups()
        for segment in offsets.partition.segments:
            assert segment.size <= limits.segment_bytes
            for _, header in records.iter_batches(segment.path.read_bytes()):
                assert header.size <= limits.max_batch_bytes
    with Store(tmp_path / "d") as store:
        offsets = OffsetStore(store, config.offsets_log_config())
        assert offsets.groups() == ["h"] and offsets.committed("g") == {}
