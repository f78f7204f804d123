"""SaslHandshake (17) and SaslAuthenticate (36): from Kafka's message JSON schemas of the same names.

logship uses them between the brokers of a cluster (and from `logship promote`): a peer
opens a connection with SaslHandshake v1 naming PLAIN, then sends one SaslAuthenticate
whose auth_bytes are PLAIN's `authzid NUL authcid NUL password` (RFC 4616), the password
being the cluster's shared secret. SaslHandshake v0 (raw tokens after the handshake) is
not implemented.
"""

from __future__ import annotations

from ..api_keys import ApiKey
from ..schema import Api, Field as F

SASL_HANDSHAKE = Api(ApiKey.SASL_HANDSHAKE, "SaslHandshake", (1, 1), None, request=(
    F("mechanism", "string"),
), response=(
    F("error_code", "int16"),
    F("mechanisms", "[]string"),
))

SASL_AUTHENTICATE = Api(ApiKey.SASL_AUTHENTICATE, "SaslAuthenticate", (0, 2), 2, request=(
    F("auth_bytes", "bytes"),
), response=(
    F("error_code", "int16"),
    F("error_message", "string", nullable="0+"),
    F("auth_bytes", "bytes"),
    F("session_lifetime_ms", "int64", "1+", default=0),
))

APIS = (SASL_HANDSHAKE, SASL_AUTHENTICATE)
