"""Hostile clients for tests/test_broker_limits.py, run as a separate process:

    python tests/attackers.py KIND HOST:PORT SECONDS [COUNT]

KIND is one of:
  prefix     COUNT connections each send a 2 MiB length prefix and up to 1 MiB of its body, then nothing
  slowloris  COUNT connections each send an ApiVersions request one byte a second
  flood      open connections as fast as allowed (at most COUNT held), reopening what is closed
  fetch      COUNT connections each send 8 Fetches naming partition 0 of topic `bait` 4,000 times
             (256 KiB - 1 each, max_wait 0) and never read a byte: slices just below sendfile
  smallfetch the same at 64 KiB each: slices small enough to be read into memory (fileslice.py)
  garbage    for SECONDS, connections each send a frame of random bytes (COUNT at once), then wait
             for the broker to close them
  tiny       COUNT connections each pipeline up to 1 MiB of tiny frames and never read: half of
             them 0-byte frames, half 10-byte ApiVersions v0 requests (a header and nothing more)
  pipeline   COUNT connections pipeline 10-byte ApiVersions v0 requests as fast as the broker takes
             them for SECONDS (up to 4 MiB each): half never read a byte, half read and drop the answers
  bigfetch   one Fetch with max_bytes 2^31-1 naming `bait` 4,000 times at 2^31-1 each; read the answer

It prints ready once its sockets are open (a line on stdout), then after SECONDS one JSON line:
{"opened": N, "closed": M, ...} where closed counts connections the broker closed.
"""

from __future__ import annotations

import json
import select
import socket
import struct
import sys
import time

sys.path.insert(0, __file__.rsplit("/tests/", 1)[0])

from logship.protocol import ApiKey, framing  # noqa: E402


def connect(host: str, port: int) -> socket.socket | None:
    try:
        sock = socket.create_connection((host, port), timeout=5)
    except OSError:
        return None
    sock.setblocking(False)
    return sock


def closed_by_peer(sock: socket.socket) -> bool:
    """True if the broker closed it (EOF or reset); reads (and drops) what it sent before."""
    try:
        while True:
            if not sock.recv(1 << 20, socket.MSG_DONTWAIT):
                return True
    except BlockingIOError:
        return False
    except OSError:
        return True


def count_closed(socks: list) -> int:
    return sum(1 for s in socks if closed_by_peer(s))


def fetch_request(partition_max_bytes: int, max_bytes: int, correlation_id: int = 1) -> bytes:
    body = {"replica_id": -1, "max_wait_ms": 0, "min_bytes": 1, "max_bytes": max_bytes, "isolation_level": 0,
            "topics": [{"topic": "bait", "partitions": [
                {"partition": 0, "fetch_offset": 0, "partition_max_bytes": partition_max_bytes}] * 4000}]}
    return framing.encode_request(ApiKey.FETCH, 4, correlation_id, "attacker", body)


def api_versions_request() -> bytes:
    return framing.encode_request(ApiKey.API_VERSIONS, 0, 1, "attacker", {})


def ready() -> None:
    print("ready", flush=True)


def prefix(host, port, seconds, count):
    socks = []
    for _ in range(count):
        sock = connect(host, port)
        if sock is None:
            continue
        sock.setblocking(True)
        sock.settimeout(0.05)
        try:
            sock.sendall(struct.pack(">i", 2 << 20) + b"\0" * (1 << 20))
        except OSError:
            pass  # the broker stopped reading it (its request memory is used up)
        socks.append(sock)
    ready()
    time.sleep(seconds)
    return {"opened": len(socks), "closed": count_closed(socks)}


def slowloris(host, port, seconds, count):
    frame = api_versions_request()
    socks = [s for s in (connect(host, port) for _ in range(count)) if s is not None]
    ready()
    end = time.monotonic() + seconds
    sent = 0
    while time.monotonic() < end and sent < len(frame) - 1:
        for sock in socks:
            try:
                sock.send(frame[sent:sent + 1])
            except OSError:
                pass
        sent += 1
        time.sleep(1)
    time.sleep(max(0.0, end - time.monotonic()))
    return {"opened": len(socks), "closed": count_closed(socks)}


