"""Peer authentication: a PeerLink with the cluster's secret is accepted as `broker-N`; a
wrong secret, an unknown broker name, or a single broker (no cluster) refuse it; replica-only
power is never granted to a connection that did not authenticate."""

from __future__ import annotations

import asyncio

import pytest

from logship.broker.peer_auth import plain_token, principal_of
from logship.broker.peer_link import PeerAuthenticationError, PeerLink
from logship.errors import BrokerUnavailableError
from logship.protocol import ApiKey

from local_cluster import LocalCluster

pytestmark = pytest.mark.integration


def _link(address: str, principal: str, secret: bytes) -> PeerLink:
    host, port = address.rsplit(":", 1)
    return PeerLink(host, int(port), principal=principal, secret=secret, connect_timeout=5)


async def _connect_and_ask(link: PeerLink) -> dict:
    await link.connect()
    try:
        return await link.request(ApiKey.API_VERSIONS, 0, {}, timeout=5)
    finally:
        await link.close()


def test_plain_token_round_trip():
    assert principal_of(plain_token("broker-3", b"s3cret")) == ("broker-3", b"s3cret")
    assert principal_of(b"no-nuls") is None
    assert principal_of(b"\0\xff\0x") is None


def test_peer_with_secret_is_accepted_and_others_refused(tmp_path):
    cluster = LocalCluster(tmp_path, 1)
    broker = cluster.start(1)
    try:
        body = asyncio.run(_connect_and_ask(_link(broker.address, "broker-1", cluster.secret)))
        keys = {entry["api_key"] for entry in body["api_keys"]}
        assert {ApiKey.SASL_HANDSHAKE, ApiKey.SASL_AUTHENTICATE} <= keys
        asyncio.run(_connect_and_ask(_link(broker.address, "admin", cluster.secret)))
        with pytest.raises(PeerAuthenticationError, match="refused this broker's cluster secret"):
            asyncio.run(_connect_and_ask(_link(broker.address, "broker-1", b"x" * 32)))
        with pytest.raises(PeerAuthenticationError):
            asyncio.run(_connect_and_ask(_link(broker.address, "broker-9", cluster.secret)))
        assert "Traceback" not in broker.log()
    finally:
        cluster.stop_all()


def test_single_broker_takes_no_peers(start_broker):
    broker = start_broker()
    with pytest.raises(BrokerUnavailableError):
        asyncio.run(_connect_and_ask(_link(broker.address, "broker-0", b"y" * 32)))
    assert "Traceback" not in broker.log()


def test_unreachable_peer_is_one_error():
    from local_cluster import free_port

    with pytest.raises(BrokerUnavailableError, match="cannot connect to peer"):
        asyncio.run(_connect_and_ask(_link(f"127.0.0.1:{free_port()}", "broker-1", b"z" * 32)))
