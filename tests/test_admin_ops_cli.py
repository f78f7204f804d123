"""`logship topics alter --partitions` and `logship groups delete` end to end, logship's own
admin client (add_partitions, delete_records, max_timestamp_offsets, delete_groups,
delete_offsets), and ApiVersions v3/v4 answered by a real broker with a v0 response header."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
import time

import pytest

from conftest import ROOT, wait_until
from test_cli_produce import logship

from logship import records
from logship.client.admin import HIGH_WATERMARK, Admin
from logship.client.cluster import Cluster
from logship.client.groups_admin import (GroupActiveError, GroupNotFoundError, commit_offsets_standalone,
                                         committed_offsets, delete_groups, delete_offsets)
from logship.errors import InvalidPartitionsError, OffsetOutOfRangeError, UnknownTopicError
from logship.protocol import ApiKey, decode_response, encode_request

pytestmark = pytest.mark.integration

BASE = (int(time.time()) - 3600) * 1000


def test_topics_alter(broker):
    assert logship("topics", "create", "web", "-p", "2", "-b", broker.address).returncode == 0
    result = logship("topics", "alter", "web", "--partitions", "5", "-b", broker.address)
    assert result.returncode == 0, result.stderr
    assert result.stderr == b"topic web now has 5 partitions\n"
    described = logship("topics", "describe", "web", "--json", "-b", broker.address)
    assert len(described.stdout.splitlines()) == 5

    smaller = logship("topics", "alter", "web", "--partitions", "3", "-b", broker.address)
    assert smaller.returncode == 1
    assert smaller.stderr.count(b"\n") == 1 and b"has 5 partitions" in smaller.stderr
    assert b"Traceback" not in smaller.stderr
    missing = logship("topics", "alter", "nope", "--partitions", "3", "-b", broker.address)
    assert missing.returncode == 4 and missing.stderr.count(b"\n") == 1 and b"nope" in missing.stderr
    usage = logship("topics", "alter", "web", "-b", broker.address)
    assert usage.returncode == 2 and b"--partitions" in usage.stderr


def test_groups_delete(broker, tmp_path):
    with Cluster(broker.address) as cluster:
        Admin(cluster).create_topic("g-topic", 1)
        commit_offsets_standalone(cluster, "old", {("g-topic", 0): 0})
        commit_offsets_standalone(cluster, "older", {("g-topic", 0): 0})
    ok = logship("groups", "delete", "old", "older", "-b", broker.address)
    assert ok.returncode == 0, ok.stderr
    assert ok.stderr == b"deleted group old\ndeleted group older\n"
    listed = logship("groups", "list", "--json", "-b", broker.address)
    assert listed.stdout == b""
    missing = logship("groups", "delete", "old", "-b", broker.address)
    assert missing.returncode == 4 and missing.stderr == b"logship: group 'old' does not exist\n"


def test_groups_delete_refuses_a_group_with_members(broker, tmp_path):
    assert logship("produce", "live-topic", "-b", broker.address, input=b"a\n").returncode == 0
    out = open(tmp_path / "member.out", "wb")
    member = subprocess.Popen([sys.executable, "-m", "logship", "consume", "live-topic", "-g", "live", "-b",
                               broker.address], stdout=out, stderr=subprocess.DEVNULL,
                              env=dict(os.environ, PYTHONPATH=str(ROOT)))
    try:
        assert wait_until(lambda: (tmp_path / "member.out").read_bytes() == b"a\n", timeout=30)
        refused = logship("groups", "delete", "live", "-b", broker.address)
        assert refused.returncode == 1
        assert refused.stderr.count(b"\n") == 1 and b"active members" in refused.stderr
        with Cluster(broker.address) as cluster:
            assert isinstance(delete_groups(cluster, ["live"])["live"], GroupActiveError)
            with pytest.raises(GroupActiveError, match="subscribed to 'live-topic'"):
                delete_offsets(cluster, "live", "live-topic")
    finally:
        member.terminate()
        member.wait(timeout=30)
        out.close()
    with Cluster(broker.address) as cluster:
        assert committed_offsets(cluster, "live") == {("live-topic", 0): 1}


def test_logship_admin_client(broker):
    with Cluster(broker.address) as cluster:
        admin = Admin(cluster)
        admin.create_topic("own", 1)
        admin.add_partitions("own", 2)
        assert admin.list_topics()["own"] == 2
        with pytest.raises(InvalidPartitionsError):
            admin.add_partitions("own", 2)
        with pytest.raises(UnknownTopicError):
            admin.add_partitions("missing", 2)
        admin.add_partitions("own", 4, validate_only=True)
        assert admin.list_topics()["own"] == 2

        batch = records.build_batch([(BASE + ts, None, b"x", ()) for ts in (5, 50, 20, 50, 1)])
        assert cluster.request(ApiKey.PRODUCE, {"transactional_id": None, "acks": -1, "timeout_ms": 5000,
                                                "topic_data": [{"name": "own", "partition_data": [
                                                    {"index": 1, "records": batch}]}]})
        assert admin.max_timestamp_offsets("own") == {0: (-1, -1), 1: (1, BASE + 50)}
        assert admin.delete_records("own", {1: 2}) == {1: 2}
        assert admin.max_timestamp_offsets("own", [1]) == {1: (3, BASE + 50)}
        with pytest.raises(OffsetOutOfRangeError, match="before offset 9"):
            admin.delete_records("own", {1: 9})
        assert admin.delete_records("own", {1: HIGH_WATERMARK, 0: HIGH_WATERMARK}) == {1: 5, 0: 0}
        assert admin.describe_topic("own")[1].log_start_offset == 5

        commit_offsets_standalone(cluster, "grp", {("own", 0): 0, ("own", 1): 5})
        delete_offsets(cluster, "grp", "own", [1])
        assert committed_offsets(cluster, "grp") == {("own", 0): 0}
        with pytest.raises(GroupNotFoundError):
            delete_offsets(cluster, "nobody", "own")
        results = delete_groups(cluster, ["grp", "nobody"])
        assert results["grp"] is None and isinstance(results["nobody"], GroupNotFoundError)
        assert results["nobody"].exit_status == 4
        assert committed_offsets(cluster, "grp") == {}


def _read_frame(sock) -> bytes:
    def exactly(n):
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            assert chunk, "connection closed"
            data += chunk
        return data
    return exactly(struct.unpack(">i", exactly(4))[0])


@pytest.mark.parametrize("version", [3, 4])
def test_api_versions_v3_and_v4_response_header_is_v0(broker, version):
    """KIP-511: the ApiVersions response header has no tagged-field section even when the body is
    flexible, so a client can read it before it knows any versions."""
    host, port = broker.address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(encode_request(ApiKey.API_VERSIONS, version, 5, "probe",
                                    {"client_software_name": "probe", "client_software_version": "1.0"}))
        frame = _read_frame(sock)
    assert frame[:4] == struct.pack(">i", 5)
    assert frame[4:6] == b"\x00\x00"  # straight into the body: error_code 0, no header tags byte
    _, body = decode_response(ApiKey.API_VERSIONS, version, frame)
    keys = {k["api_key"]: (k["min_version"], k["max_version"]) for k in body["api_keys"]}
    assert keys[ApiKey.API_VERSIONS] == (0, 4) and keys[ApiKey.CREATE_PARTITIONS] == (0, 3)
    assert keys[ApiKey.LIST_OFFSETS] == (1, 8)
