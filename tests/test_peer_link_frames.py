"""PeerLink's receiving side against a scripted peer on loopback: response frames however the
bytes arrive (one at a time, several frames in one write) are answered in order, a Fetch
response's records come back as a writable view (storage appends it without a copy), and an
oversized size prefix or a stream that ends inside a frame fail the link with one error."""

from __future__ import annotations

import asyncio
import struct

import pytest

from logship.broker.peer_link import PeerLink
from logship.errors import BrokerUnavailableError
from logship.protocol import ApiKey, decode_request, encode_response

from storage_batches import make_batch

SASL = {ApiKey.SASL_HANDSHAKE: {"error_code": 0, "mechanisms": ["PLAIN"]},
        ApiKey.SASL_AUTHENTICATE: {"error_code": 0, "error_message": None, "auth_bytes": b"",
                                   "session_lifetime_ms": 0}}


def _fetch_answer(records: bytes) -> dict:
    return {"throttle_time_ms": 0, "error_code": 0, "session_id": 0, "responses": [{"topic": "t", "partitions": [
        {"partition_index": 0, "error_code": 0, "high_watermark": 1, "last_stable_offset": 1,
         "log_start_offset": 0, "aborted_transactions": None, "preferred_read_replica": -1,
         "records": records}]}]}


async def _peer(answer, batch_after: int = 1, hang_up: bool = False):
    """A server answering SASL itself and every other request with `answer(request)`, which
    returns (bytes, dribble); the answers to `batch_after` consecutive requests are written
    together, byte by byte when one says `dribble`; with `hang_up` it closes after that."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held = []
        try:
            while True:
                size = struct.unpack(">i", await reader.readexactly(4))[0]
                request = decode_request(await reader.readexactly(size))
                if request.api_key in SASL:
                    writer.write(encode_response(request.api_key, request.api_version, request.correlation_id,
                                                 SASL[request.api_key]))
                    continue
                held.append(answer(request))
                if len(held) < batch_after:
                    continue
                data, dribble = b"".join(d for d, _ in held), any(d for _, d in held)
                held.clear()
                if dribble:
                    for i in range(len(data)):
                        writer.write(data[i:i + 1])
                        await writer.drain()
                        await asyncio.sleep(0)
                else:
                    writer.write(data)
                await writer.drain()
                if hang_up:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def _link(port: int, **kwargs) -> PeerLink:
    return PeerLink("127.0.0.1", port, principal="broker-2", secret=b"s" * 32, connect_timeout=5, **kwargs)


def test_frames_in_pieces_and_together_are_answered_in_order():
    batch = make_batch()

    def answer(request):
        body = _fetch_answer(batch) if request.api_key == ApiKey.FETCH else {"error_code": 0, "api_keys": [],
                                                                             "throttle_time_ms": 0}
        return encode_response(request.api_key, request.api_version, request.correlation_id, body), \
            request.api_key == ApiKey.FETCH

    async def main():
        server, port = await _peer(answer, batch_after=2)
        link = await _link(port).connect()
        fetch = {"replica_id": 2, "max_wait_ms": 0, "min_bytes": 1, "max_bytes": 1 << 20, "isolation_level": 0,
                 "session_id": 0, "session_epoch": -1, "topics": [], "forgotten_topics_data": [], "rack_id": ""}
        try:
            first, second = await asyncio.gather(link.request(ApiKey.FETCH, 12, fetch, timeout=20),
                                                 link.request(ApiKey.API_VERSIONS, 0, {}, timeout=20))
        finally:
            await link.close()
            server.close()
        records = first["responses"][0]["partitions"][0]["records"]
        assert bytes(records) == batch
        assert not memoryview(records).readonly  # appended by storage as it is
        assert second["error_code"] == 0

    asyncio.run(main())


@pytest.mark.parametrize("frame, error", [
    (struct.pack(">i", 1 << 20) + b"x" * 10, "frame size 1048576 is outside"),
    (struct.pack(">i", 100) + b"x" * 10, "lost the connection to peer"),
])
def test_bad_or_cut_frame_fails_the_link(frame, error):
    async def main():
        server, port = await _peer(lambda request: (frame, False), hang_up=True)
        link = await _link(port, max_frame_bytes=1 << 16).connect()
        try:
            with pytest.raises(BrokerUnavailableError, match=error):
                await link.request(ApiKey.API_VERSIONS, 0, {}, timeout=20)
            assert link.closed
            with pytest.raises(BrokerUnavailableError):
                await link.request(ApiKey.API_VERSIONS, 0, {}, timeout=20)
        finally:
            await link.close()
            server.close()

    asyncio.run(main())
