"""Per-request cost of the protocol codec on the broker's hot paths (prints µs per operation).

    python3 bench/protocol_codec.py
"""

from __future__ import annotations

import os
import sys
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from logship.protocol import (  # noqa: E402
    ApiKey, decode_request, encode_request, encode_response, encode_response_parts,
)


class FileSlice:
    """What storage hands the Fetch path: a byte range of a segment file."""

    def __init__(self, fd: int, position: int, length: int):
        self.fd, self.position, self.length = fd, position, length


def best_us(fn, number: int = 20000, repeat: int = 5) -> float:
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e6


def main() -> None:
    produce = encode_request(ApiKey.PRODUCE, 7, 1, "rdkafka", {
        "transactional_id": None, "acks": -1, "timeout_ms": 30000,
        "topic_data": [{"name": "logs", "partition_data": [{"index": 0, "records": os.urandom(20_000)}]}],
    })[4:]
    fetch_request = encode_request(ApiKey.FETCH, 10, 1, "rdkafka", {
        "max_wait_ms": 500, "min_bytes": 1, "max_bytes": 52428800, "topics": [{"topic": "logs", "partitions": [
            {"partition": i, "fetch_offset": 100, "partition_max_bytes": 1048576} for i in range(3)]}],
    })[4:]

    def fetch_response(records):
        return {"throttle_time_ms": 0, "error_code": 0, "session_id": 0, "responses": [{
            "topic": "logs", "partitions": [
                {"partition_index": i, "error_code": 0, "high_watermark": 1000, "last_stable_offset": 1000,
                 "log_start_offset": 0, "aborted_transactions": None, "records": records(i)}
                for i in range(3)]}]}

    spliced = fetch_response(lambda i: FileSlice(3, i * 4096, 4096))
    inline = fetch_response(lambda i: os.urandom(4096))
    rows = [
        ("decode Produce v7 request, one 20 KB batch", lambda: decode_request(produce)),
        ("decode Fetch v10 request, 3 partitions", lambda: decode_request(fetch_request)),
        ("encode Fetch v10 response, 3 partitions, spliced parts",
         lambda: encode_response_parts(ApiKey.FETCH, 10, 7, spliced)),
        ("encode Fetch v10 response, 3 partitions, 4 KB bytes each",
         lambda: encode_response(ApiKey.FETCH, 10, 7, inline)),
    ]
    for label, fn in rows:
        print(f"{best_us(fn):8.2f} µs  {label}")


if __name__ == "__main__":
    main()