def flood(host, port, seconds, count, per_second: int = 1000):
    held: list = []
    opened = closed = 0
    end = time.monotonic() + seconds
    ready()
    while time.monotonic() < end:
        tick = time.monotonic()
        for _ in range(per_second // 10):
            if len(held) >= count:
                break
            sock = connect(host, port)
            if sock is not None:
                held.append(sock)
                opened += 1
        poller = select.poll()
        by_fd = {sock.fileno(): sock for sock in held}
        for fd in by_fd:
            poller.register(fd, select.POLLIN)
        for fd, _ in poller.poll(0):
            sock = by_fd[fd]
            if closed_by_peer(sock):
                held.remove(sock)
                sock.close()
                closed += 1
        time.sleep(max(0.0, 0.1 - (time.monotonic() - tick)))
    return {"opened": opened, "closed": closed, "held": len(held)}


def fetch(host, port, seconds, count, partition_max_bytes: int = (256 << 10) - 1):
    frames = b"".join(fetch_request(partition_max_bytes, 0x7FFFFFFF, i) for i in range(8))
    socks = []
    for _ in range(count):
        sock = connect(host, port)
        if sock is None:
            continue
        sock.setblocking(True)
        sock.settimeout(2)
        try:
            sock.sendall(frames)
        except OSError:
            pass
        socks.append(sock)
    ready()
    time.sleep(seconds)
    return {"opened": len(socks), "closed": count_closed(socks)}


def smallfetch(host, port, seconds, count):
    return fetch(host, port, seconds, count, 64 << 10)


def garbage(host, port, seconds, count):
    import os

    opened = closed = 0
    end = time.monotonic() + seconds
    ready()
    while time.monotonic() < end:
        socks = [s for s in (connect(host, port) for _ in range(count)) if s is not None]
        opened += len(socks)
        for sock in socks:
            try:
                sock.send(struct.pack(">i", 60) + os.urandom(60))
            except OSError:
                pass
        time.sleep(0.2)
        closed += count_closed(socks)
        for sock in socks:
            sock.close()
    return {"opened": opened, "closed": closed}


def tiny(host, port, seconds, count):
    zero = struct.pack(">i", 0) * (1 << 18)
    ten = framing.encode_request(ApiKey.API_VERSIONS, 0, 1, None, {}) * ((1 << 20) // 14)
    socks = []
    for i in range(count):
        sock = connect(host, port)
        if sock is None:
            continue
        sock.setblocking(True)
        sock.settimeout(0.05)
        try:
            sock.sendall(zero if i % 2 else ten)
        except OSError:
            pass  # the broker stopped reading it
        socks.append(sock)
    ready()
    time.sleep(seconds)
    return {"opened": len(socks), "closed": count_closed(socks)}


def pipeline(host, port, seconds, count, per_connection: int = 4 << 20):
    chunk = framing.encode_request(ApiKey.API_VERSIONS, 0, 1, None, {}) * ((64 << 10) // 14)
    socks = [s for s in (connect(host, port) for _ in range(count)) if s is not None]
    sent = {sock: 0 for sock in socks}
    reading = set(socks[::2])
    closed: set = set()
    ready()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        poller = select.poll()
        by_fd = {}
        for sock in socks:
            if sock in closed:
                continue
            events = (select.POLLOUT if sent[sock] < per_connection else 0) | (select.POLLIN if sock in reading else 0)
            if events:
                poller.register(sock.fileno(), events)
                by_fd[sock.fileno()] = sock
        for fd, event in poller.poll(100):
            sock = by_fd[fd]
            try:
                if event & select.POLLIN and not sock.recv(1 << 20):
                    closed.add(sock)
                    continue
                if event & select.POLLOUT:
                    sent[sock] += sock.send(chunk)
            except BlockingIOError:
                pass
            except OSError:
                closed.add(sock)
    return {"opened": len(socks), "closed": len(closed | {s for s in socks if s not in closed and closed_by_peer(s)}),
            "sent_mb": round(sum(sent.values()) / 2**20)}


def bigfetch(host, port, seconds, count):
    sock = socket.create_connection((host, port), timeout=seconds)
    sock.sendall(fetch_request(0x7FFFFFFF, 0x7FFFFFFF))
    ready()
    size = struct.unpack(">i", _recv_exactly(sock, 4))[0]
    frame = _recv_exactly(sock, size)
    _, body = framing.decode_response(ApiKey.FETCH, 4, frame)
    partitions = body["responses"][0]["partitions"]
    return {"opened": 1, "closed": 0, "response_bytes": size, "partitions": len(partitions),
            "with_records": sum(1 for p in partitions if p["records"]),
            "errors": sorted({p["error_code"] for p in partitions})}


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = sock.recv(min(left, 1 << 20))
        if not chunk:
            raise ConnectionError("closed by the broker")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def main() -> None:
    kind, address, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    count = int(sys.argv[4]) if len(sys.argv) > 4 else 100
    host, port = address.rsplit(":", 1)
    result = globals()[kind](host, int(port), seconds, count)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
