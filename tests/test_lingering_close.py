"""close_gently: the client reads every byte sent before the FIN, and the swapped-out
protocol still learns that its connection ended (so what it held is given back)."""

from __future__ import annotations

import asyncio

from logship.broker.lingering_close import close_gently


def test_close_gently_delivers_and_reports_the_end():
    async def scenario():
        lost: list = []
        served = asyncio.get_running_loop().create_future()

        class Reply(asyncio.Protocol):
            def connection_made(self, transport):
                transport.write(b"answer" * 1000)
                served.set_result(transport)

        server = await asyncio.get_running_loop().create_server(Reply, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        transport = await served
        writer.write(b"more requests the broker will drop")
        closing = asyncio.create_task(close_gently(transport, 5.0, on_lost=lost.append))
        received = await reader.read()  # up to the broker's FIN
        writer.close()
        await closing
        await asyncio.sleep(0)
        server.close()
        return received, lost

    received, lost = asyncio.run(scenario())
    assert received == b"answer" * 1000
    assert lost == [None]
