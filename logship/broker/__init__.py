"""The broker: request handlers over the store, and the asyncio server that frames bytes.

`Broker.handle(request)` is sans-IO (request in, `Reply` out); `server.serve` is the thin
asyncio shell that reads frames, waits where a reply says so (durability, long-poll) and
writes responses in request order, splicing segment bytes with sendfile.
"""
