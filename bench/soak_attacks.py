"""The attackers of bench/soak.py, one per process:

    python bench/soak_attacks.py KIND HOST:PORT SECONDS COUNT

KIND is one of tests/attackers.py's (prefix, slowloris, flood, fetch, garbage, bigfetch), reused by
import and described there, or one of these:
  short   for SECONDS, COUNT connections at a time each send one frame cut short: a valid Metadata
          request's first N bytes under a size prefix of N, N running over 0 .. its length - 1
          (too short for a header, cut in the client id, cut in the body)
  lying   for SECONDS, every batch of tests/lying_batches.py into topic `lies` on one connection,
          each followed by a good batch; "refused" counts lies answered with their error code,
          "accepted" lies that were appended (a failure), "good" good batches appended
  topics  for SECONDS, CreateTopics storms under the caps: a request for 10 topics of 100
          partitions each, one request over the per-request cap (6,000 partitions) and one topic
          over the per-topic cap (20,000), then DeleteTopics of every topic made (the broker makes
          those of an over-cap request that fit under the cap); "created" (of the 10), "deleted" and
          "refused" count topics, "accepted_over_cap" requests over a cap that were not refused

As tests/attackers.py, it prints `ready` once it starts, then one JSON line of what it saw, with
"opened" and "closed" (connections the broker closed) among its keys.
"""

from __future__ import annotations

import json
import os
import struct
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import attackers  # noqa: E402
from attackers import connect, count_closed, ready  # noqa: E402
from lying_batches import LYING, good  # noqa: E402
from logship.client.connection import Connection  # noqa: E402
from logship.protocol import ApiKey, framing  # noqa: E402

FROM_TESTS = ("prefix", "slowloris", "flood", "fetch", "garbage", "bigfetch")
TOPIC_EXISTS = 36


def short(host, port, seconds, count):
    request = framing.encode_request(ApiKey.METADATA, 4, 1, "soak-short", {"topics": [{"name": "bait"}]})[4:]
    opened = closed = 0
    end = time.monotonic() + seconds
    ready()
    cut = 0
    while time.monotonic() < end:
        socks = [s for s in (connect(host, port) for _ in range(count)) if s is not None]
        opened += len(socks)
        for sock in socks:
            size = cut % len(request)
            cut += 1
            try:
                sock.send(struct.pack(">i", size) + request[:size])
            except OSError:
                pass
        time.sleep(0.2)
        closed += count_closed(socks)
        for sock in socks:
            sock.close()
    return {"opened": opened, "closed": closed}


def _create(conn: Connection, topics: list[tuple[str, int]]) -> list[int]:
    body = {"topics": [{"name": name, "num_partitions": partitions, "replication_factor": 1, "assignments": [],
                        "configs": []} for name, partitions in topics],
            "timeout_ms": 30_000, "validate_only": False}
    return [t["error_code"] for t in conn.request(ApiKey.CREATE_TOPICS, body, timeout=60)["topics"]]


def lying(host, port, seconds, count):
    result = {"opened": 1, "closed": 0, "refused": 0, "accepted": 0, "good": 0, "good_failed": 0}
    end = time.monotonic() + seconds
    with Connection(host, port, client_id="soak-lying") as conn:
        assert _create(conn, [("lies", 1)])[0] in (0, TOPIC_EXISTS)
        ready()
        while time.monotonic() < end:
            for build, _, code in LYING.values():
                for batch, expected in ((build(), code), (good(1), 0)):
                    body = {"transactional_id": None, "acks": -1, "timeout_ms": 5000,
                            "topic_data": [{"name": "lies", "partition_data": [{"index": 0, "records": batch}]}]}
                    answer = conn.request(ApiKey.PRODUCE, body)["responses"][0]["partition_responses"][0]
                    got = answer["error_code"]
                    if expected:
                        result["refused" if got == expected else "accepted"] += 1
                    else:
                        result["good" if got == 0 else "good_failed"] += 1
    return result


def topics(host, port, seconds, count):
    result = {"opened": 1, "closed": 0, "created": 0, "deleted": 0, "refused": 0, "accepted_over_cap": 0}
    end = time.monotonic() + seconds
    prefix = f"storm-{os.getpid()}"
    with Connection(host, port, client_id="soak-topics", timeout=120) as conn:
        ready()
        round_ = 0
        while time.monotonic() < end:
            names = [(f"{prefix}-{round_}-{i}", 100) for i in range(10)]
            made = [name for (name, _), code in zip(names, _create(conn, names)) if code == 0]
            result["created"] += len(made)
            wide = [(f"{prefix}-{round_}-wide-{i}", 1000) for i in range(6)]
            for over in (wide, [(f"{prefix}-{round_}-huge", 20000)]):
                codes = _create(conn, over)
                result["refused"] += sum(code != 0 for code in codes)
                result["accepted_over_cap"] += all(code == 0 for code in codes)
                made += [name for (name, _), code in zip(over, codes) if code == 0]
            answer = conn.request(ApiKey.DELETE_TOPICS, {"topic_names": made, "timeout_ms": 30_000}, timeout=60)
            result["deleted"] += sum(r["error_code"] == 0 for r in answer["responses"])
            round_ += 1
    return result


def main() -> None:
    kind, address, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    count = int(sys.argv[4]) if len(sys.argv) > 4 else 100
    host, port = address.rsplit(":", 1)
    attack = getattr(attackers, kind) if kind in FROM_TESTS else globals()[kind]
    print(json.dumps(attack(host, int(port), seconds, count)), flush=True)


if __name__ == "__main__":
    main()
