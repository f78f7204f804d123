"""SASL PLAIN with the cluster's shared secret: how a connection proves it is a peer broker.

A cluster's brokers (and `logship promote`) open their connections with SaslHandshake v1
(mechanism PLAIN) and one SaslAuthenticate carrying `authzid NUL authcid NUL secret`
(RFC 4616). `authcid` is `broker-N` (a peer broker, N in the cluster file) or `admin` (an
operator's tool). A match sets the connection's Session.principal; anything else answers
SASL_AUTHENTICATION_FAILED and the connection stays unauthenticated (Kafka closes it; the
client here is told and may close it). The secret is compared in constant time.

These handlers exist only in cluster mode: a single broker advertises neither API.
"""

from __future__ import annotations

import hmac
import logging
from typing import TYPE_CHECKING

from .reply import ClientInfo, Reply

if TYPE_CHECKING:
    from .broker import Broker

log = logging.getLogger("logship.broker")

MECHANISM = "PLAIN"
ADMIN = "admin"
_UNSUPPORTED_MECHANISM = 33
_ILLEGAL_STATE = 34
_AUTH_FAILED = 58


def principal_of(token: bytes) -> tuple[str, bytes] | None:
    """(authcid, password) from a PLAIN token, or None if it is not one."""
    parts = bytes(token).split(b"\0")
    if len(parts) != 3:
        return None
    try:
        return parts[1].decode("ascii"), parts[2]
    except UnicodeDecodeError:
        return None


def plain_token(principal: str, secret: bytes) -> bytes:
    return b"\0" + principal.encode("ascii") + b"\0" + secret


def sasl_handshake(broker: Broker, version: int, body: dict, client: ClientInfo) -> Reply:
    if body["mechanism"] != MECHANISM:
        return Reply({"error_code": _UNSUPPORTED_MECHANISM, "mechanisms": [MECHANISM]})
    if client.session is not None:
        client.session.mechanism = MECHANISM
    return Reply({"error_code": 0, "mechanisms": [MECHANISM]})


def sasl_authenticate(broker: Broker, version: int, body: dict, client: ClientInfo) -> Reply:
    session = client.session
    if session is None or session.mechanism != MECHANISM or session.principal is not None:
        return _failed(_ILLEGAL_STATE, "send SaslHandshake (PLAIN) first, once per connection")
    session.mechanism = None
    parsed = principal_of(body["auth_bytes"] or b"")
    if parsed is None or not _known(broker, parsed[0]) or broker.config.secret is None \
            or not hmac.compare_digest(parsed[1], broker.config.secret):
        log.warning("refused a peer's authentication from %s (wrong secret or unknown name)", client.host)
        return _failed(_AUTH_FAILED, "authentication failed: wrong cluster secret or unknown broker")
    session.principal = parsed[0]
    return Reply({"error_code": 0, "error_message": None, "auth_bytes": b"", "session_lifetime_ms": 0})


def _known(broker: Broker, principal: str) -> bool:
    if principal == ADMIN:
        return True
    cluster = broker.config.cluster
    if cluster is None or not principal.startswith("broker-") or not principal[7:].isdigit():
        return False
    return int(principal[7:]) in cluster.ids


def _failed(code: int, message: str) -> Reply:
    return Reply({"error_code": code, "error_message": message, "auth_bytes": b"", "session_lifetime_ms": 0})


CLIENT_HANDLERS = {17: sasl_handshake, 36: sasl_authenticate}
